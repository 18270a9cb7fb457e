package main

import (
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// gcSettings reads the collector's percent and memory limit without
// changing them.
func gcSettings() (percent int64, limit int64) {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64()), int64(s[1].Value.Uint64())
}

func TestDeferCollection(t *testing.T) {
	for _, k := range []string{"GOGC", "GOMEMLIMIT"} {
		if v, ok := os.LookupEnv(k); ok {
			t.Setenv(k, v)
			os.Unsetenv(k)
		}
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))

	deferCollection(50 * time.Millisecond)
	if p, l := gcSettings(); p != -1 || l != startLimit {
		t.Errorf("during the quiet time: percent %d, limit %d; want -1 (off) and %d", p, l, int64(startLimit))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, l := gcSettings()
		if p == 100 && l == math.MaxInt64 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the quiet time: percent %d, limit %d; want 100 and no limit back", p, l)
		}
		time.Sleep(5 * time.Millisecond)
	}

	t.Setenv("GOGC", "200")
	deferCollection(time.Hour)
	if p, l := gcSettings(); p != 100 || l != math.MaxInt64 {
		t.Errorf("with GOGC set: percent %d, limit %d; want them left alone (100, no limit)", p, l)
	}
}
