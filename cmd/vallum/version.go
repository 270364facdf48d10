package main

import (
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=..."; when it
// is not, versionString takes it from Go's build information.
var version = "dev"

// versionString is what -V, `vallum version` and the start log print: the
// version set by ldflags, else the module version (`go install ...@v1.2.0`)
// and the commit the binary was built from, with "+dirty" when the tree had
// changes. A user filing a bug can then say exactly what they run.
func versionString() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	return buildVersion(version, info)
}

// buildVersion is versionString for a given build information.
func buildVersion(ldflags string, info *debug.BuildInfo) string {
	if ldflags != "dev" && ldflags != "" {
		return ldflags
	}
	v := "dev"
	if m := info.Main.Version; m != "" && m != "(devel)" {
		v = m
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	// A module version from the proxy already names its commit
	// (v0.0.0-20261130-abcdef123456), and go install records no vcs.* then.
	if rev == "" || strings.Contains(v, rev[:min(12, len(rev))]) {
		return v
	}
	return v + " (commit " + rev[:min(12, len(rev))] + dirty + ")"
}
