package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// ms formats a duration in milliseconds.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// print writes the report as a table.
func (r *Report) print(w io.Writer) {
	fmt.Fprintf(w, "\nscopebench: %s\n", r.Describe)
	if r.Client != "" {
		fmt.Fprintf(w, "client: %s\n", r.Client)
	}
	fmt.Fprintf(w, "sessions %d, mix %s\n", r.Sessions, r.Mix)
	if r.Rate > 0 {
		fmt.Fprintf(w, "paced: %.0f calls/s offered, each session every %s; latency from each call's scheduled start\n",
			r.Rate, ms(time.Duration(float64(r.Sessions)/r.Rate*float64(time.Second))))
	}
	if r.Preloaded > 0 || len(r.PreloadErrors) > 0 {
		fmt.Fprintf(w, "preload: %d memories in %s (%.0f adds/s)\n", r.Preloaded, r.PreloadTime.Round(time.Millisecond),
			float64(r.Preloaded)/max(r.PreloadTime.Seconds(), 1e-9))
	}
	all := r.Ops["all"]
	fmt.Fprintf(w, "measured: %d calls in %s: %.0f calls/s\n\n", all.Calls, r.Wall.Round(time.Millisecond), all.PerSec)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\tcalls\tcalls/s\tmean\tp50\tp95\tp99\tmax\terrors\t")
	names := make([]string, 0, len(r.Ops))
	for op := range r.Ops {
		if op != "all" {
			names = append(names, op)
		}
	}
	slices.Sort(names)
	for _, op := range append(names, "all") {
		s := r.Ops[op]
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t\n", op, s.Calls, s.PerSec, ms(s.Mean), ms(s.P50), ms(s.P95), ms(s.P99), ms(s.Max), s.Errors)
	}
	tw.Flush()
	printErrors(w, "errors while measuring", r.Errors)
	printErrors(w, "errors while preloading", r.PreloadErrors)
	if v := r.Verify; v != nil {
		fmt.Fprintf(w, "\nverify: %d acknowledged adds: %d present, %d lost, %d duplicated, %d merged, %d mismatched, %d unverified; scope count delta %d, count errors %d\n",
			v.Acknowledged, v.Present, v.Lost, v.Duplicated, v.Merged, v.Mismatched, v.Unverified, v.CountDelta, v.CountErrors)
		for _, e := range v.Examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
		if v.Failed() {
			fmt.Fprintln(w, "VERIFY FAILED")
		} else {
			fmt.Fprintln(w, "verify: nothing lost")
		}
	}
}

func printErrors(w io.Writer, title string, errs map[string]int) {
	if len(errs) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	type kv struct {
		msg string
		n   int
	}
	var list []kv
	for m, n := range errs {
		list = append(list, kv{m, n})
	}
	slices.SortFunc(list, func(a, b kv) int {
		if a.n != b.n {
			return b.n - a.n
		}
		return strings.Compare(a.msg, b.msg)
	})
	for _, e := range list {
		fmt.Fprintf(w, "  %6d  %s\n", e.n, e.msg)
	}
}
