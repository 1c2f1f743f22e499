package api

import (
	"strings"
	"testing"
)

func TestValidatorText(t *testing.T) {
	ptr := func(s string) *string { return &s }
	name := TextRule{Required: true, Min: 1, Max: 5}
	post := TextRule{Required: true, Min: 1, Max: 5, Controls: NewlinesAndTabs}
	blurb := TextRule{Max: 5, Controls: AnyControls}
	markdown := TextRule{KeepSpace: true, NotBlank: true, Max: 5, Controls: AnyControls}
	tests := []struct {
		name string
		s    *string
		rule TextRule
		want string // the field's problem; "" for none
		kept string // *s after the check
	}{
		{"absent, required", nil, name, "is required", ""},
		{"absent, optional", nil, blurb, "", ""},
		{"trimmed", ptr(" \tabc\n "), name, "", "abc"},
		{"empty", ptr(""), name, "must be 1 to 5 characters", ""},
		{"empty after trim", ptr(" \n\t\u00a0\u3000"), name, "must be 1 to 5 characters", ""},
		{"exactly max, multi-byte", ptr("ééé日本"), name, "", "ééé日本"},
		{"exactly max after trim", ptr("  日本語🙂é  "), name, "", "日本語🙂é"},
		{"max+1, multi-byte", ptr("日本語🙂éé"), name, "must be 1 to 5 characters", "日本語🙂éé"},
		{"control", ptr("a\x07b"), name, "must not contain control characters", "a\x07b"},
		{"newline inside", ptr("a\nb"), name, "must not contain control characters", "a\nb"},
		{"NUL", ptr("a\x00b"), name, "must not contain control characters", "a\x00b"},
		{"C1 control", ptr("a\u0085b"), name, "must not contain control characters", "a\u0085b"},
		{"length before controls", ptr("a\x07bcdef"), name, "must be 1 to 5 characters", "a\x07bcdef"},
		{"format character is not a control", ptr("a\u200bb"), name, "", "a\u200bb"},
		{"newline and tab allowed", ptr("a\nb\tc"), post, "", "a\nb\tc"},
		{"carriage return not allowed", ptr("a\r\nb"), post, "must not contain control characters other than newlines and tabs", "a\r\nb"},
		{"NUL not allowed", ptr("a\x00"), post, "must not contain control characters other than newlines and tabs", "a\x00"},
		{"empty post", ptr("\n\t"), post, "must be 1 to 5 characters", ""},
		{"empty, optional", ptr("   "), blurb, "", ""},
		{"at most max", ptr("abcdef"), blurb, "must be at most 5 characters", "abcdef"},
		{"any control", ptr("a\x01\x00\rb"), blurb, "", "a\x01\x00\rb"},
		{"space kept", ptr(" a \n"), markdown, "", " a \n"},
		{"space counts", ptr("  abcd"), markdown, "must be at most 5 characters", "  abcd"},
		{"blank", ptr(" \n "), markdown, "must not be empty", " \n "},
		{"blank before length", ptr(strings.Repeat(" ", 6)), markdown, "must not be empty", strings.Repeat(" ", 6)},
		// Decode refuses text that is not UTF-8 before Text sees it; each invalid byte counts
		// as one character, and U+FFFD is no control.
		{"invalid UTF-8", ptr("a\xff\xfeb"), name, "", "a\xff\xfeb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Validator{}
			v.Text("f", tt.s, tt.rule)
			if got := v["f"]; got != tt.want {
				t.Errorf("problem %q, want %q", got, tt.want)
			}
			if tt.s != nil && *tt.s != tt.kept {
				t.Errorf("text %q, want %q", *tt.s, tt.kept)
			}
			if (v.Err() == nil) != (tt.want == "") {
				t.Errorf("Err() = %v", v.Err())
			}
		})
	}
}

// TestValidatorKeepsTheFirstProblem: a field's first problem stands, from Check or Text.
func TestValidatorKeepsTheFirstProblem(t *testing.T) {
	v := Validator{}
	v.Check(false, "f", "first")
	v.Text("f", new(string), TextRule{Min: 1, Max: 2})
	v.Text("g", new(string), TextRule{Min: 1, Max: 2})
	v.Check(false, "g", "second")
	if v["f"] != "first" || v["g"] != "must be 1 to 2 characters" || len(v) != 2 {
		t.Errorf("%v", v)
	}
}
