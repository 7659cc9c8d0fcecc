package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
)

// The fixed journal and golden files in testdata/play are made by
// recorder/playback's TestGolden (-update regenerates them).
const playFixture = "../../testdata/play"

// fixtureSignerKey is the TEST KEY that signed the fixed journal (see
// recorder/playback/fixture_test.go).
const fixtureSignerKey = "PRIVATE+KEY+play.example/journal+fe596036+ARPTQC1ZjE+3TYC6SHqc4TJyM57WSry6pmUNYMMvKPgs"

// playHome makes a home holding the fixture's public key (and, with
// signing, its signing key) and a private copy of the fixed journal.
func playHome(t *testing.T, signing bool) (home, db, pub string, shell, execID string) {
	t.Helper()
	home = t.TempDir()
	data, err := os.ReadFile(filepath.Join(playFixture, "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	db = filepath.Join(home, "journal.db")
	if err := os.WriteFile(db, data, 0o600); err != nil {
		t.Fatal(err)
	}
	pubKey, err := os.ReadFile(filepath.Join(playFixture, "journal.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub = filepath.Join(home, "journal.pub")
	if err := os.WriteFile(pub, pubKey, 0o644); err != nil {
		t.Fatal(err)
	}
	if signing {
		if err := os.WriteFile(filepath.Join(home, "journal.key"), []byte(fixtureSignerKey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err := storage.OpenSQLite(context.Background(), db, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	snap, err := st.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	rows, err := snap.Sessions(context.Background())
	if err != nil || len(rows) != 2 {
		t.Fatalf("fixture sessions: %v", err)
	}
	return home, db, pub, uuid.UUID(rows[0].ID).String(), uuid.UUID(rows[1].ID).String()
}

func TestPlayCommand(t *testing.T) {
	t.Parallel()
	home, _, _, shell, _ := playHome(t, false)
	// No signing key in this home, and no server: the access cannot be
	// journaled, so the play is refused, before it shows anything.
	code, stdout, stderr := runArgs("--home", home, "play", "--speed", "max", shell)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "bastion: error: this play cannot be recorded in the journal, so it is refused") ||
		!strings.Contains(stderr, "hint: --unrecorded") {
		t.Fatalf("play that cannot be recorded: exit %d, %q %q", code, stdout, stderr)
	}
	// --unrecorded plays all the same, and says so.
	code, stdout, stderr = runArgs("--home", home, "play", "--speed", "max", "--unrecorded", shell)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want, err := os.ReadFile(filepath.Join(playFixture, "shell.play.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(want) {
		t.Errorf("play output:\n got %q\nwant %q", stdout, want)
	}
	if !strings.Contains(stderr, "bastion: warning: this play is not recorded in the journal (--unrecorded)") {
		t.Errorf("stderr %q", stderr)
	}
	code, _, stderr = runArgs("--home", home, "play", uuid.NewString())
	if code != 1 || !strings.Contains(stderr, "no session") {
		t.Errorf("unknown session: exit %d, %q", code, stderr)
	}
	code, _, stderr = runArgs("--home", home, "play", "--speed", "fast", shell)
	if code != 2 || !strings.Contains(stderr, "--speed") {
		t.Errorf("bad speed: exit %d, %q", code, stderr)
	}
}

// TestPlayJournaled: a play by a process that can write the journal is
// a journal.accessed event, and the journal still verifies.
func TestPlayJournaled(t *testing.T) {
	t.Parallel()
	home, db, _, shell, _ := playHome(t, true)
	code, _, stderr := runArgs("--home", home, "play", "--speed", "max", shell)
	if code != 0 || strings.Contains(stderr, "warning:") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	st, err := storage.OpenSQLite(context.Background(), db, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	snap, err := st.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var got []recorder.Attrs
	v, _, err := loadVerifier(&env{getenv: func(string) string { return "" }, homeFlag: home}, "")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := recorder.Events(context.Background(), snap, v, recorder.EventJournalAccessed)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		got = append(got, e.Leaf.Attrs)
	}
	if len(got) != 1 || got[0]["action"] != "play" || got[0]["session"] != shell || got[0]["uid"] != strconv.Itoa(os.Getuid()) ||
		got[0]["via"] != "reader" || got[0]["identity.verified"] != "none" || got[0]["pid"] != strconv.Itoa(os.Getpid()) {
		t.Errorf("access events: %v", got)
	}
	if code, stdout, _ := runArgs("--home", home, "verify"); code != 0 {
		t.Errorf("verify after play: exit %d\n%s", code, stdout)
	}
}

func TestExportAsciicastCommand(t *testing.T) {
	t.Parallel()
	home, _, _, shell, _ := playHome(t, true)
	code, stdout, stderr := runArgs("--home", home, "export", "--format", "asciicast", "--input", shell)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want, err := os.ReadFile(filepath.Join(playFixture, "shell.cast"))
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(want) {
		t.Errorf("asciicast:\n got %q\nwant %q", stdout, want)
	}
}

func TestBundle(t *testing.T) {
	t.Parallel()
	home, _, pub, shell, _ := playHome(t, true)
	bundle := filepath.Join(t.TempDir(), "s.bundle")
	if code, _, stderr := runArgs("--home", home, "export", "--format", "bundle", "--out", bundle, shell); code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	code, stdout, stderr := runArgs("verify", "--bundle", bundle, "--key", pub)
	if code != 0 || !strings.Contains(stdout, "result: intact") || !strings.Contains(stdout, "ended:       exited") {
		t.Fatalf("verify: exit %d\n%s%s", code, stdout, stderr)
	}
	data, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}

	// Another journal's key, even one with the same name, fails.
	for _, origin := range []string{"play.example/journal", "other.example/journal"} {
		_, vkey, err := note.GenerateKey(rand.Reader, origin)
		if err != nil {
			t.Fatal(err)
		}
		other := filepath.Join(t.TempDir(), "other.pub")
		os.WriteFile(other, []byte(vkey+"\n"), 0o644)
		if code, stdout, _ := runArgs("verify", "--bundle", bundle, "--key", other); code != 1 || !strings.Contains(stdout, "FAILED") {
			t.Errorf("key of %s: exit %d\n%s", origin, code, stdout)
		}
	}

	// Every changed byte fails: the encoding is canonical, so there is
	// no byte a check does not cover.
	v, err := recorder.ParseVerifierKey(mustRead(t, pub))
	if err != nil {
		t.Fatal(err)
	}
	step := max(1, len(data)/3000)
	for i := 0; i < len(data); i += step {
		for _, flip := range []byte{0x01, 0x20, 0x80} {
			changed := bytes.Clone(data)
			changed[i] ^= flip
			if _, err := recorder.VerifyBundle(changed, v); err == nil {
				t.Fatalf("byte %d ^ %#x: the changed bundle verified", i, flip)
			}
		}
	}
	// And through the command: exit 1, naming the problem.
	for _, i := range []int{0, len(data) / 3, len(data) / 2, len(data) - 2} {
		changed := bytes.Clone(data)
		changed[i] ^= 0x01
		path := filepath.Join(t.TempDir(), "changed.bundle")
		os.WriteFile(path, changed, 0o600)
		if code, stdout, _ := runArgs("verify", "--bundle", path, "--key", pub, "--json"); code != 1 || !strings.Contains(stdout, `"intact": false`) {
			t.Errorf("byte %d: exit %d\n%s", i, code, stdout)
		}
	}
	// Truncation, and a bundle missing its end leaf, fail too.
	if _, err := recorder.VerifyBundle(data[:len(data)/2], v); err == nil {
		t.Error("a truncated bundle verified")
	}
	if code, _, stderr := runArgs("verify", "--bundle", filepath.Join(t.TempDir(), "missing"), "--key", pub); code != 2 {
		t.Errorf("missing bundle: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runArgs("verify", "--bundle", bundle); code != 2 || !strings.Contains(stderr, "--key") {
		t.Errorf("no key: exit %d: %s", code, stderr)
	}
}

func mustRead(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSessionsListShowSearch(t *testing.T) {
	t.Parallel()
	home, _, _, shell, execID := playHome(t, true)
	code, stdout, stderr := runArgs("--home", home, "sessions", "list", "--identity", "agent@ci", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var list []sessionJSON
	if err := json.Unmarshal([]byte(stdout), &list); err != nil || len(list) != 1 || list[0].ID != execID || list[0].State != "ended" || list[0].Target != "db1" {
		t.Errorf("list --identity: %v %s", err, stdout)
	}
	for _, tc := range []struct {
		args []string
		n    int
	}{
		{[]string{"--state", "ended"}, 2},
		{[]string{"--state", "live"}, 0},
		{[]string{"--login", "deploy"}, 1},
		{[]string{"--target", "build-1"}, 1},
		{[]string{"--since", "2026-11-27T09:00:11Z"}, 1},
		{[]string{"--until", "2026-11-27T09:00:05Z"}, 1},
		{[]string{"--until", "2026-11-26"}, 0},
	} {
		_, stdout, stderr := runArgs(append([]string{"--home", home, "sessions", "list", "--json"}, tc.args...)...)
		var l []sessionJSON
		if err := json.Unmarshal([]byte(stdout), &l); err != nil || len(l) != tc.n {
			t.Errorf("list %v: %d sessions, want %d (%v %s)", tc.args, len(l), tc.n, err, stderr)
		}
	}

	code, stdout, stderr = runArgs("--home", home, "sessions", "show", shell)
	if code != 0 {
		t.Fatalf("show: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"(reconstructed)", "cat card.txt", "masked:     pan 1", "exit:       status 0", "every frame's chain intact"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("show: no %q in\n%s", want, stdout)
		}
	}
	code, stdout, _ = runArgs("--home", home, "sessions", "show", "--json", execID)
	var show showOut
	if err := json.Unmarshal([]byte(stdout), &show); code != 0 || err != nil || len(show.Commands) != 1 || show.Commands[0].Text != "uname -a" ||
		show.Commands[0].Source != "exec" || show.Exit["status"] != "1" || show.Route != "jump" {
		t.Errorf("show --json: exit %d, %v\n%s", code, err, stdout)
	}

	code, stdout, _ = runArgs("--home", home, "sessions", "search", "card")
	if code != 0 || !strings.Contains(stdout, shell+"  0:04.000  command (reconstructed)  cat card.txt") ||
		!strings.Contains(stdout, shell+"  0:04.200  output  card: ****-****-****-1111") {
		t.Errorf("search: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = runArgs("--home", home, "sessions", "search", "--regex", "--json", `^Linux \w+`)
	var hits []hitJSON
	if err := json.Unmarshal([]byte(stdout), &hits); code != 0 || err != nil || len(hits) != 1 || hits[0].Session != execID || hits[0].In != "output" {
		t.Errorf("search --regex: exit %d %v\n%s", code, err, stdout)
	}
	if code, _, _ := runArgs("--home", home, "sessions", "search", "--regex", "("); code != 2 {
		t.Errorf("bad regex: exit %d", code)
	}
}
