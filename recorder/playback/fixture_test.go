package playback

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
)

// The fixed journal in testdata/play holds two sessions recorded from the
// script in writeFixture, with a fixed clock and a fixed key; the golden
// files beside it are what playback makes of them. Regenerate all of them,
// after changing the script or an output format, with
//
//	go test ./recorder/playback -run TestGolden -update
//
// Session IDs are random (UUIDv7), so regenerating changes every file.
var update = flag.Bool("update", false, "regenerate testdata/play: the fixed journal and the golden files")

const (
	fixtureDir = "../../testdata/play"
	// fixtureSignerKey is a TEST KEY, published on purpose: it signs the
	// fixed journal in testdata/play and nothing real.
	fixtureSignerKey = "PRIVATE+KEY+play.example/journal+fe596036+ARPTQC1ZjE+3TYC6SHqc4TJyM57WSry6pmUNYMMvKPgs"
	fixtureVerifier  = "play.example/journal+fe596036+AW3HNgebOz2Bkl2n81DONUSutGbmRbV9yco7mqq/+xI2"
)

// fakeClock is a clock the fixture script moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(d time.Duration, base time.Time) {
	c.mu.Lock()
	c.t = base.Add(d)
	c.mu.Unlock()
}

type step struct {
	at   time.Duration
	kind recorder.Kind
	data string
}

func attrsPayload(t testing.TB, a recorder.Attrs) string {
	b, err := recorder.EncodeAttrs(a)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeFixture records the fixture's sessions into a new journal at path.
func writeFixture(t testing.TB, path string) {
	ctx := context.Background()
	key, err := recorder.ParseJournalKey(fixtureSignerKey)
	if err != nil {
		t.Fatal(err)
	}
	st, err := storage.OpenSQLite(ctx, path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: base}
	j, err := recorder.Open(ctx, st, recorder.Options{Key: key, Now: clock.Now, Hostname: "fixture.example"})
	if err != nil {
		t.Fatal(err)
	}
	record := func(start time.Duration, info recorder.SessionInfo, steps []step, end recorder.Attrs) {
		clock.set(start, base)
		s, err := j.StartSession(ctx, info)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range steps {
			clock.set(start+st.at, base)
			seq, err := s.Append(st.kind, 0, []byte(st.data))
			if err != nil {
				t.Fatal(err)
			}
			// One frame per step: nothing coalesces.
			if err := s.Wait(ctx, seq); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.End(ctx, end); err != nil {
			t.Fatal(err)
		}
	}
	ms := time.Millisecond
	// An interactive shell: typing echoed, a UTF-8 character split
	// between two reads, a resize, a masked card number, a long idle.
	record(0, recorder.SessionInfo{Attrs: recorder.Attrs{
		"kind": "record", "command": "bash", "user": "alice", "host": "build-1", "term": "xterm-256color", "cwd": "/home/alice",
	}}, []step{
		{0, recorder.KindResize, string(recorder.ResizePayload(80, 24))},
		{100 * ms, recorder.KindOutput, "\x1b[1;32m$\x1b[0m "},
		{1000 * ms, recorder.KindInput, "l"},
		{1010 * ms, recorder.KindOutput, "l"},
		{1200 * ms, recorder.KindInput, "s"},
		{1210 * ms, recorder.KindOutput, "s"},
		{1500 * ms, recorder.KindInput, "\r"},
		{1510 * ms, recorder.KindOutput, "\r\n"},
		{1600 * ms, recorder.KindOutput, "caf\xc3"},
		{1700 * ms, recorder.KindOutput, "\xa9.txt  notes.md\r\n\x1b[1;32m$\x1b[0m "},
		{3000 * ms, recorder.KindResize, string(recorder.ResizePayload(100, 30))},
		{4000 * ms, recorder.KindInput, "cat cardz\x7f.txt\r"},
		{4010 * ms, recorder.KindOutput, "cat card.txt\r\n"},
		{4200 * ms, recorder.KindMask, attrsPayload(t, recorder.Attrs{"detector": "pan", "count": "1", "offset": "6"})},
		{4200 * ms, recorder.KindOutput, "card: ****-****-****-1111\r\n\x1b[1;32m$\x1b[0m "},
		{10000 * ms, recorder.KindInput, "exit\r"},
		{10010 * ms, recorder.KindOutput, "exit\r\n"},
		{10100 * ms, recorder.KindExit, attrsPayload(t, recorder.Attrs{"status": "0"})},
	}, recorder.Attrs{"reason": "exited", "exit-status": "0"})
	clock.set(11*time.Second, base)
	if _, err := j.AppendEvent(ctx, "certificate.issued", recorder.Attrs{"identity": "agent@ci", "serial": "7"}); err != nil {
		t.Fatal(err)
	}
	// An SSH exec session: output, stderr with a byte that is not UTF-8,
	// exit status 1.
	record(12*time.Second, recorder.SessionInfo{Attrs: recorder.Attrs{
		"kind": "ssh", "request": "exec", "identity": "agent@ci", "serial": "7", "login": "deploy", "target": "db1",
		"client": "192.0.2.7:50022", "route": "jump",
	}}, []step{
		{0, recorder.KindExec, "uname -a"},
		{50 * ms, recorder.KindOutput, "Linux db1 6.1.0 x86_64 GNU/Linux\n"},
		{60 * ms, recorder.KindStderr, "warning: \xff is not UTF-8\n"},
		{70 * ms, recorder.KindExit, attrsPayload(t, recorder.Attrs{"status": "1"})},
	}, recorder.Attrs{"reason": "exited", "exit-status": "1"})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// copyFixture copies the fixed journal to a private temporary file: tests
// never open the checked-in file itself.
func copyFixture(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, "journal.db"))
	if err != nil {
		t.Fatalf("%v (regenerate with: go test ./recorder/playback -run TestGolden -update)", err)
	}
	path := filepath.Join(t.TempDir(), "journal.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fixtureSessions returns the fixture's two sessions: the shell, the exec.
func fixtureSessions(t testing.TB, st storage.Store) (shell, execID recorder.SessionID) {
	snap, err := st.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	rows, err := snap.Sessions(context.Background())
	if err != nil || len(rows) != 2 {
		t.Fatalf("fixture sessions: %d, %v", len(rows), err)
	}
	return recorder.SessionID(rows[0].ID), recorder.SessionID(rows[1].ID)
}

func openStore(t testing.TB, path string) storage.Store {
	st, err := storage.OpenSQLite(context.Background(), path, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func verifier(t testing.TB) recorder.JournalKey {
	v, err := recorder.ParseVerifierKey(fixtureVerifier)
	if err != nil {
		t.Fatal(err)
	}
	return recorder.JournalKey{Verifier: v}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(fixtureDir, name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n got %q\nwant %q\n(regenerate with -update only if the change is intended)", name, got, want)
	}
}

func TestGolden(t *testing.T) {
	if *update {
		// Written elsewhere and copied: the writer leaves a lock file.
		tmp := filepath.Join(t.TempDir(), "journal.db")
		writeFixture(t, tmp)
		data, err := os.ReadFile(tmp)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(fixtureDir, "journal.db"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(fixtureDir, "journal.pub"), []byte(fixtureVerifier+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st := openStore(t, copyFixture(t))
	shell, execID := fixtureSessions(t, st)
	ctx := context.Background()
	v := verifier(t).Verifier

	for _, tc := range []struct {
		name string
		id   recorder.SessionID
		opts Options
	}{
		{"shell.play", shell, Options{}},
		{"shell-input.play", shell, Options{ShowInput: true}},
		{"exec.play", execID, Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			tc.opts.Verifier = v
			res, err := Play(ctx, st, tc.id, &out, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Ended || len(res.Problems) > 0 {
				t.Errorf("result: %+v", res)
			}
			golden(t, tc.name+".golden", out.Bytes())
		})
	}

	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	for _, tc := range []struct {
		name  string
		id    recorder.SessionID
		input bool
	}{
		{"shell.cast", shell, true},
		{"exec.cast", execID, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := recorder.OpenSession(ctx, snap, tc.id, recorder.OpenOptions{Verifier: v})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := WriteAsciicast(ctx, snap, rec, &out, AsciicastOptions{Input: tc.input}); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, out.Bytes())
			want := sessionOutput(t, snap, rec)
			if tc.id == execID {
				// No terminal: each line feed as the client's terminal
				// showed it.
				want = bytes.ReplaceAll(want, []byte("\n"), []byte("\r\n"))
			}
			checkAsciinemaCat(t, out.Bytes(), want)
		})
	}
}

// sessionOutput is the session's output and stderr, as a terminal gets it.
func sessionOutput(t *testing.T, snap storage.Snapshot, rec *recorder.SessionRecord) []byte {
	var b []byte
	err := rec.ReadFrames(context.Background(), snap, 1, func(f *recorder.Frame) error {
		if f.Kind == recorder.KindOutput || f.Kind == recorder.KindStderr {
			b = append(b, f.Payload...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkAsciinemaCat has asciinema itself read the file: "asciinema cat"
// must write the session's output (with bytes that are not UTF-8 as
// U+FFFD). In CI, a missing asciinema is a failure.
func checkAsciinemaCat(t *testing.T, cast, output []byte) {
	t.Helper()
	bin, err := exec.LookPath("asciinema")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("asciinema is not installed (CI installs the Debian package): %v", err)
		}
		t.Skipf("asciinema is not installed: %v", err)
	}
	path := filepath.Join(t.TempDir(), "s.cast")
	if err := os.WriteFile(path, cast, 0o600); err != nil {
		t.Fatal(err)
	}
	// asciinema 2 opens /dev/tty even to cat: give it a terminal of its
	// own, but its standard output a pipe, which no line discipline
	// rewrites.
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	cmd := exec.Command(bin, "cat", path)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	cmd.Stdin = tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("asciinema cat: %v\n%s", err, stderr.Bytes())
	}
	if want := []byte(validUTF8(output)); !bytes.Equal(got, want) {
		t.Errorf("asciinema cat:\n got %q\nwant %q", got, want)
	}
}
