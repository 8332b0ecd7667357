package dashboard

import (
	"context"
	"fmt"
	"time"

	"github.com/jetfleet/jetfleet/metrics"
)

// The throughput chart: the last hour in one-minute bars, fleet-wide, from
// the workers' samples (metrics.Sampler). The samples are read at most
// every chartCache, however many pages refresh.
const (
	chartBuckets = 60
	chartWidth   = time.Minute
	chartCache   = 5 * time.Second
)

// Geometry of the SVG, in its own units (it scales to the page's width).
const (
	svgW, svgH          = 640.0, 200.0
	plotLeft, plotRight = 44.0, 636.0
	plotTop, plotBottom = 12.0, 176.0
	barGap              = 1.0
)

// chart is the SVG chart, computed on the server.
type chart struct {
	Bars []bar
	// Max is the top of the Y axis (jobs per minute), Mid its half.
	Max, Mid uint64
	// Succeeded and Failed are the hour's totals; Peak the busiest minute.
	Succeeded, Failed, Peak uint64
	// Empty is true when no sample is available (no worker ran in the
	// last hour, or no worker publishes samples).
	Empty bool
	W, H  float64
	// Axis positions.
	Left, Right, Top, Bottom, MidY float64
	// Minutes lists the minutes with any job, for the table version.
	Minutes []bar
}

// bar is one minute.
type bar struct {
	Start                      time.Time
	Succeeded, Failed          uint64
	X, W, OkY, OkH, BadY, BadH float64
}

// throughput returns the last hour's buckets, cached for chartCache; nil
// when the samples cannot be read.
func (d *Dashboard) throughput(ctx context.Context, now time.Time) []metrics.Bucket {
	d.chartMu.Lock()
	defer d.chartMu.Unlock()
	if time.Since(d.chartAt) < chartCache && d.chart != nil {
		return d.chart
	}
	samples, err := metrics.ReadSamples(ctx, d.js, now.Add(-chartWidth*chartBuckets-time.Minute))
	if err != nil {
		d.cfg.Logger.Warn().Err(err).Msg("dashboard: read the throughput samples")
		return nil
	}
	// Bars end at the next whole minute, so a bar is a clock minute.
	end := now.Truncate(time.Minute).Add(time.Minute)
	d.chart = metrics.Throughput(samples, end, chartBuckets, chartWidth, "")
	d.chartAt = time.Now()
	if len(samples) == 0 {
		d.chart = []metrics.Bucket{}
	}
	return d.chart
}

func newChart(buckets []metrics.Bucket, now time.Time) chart {
	c := chart{W: svgW, H: svgH, Left: plotLeft, Right: plotRight, Top: plotTop, Bottom: plotBottom, Empty: len(buckets) == 0}
	for _, b := range buckets {
		c.Succeeded += b.Succeeded
		c.Failed += b.DeadLettered
		c.Peak = max(c.Peak, b.Succeeded+b.DeadLettered)
	}
	c.Max = niceMax(c.Peak)
	c.Mid = c.Max / 2
	c.MidY = plotBottom - (plotBottom-plotTop)/2
	if len(buckets) == 0 {
		return c
	}
	step := (plotRight - plotLeft) / float64(len(buckets))
	scale := (plotBottom - plotTop) / float64(c.Max)
	for i, b := range buckets {
		okH := float64(b.Succeeded) * scale
		badH := float64(b.DeadLettered) * scale
		br := bar{
			Start: b.Start, Succeeded: b.Succeeded, Failed: b.DeadLettered,
			X: plotLeft + float64(i)*step + barGap/2, W: step - barGap,
			OkY: plotBottom - okH, OkH: okH, BadY: plotBottom - okH - badH, BadH: badH,
		}
		c.Bars = append(c.Bars, br)
		if b.Succeeded+b.DeadLettered > 0 {
			c.Minutes = append(c.Minutes, br)
		}
	}
	return c
}

// niceMax rounds the axis top up to 1, 2 or 5 times a power of ten (at
// least 10), so the half-way label is a whole number.
func niceMax(peak uint64) uint64 {
	for p := uint64(10); ; p *= 10 {
		for _, m := range []uint64{1, 2, 5} {
			if m*p >= peak {
				return m * p
			}
		}
	}
}

// Label is a bar's accessible description.
func (b bar) Label() string {
	return fmt.Sprintf("%s: %d succeeded, %d failed", b.Start.UTC().Format("15:04"), b.Succeeded, b.Failed)
}
