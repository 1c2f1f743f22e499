package piiscrub

import (
	"encoding/json"
	"testing"

	"github.com/muejam/edge/internal/adapttest"
)

func TestUnmarshalEncoder(t *testing.T) {
	adapttest.Unmarshal(t, []adapttest.UnmarshalCase[Encoder]{
		{Name: "bare", Input: `pii_scrub`, Want: Encoder{}},
		{Name: "wrap json", Input: "pii_scrub {\n\twrap json\n}", Want: Encoder{WrappedRaw: json.RawMessage(`{"format":"json"}`)}},
		{Name: "wrap console with options", Input: "pii_scrub {\n\twrap console {\n\t\ttime_format iso8601\n\t}\n}",
			Want: Encoder{WrappedRaw: json.RawMessage(`{"format":"console","time_format":"iso8601"}`)}},
		{Name: "full", Input: `pii_scrub {
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
		}`, Want: Encoder{WrappedRaw: json.RawMessage(`{"format":"json"}`), Options: Options{
			Modes:        map[string]string{"email": "pseudonym", "ip": "redact", "card": "mask", "phone": "off"},
			PseudonymKey: "{env.PII_KEY}",
			Params:       []string{"state", "nonce", "cursor"},
			Headers:      []string{"X-Card"},
			Fields:       []string{"display_name", "bio"},
		}}},
		{Name: "argument", Input: `pii_scrub json`, WantErr: "wrong argument count"},
		{Name: "wrap without encoder", Input: "pii_scrub {\n\twrap\n}", WantErr: "wrong argument count"},
		{Name: "wrap unknown encoder", Input: "pii_scrub {\n\twrap yaml\n}", WantErr: "yaml"},
		{Name: "unknown option", Input: "pii_scrub {\n\tmode email redact\n}", WantErr: `unrecognized pii_scrub option "mode", at Testfile:2`},
		{Name: "unknown kind", Input: "pii_scrub {\n\tmodes {\n\t\tpassport redact\n\t}\n}", WantErr: `unknown kind "passport", at Testfile:3`},
		{Name: "unknown mode", Input: "pii_scrub {\n\tmodes {\n\t\temail hide\n\t}\n}", WantErr: `unknown mode "hide" for email`},
		{Name: "mode twice", Input: "pii_scrub {\n\tmodes {\n\t\temail mask\n\t\temail redact\n\t}\n}", WantErr: "mode of email set twice"},
		{Name: "mode without value", Input: "pii_scrub {\n\tmodes {\n\t\temail\n\t}\n}", WantErr: "wrong argument count"},
		{Name: "modes argument", Input: "pii_scrub {\n\tmodes email\n}", WantErr: "wrong argument count"},
		{Name: "key missing", Input: "pii_scrub {\n\tpseudonym_key\n}", WantErr: "wrong argument count"},
		{Name: "two keys", Input: "pii_scrub {\n\tpseudonym_key a b\n}", WantErr: "wrong argument count"},
		{Name: "no params", Input: "pii_scrub {\n\tparams\n}", WantErr: "wrong argument count"},
		{Name: "no fields", Input: "pii_scrub {\n\tfields\n}", WantErr: "wrong argument count"},
	})
}

func TestUnmarshalFilter(t *testing.T) {
	adapttest.Unmarshal(t, []adapttest.UnmarshalCase[Filter]{
		{Name: "bare", Input: `pii`, Want: Filter{}},
		{Name: "options", Input: "pii {\n\tfields display_name\n\tmodes {\n\t\tip redact\n\t}\n}",
			Want: Filter{Options: Options{Fields: []string{"display_name"}, Modes: map[string]string{"ip": "redact"}}}},
		{Name: "argument", Input: `pii email`, WantErr: "wrong argument count"},
		{Name: "wrap", Input: "pii {\n\twrap json\n}", WantErr: `unrecognized pii option "wrap"`},
	})
}
