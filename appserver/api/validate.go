package api

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Validator collects per-field problems; Err turns them into one 400 error.
type Validator map[string]string

// Check records msg for field when ok is false, unless the field already has a problem.
func (v Validator) Check(ok bool, field, msg string) {
	if !ok {
		if _, dup := v[field]; !dup {
			v[field] = msg
		}
	}
}

// Err returns nil when every check passed, else a 400 "invalid_request" *Error whose
// details map each failing field to its problem.
func (v Validator) Err() error {
	if len(v) == 0 {
		return nil
	}
	return &Error{Code: "invalid_request", Message: "validation failed", Details: map[string]string(v)}
}

// Controls says which control characters (unicode.IsControl) a text may hold.
type Controls int

// The control characters a text may hold.
const (
	NoControls      Controls = iota // none: a name, a title
	NewlinesAndTabs                 // \n and \t only: a short post
	AnyControls                     // any: markdown, a blurb, a bio
)

// TextRule is what a text field of a request body may hold; Validator.Text checks it.
type TextRule struct {
	// Required makes an absent field a problem ("is required").
	Required bool
	// KeepSpace keeps the text as sent; without it, leading and trailing white space is
	// trimmed before the other checks, and the field holds the trimmed text.
	KeepSpace bool
	// NotBlank refuses a text of white space alone ("must not be empty").
	NotBlank bool
	// Min and Max bound the length in characters (runes): "must be Min to Max characters",
	// or "must be at most Max characters" when Min is 0.
	Min, Max int
	// Controls is which control characters the text may hold. Default: none.
	Controls Controls
}

// Text checks the text field s points to, nil when the request left it out, against rule,
// recording the field's first problem, in this order: required, blank, length, control
// characters. It trims *s unless rule.KeepSpace. Text does not check the encoding: Decode
// refuses text that is not UTF-8 or holds NUL before any handler checks its fields.
func (v Validator) Text(field string, s *string, rule TextRule) {
	if s == nil {
		v.Check(!rule.Required, field, "is required")
		return
	}
	if !rule.KeepSpace {
		*s = strings.TrimSpace(*s)
	}
	if rule.NotBlank {
		v.Check(strings.TrimSpace(*s) != "", field, "must not be empty")
	}
	n := utf8.RuneCountInString(*s)
	if rule.Min > 0 {
		v.Check(n >= rule.Min && n <= rule.Max, field, "must be "+strconv.Itoa(rule.Min)+" to "+strconv.Itoa(rule.Max)+" characters")
	} else {
		v.Check(n <= rule.Max, field, "must be at most "+strconv.Itoa(rule.Max)+" characters")
	}
	switch rule.Controls {
	case NoControls:
		v.Check(!strings.ContainsFunc(*s, unicode.IsControl), field, "must not contain control characters")
	case NewlinesAndTabs:
		v.Check(!strings.ContainsFunc(*s, func(c rune) bool { return unicode.IsControl(c) && c != '\n' && c != '\t' }),
			field, "must not contain control characters other than newlines and tabs")
	}
}
