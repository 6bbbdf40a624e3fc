package executor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"helm.sh/helm/v3/pkg/chart"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
)

// chartLevel is the gzip level of chart archives (see pack.ChartLevel).
const chartLevel = pack.ChartLevel

// doChart re-archives a chart: Helm's chartutil.Save stamps the wall clock
// into every header, so bale writes the archive itself from the files Helm
// loaded.
//
// Output: "PACK:charts/NAME-VERSION.tgz", NAME and VERSION from Params.
func (x *execution) doChart(ctx context.Context, n *node) (outputs, error) {
	in, err := x.input(n, plan.KindChart)
	if err != nil {
		return nil, err
	}
	name, version := n.step.Params[plan.ParamName], n.step.Params[plan.ParamVersion]
	if err := safeName("chart name", name); err != nil {
		return nil, err
	}
	if err := safeName("chart version", version); err != nil {
		return nil, err
	}
	if in.Chart != nil && in.Chart.Version != "" && in.Chart.Version != version {
		return nil, fmt.Errorf("chart %s: params version %s, input pins %s", in.Name, version, in.Chart.Version)
	}
	c, err := x.src.LoadChart(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", in.Name, err)
	}
	if c == nil || c.Metadata == nil {
		return nil, fmt.Errorf("load chart %s: no Chart.yaml metadata", in.Name)
	}
	if c.Metadata.Name != name || c.Metadata.Version != version {
		return nil, fmt.Errorf("chart %s: loaded %s %s, plan wants %s %s", in.Name, c.Metadata.Name, c.Metadata.Version, name, version)
	}
	entries, err := chartEntries(name, c)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", in.Name, err)
	}
	w, err := x.store.Writer(ctx)
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	zw, err := archive.NewGzipWriter(w, chartLevel, n.def.mtime)
	if err != nil {
		return nil, err
	}
	if err := archive.WriteTar(ctx, zw, entries, n.def.mtime); err != nil {
		return nil, fmt.Errorf("archive chart %s: %w", in.Name, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("archive chart %s: %w", in.Name, err)
	}
	h, size, err := w.Commit()
	if err != nil {
		return nil, err
	}
	out := outputs{}
	return out, out.add(n.entry(pack.ChartPath(name, version)), h, size)
}

// chartEntries lists a loaded chart's files under top/ as Helm's loader
// read them. The loader keeps every file of the chart, its charts/
// subcharts included, in Raw; a chart assembled in memory may instead carry
// its dependencies only as Dependencies, which are then written under
// top/charts/DEP/, recursively.
func chartEntries(top string, c *chart.Chart) ([]archive.Entry, error) {
	if len(c.Raw) == 0 {
		return nil, fmt.Errorf("chart %s has no files (Raw is empty)", top)
	}
	var entries []archive.Entry
	hasCharts := false
	for _, f := range c.Raw {
		if f == nil {
			continue
		}
		name, err := archive.CleanName(f.Name)
		if err != nil || name != f.Name {
			return nil, fmt.Errorf("chart file %q: not a clean relative path", f.Name)
		}
		hasCharts = hasCharts || strings.HasPrefix(name, "charts/")
		entries = append(entries, fileEntry(top+"/"+name, f.Data))
	}
	if !hasCharts {
		for _, d := range c.Dependencies() {
			if d == nil || d.Metadata == nil {
				continue
			}
			if err := safeName("dependency chart name", d.Metadata.Name); err != nil {
				return nil, err
			}
			sub, err := chartEntries(top+"/charts/"+d.Metadata.Name, d)
			if err != nil {
				return nil, err
			}
			entries = append(entries, sub...)
		}
	}
	return entries, nil
}

// fileEntry is an archive entry over bytes in memory, mode 0644.
func fileEntry(name string, data []byte) archive.Entry {
	return archive.Entry{
		Name: name,
		Size: int64(len(data)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
	}
}
