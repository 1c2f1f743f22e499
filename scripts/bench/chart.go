package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
)

// Chart geometry, in SVG user units (pixels).
const (
	chartWidth  = 1000
	labelWidth  = 330
	barLeft     = labelWidth + 10
	barWidth    = chartWidth - barLeft - 110
	rowHeight   = 22
	panelTitleH = 30
	margin      = 16
)

// buildColors gives each build its colour; builds not listed are grey.
var buildColors = map[string]string{
	"stock":        "#6e8cbe",
	"ratelimit":    "#dc9646",
	"cachehandler": "#c85a5a",
	"edge":         "#50a064",
}

// bar is one row of a panel: a median with its min–max whisker.
type bar struct {
	label string
	build string
	s     Summary
}

// svg accumulates the elements of a chart.
type svg struct{ b bytes.Buffer }

func (s *svg) rect(x, y, w, h int, fill string) {
	fmt.Fprintf(&s.b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"/>\n", x, y, max(w, 1), max(h, 1), fill)
}

// text writes str with its baseline at (x, y).
func (s *svg) text(x, y int, str string) {
	fmt.Fprintf(&s.b, "<text x=\"%d\" y=\"%d\">", x, y)
	_ = xml.EscapeText(&s.b, []byte(str)) // a bytes.Buffer does not fail
	s.b.WriteString("</text>\n")
}

// chart draws throughput and p99 latency per scenario as two bar panels and returns an SVG
// document.
func (r *Report) chart() []byte {
	var rps, p99 []bar
	for _, res := range r.Scenarios {
		label := res.ID + "  " + res.Title
		rps = append(rps, bar{label, res.Build, res.RPS})
		p99 = append(p99, bar{label, res.Build, res.P99ms})
	}
	panelH := panelTitleH + len(r.Scenarios)*rowHeight + margin
	height := 2*margin + 20 + 2*panelH
	var s svg
	fmt.Fprintf(&s.b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "+
		"font-family=\"monospace\" font-size=\"12\" fill=\"#1e1e1e\">\n", chartWidth, height, chartWidth, height)
	s.rect(0, 0, chartWidth, height, "#ffffff")
	s.text(margin, margin+10, fmt.Sprintf("make bench, %s, %s, %d CPUs, load %s; median, whisker min-max over %d rounds",
		r.Date, r.Machine.CPU, r.Machine.CPUs, r.Machine.LoadBefore, r.Plan.Rounds))
	y := margin + 20
	s.panel(y, "Throughput, requests/s (higher is better)", rps, 0)
	s.panel(y+panelH, "p99 latency, ms (lower is better)", p99, 2)
	s.b.WriteString("</svg>\n")
	return s.b.Bytes()
}

// panel draws a titled set of horizontal bars from y down, scaled to the largest maximum.
func (s *svg) panel(y int, title string, bars []bar, prec int) {
	s.text(margin, y+18, title)
	scale := 0.0
	for _, b := range bars {
		if !math.IsNaN(b.s.Max) {
			scale = max(scale, b.s.Max)
		}
	}
	top := y + panelTitleH
	s.rect(barLeft, top-4, 1, len(bars)*rowHeight+4, "#bebebe")
	for i, b := range bars {
		row := top + i*rowHeight
		label := b.label
		if len(label) > labelWidth/7 {
			label = label[:labelWidth/7-2] + ".."
		}
		s.text(margin, row+14, label)
		if math.IsNaN(b.s.Median) || scale == 0 {
			s.text(barLeft+6, row+14, "not measured")
			continue
		}
		x := func(v float64) int { return barLeft + int(v/scale*barWidth) }
		c, ok := buildColors[b.build]
		if !ok {
			c = "#969696"
		}
		s.rect(barLeft+1, row+3, x(b.s.Median)-barLeft-1, rowHeight-6, c)
		mid := row + rowHeight/2
		s.rect(x(b.s.Min), mid, x(b.s.Max)-x(b.s.Min)+1, 1, "#141414")
		s.rect(x(b.s.Min), mid-4, 1, 9, "#141414")
		s.rect(x(b.s.Max), mid-4, 1, 9, "#141414")
		s.text(x(b.s.Max)+6, row+14, fmtNum(b.s.Median, prec))
	}
}
