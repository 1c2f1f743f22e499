package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"unicode/utf8"
)

// Page sizes of list routes.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// Page is the pagination of a list request: how many items to return and where to resume.
type Page struct {
	Limit  int
	cursor string
}

// ParsePage reads ?limit= (1 to MaxLimit, default DefaultLimit) and ?cursor=.
func ParsePage(r *http.Request) (Page, error) {
	p := Page{Limit: DefaultLimit, cursor: r.URL.Query().Get("cursor")}
	v := Validator{}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		v.Check(err == nil && n >= 1 && n <= MaxLimit, "limit", "must be a number from 1 to "+strconv.Itoa(MaxLimit))
		p.Limit = n
	}
	return p, v.Err()
}

// After decodes the cursor into dst, the position of the last item already returned. It
// reports false when the request has no cursor (the first page), and a 400 error when the
// cursor is not one this API made (which includes one whose text is not valid UTF-8 or
// holds NUL: this API's cursors never do).
func (p Page) After(dst any) (bool, error) {
	if p.cursor == "" {
		return false, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(p.cursor)
	if err == nil {
		err = json.Unmarshal(b, dst)
	}
	// Positions reach SQL: text in them must be text PostgreSQL can store.
	if err != nil || !utf8.Valid(b) || CheckText(b) != nil {
		return false, &Error{Code: "invalid_request", Message: "validation failed",
			Details: map[string]string{"cursor": "is not a cursor from this API"}}
	}
	return true, nil
}

// Cursor encodes the position of the last item of a page as an opaque string.
func Cursor(position any) string {
	b, err := json.Marshal(position)
	if err != nil {
		panic("api: unencodable cursor: " + err.Error()) // positions are plain structs
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Trim cuts items, fetched with one row more than p.Limit, to the page, and returns the
// cursor of the next page: position(last item) when there was more, else "".
func Trim[T any](p Page, items []T, position func(T) any) ([]T, string) {
	if len(items) <= p.Limit {
		return items, ""
	}
	items = items[:p.Limit]
	return items, Cursor(position(items[len(items)-1]))
}

// WithCursor returns p resuming after cursor, a Cursor of a position, with the same limit.
func (p Page) WithCursor(cursor string) Page {
	p.cursor = cursor
	return p
}

// Key identifies the page among the pages of one list: its limit and cursor.
func (p Page) Key() string { return strconv.Itoa(p.Limit) + ":" + p.cursor }
