package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/recordertest"
)

// TestSessionsWriterGone: a session without an end record is "live" while
// a process holds the journal's writer lock, and "unterminated" once none
// does (its recorder stopped without ending it), in sessions list and
// show, and --state selects each.
func TestSessionsWriterGone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	home := t.TempDir()
	if code, _, errOut := cli(ctx, home, "ca", "init"); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	key, err := certauth.LoadJournalKey(home)
	if err != nil {
		t.Fatal(err)
	}
	j := recordertest.NewJournalWith(t, recordertest.Options{Path: filepath.Join(home, "journal.db"), Journal: recorder.Options{Key: key}})
	s, err := j.StartSession(ctx, recorder.SessionInfo{Attrs: recorder.Attrs{"kind": "record", "command": "sleep 60"}})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := s.Append(recorder.KindOutput, 0, []byte("working\n"))
	if err == nil {
		err = s.Wait(ctx, seq)
	}
	if err != nil {
		t.Fatal(err)
	}
	state := func(when string) string {
		t.Helper()
		code, out, errOut := cli(ctx, home, "sessions", "list", "--json")
		var list []sessionJSON
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
			t.Fatalf("%s: sessions list: exit %d, %s %s", when, code, out, errOut)
		}
		// Unrecorded: with the writer running, a process that records
		// no reads for others holds the journal; once it is gone, a
		// recorded read would end the session it left open.
		code, show, _ := cli(ctx, home, "sessions", "show", "--unrecorded", list[0].ID)
		if code != 0 || !strings.Contains(show, "state:      "+list[0].State) {
			t.Fatalf("%s: sessions show says otherwise (exit %d):\n%s", when, code, show)
		}
		return list[0].State
	}
	if got := state("while the writer runs"); got != "live" {
		t.Fatalf("while the writer runs: %q, want live", got)
	}
	// The recorder goes away without ending the session.
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if got := state("once the writer is gone"); got != StateUnterminated {
		t.Fatalf("once the writer is gone: %q, want %s", got, StateUnterminated)
	}
	for _, tc := range []struct{ state, want string }{{"unterminated", "1"}, {"live", "0"}} {
		_, out, _ := cli(ctx, home, "sessions", "list", "--json", "--state", tc.state)
		var list []sessionJSON
		json.Unmarshal([]byte(out), &list)
		if n := len(list); (tc.want == "1") != (n == 1) {
			t.Fatalf("--state %s: %d sessions", tc.state, n)
		}
	}
}
