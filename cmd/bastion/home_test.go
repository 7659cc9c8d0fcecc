package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHome(t *testing.T) {
	t.Parallel()
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		flag     string
		vars     map[string]string
		want     string
		wantFail bool
	}{
		{"flag wins", "/from/flag", map[string]string{"BASTION_HOME": "/from/env", "HOME": "/u"}, "/from/flag", false},
		{"env next", "", map[string]string{"BASTION_HOME": "/from/env", "HOME": "/u"}, "/from/env", false},
		{"user home last", "", map[string]string{"HOME": "/u"}, "/u/.bastion", false},
		{"relative flag made absolute", "state", nil, filepath.Join(cwd, "state"), false},
		{"relative env made absolute", "", map[string]string{"BASTION_HOME": "rel/dir"}, filepath.Join(cwd, "rel/dir"), false},
		{"cleaned", "/a/b/../c/", nil, "/a/c", false},
		{"nothing set", "", nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &env{homeFlag: tt.flag, getenv: func(k string) string { return tt.vars[k] }}
			got, err := e.home()
			if tt.wantFail {
				if err == nil {
					t.Fatalf("home() = %q, want an error", got)
				}
				if len(hints(err)) == 0 {
					t.Errorf("error %q has no hint", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("home() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestHomeFlagPrecedence(t *testing.T) {
	t.Parallel()
	// The command's --home overrides the global one, which overrides the
	// environment.
	e := &env{getenv: func(k string) string { return map[string]string{"BASTION_HOME": "/env"}[k] }}
	fs := e.flags()
	if err := fs.Parse([]string{"--home", "/cmd"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.home(); got != "/cmd" {
		t.Errorf("home() = %q, want /cmd", got)
	}
	// A second flag set for the same env starts from the value already set.
	fs = e.flags()
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.home(); got != "/cmd" {
		t.Errorf("home() after a second flag set = %q, want /cmd", got)
	}
}

func TestMakeHome(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "parent", "home")
	e := &env{homeFlag: dir, getenv: func(string) string { return "" }}
	got, err := e.makeHome()
	if err != nil {
		t.Fatal(err)
	}
	if got != dir {
		t.Errorf("makeHome() = %q, want %q", got, dir)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("home mode = %v, want a directory with 0700", fi.Mode())
	}
	// A second call uses the existing directory.
	if _, err := e.makeHome(); err != nil {
		t.Errorf("second makeHome: %v", err)
	}
	// A file in the way is an error.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e.homeFlag = file
	if _, err := e.makeHome(); err == nil {
		t.Errorf("makeHome over a file succeeded")
	}
}

func TestDBPath(t *testing.T) {
	t.Parallel()
	e := &env{getenv: func(k string) string { return map[string]string{"BASTION_HOME": "/h"}[k] }}
	if got, err := e.dbPath(""); err != nil || got != "/h/journal.db" {
		t.Errorf("dbPath(\"\") = %q, %v; want /h/journal.db", got, err)
	}
	if got, err := e.dbPath("/other/j.db"); err != nil || got != "/other/j.db" {
		t.Errorf("dbPath(/other/j.db) = %q, %v", got, err)
	}
	e.getenv = func(string) string { return "" }
	if _, err := e.dbPath(""); err == nil {
		t.Errorf("dbPath without any home succeeded")
	}
	if got, err := e.dbPath("/explicit.db"); err != nil || got != "/explicit.db" {
		t.Errorf("dbPath with --db but no home = %q, %v; want /explicit.db", got, err)
	}
}
