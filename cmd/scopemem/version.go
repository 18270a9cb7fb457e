package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/scopemem/scopemem/internal/app"
)

// versionString describes this binary: the server version, the module
// version and VCS revision the Go toolchain recorded (go install ...@v1.2.3
// records the module version; a build in a git checkout records the
// commit), and the Go version.
func versionString() string {
	return formatVersion(app.Version, readBuildInfo())
}

func readBuildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}

func formatVersion(version string, bi *debug.BuildInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "scopemem %s", version)
	goVersion := runtime.Version()
	if bi != nil {
		goVersion = bi.GoVersion
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			fmt.Fprintf(&b, "\nmodule   %s %s", bi.Main.Path, v)
		}
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if rev := settings["vcs.revision"]; rev != "" {
			if settings["vcs.modified"] == "true" {
				rev += " (modified)"
			}
			fmt.Fprintf(&b, "\nrevision %s", rev)
		}
		if t := settings["vcs.time"]; t != "" {
			fmt.Fprintf(&b, "\ncommitted %s", t)
		}
	}
	fmt.Fprintf(&b, "\ngo       %s", goVersion)
	return b.String()
}
