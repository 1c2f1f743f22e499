package markdown

import (
	"strings"
	"testing"

	"golang.org/x/net/html"
)

func TestRenderKeepsFormatting(t *testing.T) {
	got, err := Render("# Title\n\nSome *emphasis*, **bold**, ~~gone~~ and [a link](https://example.com).\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<h1", "Title</h1>", "<em>emphasis</em>", "<strong>bold</strong>", "<del>gone</del>", `href="https://example.com"`, `rel="nofollow noreferrer noopener"`} {
		if !strings.Contains(got, want) {
			t.Errorf("Render = %q, want it to contain %q", got, want)
		}
	}
}

func TestRenderRemovesScript(t *testing.T) {
	payloads := []string{
		`<script>alert(1)</script>`,
		`<img src=x onerror=alert(1)>`,
		`[click](javascript:alert(1))`,
		`[click](JaVaScRiPt:alert(1))`,
		`<a href="javascript:alert(1)">x</a>`,
		`<iframe src="https://evil.example"></iframe>`,
		`<svg onload=alert(1)>`,
		"![x](x\" onerror=\"alert(1))",
		`<div style="background:url(javascript:alert(1))">x</div>`,
		"<details open ontoggle=alert(1)>",
		`[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)`,
	}
	for _, p := range payloads {
		got, err := Render("text\n\n" + p + "\n")
		if err != nil {
			t.Fatal(err)
		}
		if bad := unsafeMarkup(t, got); bad != "" {
			t.Errorf("Render(%q) = %q: %s", p, got, bad)
		}
	}
}

// unsafeMarkup parses h as a browser would and describes the first element or attribute that
// could run script, or returns "".
func unsafeMarkup(t *testing.T, h string) string {
	t.Helper()
	z := html.NewTokenizer(strings.NewReader(h))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return ""
		case html.StartTagToken, html.SelfClosingTagToken:
			tok := z.Token()
			switch tok.Data {
			case "script", "iframe", "svg", "object", "embed", "style", "form", "input", "details":
				return "element " + tok.Data
			}
			for _, a := range tok.Attr {
				v := strings.ToLower(strings.TrimSpace(a.Val))
				switch {
				case strings.HasPrefix(a.Key, "on"), a.Key == "style":
					return "attribute " + a.Key
				case (a.Key == "href" || a.Key == "src") && (strings.HasPrefix(v, "javascript:") || strings.HasPrefix(v, "data:")):
					return "URL " + a.Val
				}
			}
		}
	}
}
