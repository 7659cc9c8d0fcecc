package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCAInitJoin: a second instance's home gets a journal key of its own
// and the first one's certificate authorities, and ca init --join refuses
// what it cannot do without touching anything.
func TestCAInitJoin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	if code, _, errOut := cli(ctx, a, "ca", "init", "--origin", "a.example/journal"); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	code, out, errOut := cli(ctx, b, "ca", "init", "--origin", "b.example/journal", "--join", a)
	if code != 0 || !strings.Contains(out, "new instance of the bastion in "+a) {
		t.Fatalf("ca init --join: %d\n%s\n%s", code, out, errOut)
	}
	read := func(home, name string) string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(home, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	for _, f := range []string{"ca/user_ca", "ca/user_ca.pub", "ca/host_ca", "ca/host_ca.pub", "ca/target_ca", "ca/target_ca.pub"} {
		if read(a, f) != read(b, f) {
			t.Errorf("%s differs between the instances", f)
		}
		if fi, _ := os.Stat(filepath.Join(b, f)); !strings.HasSuffix(f, ".pub") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", f, fi.Mode())
		}
	}
	if read(a, "journal.pub") == read(b, "journal.pub") || !strings.HasPrefix(read(b, "journal.pub"), "b.example/journal+") {
		t.Errorf("journal keys: %q and %q", read(a, "journal.pub"), read(b, "journal.pub"))
	}
	_, showA, _ := cli(ctx, a, "ca", "show")
	_, showB, _ := cli(ctx, b, "ca", "show")
	trust := func(s string) string { return s[strings.Index(s, "@cert-authority"):] }
	if trust(showA) != trust(showB) {
		t.Errorf("ca show's trust lines differ:\n%s\n%s", showA, showB)
	}

	for _, c := range []struct {
		home string
		args []string
		want string
	}{
		{b, []string{"--join", a}, "key already exists"},
		{filepath.Join(t.TempDir(), "c"), []string{"--join", filepath.Join(t.TempDir(), "none")}, "no certificate authorities"},
		{filepath.Join(t.TempDir(), "d"), []string{"--join", a, "--algorithm", "ecdsa-p256"}, "drop --algorithm"},
	} {
		code, _, errOut := cli(ctx, c.home, append([]string{"ca", "init"}, c.args...)...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("ca init %v: %d %s, want %q", c.args, code, errOut, c.want)
		}
		if c.home != b {
			if _, err := os.Stat(c.home); err == nil {
				t.Errorf("ca init %v left %s behind", c.args, c.home)
			}
		}
	}
}
