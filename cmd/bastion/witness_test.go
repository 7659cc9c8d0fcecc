package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/recordertest"
	"github.com/bastionhq/bastion/recorder/witness"
	"github.com/bastionhq/bastion/storage"
	"golang.org/x/mod/sumdb/tlog"
)

// syncBuffer is a bytes.Buffer that a running command writes while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// witnessProcess is "bastion witness serve" running in this process.
type witnessProcess struct {
	url    string
	stdout *syncBuffer
	stderr *syncBuffer
	stop   func() int // stops it and returns its exit status
}

func startWitnessServe(t *testing.T, args ...string) *witnessProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &witnessProcess{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	e := &env{stdin: strings.NewReader(""), stdout: p.stdout, stderr: p.stderr, getenv: func(string) string { return "" }}
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"witness", "serve", "--listen", "127.0.0.1:0"}, args...), e) }()
	var once sync.Once
	code := -1
	p.stop = func() int {
		once.Do(func() {
			http.DefaultTransport.(*http.Transport).CloseIdleConnections()
			cancel()
			code = <-done
		})
		return code
	}
	t.Cleanup(func() { p.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, l := range strings.Split(p.stdout.String(), "\n") {
			if u, ok := strings.CutPrefix(l, "listening "); ok {
				p.url = u
				return p
			}
		}
		select {
		case c := <-done:
			t.Fatalf("witness serve exited %d: %s", c, p.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("witness serve never listened: %s", p.stderr.String())
		}
	}
}

func (p *witnessProcess) push(t *testing.T, old int64, proof []tlog.Hash, cp []byte) (int, string) {
	t.Helper()
	body := (&witness.AddCheckpoint{Old: old, Proof: proof, Checkpoint: cp}).Marshal()
	resp, err := http.Post(p.url+"/add-checkpoint", "", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// witnessJournal is a journal written with package recorder, every commit
// kept as a published checkpoint.
type witnessJournal struct {
	t    *testing.T
	key  *recorder.JournalKey
	st   *storage.SQLite
	j    *recorder.Journal
	seen int
}

func newWitnessJournal(t *testing.T, path string, key *recorder.JournalKey) *witnessJournal {
	t.Helper()
	j := recordertest.NewJournalWith(t, recordertest.Options{Path: path, Storage: storage.Options{Synchronous: storage.SyncNormal},
		Journal: recorder.Options{Key: key, PublishInterval: time.Nanosecond}})
	return &witnessJournal{t: t, key: key, st: j.Store, j: j.Journal}
}

// grow appends n events and returns the latest published checkpoint.
func (w *witnessJournal) grow(n int) storage.Checkpoint {
	w.t.Helper()
	for range n {
		w.seen++
		if _, err := w.j.AppendEvent(context.Background(), "test.witnessed", recorder.Attrs{"n": fmt.Sprint(w.seen)}); err != nil {
			w.t.Fatal(err)
		}
	}
	pub := w.published()
	return pub[len(pub)-1]
}

func (w *witnessJournal) published() []storage.Checkpoint {
	w.t.Helper()
	snap, err := w.st.Snapshot(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	defer snap.Close()
	pub, err := snap.Published(context.Background())
	if err != nil || len(pub) == 0 {
		w.t.Fatalf("published checkpoints: %d, %v", len(pub), err)
	}
	return pub
}

// proof is the journal's consistency proof from old to size.
func (w *witnessJournal) proof(old, size int64) []tlog.Hash {
	w.t.Helper()
	if old == 0 || old == size {
		return nil
	}
	ctx := context.Background()
	snap, err := w.st.Snapshot(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	defer snap.Close()
	p, err := tlog.ProveTree(size, old, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		raw, err := snap.Hashes(ctx, idx)
		out := make([]tlog.Hash, len(raw))
		for i := range raw {
			copy(out[i][:], raw[i])
		}
		return out, err
	}))
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

func journalKey(t *testing.T, origin string) (*recorder.JournalKey, string) {
	t.Helper()
	skey, vkey, err := recorder.GenerateJournalKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	k, err := recorder.ParseJournalKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	return k, vkey
}

// TestWitnessServe pushes a real journal's checkpoints through the
// protocol to "bastion witness serve", and reads what it kept with
// "bastion witness latest".
func TestWitnessServe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	home := filepath.Join(dir, "witness")
	const origin = "bastion.test/journal"
	key, vkey := journalKey(t, origin)
	pubFile := filepath.Join(dir, "journal.pub")
	if err := os.WriteFile(pubFile, []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, strangerKey := journalKey(t, "stranger.test/journal")

	w := startWitnessServe(t, "--home", home, "--name", "witness.test/w1", "--log", pubFile, "--log", strangerKey)
	fi, err := os.Stat(home)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("home: %v, %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(home, witness.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	code, out, _ := runArgs("witness", "key", "--home", home)
	wkey, err := witness.ParseKey(out)
	if code != 0 || err != nil || wkey.Alg != witness.AlgMLDSA44 || wkey.Name != "witness.test/w1" {
		t.Fatalf("witness key: %d %q %v", code, out, err)
	}
	for _, want := range []string{"witness witness.test/w1\n", "key " + wkey.VKey + "\n", "log " + vkey + "\n", "log " + strangerKey + "\n"} {
		if !strings.Contains(w.stdout.String(), want) {
			t.Errorf("serve printed %q, want a line %q", w.stdout.String(), want)
		}
	}

	// Nothing cosigned yet.
	code, _, errOut := runArgs("witness", "latest", "--home", home, "--origin", origin)
	if code != 1 || !strings.Contains(errOut, `cosigned nothing for "bastion.test/journal"`) || !strings.Contains(errOut, "no checkpoint yet") {
		t.Fatalf("latest before any push: %d %q", code, errOut)
	}

	j := newWitnessJournal(t, filepath.Join(dir, "journal.db"), key)
	first := j.grow(3)
	if s, b := w.push(t, 0, nil, first.Note); s != http.StatusOK {
		t.Fatalf("first push: %d %q", s, b)
	}
	second := j.grow(4)
	if s, b := w.push(t, 0, nil, second.Note); s != http.StatusConflict || b != fmt.Sprintf("%d\n", first.TreeSize) {
		t.Fatalf("push with a wrong old size: %d %q", s, b)
	}
	if s, b := w.push(t, first.TreeSize, j.proof(first.TreeSize, second.TreeSize), second.Note); s != http.StatusOK {
		t.Fatalf("growth: %d %q", s, b)
	}

	// "witness latest" while serve runs: the log's line and the witness's.
	code, kept, errOut := runArgs("witness", "latest", "--home", home, "--origin", origin)
	if code != 0 {
		t.Fatalf("witness latest: %d %s", code, errOut)
	}
	cp, err := recorder.OpenCheckpoint([]byte(kept), key.Verifier)
	if err != nil || cp.Size != second.TreeSize {
		t.Fatalf("kept checkpoint: %+v, %v\n%s", cp, err, kept)
	}
	valid, bad := witness.Cosignatures([]byte(kept), []*witness.Key{wkey})
	if len(valid) != 1 || len(bad) != 0 {
		t.Fatalf("kept cosignature: %d valid, %v", len(valid), bad)
	}
	if !strings.HasPrefix(kept, string(second.Note)) || strings.Count(kept, "\n— ") != 2 {
		t.Fatalf("kept is not the note plus one line:\n%s", kept)
	}
	resp, err := http.Get(w.url + witness.OriginPath(origin))
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(served) != kept {
		t.Fatalf("monitoring GET: %d\n%s\nwant\n%s", resp.StatusCode, served, kept)
	}

	// The journal, as an auditor checks it against what the witness kept.
	keptFile := filepath.Join(dir, "kept.txt")
	if err := os.WriteFile(keptFile, []byte(kept), 0o644); err != nil {
		t.Fatal(err)
	}

	// Rollback: an older checkpoint of the same journal.
	if s, b := w.push(t, second.TreeSize, nil, first.Note); s != http.StatusBadRequest {
		t.Fatalf("rollback with old = cosigned: %d %q", s, b)
	}
	if s, b := w.push(t, first.TreeSize, nil, first.Note); s != http.StatusConflict || b != fmt.Sprintf("%d\n", second.TreeSize) {
		t.Fatalf("rollback with old = its size: %d %q", s, b)
	}

	// Fork: another journal with the same key, grown past it.
	fork := newWitnessJournal(t, filepath.Join(dir, "fork.db"), key)
	fork.seen = 1000
	fsame := fork.grow(int(second.TreeSize))
	for fsame.TreeSize < second.TreeSize+2 {
		fsame = fork.grow(1)
	}
	if s, b := w.push(t, second.TreeSize, fork.proof(second.TreeSize, fsame.TreeSize), fsame.Note); s != http.StatusUnprocessableEntity {
		t.Fatalf("fork: %d %q", s, b)
	}
	sameSize := false
	for _, c := range fork.published() {
		if c.TreeSize == second.TreeSize {
			sameSize = true
			if s, b := w.push(t, second.TreeSize, nil, c.Note); s != http.StatusUnprocessableEntity {
				t.Fatalf("fork at the same size: %d %q", s, b)
			}
		}
	}
	if !sameSize {
		t.Fatalf("the fork published no checkpoint of size %d", second.TreeSize)
	}

	// An unknown origin, a damaged signature.
	otherKey, _ := journalKey(t, "other.test/journal")
	other := newWitnessJournal(t, filepath.Join(dir, "other.db"), otherKey)
	if s, b := w.push(t, 0, nil, other.grow(1).Note); s != http.StatusNotFound {
		t.Fatalf("unknown origin: %d %q", s, b)
	}
	third := j.grow(1)
	// One bit of the signature flipped, the key hash kept.
	i := bytes.LastIndex(third.Note, []byte(" ")) + 1
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(third.Note[i:])))
	if err != nil {
		t.Fatal(err)
	}
	sig[len(sig)-1] ^= 1
	damaged := append(bytes.Clone(third.Note[:i]), base64.StdEncoding.EncodeToString(sig)+"\n"...)
	if s, b := w.push(t, second.TreeSize, j.proof(second.TreeSize, third.TreeSize), damaged); s != http.StatusForbidden || !strings.Contains(b, "does not verify") {
		t.Fatalf("damaged signature: %d %q", s, b)
	}

	// Stopped, then started again without --name: the state is kept.
	if code := w.stop(); code != 0 {
		t.Fatalf("witness serve exited %d: %s", code, w.stderr.String())
	}
	t.Logf("witness serve's log:\n%s", w.stderr.String())
	code, after, _ := runArgs("witness", "latest", "--home", home, "--origin", origin)
	if code != 0 || after != kept {
		t.Fatalf("latest after stop: %d\n%s", code, after)
	}
	w = startWitnessServe(t, "--home", home, "--log", vkey)
	if s, b := w.push(t, 0, nil, third.Note); s != http.StatusConflict || b != fmt.Sprintf("%d\n", second.TreeSize) {
		t.Fatalf("after a restart: %d %q", s, b)
	}
	if s, b := w.push(t, second.TreeSize, j.proof(second.TreeSize, third.TreeSize), third.Note); s != http.StatusOK {
		t.Fatalf("after a restart: %d %q", s, b)
	}
	code, latest, _ := runArgs("witness", "latest", "--home", home, "--origin", origin)
	if cp, err := recorder.OpenCheckpoint([]byte(latest), key.Verifier); code != 0 || err != nil || cp.Size != third.TreeSize {
		t.Fatalf("latest after the restart: %d %v\n%s", code, err, latest)
	}

	// The refusals are evidence, kept in the state.
	st, err := witness.OpenStateReadOnly(context.Background(), filepath.Join(home, witness.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	refusals, _, err := st.Refusals(context.Background(), origin)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, r := range refusals {
		reasons = append(reasons, r.Reason)
	}
	got := strings.Join(reasons, "\n")
	for _, want := range []string{"rollback: size", "unproven: no valid consistency proof", "fork: size"} {
		if !strings.Contains(got, want) {
			t.Errorf("refusals kept:\n%s\nwant one with %q", got, want)
		}
	}
}

func TestWitnessCommandErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	home := filepath.Join(dir, "w")
	_, vkey := journalKey(t, "bastion.test/journal")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no home", []string{"witness", "serve", "--listen", "127.0.0.1:0", "--log", vkey}, 2, "need --home DIR"},
		{"no listen", []string{"witness", "serve", "--home", home, "--log", vkey}, 2, "needs --listen"},
		{"no log", []string{"witness", "serve", "--home", home, "--listen", "127.0.0.1:0"}, 2, "needs --log"},
		{"bad log key", []string{"witness", "serve", "--home", home, "--listen", "127.0.0.1:0", "--log", vkey + "x"}, 2, "not canonical base64"},
		{"missing log file", []string{"witness", "serve", "--home", home, "--listen", "127.0.0.1:0", "--log", filepath.Join(dir, "nope.pub")}, 2, "neither a log's public key nor a file"},
		{"bad key type", []string{"witness", "serve", "--home", home, "--listen", "127.0.0.1:0", "--log", vkey, "--key-type", "rsa"}, 2, `--key-type "rsa"`},
		{"bad name", []string{"witness", "serve", "--home", home, "--listen", "127.0.0.1:0", "--log", vkey, "--name", "a b"}, 2, "printable ASCII"},
		{"no name at first start", []string{"witness", "serve", "--home", home, "--listen", "127.0.0.1:0", "--log", vkey}, 2, "--name is needed"},
		{"latest without origin", []string{"witness", "latest", "--home", home}, 2, "needs --origin"},
		{"latest without state", []string{"witness", "latest", "--home", home, "--origin", "x"}, 1, "holds no witness state"},
		{"key without key", []string{"witness", "key", "--home", home}, 1, "holds no witness key"},
		{"typo", []string{"witness", "lastest"}, 2, `did you mean "witness latest"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runArgs(tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d with %q", code, errOut, tt.code, tt.want)
			}
		})
	}

	// A witness keeps its name and key.
	w := startWitnessServe(t, "--home", home, "--name", "witness.test/w1", "--key-type", "ed25519", "--log", vkey)
	if code := w.stop(); code != 0 {
		t.Fatalf("exit %d: %s", code, w.stderr.String())
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--name", "witness.test/w2"}, `the witness in ` + home + ` is named "witness.test/w1"`},
		{[]string{"--key-type", "ml-dsa-44"}, "the witness key in " + home + " is ed25519"},
	} {
		code, _, errOut := runArgs(append([]string{"witness", "serve", "--home", home, "--listen", "127.0.0.1:0", "--log", vkey}, tt.args...)...)
		if code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, %q; want 1 with %q", tt.args, code, errOut, tt.want)
		}
	}
	if err := os.Chmod(filepath.Join(home, witness.KeyFile), 0o640); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runArgs("witness", "key", "--home", home)
	if code != 1 || !strings.Contains(errOut, "chmod 600") {
		t.Errorf("a key others may read: exit %d, %q", code, errOut)
	}
	code, out, _ := runArgs("help", "witness")
	for _, want := range []string{"witness serve", "witness latest", "witness key"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("help witness: %d %q lacks %q", code, out, want)
		}
	}
}
