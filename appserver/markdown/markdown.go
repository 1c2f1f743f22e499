// Package markdown renders user-written markdown (chapters) to HTML that is safe to embed in
// a page: goldmark renders CommonMark with GitHub tables and strikethrough, leaving raw HTML
// out, and bluemonday's user-generated-content policy then removes anything that could run
// script (event handlers, javascript: URLs, iframes, styles) from the result.
package markdown

import (
	"bytes"

	"github.com/microcosm-cc/bluemonday"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
)

// renderer and policy are safe for concurrent use once built.
var (
	renderer = goldmark.New(goldmark.WithExtensions(extension.Table, extension.Strikethrough))
	policy   = newPolicy()
)

func newPolicy() *bluemonday.Policy {
	p := bluemonday.UGCPolicy()
	p.RequireNoFollowOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	p.RequireNoReferrerOnLinks(true)
	return p
}

// Render returns the sanitized HTML of src.
func Render(src string) (string, error) {
	var buf bytes.Buffer
	if err := renderer.Convert([]byte(src), &buf); err != nil {
		return "", err
	}
	return policy.Sanitize(buf.String()), nil
}
