package main

import (
	"runtime/debug"
	"testing"
)

func TestFormatVersion(t *testing.T) {
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"go install of a tag", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/scopemem/scopemem", Version: "v0.2.0"}},
			"scopemem 0.1.0-dev\nmodule   github.com/scopemem/scopemem v0.2.0\ngo       go1.26.8"},
		{"build in a modified checkout", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/scopemem/scopemem", Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "4b4ad8d"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "2026-11-01T10:00:00Z"}}},
			"scopemem 0.1.0-dev\nrevision 4b4ad8d (modified)\ncommitted 2026-11-01T10:00:00Z\ngo       go1.26.8"},
	}
	for _, tc := range tests {
		if got := formatVersion("0.1.0-dev", tc.bi); got != tc.want {
			t.Errorf("%s: formatVersion = %q, want %q", tc.name, got, tc.want)
		}
	}
}
