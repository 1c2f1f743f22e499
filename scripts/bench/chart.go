package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Chart geometry, in pixels.
const (
	chartWidth  = 1000
	labelWidth  = 330
	barLeft     = labelWidth + 10
	barWidth    = chartWidth - barLeft - 110
	rowHeight   = 22
	panelTitleH = 30
	margin      = 16
)

var (
	colBackground = color.RGBA{255, 255, 255, 255}
	colText       = color.RGBA{30, 30, 30, 255}
	colAxis       = color.RGBA{190, 190, 190, 255}
	colWhisker    = color.RGBA{20, 20, 20, 255}
	// buildColors gives each build its colour; builds not listed are grey.
	buildColors = map[string]color.RGBA{
		"stock":        {110, 140, 190, 255},
		"ratelimit":    {220, 150, 70, 255},
		"cachehandler": {200, 90, 90, 255},
		"edge":         {80, 160, 100, 255},
	}
)

// bar is one row of a panel: a median with its min–max whisker.
type bar struct {
	label string
	build string
	s     Summary
}

// chart draws throughput and p99 latency per scenario as two bar panels and returns a PNG.
func (r *Report) chart() ([]byte, error) {
	var rps, p99 []bar
	for _, res := range r.Scenarios {
		label := res.ID + "  " + res.Title
		rps = append(rps, bar{label, res.Build, res.RPS})
		p99 = append(p99, bar{label, res.Build, res.P99ms})
	}
	n := len(r.Scenarios)
	panelH := panelTitleH + n*rowHeight + margin
	img := image.NewRGBA(image.Rect(0, 0, chartWidth, 2*margin+20+2*panelH))
	draw.Draw(img, img.Bounds(), image.NewUniform(colBackground), image.Point{}, draw.Src)
	text(img, margin, margin+10, fmt.Sprintf("make bench, %s, %s, %d CPUs, load %s; median, whisker min-max over %d rounds",
		r.Date, r.Machine.CPU, r.Machine.CPUs, r.Machine.LoadBefore, r.Plan.Rounds))
	y := margin + 20
	panel(img, y, "Throughput, requests/s (higher is better)", rps, 0)
	panel(img, y+panelH, "p99 latency, ms (lower is better)", p99, 2)
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// panel draws a titled set of horizontal bars from y down, scaled to the largest maximum.
func panel(img *image.RGBA, y int, title string, bars []bar, prec int) {
	text(img, margin, y+18, title)
	scale := 0.0
	for _, b := range bars {
		if !math.IsNaN(b.s.Max) {
			scale = max(scale, b.s.Max)
		}
	}
	top := y + panelTitleH
	fill(img, image.Rect(barLeft, top-4, barLeft+1, top+len(bars)*rowHeight), colAxis)
	for i, b := range bars {
		row := top + i*rowHeight
		label := b.label
		if len(label) > labelWidth/7 {
			label = label[:labelWidth/7-2] + ".."
		}
		text(img, margin, row+14, label)
		if math.IsNaN(b.s.Median) || scale == 0 {
			text(img, barLeft+6, row+14, "not measured")
			continue
		}
		x := func(v float64) int { return barLeft + int(v/scale*barWidth) }
		c, ok := buildColors[b.build]
		if !ok {
			c = color.RGBA{150, 150, 150, 255}
		}
		fill(img, image.Rect(barLeft+1, row+3, x(b.s.Median), row+rowHeight-3), c)
		mid := row + rowHeight/2
		fill(img, image.Rect(x(b.s.Min), mid, x(b.s.Max)+1, mid+1), colWhisker)
		fill(img, image.Rect(x(b.s.Min), mid-4, x(b.s.Min)+1, mid+5), colWhisker)
		fill(img, image.Rect(x(b.s.Max), mid-4, x(b.s.Max)+1, mid+5), colWhisker)
		text(img, x(b.s.Max)+6, row+14, fmtNum(b.s.Median, prec))
	}
}

func fill(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

// text draws s with its baseline at (x, y) in a 7×13 bitmap font (ASCII).
func text(img *image.RGBA, x, y int, s string) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(colText), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
