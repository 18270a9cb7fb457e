package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// ColdstartCmd is `scopebench coldstart`.
type ColdstartCmd struct {
	ServerFlags `embed:""`

	Runs int           `default:"21" help:"Measured starts; the medians are reported."`
	Idle time.Duration `default:"1s" help:"How long the server idles after tools/list before its RSS is read."`
}

// coldSample is one start.
type coldSample struct {
	init, list time.Duration
	rssStart   int64 // KiB, right after tools/list
	rssIdle    int64 // KiB, after idling
}

// Run starts the stdio server Runs times (after one unmeasured start that
// creates the file) and reports the medians.
func (c *ColdstartCmd) Run(ctx context.Context) error {
	if c.Runs < 1 {
		return fmt.Errorf("--runs %d must be at least 1: %w", c.Runs, errUsage)
	}
	bin, err := c.binary()
	if err != nil {
		return err
	}
	db, cleanup, err := c.database()
	if err != nil {
		return err
	}
	defer cleanup()
	ten, _ := newTenants(1, 1, "uniform", 1)
	t := &stdioTarget{bin: bin, args: c.serveArgs(db), tenants: ten, stderr: &tailBuffer{}}
	samples, err := coldStarts(ctx, t, c.Runs, c.Idle)
	if err != nil {
		return err
	}
	med := func(f func(coldSample) float64) float64 {
		xs := make([]float64, len(samples))
		for i, s := range samples {
			xs[i] = f(s)
		}
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	minMax := func(f func(coldSample) float64) (float64, float64) {
		lo, hi := f(samples[0]), f(samples[0])
		for _, s := range samples {
			lo, hi = min(lo, f(s)), max(hi, f(s))
		}
		return lo, hi
	}
	msOf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	initF := func(s coldSample) float64 { return msOf(s.init) }
	listF := func(s coldSample) float64 { return msOf(s.list) }
	rs := func(s coldSample) float64 { return float64(s.rssStart) / 1024 }
	ri := func(s coldSample) float64 { return float64(s.rssIdle) / 1024 }
	fmt.Printf("scopebench coldstart: stdio, %s, %s, %d runs (after one unmeasured start)\n", c.describeStore(), c.describeEmbedder(), c.Runs)
	lo, hi := minMax(initF)
	fmt.Printf("spawn to initialize result: median %.1f ms (min %.1f, max %.1f)\n", med(initF), lo, hi)
	lo, hi = minMax(listF)
	fmt.Printf("spawn to tools/list result: median %.1f ms (min %.1f, max %.1f)\n", med(listF), lo, hi)
	lo, hi = minMax(rs)
	fmt.Printf("RSS after tools/list:       median %.1f MiB (min %.1f, max %.1f)\n", med(rs), lo, hi)
	lo, hi = minMax(ri)
	fmt.Printf("RSS after %s idle:          median %.1f MiB (min %.1f, max %.1f)\n", c.Idle, med(ri), lo, hi)
	return nil
}

// coldStarts measures runs starts of t's server, after one unmeasured one.
func coldStarts(ctx context.Context, t *stdioTarget, runs int, idle time.Duration) ([]coldSample, error) {
	var out []coldSample
	for i := range runs + 1 {
		start := time.Now()
		s, err := t.spawn(ctx, 0)
		if err != nil {
			return nil, err
		}
		var cs coldSample
		cs.init = time.Since(start)
		if _, err := s.c.ListTools(ctx, mcp.ListToolsRequest{}); err != nil {
			s.close()
			return nil, fmt.Errorf("tools/list: %w", err)
		}
		cs.list = time.Since(start)
		cs.rssStart, err = rssKiB(s.pid)
		if err == nil {
			select {
			case <-time.After(idle):
			case <-ctx.Done():
			}
			cs.rssIdle, err = rssKiB(s.pid)
		}
		s.close()
		if err != nil {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if i > 0 {
			out = append(out, cs)
		}
	}
	return out, nil
}

// rssKiB reads VmRSS of a process from /proc (Linux only).
func rssKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the server's RSS needs Linux /proc: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) >= 1 {
				return strconv.ParseInt(fields[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
