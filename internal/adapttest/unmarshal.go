package adapttest

import (
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCase is one row of a directive's parser table: the Caddyfile Input, and either the
// substring WantErr of the error it must give, or what it must parse to: Want, compared with
// reflect.DeepEqual, unless Check is set, which then judges the parsed value alone.
type UnmarshalCase[T any] struct {
	Name    string
	Input   string
	Want    T
	Check   func(t *testing.T, got *T)
	WantErr string
}

// Unmarshal runs UnmarshalCaddyfile of a zero T on each case's Input (through
// caddyfile.NewTestDispenser), one subtest each, and checks the error or the value.
func Unmarshal[T any, P interface {
	*T
	caddyfile.Unmarshaler
}](t *testing.T, cases []UnmarshalCase[T]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			var got T
			err := P(&got).UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.Input))
			if tc.WantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.WantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.WantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.Check != nil {
				tc.Check(t, &got)
			} else if !reflect.DeepEqual(got, tc.Want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.Want)
			}
		})
	}
}
