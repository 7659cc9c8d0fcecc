package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is the release version, set when linking:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/bastion
//
// If it is empty, the main module's version from the build information is
// used: a tag or pseudo-version when built with "go install" or from a
// checkout, "(devel)" otherwise.
var version string

func init() {
	register(&command{
		name:    "version",
		summary: "print the version",
		usage:   versionUsage,
		run:     runVersion,
	})
}

const versionUsage = `Usage:
    bastion version

Prints the version of bastion, the Go version it was built with, and the
operating system and architecture it was built for.

Examples:
    $ bastion version
    bastion v0.1.0 (go1.26.8, linux/amd64)`

func runVersion(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("version takes no arguments")
	}
	fmt.Fprintf(e.stdout, "bastion %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// buildVersion returns [version], or the main module's version if it is
// empty.
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
