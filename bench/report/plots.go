package report

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

const (
	plotW = 8 * vg.Inch
	plotH = 4.5 * vg.Inch
	dpi   = 96
)

// WritePlots draws the PNG plots of s into dir and returns their names: throughput.png and
// latency.png (against workers, one line per workload) and timeline-WORKLOAD-wN.png per run.
func WritePlots(dir string, s Summary) ([]string, error) {
	var files []string
	if len(s.Runs) == 0 {
		return nil, nil
	}
	workloads, byWorkload := groupRuns(s.Runs)
	sweep := false // plots against workers need a workload run at two worker counts at least
	for _, wl := range workloads {
		sweep = sweep || len(byWorkload[wl]) > 1
	}
	if !sweep {
		return writeTimelines(dir, s.Runs)
	}

	tp := newPlot("Throughput vs workers", "workers", "operations / s")
	for i, wl := range workloads {
		var xys plotter.XYs
		for _, r := range byWorkload[wl] {
			xys = append(xys, plotter.XY{X: float64(r.Workers), Y: r.OpsPerSec})
		}
		if err := addLine(tp, wl, xys, i, 0, true); err != nil {
			return files, err
		}
	}
	headroom(tp)
	if err := savePNG(tp, filepath.Join(dir, "throughput.png")); err != nil {
		return files, err
	}
	files = append(files, "throughput.png")

	lp := newPlot("Latency vs workers (solid p50, dashed p99)", "workers", "latency, ms")
	for i, wl := range workloads {
		var p50, p99 plotter.XYs
		for _, r := range byWorkload[wl] {
			p50 = append(p50, plotter.XY{X: float64(r.Workers), Y: r.P50Ms})
			p99 = append(p99, plotter.XY{X: float64(r.Workers), Y: r.P99Ms})
		}
		if err := addLine(lp, wl+" p50", p50, i, 0, true); err != nil {
			return files, err
		}
		if err := addLine(lp, wl+" p99", p99, i, 2, true); err != nil {
			return files, err
		}
	}
	headroom(lp)
	if err := savePNG(lp, filepath.Join(dir, "latency.png")); err != nil {
		return files, err
	}
	files = append(files, "latency.png")

	timelines, err := writeTimelines(dir, s.Runs)
	return append(files, timelines...), err
}

// writeTimelines draws one timeline per run.
func writeTimelines(dir string, runs []Run) ([]string, error) {
	var files []string
	for _, r := range runs {
		name := fmt.Sprintf("timeline-%s-w%d.png", safeName(r.Workload), r.Workers)
		if err := WriteTimeline(filepath.Join(dir, name), fmt.Sprintf("%s, %d workers", r.Workload, r.Workers), r); err != nil {
			return files, err
		}
		files = append(files, name)
	}
	return files, nil
}

// WriteTimeline draws one run over time into a PNG at path: operations and errors per second
// on top, p50 and p99 latency per second below, each Event as a vertical line on both.
func WriteTimeline(path, title string, r Run) error {
	var ops, errs, p50, p99 plotter.XYs
	for _, p := range r.Series {
		if p.SpanS < 0.5 {
			continue // the few operations that finished just after the end: no meaningful rate
		}
		x := float64(p.Second) + p.SpanS/2 // the middle of its interval
		ops = append(ops, plotter.XY{X: x, Y: float64(p.Ops) / p.SpanS})
		errs = append(errs, plotter.XY{X: x, Y: float64(p.Errors) / p.SpanS})
		if p.Ops > 0 {
			p50 = append(p50, plotter.XY{X: x, Y: p.P50Ms})
			p99 = append(p99, plotter.XY{X: x, Y: p.P99Ms})
		}
	}
	top := newPlot(title+": throughput", "", "per second")
	if err := addLine(top, "ops/s", ops, 0, 0, false); err != nil {
		return err
	}
	if r.Errors > 0 {
		if err := addLine(top, "errors/s", errs, 1, 0, false); err != nil {
			return err
		}
	}
	bottom := newPlot("latency per second", "seconds since start", "latency, ms")
	if err := addLine(bottom, "p50", p50, 0, 0, false); err != nil {
		return err
	}
	if err := addLine(bottom, "p99", p99, 1, 0, false); err != nil {
		return err
	}
	for _, p := range []*plot.Plot{top, bottom} {
		p.X.Min = 0
		headroom(p)
		if max := float64(len(r.Series)); p.X.Max < max {
			p.X.Max = max
		}
		for _, e := range r.Events {
			if err := addEvent(p, e); err != nil {
				return err
			}
		}
	}
	img := vgimg.NewWith(vgimg.UseWH(plotW, 1.6*plotH), vgimg.UseDPI(dpi))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: 4, PadBottom: 4, PadLeft: 4, PadRight: 8, PadY: 8}
	cs := plot.Align([][]*plot.Plot{{top}, {bottom}}, tiles, dc)
	top.Draw(cs[0][0])
	bottom.Draw(cs[1][0])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true
	return p
}

// addLine adds a named line in colour ci and dash style di, with point marks if points.
func addLine(p *plot.Plot, name string, xys plotter.XYs, ci, di int, points bool) error {
	if len(xys) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color = plotutil.Color(ci)
	l.Dashes = plotutil.Dashes(di)
	l.Width = vg.Points(1.5)
	p.Add(l)
	if points {
		sc, err := plotter.NewScatter(xys)
		if err != nil {
			return err
		}
		sc.Color = plotutil.Color(ci)
		sc.Shape = draw.CircleGlyph{}
		p.Add(sc)
		p.Legend.Add(name, l, sc)
	} else {
		p.Legend.Add(name, l)
	}
	return nil
}

// addEvent draws a labelled vertical line at the event's time, over the plot's current y range.
func addEvent(p *plot.Plot, e Event) error {
	ymax := p.Y.Max
	if ymax <= p.Y.Min {
		ymax = p.Y.Min + 1
	}
	l, err := plotter.NewLine(plotter.XYs{{X: e.AtS, Y: p.Y.Min}, {X: e.AtS, Y: ymax}})
	if err != nil {
		return err
	}
	l.Color = color.RGBA{R: 200, A: 255}
	l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(l)
	if e.Label != "" {
		lb, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: e.AtS, Y: ymax}}, Labels: []string{" " + e.Label}})
		if err != nil {
			return err
		}
		p.Add(lb)
	}
	return nil
}

// headroom starts the y axis at 0 and leaves room above the data for the legend.
func headroom(p *plot.Plot) {
	p.Y.Min = 0
	if p.Y.Max <= 0 {
		p.Y.Max = 1
	}
	p.Y.Max *= 1.3
}

func savePNG(p *plot.Plot, path string) error {
	wt, err := p.WriterTo(plotW, plotH, "png")
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := wt.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// groupRuns returns the workloads in first-seen order and each one's runs sorted by workers.
func groupRuns(runs []Run) ([]string, map[string][]Run) {
	var order []string
	by := map[string][]Run{}
	for _, r := range runs {
		if _, ok := by[r.Workload]; !ok {
			order = append(order, r.Workload)
		}
		by[r.Workload] = append(by[r.Workload], r)
	}
	for _, rs := range by {
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].Workers < rs[j].Workers })
	}
	return order, by
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}
