package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bastionhq/bastion/recorder/termtext"
)

// TestSessionsListOneLine: each session is one line of the list, its
// command's first line cut short with an ellipsis, whatever the command
// holds; --json keeps the whole command.
func TestSessionsListOneLine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	home := t.TempDir()
	if code, _, errOut := cli(ctx, home, "ca", "init"); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	script := "echo one\necho two " + strings.Repeat("and more ", 20)
	long := "echo " + strings.Repeat("word ", 30)
	for _, argv := range [][]string{{"sh", "-c", script}, {"sh", "-c", long}, {"true"}} {
		if code, _, errOut := cli(ctx, home, append([]string{"record", "--"}, argv...)...); code != 0 {
			t.Fatalf("record %q: %s", argv, errOut)
		}
	}
	code, out, errOut := cli(ctx, home, "sessions", "list")
	if code != 0 {
		t.Fatalf("sessions list: %d %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID ") || !strings.HasSuffix(lines[0], " COMMAND") {
		t.Fatalf("sessions list is not a header and a line a session:\n%s", out)
	}
	col := strings.Index(lines[0], "COMMAND")
	for i, want := range []string{"sh -c 'echo one…", strings.TrimSpace(termtext.ShellJoin([]string{"sh", "-c", long})[:commandWidth-1]) + "…", "true"} {
		cmd := lines[i+1][col:]
		if cmd != want || strings.Contains(lines[i+1], `\n`) {
			t.Errorf("session %d: command %q, want %q:\n%s", i, cmd, want, out)
		}
		if n := utf8.RuneCountInString(cmd); n > commandWidth {
			t.Errorf("session %d: command of %d characters", i, n)
		}
	}
	code, out, _ = cli(ctx, home, "sessions", "list", "--json")
	var list []sessionJSON
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 3 || list[0].Summary != termtext.ShellJoin([]string{"sh", "-c", script}) {
		t.Fatalf("sessions list --json: %d\n%s", code, out)
	}
}
