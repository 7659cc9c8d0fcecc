package witness_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastionhq/bastion/recorder/witness"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// testLog is a transparency log in memory: RFC 6962 hashes kept with
// tlog, checkpoints signed with a signed-note Ed25519 key.
type testLog struct {
	t      *testing.T
	origin string
	signer note.Signer
	vkey   string
	hashes []tlog.Hash
	n      int64
}

func newTestLog(t *testing.T, origin string) *testLog {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{t: t, origin: origin, signer: s, vkey: vkey}
}

// sameKey is a log with l's key (and origin) but its own leaves: a fork.
func (l *testLog) sameKey() *testLog {
	return &testLog{t: l.t, origin: l.origin, signer: l.signer, vkey: l.vkey}
}

func (l *testLog) reader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = l.hashes[x]
		}
		return out, nil
	})
}

// grow appends k records, each different from any other log's.
func (l *testLog) grow(k int) {
	l.t.Helper()
	for range k {
		rec := make([]byte, 16)
		rand.Read(rec)
		hs, err := tlog.StoredHashes(l.n, rec, l.reader())
		if err != nil {
			l.t.Fatal(err)
		}
		l.hashes = append(l.hashes, hs...)
		l.n++
	}
}

func (l *testLog) root(size int64) tlog.Hash {
	l.t.Helper()
	if size == 0 {
		return sha256.Sum256(nil)
	}
	h, err := tlog.TreeHash(size, l.reader())
	if err != nil {
		l.t.Fatal(err)
	}
	return h
}

func (l *testLog) signText(text string) []byte {
	l.t.Helper()
	msg, err := note.Sign(&note.Note{Text: text}, l.signer)
	if err != nil {
		l.t.Fatal(err)
	}
	return msg
}

func (l *testLog) checkpoint(size int64) []byte {
	l.t.Helper()
	r := l.root(size)
	return l.signText(fmt.Sprintf("%s\n%d\n%s\n", l.origin, size, r))
}

func (l *testLog) proof(old, size int64) []tlog.Hash {
	l.t.Helper()
	if old == 0 || old >= size {
		return nil
	}
	p, err := tlog.ProveTree(size, old, l.reader())
	if err != nil {
		l.t.Fatal(err)
	}
	return p
}

// request is the add-checkpoint body for the checkpoint of size, with a
// proof from old.
func (l *testLog) request(old, size int64) []byte {
	return (&witness.AddCheckpoint{Old: old, Proof: l.proof(old, size), Checkpoint: l.checkpoint(size)}).Marshal()
}

func (l *testLog) key(t *testing.T) *witness.LogKey {
	k, err := witness.ParseLogKey(l.vkey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testWitness is a witness serving real HTTP on a loopback port.
type testWitness struct {
	url   string
	id    *witness.Identity
	state *witness.State
	stop  func()
}

func startWitness(t *testing.T, dir, alg string, maxConcurrent int, logs ...*testLog) *testWitness {
	t.Helper()
	return startWitnessLimits(t, dir, alg, witness.Config{MaxConcurrent: maxConcurrent}, logs...)
}

// startWitnessLimits is startWitness with limits' MaxConcurrent and
// MaxPerAddress.
func startWitnessLimits(t *testing.T, dir, alg string, limits witness.Config, logs ...*testLog) *testWitness {
	t.Helper()
	ctx := context.Background()
	id, err := witness.LoadIdentity(dir)
	if err != nil {
		if id, err = witness.CreateIdentity(dir, "witness.test/w1", alg); err != nil {
			t.Fatal(err)
		}
	}
	st, err := witness.OpenState(ctx, filepath.Join(dir, witness.StateFile), id.Key.VKey)
	if err != nil {
		t.Fatal(err)
	}
	var keys []*witness.LogKey
	for _, l := range logs {
		keys = append(keys, l.key(t))
	}
	w, err := witness.New(witness.Config{Identity: id, Logs: keys, State: st, MaxConcurrent: limits.MaxConcurrent, MaxPerAddress: limits.MaxPerAddress})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Serve(ctx, ln) }()
	tw := &testWitness{url: "http://" + ln.Addr().String(), id: id, state: st}
	var once sync.Once
	tw.stop = func() {
		once.Do(func() {
			// Connections the client dialed but never used would hold
			// the server's graceful stop for its grace period.
			http.DefaultTransport.(*http.Transport).CloseIdleConnections()
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			st.Close()
		})
	}
	t.Cleanup(tw.stop)
	return tw
}

type answer struct {
	status int
	ctype  string
	body   string
}

func (w *testWitness) post(t *testing.T, body []byte) answer {
	t.Helper()
	resp, err := http.Post(w.url+"/add-checkpoint", "", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), string(b)}
}

func (w *testWitness) get(t *testing.T, path string) answer {
	t.Helper()
	resp, err := http.Get(w.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), string(b)}
}

// cosigned checks a 200 answer to a push of cp: one cosignature line by
// the witness that verifies on cp.
func (w *testWitness) cosigned(t *testing.T, a answer, cp []byte) witness.Cosignature {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("status %d (%s), want 200", a.status, strings.TrimSpace(a.body))
	}
	lines, err := witness.ParseSignatureLines([]byte(a.body))
	if err != nil || len(lines) != 1 {
		t.Fatalf("answer %q: %v, %d lines", a.body, err, len(lines))
	}
	valid, bad := witness.Cosignatures(append(bytes.Clone(cp), a.body...), []*witness.Key{w.id.Key})
	if len(valid) != 1 || len(bad) != 0 {
		t.Fatalf("cosignature does not verify: %d valid, bad %v", len(valid), bad)
	}
	if d := time.Since(valid[0].Time); d < -time.Minute || d > time.Minute {
		t.Errorf("cosignature time %v is not now", valid[0].Time)
	}
	return valid[0]
}

func wantStatus(t *testing.T, a answer, status int, bodyHas string) {
	t.Helper()
	if a.status != status || !strings.Contains(a.body, bodyHas) {
		t.Fatalf("got %d %q, want %d with %q", a.status, a.body, status, bodyHas)
	}
}

func wantConflict(t *testing.T, a answer, known int64) {
	t.Helper()
	if a.status != http.StatusConflict || a.ctype != "text/x.tlog.size" || a.body != fmt.Sprintf("%d\n", known) {
		t.Fatalf("got %d %q %q, want 409 text/x.tlog.size %d", a.status, a.ctype, a.body, known)
	}
	if n, err := witness.ParseConflict([]byte(a.body)); err != nil || n != known {
		t.Fatalf("ParseConflict(%q) = %d, %v", a.body, n, err)
	}
}

// forgeLastLine returns msg with one bit of its last signature flipped
// (the key hash kept), in canonical base64.
func forgeLastLine(t *testing.T, msg []byte) []byte {
	t.Helper()
	i := bytes.LastIndex(msg, []byte(" ")) + 1
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(string(msg[i:]), "\n"))
	if err != nil || len(sig) < 10 {
		t.Fatalf("last line of %q: %v", msg, err)
	}
	sig[len(sig)-1] ^= 1
	return append(bytes.Clone(msg[:i]), base64.StdEncoding.EncodeToString(sig)+"\n"...)
}

func TestAddCheckpoint(t *testing.T) {
	for _, alg := range []string{witness.AlgMLDSA44, witness.AlgEd25519} {
		t.Run(alg, func(t *testing.T) { testAddCheckpoint(t, alg) })
	}
}

func testAddCheckpoint(t *testing.T, alg string) {
	ctx := context.Background()
	dir := t.TempDir()
	log := newTestLog(t, "bastion.test/journal")
	other := newTestLog(t, "other.test/log")
	w := startWitness(t, dir, alg, 0, log, other)
	if w.id.Key.Alg != alg {
		t.Fatalf("key algorithm %s, want %s", w.id.Key.Alg, alg)
	}

	// First push: old 0, no proof.
	log.grow(3)
	cp3 := log.checkpoint(3)
	c3 := w.cosigned(t, w.post(t, log.request(0, 3)), cp3)

	// The same checkpoint again: the same answer.
	if a := w.post(t, log.request(3, 3)); a.body != c3.Line.String() {
		t.Fatalf("the same checkpoint again: %d %q, want the first cosignature", a.status, a.body)
	}

	// A client that does not know the state learns it.
	log.grow(5)
	wantConflict(t, w.post(t, log.request(0, 8)), 3)
	wantConflict(t, w.post(t, log.request(5, 8)), 3)

	// Growth with a consistency proof.
	w.cosigned(t, w.post(t, log.request(3, 8)), log.checkpoint(8))

	// Rollback: a smaller checkpoint, validly signed.
	wantStatus(t, w.post(t, log.request(8, 5)), http.StatusBadRequest, "larger than the checkpoint's size")
	wantConflict(t, w.post(t, log.request(5, 5)), 8)
	wantConflict(t, w.post(t, log.request(5, 5)), 8)

	// Fork: the same key over other leaves.
	fork := log.sameKey()
	fork.grow(10)
	wantStatus(t, w.post(t, fork.request(8, 8)), http.StatusUnprocessableEntity, "another root hash")
	wantStatus(t, w.post(t, fork.request(8, 10)), http.StatusUnprocessableEntity, "does not verify")

	// A real proof, damaged.
	log.grow(2)
	bad := &witness.AddCheckpoint{Old: 8, Proof: log.proof(8, 10), Checkpoint: log.checkpoint(10)}
	bad.Proof[0][0] ^= 1
	wantStatus(t, w.post(t, bad.Marshal()), http.StatusUnprocessableEntity, "does not verify")
	bad.Proof = bad.Proof[1:]
	wantStatus(t, w.post(t, bad.Marshal()), http.StatusUnprocessableEntity, "does not verify")
	// The same size, the same root, a needless proof.
	extra := &witness.AddCheckpoint{Old: 8, Proof: log.proof(3, 8), Checkpoint: log.checkpoint(8)}
	wantStatus(t, w.post(t, extra.Marshal()), http.StatusUnprocessableEntity, "")

	// Nothing cosigned for other yet: a proof from 0, and an empty tree
	// with a root that is not the empty tree's.
	other.grow(4)
	withProof := &witness.AddCheckpoint{Old: 0, Proof: other.proof(2, 4), Checkpoint: other.checkpoint(4)}
	wantStatus(t, w.post(t, withProof.Marshal()), http.StatusUnprocessableEntity, "from size 0 must be empty")
	notEmpty := other.signText(fmt.Sprintf("%s\n0\n%s\n", other.origin, other.root(4)))
	wantStatus(t, w.post(t, (&witness.AddCheckpoint{Checkpoint: notEmpty}).Marshal()), http.StatusUnprocessableEntity, "empty tree")
	// The empty tree itself is cosigned, and then extended.
	w.cosigned(t, w.post(t, other.request(0, 0)), other.checkpoint(0))
	w.cosigned(t, w.post(t, other.request(0, 4)), other.checkpoint(4))

	// Unknown origin, unknown key, a forged line by the log's key.
	stranger := newTestLog(t, "stranger.test/log")
	stranger.grow(1)
	wantStatus(t, w.post(t, stranger.request(0, 1)), http.StatusNotFound, "unknown log origin")
	impostor := newTestLog(t, log.origin)
	impostor.hashes, impostor.n = log.hashes, log.n
	wantStatus(t, w.post(t, impostor.request(8, 10)), http.StatusForbidden, "no signature by a key")
	good := log.checkpoint(10)
	forged := forgeLastLine(t, good)
	body := (&witness.AddCheckpoint{Old: 8, Proof: log.proof(8, 10), Checkpoint: forged}).Marshal()
	wantStatus(t, w.post(t, body), http.StatusForbidden, "does not verify")
	// A second line by the log's key, forged, after a valid one.
	twice := append(bytes.Clone(good), forged[bytes.LastIndex(forged, []byte("\n— "))+1:]...)
	body = (&witness.AddCheckpoint{Old: 8, Proof: log.proof(8, 10), Checkpoint: twice}).Marshal()
	wantStatus(t, w.post(t, body), http.StatusForbidden, "does not verify")
	// Lines by keys the witness does not know are ignored.
	other2 := newTestLog(t, "unrelated.test/key")
	withOther := append(bytes.Clone(good), other2.signText(string(good[:bytes.Index(good, []byte("\n\n"))+1]))[bytes.Index(good, []byte("\n\n"))+2:]...)

	// Malformed requests.
	for name, body := range map[string]string{
		"no old line":       "\n\n" + string(good),
		"old with a sign":   "old +8\n\n" + string(good),
		"old leading zero":  "old 08\n\n" + string(good),
		"bad proof base64":  "old 8\nnot base64\n\n" + string(good),
		"no empty line":     "old 8\n" + string(good),
		"nothing after":     "old 8\n\n",
		"not a signed note": "old 0\n\n" + log.origin + "\n10\n",
		"size not decimal":  "old 0\n\n" + string(log.signText(fmt.Sprintf("%s\n0x10\n%s\n", log.origin, log.root(10)))),
		"size leading zero": "old 0\n\n" + string(log.signText(fmt.Sprintf("%s\n010\n%s\n", log.origin, log.root(10)))),
		"short root":        "old 0\n\n" + string(log.signText(fmt.Sprintf("%s\n10\nAAAA\n", log.origin))),
	} {
		a := w.post(t, []byte(body))
		if a.status != http.StatusBadRequest {
			t.Errorf("%s: %d %q, want 400", name, a.status, a.body)
		}
	}
	huge := append([]byte("old 8\n\n"), bytes.Repeat([]byte("x"), witness.MaxRequestBytes)...)
	wantStatus(t, w.post(t, huge), http.StatusRequestEntityTooLarge, "larger than")

	c10 := w.cosigned(t, w.post(t, (&witness.AddCheckpoint{Old: 8, Proof: log.proof(8, 10), Checkpoint: withOther}).Marshal()), good)

	// Monitoring: the latest cosigned checkpoint, with the log's line and
	// the witness's, and nothing else.
	a := w.get(t, witness.OriginPath(log.origin))
	if want := string(good) + c10.Line.String(); a.status != http.StatusOK || a.body != want {
		t.Fatalf("GET checkpoint: %d\n%s\nwant\n%s", a.status, a.body, want)
	}
	wantStatus(t, w.get(t, witness.OriginPath(stranger.origin)), http.StatusNotFound, "")
	wantStatus(t, w.get(t, "/abc/checkpoint"), http.StatusNotFound, "")
	wantStatus(t, w.get(t, "/"), http.StatusOK, w.id.Key.VKey)
	wantStatus(t, w.get(t, "/add-checkpoint"), http.StatusMethodNotAllowed, "")

	// What was kept: every checkpoint cosigned, and the contradictions.
	hist, err := w.state.History(ctx, log.origin)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, c := range hist {
		sizes = append(sizes, c.Size)
	}
	if fmt.Sprint(sizes) != "[3 8 10]" {
		t.Errorf("cosigned sizes %v, want [3 8 10]", sizes)
	}
	if !bytes.Equal(hist[2].Received, withOther) {
		t.Errorf("the checkpoint as received was not kept")
	}
	refusals, dropped, err := w.state.Refusals(ctx, log.origin)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range refusals {
		got = append(got, fmt.Sprintf("%d %d %d %s", r.Size, r.Status, r.Count, r.Reason))
	}
	want := []string{
		"5 400 3 rollback: size 5 is below the 8 cosigned",
		"8 422 1 fork: size 8 as cosigned, another root hash",
		"10 422 1 unproven: no valid consistency proof that size 10 extends the 8 cosigned",
		"10 422 2 unproven: no valid consistency proof that size 10 extends the 8 cosigned",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") || dropped != 0 {
		t.Errorf("refusals:\n%s\nwant\n%s (dropped %d)", strings.Join(got, "\n"), strings.Join(want, "\n"), dropped)
	}

	// A restart keeps the state.
	w.stop()
	w = startWitness(t, dir, alg, 0, log, other)
	wantConflict(t, w.post(t, log.request(0, 10)), 10)
	log.grow(1)
	w.cosigned(t, w.post(t, log.request(10, 11)), log.checkpoint(11))
}

// TestAddCheckpointRace pushes many checkpoints from the same old size at
// once: exactly one may be cosigned, or the witness could be rolled back.
func TestAddCheckpointRace(t *testing.T) {
	const racers = 20
	log := newTestLog(t, "bastion.test/journal")
	// Room for every racer at once: they all come from one address, and
	// the default per-address limit would answer some of them 503 when
	// the machine is slow enough for them to overlap.
	w := startWitnessLimits(t, t.TempDir(), witness.AlgEd25519, witness.Config{MaxPerAddress: racers}, log)
	log.grow(2)
	w.cosigned(t, w.post(t, log.request(0, 2)), log.checkpoint(2))
	log.grow(racers)
	var wg sync.WaitGroup
	answers := make([]answer, racers)
	for i := range answers {
		body := log.request(2, int64(3+i))
		wg.Go(func() { answers[i] = w.post(t, body) })
	}
	wg.Wait()
	var won int64
	for i, a := range answers {
		switch a.status {
		case http.StatusOK:
			if won != 0 {
				t.Fatalf("both %d and %d cosigned from old size 2", won, 3+i)
			}
			won = int64(3 + i)
		case http.StatusConflict:
		default:
			t.Fatalf("answer %d %q", a.status, a.body)
		}
	}
	if won == 0 {
		t.Fatal("none cosigned")
	}
	for _, a := range answers {
		if a.status == http.StatusConflict && a.body != fmt.Sprintf("%d\n", won) {
			t.Errorf("409 says %q, want %d", a.body, won)
		}
	}
}

// TestBusy holds the only request slot with a request whose body never
// comes: the next request is answered 503 at once.
func TestBusy(t *testing.T) {
	t.Run("all", func(t *testing.T) { testBusy(t, witness.Config{MaxConcurrent: 1}) })
	// One address may hold only so many of the slots.
	t.Run("one address", func(t *testing.T) { testBusy(t, witness.Config{MaxPerAddress: 1}) })
}

func testBusy(t *testing.T, limits witness.Config) {
	log := newTestLog(t, "bastion.test/journal")
	w := startWitnessLimits(t, t.TempDir(), witness.AlgEd25519, limits, log)
	conn, err := net.Dial("tcp", strings.TrimPrefix(w.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: 100\r\n\r\nold 0\n")
	deadline := time.Now().Add(5 * time.Second)
	for {
		a := w.get(t, "/")
		if a.status == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never busy: %d", a.status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn.Close()
	deadline = time.Now().Add(5 * time.Second)
	for w.get(t, "/").status != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the slot was never given back")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
