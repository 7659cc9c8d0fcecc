package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bastionhq/bastion/bastion/sshdtest"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/witness"
	"github.com/bastionhq/bastion/recorder/witness/witnesstest"
	"github.com/bastionhq/bastion/storage"
)

// alertSink is a webhook that keeps the alerts posted to it.
type alertSink struct {
	mu     sync.Mutex
	alerts []map[string]any
}

func (a *alertSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m map[string]any
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&m); err == nil {
		a.mu.Lock()
		a.alerts = append(a.alerts, m)
		a.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}

// count is how many alerts of event in state (raised, cleared) name
// witness ("" for any).
func (a *alertSink) count(event, state, witnessName string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, m := range a.alerts {
		attrs, _ := m["attrs"].(map[string]any)
		if m["event"] == event && m["state"] == state && (witnessName == "" || attrs["witness"] == witnessName) {
			n++
		}
	}
	return n
}

// readyz reads serve's GET /readyz over its pinned self-signed TLS.
func readyz(t *testing.T, sp *serveProcess) map[string]any {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // checked below: the pinned fingerprint
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			sum := sha256.Sum256(raw[0])
			if fp := "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:]); fp != sp.fingerprint {
				return fmt.Errorf("fingerprint %s, pinned %s", fp, sp.fingerprint)
			}
			return nil
		},
	}}}
	resp, err := c.Get(sp.api + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	m["http_status"] = float64(resp.StatusCode)
	return m
}

// witnessState is the state /readyz gives a witness.
func witnessState(m map[string]any, name string) string {
	list, _ := m["witnesses"].([]any)
	for _, w := range list {
		if o, _ := w.(map[string]any); o["name"] == name {
			s, _ := o["state"].(string)
			return s
		}
	}
	return ""
}

// snapshotOf opens a read view of the journal (serve may hold it) for fn.
func snapshotOf(t *testing.T, journal string, fn func(context.Context, storage.Snapshot) error) {
	t.Helper()
	ctx := context.Background()
	st, err := storage.OpenSQLite(ctx, journal, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if err := fn(ctx, snap); err != nil {
		t.Fatal(err)
	}
}

// published reads the journal's published checkpoints.
func published(t *testing.T, journal string) (pub []storage.Checkpoint) {
	t.Helper()
	snapshotOf(t, journal, func(ctx context.Context, snap storage.Snapshot) (err error) {
		pub, err = snap.Published(ctx)
		return err
	})
	return pub
}

// journalEvents lists the journal's events named name, oldest first.
func journalEvents(t *testing.T, journal, name string) (out []recorder.Attrs) {
	t.Helper()
	snapshotOf(t, journal, func(ctx context.Context, snap storage.Snapshot) error {
		return snap.Leaves(ctx, 0, 1<<62, func(l storage.Leaf) error {
			if l.Event != name {
				return nil
			}
			leaf, err := recorder.ParseLeaf(l.Data)
			if err != nil {
				return err
			}
			out = append(out, leaf.Attrs)
			return nil
		})
	})
	return out
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		switch {
		case fi.IsDir():
			return os.MkdirAll(dst, fi.Mode().Perm())
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(dst, b, fi.Mode().Perm())
		}
		return nil // sockets: serve makes them again
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestWitnessedServe is the end-to-end story, with real OpenSSH
// sessions through the front door and two witnesses nobody shares code
// with the client: litewitness and "bastion witness serve", threshold 2.
func TestWitnessedServe(t *testing.T) {
	t.Parallel()
	sshBin := sshdtest.Need(t, "ssh")
	ctx := context.Background()
	login := "root"
	if u, err := user.Current(); err == nil {
		login = u.Username
	}
	dir := t.TempDir()
	home, _ := rigHome(t, dir, false)
	journal := filepath.Join(home, "journal.db")
	logKey, err := os.ReadFile(filepath.Join(home, "journal.pub"))
	if err != nil {
		t.Fatal(err)
	}
	origin, _, _ := strings.Cut(strings.TrimSpace(string(logKey)), "+")

	lw := witnesstest.Start(t, "lw.test/w1", strings.TrimSpace(string(logKey)))
	bw := startBastionWitness(t, filepath.Join(dir, "witness-home"), "bw.test/w2", filepath.Join(home, "journal.pub"))
	lwKey, err := witness.ParseKey(lw.VKey)
	if err != nil {
		t.Fatal(err)
	}
	bwKey, err := witness.ParseKey(bw.vkey)
	if err != nil {
		t.Fatal(err)
	}
	sink := &alertSink{}
	hook := httptest.NewServer(sink)
	defer hook.Close()
	cfg := filepath.Join(dir, "bastion.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
home = %q
api { listen = "127.0.0.1:0" }
ssh { listen = "127.0.0.1:0" }
target "box" { command = ["/bin/sh"] }
alerts { webhook_url = %q }
witness "lw" {
  url = %q
  key = %q
}
witness "bw" {
  url = %q
  key = %q
}
witnesses {
  threshold   = 2
  stale_after = "3s"
}
`, home, hook.URL, lw.URL, lw.VKey, bw.url, bw.vkey)), 0o600); err != nil {
		t.Fatal(err)
	}
	var serveLog lockedBuffer
	sp, _ := startDevServe(t, cfg, &serveLog)
	tok := devTokenFile(t, home, dir, "agent-1")
	key, _ := devCert(t, sp, dir, "agent", tok)
	session := func(sp *serveProcess, what string) {
		t.Helper()
		c := sshClient{bin: sshBin, port: sp.ssh[strings.LastIndexByte(sp.ssh, ':')+1:], known: filepath.Join(dir, "known_hosts")}
		if out, errOut, err := c.run(key, "", login+"@box@127.0.0.1", "echo "+what); err != nil || !strings.Contains(out, what) {
			t.Fatalf("session %s: %v %q %q", what, err, out, errOut)
		}
	}
	stop := func(sp *serveProcess) {
		t.Helper()
		sp.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- sp.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("serve did not stop:\n%s", serveLog.String())
		}
	}
	keys := []*witness.Key{lwKey, bwKey}
	cosignedBoth := func() (largest int64, all []storage.Checkpoint) {
		for _, p := range published(t, journal) {
			valid, bad := witness.Cosignatures(p.Note, keys)
			if len(bad) > 0 {
				t.Fatalf("checkpoint %d: %v", p.TreeSize, bad)
			}
			if len(valid) == 2 {
				largest = p.TreeSize
			}
			all = append(all, p)
		}
		return largest, all
	}

	// 1. Every kept checkpoint is cosigned by both, within the delay
	// docs/witnesses.md promises: each is cosigned, or covered by a later
	// one cosigned by both, within 2 s of being kept.
	for i := range 3 {
		session(sp, fmt.Sprintf("witnessed-%d", i))
	}
	waitFor(t, 10*time.Second, "both witnesses to cosign the latest kept checkpoint", func() bool {
		largest, all := cosignedBoth()
		return largest > 0 && largest == all[len(all)-1].TreeSize
	})
	_, all := cosignedBoth()
	for _, p := range all {
		covered := false
		for _, q := range all {
			if q.TreeSize < p.TreeSize {
				continue
			}
			valid, _ := witness.Cosignatures(q.Note, keys)
			if len(valid) < 2 {
				continue
			}
			kept := time.Unix(0, p.CreatedNS)
			if valid[0].Time.Sub(kept) <= 2*time.Second && valid[1].Time.Sub(kept) <= 2*time.Second {
				covered = true
				break
			}
		}
		if !covered {
			t.Errorf("checkpoint %d (kept %s) has no cosignature by both witnesses within 2 s", p.TreeSize, time.Unix(0, p.CreatedNS).UTC())
		}
	}
	if m := readyz(t, sp); m["witness_quorum"] != "ok" || witnessState(m, "lw") != "ok" || witnessState(m, "bw") != "ok" {
		t.Fatalf("/readyz with both witnesses cosigning: %v", m)
	}

	// Stopping a witness: sessions go on, the stale alarm is raised
	// within stale_after of the first checkpoint it misses, and when it
	// is back it catches up with one consistency proof.
	lw.Stop()
	missed := time.Now()
	session(sp, "while-a-witness-is-down")
	waitFor(t, 10*time.Second, "the stale alarm", func() bool { return sink.count("witness.stale", "raised", "lw") == 1 })
	if d := time.Since(missed); d > 3*time.Second+2*time.Second {
		t.Errorf("the stale alarm came %v after the missed checkpoint (stale_after 3s)", d)
	}
	if m := readyz(t, sp); witnessState(m, "lw") != "stale" || m["witness_quorum"] != "lost" || m["http_status"] != 200.0 {
		t.Fatalf("/readyz with a stale witness: %v", m)
	}
	if !strings.Contains(serveLog.String(), "ALARM: witness stale") {
		t.Errorf("serve logged no ERROR for the stale witness:\n%s", serveLog.String())
	}
	session(sp, "still-going")
	lw.Start()
	waitFor(t, 15*time.Second, "the witness to catch up", func() bool {
		return sink.count("witness.recovered", "cleared", "lw") == 1
	})
	if n := len(journalEvents(t, journal, "witness.stale")); n != 1 {
		t.Errorf("%d witness.stale leaves, want one per change of state", n)
	}

	// Serve stops: its last checkpoint (serve.stopped) is cosigned by
	// both before it exits. The home is backed up.
	stop(sp)
	largest, all := cosignedBoth()
	if largest != all[len(all)-1].TreeSize {
		t.Fatalf("serve stopped with checkpoint %d cosigned by both, the last is %d", largest, all[len(all)-1].TreeSize)
	}
	// The auditor verifies the journal at rest against both witnesses'
	// keys: witnessed to its last kept checkpoint, by both.
	code, out, errOut := cli(ctx, home, "verify", "--json", "--witness", lw.VKey, "--witness", bw.vkey, "--witness-threshold", "2")
	if code != 0 {
		t.Fatalf("verify --witness at rest: exit %d:\n%s%s", code, out, errOut)
	}
	var verdict map[string]any
	if err := json.Unmarshal([]byte(out), &verdict); err != nil {
		t.Fatal(err)
	}
	if ws, _ := jsonAt(verdict, "witnessed", "witnessed_size").(float64); int64(ws) != largest {
		t.Fatalf("verify says witnessed size %v, the journal's last cosigned checkpoint is %d: %s", ws, largest, out)
	}
	// A session's bundle carries the cosignatures of its checkpoint.
	code, out, errOut = cli(ctx, home, "sessions", "list", "--json")
	var listed []sessionJSON
	if code != 0 || json.Unmarshal([]byte(out), &listed) != nil || len(listed) == 0 {
		t.Fatalf("sessions list: exit %d: %s%s", code, out, errOut)
	}
	bundle := filepath.Join(dir, "session.bundle")
	code, out, errOut = cli(ctx, home, "export", "--format", "bundle", "--out", bundle, listed[0].ID)
	if code != 0 {
		t.Fatalf("export bundle: exit %d: %s%s", code, out, errOut)
	}
	code, out, errOut = cli(ctx, home, "verify", "--bundle", bundle, "--key", filepath.Join(home, "journal.pub"), "--witness", lw.VKey, "--witness", bw.vkey)
	if code != 0 {
		t.Fatalf("verify --bundle --witness: exit %d: %s%s", code, out, errOut)
	}
	backup := filepath.Join(dir, "backup")
	copyTree(t, home, backup)
	backedUp := largest

	// More sessions, then serve stops again: the witnesses hold more.
	sp, _ = startDevServe(t, cfg, &serveLog)
	// A new SSH port: a certificate, and known_hosts lines, for it.
	key, _ = devCert(t, sp, dir, "agent", tok)
	for i := range 2 {
		session(sp, fmt.Sprintf("after-backup-%d", i))
	}
	stop(sp)
	witnessed, _ := cosignedBoth()
	if witnessed <= backedUp || lw.Latest(origin) != witnessed {
		t.Fatalf("the witnesses hold %d (litewitness %d), the backup %d", witnessed, lw.Latest(origin), backedUp)
	}

	// 2. The journal and the home are restored from the backup and serve
	// restarted: both witnesses refuse its next checkpoint, and serve
	// raises the alarm.
	if err := os.RemoveAll(home); err != nil {
		t.Fatal(err)
	}
	copyTree(t, backup, home)
	sp, _ = startDevServe(t, cfg, &serveLog)
	// A new SSH port: a certificate, and known_hosts lines, for it.
	key, _ = devCert(t, sp, dir, "agent", tok)
	waitFor(t, 15*time.Second, "both witnesses to refuse the rolled-back journal", func() bool {
		return sink.count("witness.refused", "raised", "lw") >= 1 && sink.count("witness.refused", "raised", "bw") >= 1
	})
	m := readyz(t, sp)
	if witnessState(m, "lw") != "refused" || witnessState(m, "bw") != "refused" || m["witness_quorum"] != "lost" {
		t.Fatalf("/readyz after the rollback: %v", m)
	}
	if !strings.Contains(serveLog.String(), "ALARM: witness refused") {
		t.Errorf("serve logged no ERROR for the refusals")
	}
	if lw.Latest(origin) != witnessed {
		t.Fatalf("litewitness moved to %d after the rollback", lw.Latest(origin))
	}
	kept := filepath.Join(dir, "kept.txt")
	code, out, errOut = cli(ctx, home, "witness", "latest", "--home", bw.home, "--origin", origin)
	if code != 0 {
		t.Fatalf("witness latest: exit %d: %s", code, errOut)
	}
	if err := os.WriteFile(kept, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = cli(ctx, home, "verify", "--unrecorded", "--checkpoint", kept)
	if code != 1 || !strings.Contains(out+errOut, "rolled back") {
		t.Fatalf("verify --checkpoint (the witness's latest) after the rollback: exit %d:\n%s%s", code, out, errOut)
	}

	// 3. A fork: the restored journal grows past the size the witnesses
	// hold, with other leaves. Both refuse it as inconsistent.
	for i := 0; ; i++ {
		session(sp, fmt.Sprintf("fork-%d", i))
		_, all := cosignedBoth()
		if all[len(all)-1].TreeSize > witnessed {
			break
		}
		if i > 50 {
			t.Fatal("the restored journal does not grow")
		}
	}
	waitFor(t, 15*time.Second, "both witnesses to refuse the fork", func() bool {
		forks := 0
		for _, a := range journalEvents(t, journal, "witness.refused") {
			if strings.Contains(a["detail"], "fork") {
				forks++
			}
		}
		m := readyz(t, sp)
		for _, name := range []string{"lw", "bw"} {
			list, _ := m["witnesses"].([]any)
			for _, w := range list {
				if o, _ := w.(map[string]any); o["name"] == name {
					if d, _ := o["detail"].(string); strings.Contains(d, "fork") {
						forks++
					}
				}
			}
		}
		return forks >= 2
	})
	if lw.Latest(origin) != witnessed {
		t.Fatalf("litewitness cosigned the fork: it holds %d", lw.Latest(origin))
	}
	code, out, _ = cli(ctx, home, "witness", "latest", "--home", bw.home, "--origin", origin)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("\n%d\n", witnessed)) {
		t.Fatalf("bastion witness's latest after the fork: exit %d: %s", code, out)
	}
	stop(sp)
}

// bastionWitness is a "bastion witness serve" process of the test.
type bastionWitness struct {
	home, url, vkey string
	cmd             *exec.Cmd
	log             lockedBuffer
}

// startBastionWitness starts "bastion witness serve" in home, named name,
// for the log whose key is in logKeyFile, on a loopback port, and stops it
// when the test ends.
func startBastionWitness(t testing.TB, home, name, logKeyFile string) *bastionWitness {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w := &bastionWitness{home: home}
	w.cmd = &exec.Cmd{Path: exe, Args: []string{"bastion", "witness", "serve", "--home", home, "--name", name, "--listen", "127.0.0.1:0", "--log", logKeyFile}, Stderr: &w.log}
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.cmd.Process.Signal(syscall.SIGTERM)
		w.cmd.Wait()
	})
	urlRE := regexp.MustCompile(`(http://127\.0\.0\.1:\d+)`)
	keyRE := regexp.MustCompile(regexp.QuoteMeta(name) + `\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+`)
	sc := bufio.NewScanner(out)
	var seen strings.Builder
	for (w.url == "" || w.vkey == "") && sc.Scan() {
		seen.WriteString(sc.Text() + "\n")
		if m := urlRE.FindStringSubmatch(sc.Text()); m != nil && w.url == "" {
			w.url = m[1]
		}
		if m := keyRE.FindString(sc.Text()); m != "" && w.vkey == "" {
			w.vkey = m
		}
	}
	if w.url == "" || w.vkey == "" {
		t.Fatalf("bastion witness serve did not start: %s\n%s", seen.String(), w.log.String())
	}
	go io.Copy(io.Discard, out)
	return w
}
