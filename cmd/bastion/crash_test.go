package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/mattn/go-sqlite3"

	"github.com/bastionhq/bastion/recorder"
)

// crashRounds is how many times in a row TestRecordKilled kills a recorder
// writing to the same journal.
const crashRounds = 20

// crashScript prints numbered lines as fast as the shell can, forever, with
// nothing but builtins: the shell is the session's only process.
const crashScript = `i=0; while :; do i=$((i+1)); echo "line $i"; done`

// TestRecordKilled is the crash half of the journal's "must show" suite.
// Twenty times in a row, on one journal, it starts "bastion record" as a
// real process streaming output into a pipe, and SIGKILLs it mid-stream
// after a different amount of output each round. After every kill:
//
//   - the recorder's command (a shell, in its own session on the PTY) dies
//     too, of the hangup the kernel sends when the PTY's master side closes
//     with the recorder: no orphan runs on unrecorded;
//   - "bastion verify" exits 0: the killed session is reported unterminated,
//     which is not tampering, and the sessions killed in earlier rounds are
//     reported abandoned, closed by the next writer that opened the journal;
//   - every byte the recorder wrote to the pipe is in the journal (record,
//     then forward): the pipe's bytes are a prefix of the session's output
//     frames, concatenated in order.
func TestRecordKilled(t *testing.T) {
	t.Parallel()
	c := newCrashRig(t)
	var killed []string // session IDs, one per round so far
	start := time.Now()
	for round := 1; round <= crashRounds; round++ {
		// 64 KiB to 256 KiB, a different amount each round, so that the
		// kill lands at different points of the read, commit and forward
		// pipeline.
		want := 64<<10 + (round*40503)%(192<<10)
		r := c.killMidStream(t, crashScript, want)
		if r.childAlive {
			t.Fatalf("round %d: the recorded shell (pid %d) outlived the recorder", round, r.child.pid)
		}

		v := c.verify(t)
		if v.code != 0 || !v.report.Intact || len(v.report.Problems) != 0 {
			t.Fatalf("round %d: verify exited %d after the kill, want 0 (intact)\n%s%s", round, v.code, v.human, v.stderr)
		}
		if u := v.report.Unterminated; len(u) != 1 || u[0].ID != r.session {
			t.Fatalf("round %d: unterminated = %+v, want only the killed session %s", round, u, r.session)
		}
		if !strings.Contains(v.human, "unterminated: 1 session(s) without an end record") || !strings.Contains(v.human, "\nresult: intact\n") {
			t.Errorf("round %d: the human report does not show one unterminated session in an intact journal:\n%s", round, v.human)
		}
		// Each writer closed the session the previous one left open.
		var abandoned []string
		for _, a := range v.report.Abandoned {
			if a.Reason != "abandoned" || a.EndLeaf <= a.StartLeaf {
				t.Errorf("round %d: abandoned session %+v", round, a)
			}
			abandoned = append(abandoned, a.ID)
		}
		if !slices.Equal(abandoned, killed) {
			t.Fatalf("round %d: abandoned = %q, want the sessions killed before: %q", round, abandoned, killed)
		}

		if len(r.piped) < want {
			t.Fatalf("round %d: read %d bytes before the kill, want at least %d", round, len(r.piped), want)
		}
		recorded := c.output(t, r.session)
		if !bytes.HasPrefix(recorded, r.piped) {
			i := 0
			for i < len(recorded) && i < len(r.piped) && recorded[i] == r.piped[i] {
				i++
			}
			t.Fatalf("round %d: the pipe got %d bytes but the journal has %d bytes of output; they differ from byte %d: "+
				"output reached the reader that the journal lacks\npipe:    %q\njournal: %q",
				round, len(r.piped), len(recorded), i, crashAround(r.piped, i), crashAround(recorded, i))
		}
		t.Logf("round %d: killed after %d bytes read (%d recorded, %d frames)", round, len(r.piped), len(recorded), v.report.Unterminated[0].Frames)
		killed = append(killed, r.session)
	}
	t.Logf("%d rounds in %v", crashRounds, time.Since(start).Round(time.Millisecond))
}

// TestRecordKilledCommandIgnoringHangup is the crash test for a command that
// ignores SIGHUP, as nohup'ed programs and daemons do: it too must not
// outlive the recorder, or it runs on with nobody recording it.
func TestRecordKilledCommandIgnoringHangup(t *testing.T) {
	t.Parallel()
	c := newCrashRig(t)
	r := c.killMidStream(t, `trap "" HUP; `+crashScript, 64<<10)
	if r.childAlive {
		t.Errorf("the recorded shell (pid %d), which ignores SIGHUP, outlived the recorder", r.child.pid)
	}
	if v := c.verify(t); v.code != 0 {
		t.Errorf("verify exited %d, want 0\n%s", v.code, v.human)
	}
}

// crashRig runs "bastion record" as real processes on one journal.
type crashRig struct {
	exe  string // this test binary, which acts as bastion (see TestMain)
	home string
	db   string
}

func newCrashRig(t *testing.T) *crashRig {
	t.Helper()
	if runtime.GOOS != "linux" {
		// In CI a missing tool fails the test rather than skipping it.
		if os.Getenv("CI") == "true" {
			t.Fatal("the crash test finds the recorder's command in /proc, which only Linux has")
		}
		t.Skip("the crash test finds the recorder's command in /proc, which only Linux has")
	}
	// The test binary runs as bastion when its argv[0] is "bastion":
	// TestMain hands it to testscript.Main, which runs main instead of
	// the tests. It is the binary under test, built by "go test" with the
	// same flags (-race included), so no separate build is needed.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A command inherits an ignored SIGHUP (nohup, some CI runners), and
	// would then survive the hangup this test relies on for reasons that
	// have nothing to do with bastion. While a handler is installed here,
	// the processes this test starts get the default action instead.
	if signal.Ignored(syscall.SIGHUP) {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGHUP)
		t.Cleanup(func() { signal.Stop(ch) })
	}
	c := &crashRig{exe: exe, home: filepath.Join(t.TempDir(), "home"), db: filepath.Join(t.TempDir(), "journal.db")}
	if code, _, stderr := runArgs("--home", c.home, "ca", "init", "--origin", "crash.example/journal"); code != 0 {
		t.Fatalf("ca init: exit %d: %s", code, stderr)
	}
	return c
}

// crashKill is what one round of killMidStream observed.
type crashKill struct {
	session    string // the killed recorder's session
	piped      []byte // everything the recorder wrote to its stdout
	child      crashProc
	childAlive bool // the child outlived the recorder (and was killed by the test)
}

// killMidStream starts "bastion record -- sh -c script" with its stdout on a
// pipe, SIGKILLs it once at least want bytes came through, and waits until
// the pipe is closed and the recorded shell is gone.
func (c *crashRig) killMidStream(t *testing.T, script string, want int) crashKill {
	t.Helper()
	var res crashKill
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd := &exec.Cmd{
		Path: c.exe,
		Args: []string{"bastion", "--home", c.home, "record", "-q", "--db", c.db, "--", "sh", "-c", script},
		// Stdin is /dev/null: record passes its end on to the shell,
		// which never reads it.
		Stdout: pw,
		Stderr: stderr,
	}
	err = cmd.Start()
	pw.Close() // the recorder holds the only write end now
	if err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		// A failed round must not leave a recorder behind.
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	stderrText := func() string {
		b, _ := os.ReadFile(stderr.Name())
		return string(b)
	}

	// The reader reads until EOF: all of what the recorder wrote before it
	// died. reached tells when want bytes have come.
	reached := make(chan struct{})
	type readResult struct {
		b   []byte
		err error
	}
	done := make(chan readResult, 1)
	go func() {
		var b []byte
		buf := make([]byte, 64<<10)
		notify := reached
		for {
			n, err := pr.Read(buf)
			b = append(b, buf[:n]...)
			if len(b) >= want && notify != nil {
				close(notify)
				notify = nil
			}
			if err != nil {
				done <- readResult{b, err}
				return
			}
		}
	}()
	select {
	case <-reached:
	case r := <-done:
		cmd.Wait()
		killed = true
		t.Fatalf("record stopped after %d bytes of output (%v), before the kill\nstderr: %s", len(r.b), r.err, stderrText())
	case <-time.After(60 * time.Second):
		t.Fatalf("no %d bytes of output from record within a minute\nstderr: %s", want, stderrText())
	}

	// The command is the recorder's only child: a session leader on the
	// PTY (pty.Start makes it one), so the hangup goes to it.
	children := crashChildren(t, cmd.Process.Pid)
	if len(children) != 1 {
		t.Fatalf("record has %d child processes, want 1: %+v", len(children), children)
	}
	res.child = children[0]
	if res.child.sid != res.child.pid || res.child.tty == 0 {
		t.Fatalf("the recorded command %+v is not a session leader on a terminal", res.child)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	killed = true
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("record ended with %v before the SIGKILL landed\nstderr: %s", err, stderrText())
	}
	if s := stderrText(); strings.Contains(s, "DATA RACE") {
		t.Errorf("the recorder process reported a data race:\n%s", s)
	}

	// Nobody else holds the pipe: the shell's output went to the PTY, and
	// the recorder's descriptors died with it.
	select {
	case r := <-done:
		if r.err != io.EOF {
			t.Fatalf("read output: %v", r.err)
		}
		res.piped = r.b
	case <-time.After(10 * time.Second):
		t.Fatalf("the output pipe is still open 10s after the recorder was killed: another process holds it")
	}

	// When the recorder dies, the PTY's master side closes and the kernel
	// sends SIGHUP to the session leader on its slave side: the shell.
	// Its default action ends it. If it does not end, kill its process
	// group here, so that it does not spin on after the test, and report.
	deadline := time.Now().Add(10 * time.Second)
	for crashAlive(res.child) {
		if time.Now().After(deadline) {
			res.childAlive = true
			syscall.Kill(-res.child.pgrp, syscall.SIGKILL)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if members := crashSessionMembers(t, res.child.sid); len(members) > 0 && !res.childAlive {
		t.Errorf("processes of the recorded session outlived it: %+v", members)
		for _, m := range members {
			syscall.Kill(m.pid, syscall.SIGKILL)
		}
	}

	res.session = c.openSession(t)
	return res
}

// openSession returns the ID of the journal's only session without an end.
func (c *crashRig) openSession(t *testing.T) string {
	t.Helper()
	db := crashOpen(t, c.db)
	defer db.Close()
	rows, err := db.Query(`SELECT id FROM sessions WHERE num NOT IN (SELECT session FROM leaves WHERE type = 3 AND session IS NOT NULL)`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id []byte
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		u, err := uuid.FromBytes(id)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.String())
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 {
		t.Fatalf("the journal has %d open sessions after the kill, want 1: %q", len(ids), ids)
	}
	return ids[0]
}

// output returns a session's output frames' payloads, in seq order, read
// directly from the journal.
func (c *crashRig) output(t *testing.T, session string) []byte {
	t.Helper()
	id, err := uuid.Parse(session)
	if err != nil {
		t.Fatal(err)
	}
	db := crashOpen(t, c.db)
	defer db.Close()
	rows, err := db.Query(`SELECT f.payload FROM frames f JOIN sessions s ON f.session = s.num
		WHERE s.id = ? AND f.kind = ? ORDER BY f.seq`, id[:], int(recorder.KindOutput))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []byte
	for rows.Next() {
		var p []byte
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p...)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

type crashVerification struct {
	code   int
	report struct {
		Intact bool `json:"intact"`
		recorder.Report
	}
	human, stderr string
}

// verify runs "bastion verify" on the journal, with and without --json.
func (c *crashRig) verify(t *testing.T) crashVerification {
	t.Helper()
	var v crashVerification
	// Unrecorded: a recorded verify would write the journal, which ends
	// the session the killed recorder left open before verify sees it.
	args := []string{"--home", c.home, "verify", "--unrecorded", "--db", c.db}
	code, stdout, stderr := runArgs(append(args, "--json")...)
	v.code, v.stderr = code, stderr
	if code == 0 || code == 1 {
		if err := json.Unmarshal([]byte(stdout), &v.report); err != nil {
			t.Fatalf("verify --json: %v\n%s", err, stdout)
		}
	}
	code, v.human, _ = runArgs(args...)
	if code != v.code {
		t.Errorf("verify exited %d, but %d with --json", code, v.code)
	}
	return v
}

// crashOpen opens the journal read-only, as plain SQLite.
func crashOpen(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+(&url.URL{Path: path}).EscapedPath()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// crashProc is a process as /proc/PID/stat describes it.
type crashProc struct {
	pid, ppid, pgrp, sid, tty int
	state                     byte
	start                     uint64 // start time in clock ticks after boot
}

// crashStat reads /proc/PID/stat; ok is false if the process is gone.
func crashStat(pid int) (p crashProc, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, false
	}
	// "pid (comm) state ppid pgrp session tty_nr ...": comm may contain
	// spaces and parentheses, so parse from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return p, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return p, false
	}
	p.pid = pid
	p.state = f[0][0]
	p.ppid, _ = strconv.Atoi(f[1])
	p.pgrp, _ = strconv.Atoi(f[2])
	p.sid, _ = strconv.Atoi(f[3])
	p.tty, _ = strconv.Atoi(f[4])
	p.start, _ = strconv.ParseUint(f[19], 10, 64)
	return p, true
}

// crashAlive reports whether p still runs: a zombie (an orphan that init has
// not reaped yet) does not, and neither does a new process that took its PID.
func crashAlive(p crashProc) bool {
	now, ok := crashStat(p.pid)
	return ok && now.start == p.start && now.state != 'Z' && now.state != 'X'
}

// crashProcs lists the live processes that match keep.
func crashProcs(t *testing.T, keep func(crashProc) bool) []crashProc {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []crashProc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := crashStat(pid); ok && p.state != 'Z' && p.state != 'X' && keep(p) {
			out = append(out, p)
		}
	}
	return out
}

func crashChildren(t *testing.T, pid int) []crashProc {
	return crashProcs(t, func(p crashProc) bool { return p.ppid == pid })
}

func crashSessionMembers(t *testing.T, sid int) []crashProc {
	return crashProcs(t, func(p crashProc) bool { return p.sid == sid })
}

// crashAround quotes b around offset i, for a failure message.
func crashAround(b []byte, i int) []byte {
	return b[max(0, i-40):min(len(b), i+40)]
}
