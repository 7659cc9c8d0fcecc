package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bastionhq/bastion/bastion"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/storage"
)

// readersGroup is the group whose members read the journal in
// TestRecordedReads: one every Debian system has.
const readersGroup = "users"

// readsRig is a real "bastion serve" process whose journal the members of
// readersGroup may read, in a directory they can reach, and the bastion
// binary where another user can run it.
type readsRig struct {
	base, home, journal, pub, bin string
	cfg                           string
	gid                           int
	sp                            *serveProcess
}

func newReadsRig(t *testing.T, issuer, audience string) *readsRig {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs the tests as root")
		}
		t.Skip("needs root: it runs readers as other users")
	}
	g, err := user.LookupGroup(readersGroup)
	if err != nil {
		t.Fatalf("group %s: %v", readersGroup, err)
	}
	r := &readsRig{base: t.TempDir()}
	r.gid, _ = strconv.Atoi(g.Gid)
	// Others may search the way down; the journal's directory is the
	// group's.
	for _, d := range []string{filepath.Dir(r.base), r.base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	jdir := filepath.Join(r.base, "journal")
	if err := os.Mkdir(jdir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(jdir, 0, r.gid); err != nil {
		t.Fatal(err)
	}
	r.home = filepath.Join(r.base, "home")
	r.journal = filepath.Join(jdir, "journal.db")
	if code, _, stderr := runArgs("--home", r.home, "ca", "init"); code != 0 {
		t.Fatalf("ca init: %s", stderr)
	}
	r.pub = filepath.Join(r.base, "journal.pub")
	copyFile(t, filepath.Join(r.home, certauth.JournalPubKeyFile), r.pub, 0o644)
	// The test binary is bastion (TestMain), copied where others may
	// run it.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r.bin = filepath.Join(r.base, "bastion")
	copyFile(t, exe, r.bin, 0o755)
	r.cfg = filepath.Join(r.base, "bastion.hcl")
	if err := os.WriteFile(r.cfg, []byte(fmt.Sprintf(`
home    = %q
journal = %q
api { listen = "127.0.0.1:0" }
access { group = %q }
operator_accounts = { "root" = "alice@corp" }
identity_provider "corp" {
  issuer    = %q
  audiences = [%q]
}
identity "ops" {
  providers = ["corp"]
  subjects  = ["alice"]
}
identity "audit" {
  providers = ["corp"]
  subjects  = ["carol"]
}
identity "agents" {
  providers = ["corp"]
  subjects  = ["agent-*"]
}
operators = ["ops"]
auditors  = ["audit"]
role "agents" {
  identities = ["agents"]
  targets    = ["*"]
  logins     = ["deploy"]
}
`, r.home, r.journal, readersGroup, issuer, audience)), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// as runs the bastion binary as uid 65534 (nobody), with groups as its
// supplementary groups, and returns its exit status and output.
func (r *readsRig) as(t *testing.T, groups []uint32, args ...string) (int, string, string) {
	t.Helper()
	return r.asEnv(t, groups, nil, args...)
}

// asEnv is as with env added to the environment.
func (r *readsRig) asEnv(t *testing.T, groups []uint32, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(r.bin, args...)
	cmd.Args[0] = "bastion"
	cmd.Env = append([]string{"HOME=/nonexistent", "BASTION_HOME=" + filepath.Join(r.base, "nobody-home"), "PATH=/usr/bin:/bin"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: groups}}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// events reads the journal's events of one name, checked with its key.
func (r *readsRig) events(t *testing.T, name string) []recorder.Attrs {
	t.Helper()
	ctx := context.Background()
	st, err := storage.OpenSQLite(ctx, r.journal, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	v, err := recorder.ParseVerifierKey(mustRead(t, r.pub))
	if err != nil {
		t.Fatal(err)
	}
	evs, err := recorder.Events(ctx, snap, v, name)
	if err != nil {
		t.Fatal(err)
	}
	var out []recorder.Attrs
	for _, e := range evs {
		out = append(out, e.Leaf.Attrs)
	}
	return out
}

// TestRecordedReads: while serve runs, reads of its journal are journaled
// by serve, naming the reader as the kernel reports it: root in process,
// and a member of the access group in a process of its own; a token names
// the person; a read serve cannot record is refused unless --unrecorded;
// operators are named by token and by account; a CA rotation is
// journaled; once serve stops, the reader records its own reads.
func TestRecordedReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := oidctest.StartMock(t, nil)
	r := newReadsRig(t, m.Issuer(), m.ClientID)
	tokenFile := func(sub string) string {
		p := filepath.Join(r.base, sub+".token")
		if err := os.WriteFile(p, []byte(mockToken(t, m, sub)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	carol, alice, dave := tokenFile("carol"), tokenFile("alice"), tokenFile("dave")

	// A session, recorded before serve starts; then a writer that records
	// no reads for others holds the journal: reads are refused.
	if code, _, stderr := runArgs("--home", r.home, "record", "-q", "--db", r.journal, "--", "echo", "recorded"); code != 0 {
		t.Fatalf("record: %s", stderr)
	}
	id := readsLastSession(t, r)
	holder := exec.Command(r.bin, "--home", r.home, "record", "-q", "--db", r.journal, "--", "sleep", "30")
	holder.Args[0] = "bastion"
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); storage.WriterHolder(r.journal) == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("record does not hold the journal")
		}
	}
	accessed := len(r.events(t, recorder.EventJournalAccessed))
	code, stdout, stderr := runArgs("--home", r.home, "play", "--db", r.journal, "--key", r.pub, "--speed", "max", id)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "this play cannot be recorded in the journal, so it is refused: the journal is held for writing by pid "+strconv.Itoa(holder.Process.Pid)) ||
		!strings.Contains(stderr, "hint: --unrecorded") {
		t.Errorf("play while record holds the journal: exit %d, %q %q", code, stdout, stderr)
	}
	code, stdout, stderr = runArgs("--home", r.home, "play", "--db", r.journal, "--key", r.pub, "--speed", "max", "--unrecorded", id)
	if code != 0 || !strings.Contains(stdout, "recorded") || !strings.Contains(stderr, "warning: this play is not recorded in the journal (--unrecorded)") {
		t.Errorf("play --unrecorded: exit %d, %q %q", code, stdout, stderr)
	}
	holder.Process.Signal(syscall.SIGTERM)
	holder.Wait()
	if n := len(r.events(t, recorder.EventJournalAccessed)); n != accessed {
		t.Errorf("refused and unrecorded reads were journaled: %d journal.accessed, want %d", n, accessed)
	}

	r.sp = startServeProcess(t, r.cfg, false)
	sock := r.journal + bastion.AccessSocketSuffix
	for name, want := range map[string]struct {
		mode os.FileMode
		gid  int
	}{sock: {0o660 | os.ModeSocket, r.gid}, r.journal: {0o640, r.gid}, r.journal + "-shm": {0o660, r.gid}, r.journal + "-wal": {0o640, r.gid}} {
		fi, err := os.Stat(name)
		if err != nil || fi.Mode()&(os.ModeSocket|os.ModePerm) != want.mode || int(fi.Sys().(*syscall.Stat_t).Gid) != want.gid {
			t.Errorf("%s: %v, want mode %v group %d", name, err, want.mode, want.gid)
		}
	}

	// Root, in process: journaled by serve, with the kernel's uid and pid.
	if code, _, stderr := runArgs("--home", r.home, "sessions", "show", "--db", r.journal, "--key", r.pub, id); code != 0 {
		t.Fatalf("sessions show: exit %d: %s", code, stderr)
	}
	host, _ := os.Hostname()
	evs := r.events(t, recorder.EventJournalAccessed)
	if e := evs[len(evs)-1]; e["action"] != "show" || e["session"] != id || e["via"] != "serve" || e["uid"] != "0" || e["user"] != "root" ||
		e["pid"] != strconv.Itoa(os.Getpid()) || e["host"] != host || e["identity.verified"] != "account" || e["identity"] != "alice@corp" || e["reader.role"] != "operator" {
		t.Errorf("root's sessions show journaled as %v", e)
	}

	// A member of the group, in a process of its own, with an auditor's
	// token: the kernel's uid, the token's identity.
	for _, args := range [][]string{
		{"verify", "--db", r.journal, "--key", r.pub, "--token-file", carol},
		{"play", "--db", r.journal, "--key", r.pub, "--speed", "max", "--token-file", carol, id},
		{"sessions", "search", "--db", r.journal, "--key", r.pub, "--token-file", carol, "recorded"},
	} {
		code, stdout, stderr := r.as(t, []uint32{uint32(r.gid)}, args...)
		if code != 0 || strings.Contains(stderr, "warning") {
			t.Fatalf("%s as a member of %s: exit %d\n%s%s", args[0], readersGroup, code, stdout, stderr)
		}
		evs := r.events(t, recorder.EventJournalAccessed)
		e := evs[len(evs)-1]
		if e["via"] != "serve" || e["uid"] != "65534" || e["user"] != "nobody" || e["pid"] == strconv.Itoa(os.Getpid()) || e["identity"] != "carol@corp" ||
			e["identity.verified"] != "token" || e["identity.issuer"] != m.Issuer() || e["reader.role"] != "auditor" || e["says.user"] != "nobody" {
			t.Errorf("%s as a member journaled as %v", args[0], e)
		}
	}
	// BASTION_TOKEN_FILE names the token too; without one, only the
	// account is known.
	if code, _, stderr := r.asEnv(t, []uint32{uint32(r.gid)}, []string{"BASTION_TOKEN_FILE=" + carol}, "verify", "--db", r.journal, "--key", r.pub); code != 0 {
		t.Fatalf("verify with $BASTION_TOKEN_FILE: %s", stderr)
	}
	evs = r.events(t, recorder.EventJournalAccessed)
	if e := evs[len(evs)-1]; e["identity"] != "carol@corp" || e["identity.verified"] != "token" {
		t.Errorf("a read with $BASTION_TOKEN_FILE journaled as %v", e)
	}
	if code, _, stderr := r.as(t, []uint32{uint32(r.gid)}, "verify", "--db", r.journal, "--key", r.pub); code != 0 {
		t.Fatalf("verify without a token: %s", stderr)
	}
	evs = r.events(t, recorder.EventJournalAccessed)
	if e := evs[len(evs)-1]; e["identity.verified"] != "none" || e["identity"] != "" || e["reader.role"] != "" || e["uid"] != "65534" {
		t.Errorf("a read without a token journaled as %v", e)
	}

	// Refused: a bad token; a user outside the group (the kernel keeps it
	// from the socket, and from the journal's files).
	before := len(r.events(t, recorder.EventJournalAccessed))
	bad := filepath.Join(r.base, "bad.token")
	os.WriteFile(bad, []byte(strings.Replace(mockToken(t, m, "carol"), ".", ".x", 1)), 0o644)
	if code, stdout, stderr := r.as(t, []uint32{uint32(r.gid)}, "verify", "--db", r.journal, "--key", r.pub, "--token-file", bad); code != 1 || stdout != "" ||
		!strings.Contains(stderr, "this verify cannot be recorded in the journal, so it is refused: the token does not verify") {
		t.Errorf("a bad token: exit %d, %q %q", code, stdout, stderr)
	}
	if code, stdout, stderr := r.as(t, nil, "verify", "--db", r.journal, "--key", r.pub); code == 0 || stdout != "" {
		t.Errorf("a user outside the group: exit %d, %q %q", code, stdout, stderr)
	}
	if n := len(r.events(t, recorder.EventJournalAccessed)); n != before {
		t.Errorf("refused reads were journaled: %d, want %d", n, before)
	}
	// --unrecorded: a warning, nothing journaled.
	if code, _, stderr := runArgs("--home", r.home, "verify", "--db", r.journal, "--key", r.pub, "--unrecorded"); code != 0 || !strings.Contains(stderr, "bastion: warning: this verify is not recorded in the journal (--unrecorded)") {
		t.Errorf("verify --unrecorded: exit %d, %s", code, stderr)
	}
	if n := len(r.events(t, recorder.EventJournalAccessed)); n != before {
		t.Errorf("an unrecorded read was journaled: %d, want %d", n, before)
	}

	// A report recorded through serve: the note opens with the journal's
	// key over the evidence.generated leaf.
	h, j := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	e := &env{stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string {
		if k == "BASTION_HOME" {
			return r.home
		}
		return ""
	}}
	sig, leaf, err := recordEvidenceGenerated(ctx, e, r.journal, recorder.Attrs{"period.from": "2026-01-01T00:00:00Z", "period.to": "2026-04-01T00:00:00Z", "sha256.html": h, "sha256.json": j, "out": "/srv/q1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := recorder.ParseVerifierKey(mustRead(t, r.pub))
	if n, err := recorder.OpenEvidenceNote(sig, v); err != nil || n.Leaf != leaf || n.SHA256HTML != h {
		t.Errorf("evidence note %+v, %v (leaf %d)", n, err, leaf)
	}
	if gen := r.events(t, recorder.EventEvidenceGenerated); len(gen) != 1 || gen[0]["via"] != "serve" || gen[0]["sha256.json"] != j || gen[0]["uid"] != "0" {
		t.Errorf("evidence.generated = %v", gen)
	}
	if sig, leaf, err := recordEvidenceGenerated(ctx, e, r.journal, recorder.Attrs{"sha256.html": h, "sha256.json": j}, true); sig != nil || leaf != -1 || err != nil {
		t.Errorf("an unrecorded report: %q %d %v", sig, leaf, err)
	}

	// Operators: by token, by account mapping; another identity refused.
	for _, c := range []struct {
		token, identity, verified string
	}{{alice, "alice@corp", "token"}, {"", "alice@corp", "account"}} {
		args := []string{"--home", r.home, "certs", "revoke", "--identity", "agent-1@corp", "--reason", "test"}
		if c.token != "" {
			args = append(args, "--token-file", c.token)
		}
		if code, _, stderr := runArgs(args...); code != 0 {
			t.Fatalf("certs revoke: exit %d: %s", code, stderr)
		}
		rev := r.events(t, events.CertRevoked)
		if e := rev[len(rev)-1]; e["operator"] != c.identity || e["operator.verified"] != c.verified || e["operator.uid"] != "0" || e["operator.user"] != "root" ||
			!strings.HasPrefix(e["by"], c.identity+" ("+c.verified+"; uid 0 root, pid ") {
			t.Errorf("cert.revoked by %s: %v", c.verified, e)
		}
	}
	code, _, stderr = runArgs("--home", r.home, "certs", "revoke", "--identity", "agent-2@corp", "--token-file", dave)
	if code != 1 || !strings.Contains(stderr, "not an operator") {
		t.Errorf("certs revoke by dave: exit %d: %s", code, stderr)
	}
	if ref := r.events(t, bastion.EventAdminRefused); len(ref) != 1 || ref[0]["operator"] != "dave@corp" || ref[0]["action"] != "revoke" {
		t.Errorf("admin.refused = %v", ref)
	}

	// A CA rotation by someone who is not an operator: refused before
	// any key is replaced.
	authBefore, err := certauth.LoadAuthorities(r.home, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runArgs("--home", r.home, "ca", "rotate", "--role", "target", "--grace", "1h", "--token-file", dave); code != 1 || !strings.Contains(stderr, "not an operator") {
		t.Errorf("ca rotate by dave: exit %d: %s", code, stderr)
	}
	if after, err := certauth.LoadAuthorities(r.home, time.Now()); err != nil || !bytes.Equal(after.Target.Signer.PublicKey().Marshal(), authBefore.Target.Signer.PublicKey().Marshal()) {
		t.Errorf("a refused rotation replaced the target CA's key (%v)", err)
	}
	// A CA rotation, through serve.
	if code, out, stderr := runArgs("--home", r.home, "ca", "rotate", "--role", "target", "--grace", "1h", "--token-file", alice); code != 0 || !strings.Contains(out, "journaled: ca.rotated, leaf ") {
		t.Fatalf("ca rotate: exit %d: %s%s", code, out, stderr)
	}
	rot := r.events(t, events.CARotated)
	if len(rot) != 1 || rot[0]["role"] != "target" || rot[0]["via"] != "serve" || rot[0]["operator"] != "alice@corp" || rot[0]["operator.verified"] != "token" ||
		rot[0]["grace"] != "1h0m0s" || !strings.HasPrefix(rot[0]["new.fingerprint"], "SHA256:") || rot[0]["old.fingerprint"] == rot[0]["new.fingerprint"] {
		t.Errorf("ca.rotated through serve = %v", rot)
	}

	// Serve stops: root records its own reads, and rotations.
	r.sp.cmd.Process.Signal(syscall.SIGTERM)
	r.sp.cmd.Wait()
	if _, err := os.Lstat(sock); err == nil {
		t.Error("serve left its access socket behind")
	}
	// The journal the group reads is written only by serve, configured
	// so: a read of it is refused (a writer without the group refuses
	// its files), --unrecorded reads it.
	code, _, stderr = runArgs("--home", r.home, "export", "--db", r.journal, "--key", r.pub, "--format", "asciicast", id)
	if code != 1 || !strings.Contains(stderr, "has mode 0640") || !strings.Contains(stderr, "start it: reads are then recorded through it") {
		t.Errorf("export of the group's journal once serve stopped: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runArgs("--home", r.home, "export", "--db", r.journal, "--key", r.pub, "--format", "asciicast", "--unrecorded", id); code != 0 {
		t.Errorf("export --unrecorded once serve stopped: exit %d: %s", code, stderr)
	}
	// A journal of the home's no writer holds: the CLI journals a CA
	// rotation, and its reads, itself.
	private := filepath.Join(r.home, "journal.db")
	if code, out, stderr := runArgs("--home", r.home, "ca", "rotate", "--role", "host", "--grace", "1h", "--db", private); code != 0 || !strings.Contains(out, "journaled: ca.rotated") {
		t.Fatalf("ca rotate without serve: exit %d: %s%s", code, out, stderr)
	}
	if code, out, stderr := runArgs("--home", r.home, "verify", "--db", private); code != 0 {
		t.Errorf("verify: exit %d\n%s%s", code, out, stderr)
	}
	pr := &readsRig{journal: private, pub: r.pub}
	rot = pr.events(t, events.CARotated)
	if len(rot) != 1 || rot[0]["role"] != "host" || rot[0]["via"] != "cli" || rot[0]["operator.verified"] != "none" || rot[0]["uid"] != "0" || rot[0]["operator.user"] != "root" {
		t.Errorf("ca.rotated without serve = %v", rot)
	}
	if acc := pr.events(t, recorder.EventJournalAccessed); len(acc) != 1 || acc[0]["action"] != "verify" || acc[0]["via"] != "reader" || acc[0]["uid"] != "0" || acc[0]["identity.verified"] != "none" {
		t.Errorf("a verify with no writer journaled as %v", acc)
	}
	if code, out, stderr := runArgs("--home", r.home, "verify", "--db", r.journal, "--key", r.pub, "--unrecorded"); code != 0 {
		t.Errorf("verify of the group's journal: exit %d\n%s%s", code, out, stderr)
	}
}

// readsLastSession is the ID of the journal's latest session.
func readsLastSession(t *testing.T, r *readsRig) string {
	t.Helper()
	code, out, stderr := runArgs("--home", r.home, "sessions", "list", "--db", r.journal, "--key", r.pub, "--json")
	if code != 0 {
		t.Fatalf("sessions list: %s", stderr)
	}
	i := strings.LastIndex(out, `"id": "`)
	if i < 0 {
		t.Fatalf("no session: %s", out)
	}
	return out[i+7 : i+7+36]
}
