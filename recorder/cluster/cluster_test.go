package cluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/recordertest"
)

func key(t *testing.T, origin string) *recorder.VerifierKey {
	t.Helper()
	_, k := recordertest.NewKey(t, origin)
	return k
}

func TestParse(t *testing.T) {
	a, b := key(t, "a.example/journal"), key(t, "b.example/journal")
	file := fmt.Sprintf("# members\n\n2 %s\n  1 %s  \n", b.Text, a.Text)
	ms, err := Parse([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	all := ms.All()
	if len(all) != 2 || all[0].ID != 1 || all[0].Name() != "a.example/journal" || all[1].ID != 2 {
		t.Fatalf("members %v", all)
	}
	if m, ok := ms.ByName("b.example/journal"); !ok || m.ID != 2 {
		t.Fatalf("ByName: %v %v", m, ok)
	}
	if m, ok := ms.ByID(1); !ok || m.Key.Text != a.Text {
		t.Fatalf("ByID: %v %v", m, ok)
	}
	if _, ok := ms.ByID(3); ok {
		t.Fatal("ByID found member 3")
	}
	if self, err := ms.Self(b); err != nil || self.ID != 2 {
		t.Fatalf("Self: %v %v", self, err)
	}
	if _, err := ms.Self(key(t, "c.example/journal")); !errors.Is(err, ErrNotMember) {
		t.Fatalf("Self of a stranger: %v", err)
	}
	if _, err := ms.Self(key(t, "a.example/journal")); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("Self of another key with a member's name: %v", err)
	}
	again, err := Parse(ms.Format())
	if err != nil || len(again.All()) != 2 || again.All()[1].Key.Text != b.Text {
		t.Fatalf("Format does not parse back: %v %v", again, err)
	}
}

func TestParseRefuses(t *testing.T) {
	a, b := key(t, "a.example/journal"), key(t, "b.example/journal")
	for _, c := range []struct{ file, want string }{
		{"", "no members"},
		{"# only a comment\n", "no members"},
		{a.Text + "\n", `line 1: want "ID VERIFIER-KEY"`},
		{"0 " + a.Text, "line 1: member ID \"0\""},
		{"65536 " + a.Text, "member ID \"65536\""},
		{"01 " + a.Text, "member ID \"01\""},
		{"-1 " + a.Text, "member ID \"-1\""},
		{"1 " + a.Text + "\n\n1 " + b.Text, "line 3: member ID 1 is already a.example/journal's"},
		{"1 " + a.Text + "\n2 " + a.Text, `line 2: log "a.example/journal" is already member 1's`},
		{"1 not-a-key", "line 1: recorder: journal public key"},
		{"1 " + a.Text[:len(a.Text)-4], "line 1: recorder: journal public key"},
	} {
		if _, err := Parse([]byte(c.file)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q): %v, want %q", c.file, err, c.want)
		}
	}
}
