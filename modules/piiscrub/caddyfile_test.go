package piiscrub

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalEncoder(t *testing.T) {
	for _, tc := range []struct {
		name    string
		input   string
		want    Encoder
		wantErr string
	}{
		{name: "bare", input: `pii_scrub`, want: Encoder{}},
		{name: "wrap json", input: "pii_scrub {\n\twrap json\n}", want: Encoder{WrappedRaw: json.RawMessage(`{"format":"json"}`)}},
		{name: "wrap console with options", input: "pii_scrub {\n\twrap console {\n\t\ttime_format iso8601\n\t}\n}",
			want: Encoder{WrappedRaw: json.RawMessage(`{"format":"console","time_format":"iso8601"}`)}},
		{name: "full", input: `pii_scrub {
			wrap json
			modes {
				email pseudonym
				ip redact
				card mask
				phone off
			}
			pseudonym_key {env.PII_KEY}
			params state nonce
			params cursor
			headers X-Card
			fields display_name bio
		}`, want: Encoder{WrappedRaw: json.RawMessage(`{"format":"json"}`), Options: Options{
			Modes:        map[string]string{"email": "pseudonym", "ip": "redact", "card": "mask", "phone": "off"},
			PseudonymKey: "{env.PII_KEY}",
			Params:       []string{"state", "nonce", "cursor"},
			Headers:      []string{"X-Card"},
			Fields:       []string{"display_name", "bio"},
		}}},
		{name: "argument", input: `pii_scrub json`, wantErr: "wrong argument count"},
		{name: "wrap without encoder", input: "pii_scrub {\n\twrap\n}", wantErr: "wrong argument count"},
		{name: "wrap unknown encoder", input: "pii_scrub {\n\twrap yaml\n}", wantErr: "yaml"},
		{name: "unknown option", input: "pii_scrub {\n\tmode email redact\n}", wantErr: `unrecognized pii_scrub option "mode", at Testfile:2`},
		{name: "unknown kind", input: "pii_scrub {\n\tmodes {\n\t\tpassport redact\n\t}\n}", wantErr: `unknown kind "passport", at Testfile:3`},
		{name: "unknown mode", input: "pii_scrub {\n\tmodes {\n\t\temail hide\n\t}\n}", wantErr: `unknown mode "hide" for email`},
		{name: "mode twice", input: "pii_scrub {\n\tmodes {\n\t\temail mask\n\t\temail redact\n\t}\n}", wantErr: "mode of email set twice"},
		{name: "mode without value", input: "pii_scrub {\n\tmodes {\n\t\temail\n\t}\n}", wantErr: "wrong argument count"},
		{name: "modes argument", input: "pii_scrub {\n\tmodes email\n}", wantErr: "wrong argument count"},
		{name: "key missing", input: "pii_scrub {\n\tpseudonym_key\n}", wantErr: "wrong argument count"},
		{name: "two keys", input: "pii_scrub {\n\tpseudonym_key a b\n}", wantErr: "wrong argument count"},
		{name: "no params", input: "pii_scrub {\n\tparams\n}", wantErr: "wrong argument count"},
		{name: "no fields", input: "pii_scrub {\n\tfields\n}", wantErr: "wrong argument count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e Encoder
			err := e.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(e, tc.want) {
				t.Errorf("got %+v\nwant %+v", e, tc.want)
			}
		})
	}
}

func TestUnmarshalFilter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		input   string
		want    Filter
		wantErr string
	}{
		{name: "bare", input: `pii`, want: Filter{}},
		{name: "options", input: "pii {\n\tfields display_name\n\tmodes {\n\t\tip redact\n\t}\n}",
			want: Filter{Options: Options{Fields: []string{"display_name"}, Modes: map[string]string{"ip": "redact"}}}},
		{name: "argument", input: `pii email`, wantErr: "wrong argument count"},
		{name: "wrap", input: "pii {\n\twrap json\n}", wantErr: `unrecognized pii option "wrap"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f Filter
			err := f.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(f, tc.want) {
				t.Errorf("got %+v\nwant %+v", f, tc.want)
			}
		})
	}
}
