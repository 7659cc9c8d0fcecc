package witness

// bastion's own witness: the server side of add-checkpoint.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Limits on what a stranger can make the witness spend.
const (
	// DefaultMaxConcurrent is how many requests a witness handles at
	// once by default; more are answered 503 at once.
	DefaultMaxConcurrent = 64
	// DefaultMaxPerAddress is how many of them one client address may
	// hold, so that one stranger sending slow bodies cannot take every
	// slot from the logs. Behind a proxy every request comes from the
	// proxy's address: the proxy must then bound its clients itself.
	DefaultMaxPerAddress = 16
	readHeaderTimeout    = 5 * time.Second
	readTimeout          = 10 * time.Second
	writeTimeout         = 10 * time.Second
	idleTimeout          = 60 * time.Second
	maxHeaderBytes       = 8 << 10
	shutdownGrace        = 5 * time.Second
)

// Config configures a [Witness].
type Config struct {
	// Identity is the witness's own key. Required.
	Identity *Identity
	// Logs are the keys of the logs it witnesses (at least one); several
	// may share an origin.
	Logs []*LogKey
	// State is where it records what it cosigned. Required; the Witness
	// does not close it.
	State *State
	// Logger receives a line per cosigned or refused checkpoint. If nil,
	// nothing is logged.
	Logger *slog.Logger
	// MaxConcurrent caps requests handled at once, MaxPerAddress those of
	// one client address. Zero means DefaultMaxConcurrent and
	// DefaultMaxPerAddress.
	MaxConcurrent, MaxPerAddress int
}

// Witness cosigns checkpoints of the logs it knows, per C2SP
// tlog-witness, refusing any that does not extend the latest it
// cosigned. It is an http.Handler:
//
//	POST /add-checkpoint              the protocol's add-checkpoint
//	GET  /<hex SHA-256 of origin>/checkpoint
//	                                  the latest cosigned checkpoint of a log
//	GET  /                            a plain-text description
type Witness struct {
	id     *Identity
	logs   map[string][]*LogKey // by origin; read-only after New
	origin []string             // the origins in the order given
	state  *State
	log    *slog.Logger
	mux    *http.ServeMux
	slots  chan struct{} // one token per request being handled

	// perAddr counts the requests being handled by client address
	// (guarded by addrMu), at most maxPerAddr each.
	addrMu     sync.Mutex
	perAddr    map[string]int
	maxPerAddr int

	// mu makes each check against the latest cosigned checkpoint and
	// the write of the next one atomic (the protocol's rollback race);
	// the transaction does the same across processes.
	mu sync.Mutex

	quiet quietLog // unauthenticated refusals, rate limited
}

// New returns a witness for cfg.
func New(cfg Config) (*Witness, error) {
	if cfg.Identity == nil || cfg.State == nil {
		return nil, errors.New("witness: an identity and a state are required")
	}
	if len(cfg.Logs) == 0 {
		return nil, errors.New("witness: no log to witness")
	}
	w := &Witness{
		id:    cfg.Identity,
		logs:  map[string][]*LogKey{},
		state: cfg.State,
		log:   cfg.Logger,
		mux:   http.NewServeMux(),
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	seen := map[string]bool{}
	for _, k := range cfg.Logs {
		if seen[k.VKey] {
			return nil, fmt.Errorf("witness: log key %s given twice", k.VKey)
		}
		seen[k.VKey] = true
		if w.logs[k.Origin] == nil {
			w.origin = append(w.origin, k.Origin)
		}
		w.logs[k.Origin] = append(w.logs[k.Origin], k)
	}
	n := cfg.MaxConcurrent
	if n <= 0 {
		n = DefaultMaxConcurrent
	}
	w.slots = make(chan struct{}, n)
	w.perAddr, w.maxPerAddr = map[string]int{}, cfg.MaxPerAddress
	if w.maxPerAddr <= 0 {
		w.maxPerAddr = DefaultMaxPerAddress
	}
	w.quiet.log = w.log
	w.mux.HandleFunc("POST /add-checkpoint", w.serveAddCheckpoint)
	w.mux.HandleFunc("GET /{origin}/checkpoint", w.serveCheckpoint)
	w.mux.HandleFunc("GET /{$}", w.serveIndex)
	return w, nil
}

// ServeHTTP handles a request, or answers 503 when MaxConcurrent are
// being handled already, or MaxPerAddress of its client address.
func (w *Witness) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	addr, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		addr = r.RemoteAddr
	}
	w.addrMu.Lock()
	if w.perAddr[addr] >= w.maxPerAddr {
		w.addrMu.Unlock()
		rw.Header().Set("Retry-After", "1")
		http.Error(rw, "witness busy: too many requests at once from this address", http.StatusServiceUnavailable)
		return
	}
	w.perAddr[addr]++
	w.addrMu.Unlock()
	defer func() {
		w.addrMu.Lock()
		if w.perAddr[addr]--; w.perAddr[addr] == 0 {
			delete(w.perAddr, addr)
		}
		w.addrMu.Unlock()
	}()
	select {
	case w.slots <- struct{}{}:
		defer func() { <-w.slots }()
	default:
		rw.Header().Set("Retry-After", "1")
		http.Error(rw, "witness busy: too many requests at once", http.StatusServiceUnavailable)
		return
	}
	w.mux.ServeHTTP(rw, r)
}

// Serve answers HTTP on ln until ctx is canceled, then stops accepting,
// lets the requests in flight finish (for a few seconds at most) and
// returns nil. It returns an error if the listener fails.
func (w *Witness) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           w,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(w.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("witness: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Requests still running after the grace period (or
		// connections that never sent one) are cut.
		w.log.Warn("stopping: closing connections still open", "after", shutdownGrace)
		srv.Close()
	}
	<-errc
	return nil
}

// RequestError is a refused add-checkpoint request: the HTTP status the
// protocol prescribes, and why.
type RequestError struct {
	Status int
	// Known is the size of the latest cosigned checkpoint, for a 409.
	Known int64
	// Signed is set when the checkpoint verified with the log's key:
	// the refusal was logged with the log's origin.
	Signed bool
	Msg    string
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Msg)
}

func refuse(status int, format string, a ...any) *RequestError {
	return &RequestError{Status: status, Msg: fmt.Sprintf(format, a...)}
}

func (w *Witness) serveAddCheckpoint(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxRequestBytes))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		w.quiet.note(r, http.StatusRequestEntityTooLarge, "request too large")
		http.Error(rw, fmt.Sprintf("request larger than %d bytes", MaxRequestBytes), http.StatusRequestEntityTooLarge)
		return
	case err != nil:
		w.quiet.note(r, http.StatusBadRequest, err.Error())
		http.Error(rw, "cannot read the request", http.StatusBadRequest)
		return
	}
	lines, err := w.AddCheckpoint(r.Context(), body)
	var re *RequestError
	switch {
	case errors.As(err, &re) && re.Status == http.StatusConflict:
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		rw.WriteHeader(http.StatusConflict)
		fmt.Fprintf(rw, "%d\n", re.Known)
	case errors.As(err, &re):
		if !re.Signed {
			w.quiet.note(r, re.Status, re.Msg)
		}
		http.Error(rw, re.Msg, re.Status)
	case err != nil:
		w.log.Error("add-checkpoint failed", "remote", r.RemoteAddr, "err", err)
		http.Error(rw, "the witness could not record the checkpoint", http.StatusInternalServerError)
	default:
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.Write(lines)
	}
}

// AddCheckpoint handles the body of an add-checkpoint request. It returns
// the cosignature line(s) to answer with, a *RequestError for a refusal,
// or another error when the state cannot be read or written (nothing was
// cosigned then).
func (w *Witness) AddCheckpoint(ctx context.Context, body []byte) ([]byte, error) {
	req, err := ParseAddCheckpoint(body)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "%v", err)
	}
	origin, _, _ := bytes.Cut(req.Checkpoint, []byte("\n"))
	keys := w.logs[string(origin)]
	if keys == nil {
		return nil, refuse(http.StatusNotFound, "unknown log origin %q", origin)
	}
	text, logLines, rerr := checkLogSignatures(req.Checkpoint, keys)
	if rerr != nil {
		return nil, rerr
	}
	size, root, err := parseCheckpointText(text)
	if err != nil {
		w.log.Info("refused a checkpoint", "origin", string(origin), "status", http.StatusBadRequest, "reason", err.Error())
		return nil, &RequestError{Status: http.StatusBadRequest, Signed: true, Msg: "checkpoint: " + err.Error()}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	tx, err := w.state.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("witness state: %w", err)
	}
	defer tx.Rollback()
	prev, err := latest(ctx, tx, string(origin))
	if err != nil && !errors.Is(err, ErrNotCosigned) {
		return nil, fmt.Errorf("witness state: %w", err)
	}
	var known int64
	if prev != nil {
		known = prev.Size
	}

	rerr = checkConsistency(req, size, root, known, prev)
	if rerr != nil {
		// A validly signed checkpoint that contradicts what was
		// cosigned is kept as evidence against the log.
		if reason := contradiction(size, root, prev, rerr); reason != "" {
			ref := &Refusal{Origin: string(origin), Size: size, Root: root, Reason: reason, Status: rerr.Status, Received: req.Checkpoint}
			if err := addRefusal(ctx, tx, ref, time.Now()); err != nil {
				w.log.Error("cannot record a refused checkpoint", "origin", string(origin), "size", size, "err", err)
			} else if err := tx.Commit(); err != nil {
				w.log.Error("cannot record a refused checkpoint", "origin", string(origin), "size", size, "err", err)
			}
			w.log.Warn("refused a checkpoint that contradicts one cosigned", "origin", string(origin), "size", size,
				"cosigned", known, "status", rerr.Status, "reason", reason)
		} else {
			w.log.Info("refused a checkpoint", "origin", string(origin), "old", req.Old, "size", size, "status", rerr.Status, "reason", rerr.Msg)
		}
		rerr.Signed = true
		return nil, rerr
	}
	if prev != nil && prev.Size == size && bytes.Equal(checkpointText(prev.Received), text) {
		// The same checkpoint again: the same answer, nothing new to record.
		return []byte(prev.Line.String()), nil
	}

	line, ts, err := w.cosign(text)
	if err != nil {
		return nil, err
	}
	c := &Cosigned{Origin: string(origin), Size: size, Root: root, Received: req.Checkpoint, Line: line, Time: ts}
	if err := addCosigned(ctx, tx, c, logLines); err != nil {
		return nil, fmt.Errorf("witness state: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("witness state: %w", err)
	}
	w.log.Info("cosigned", "origin", c.Origin, "size", size, "old", req.Old)
	return []byte(line.String()), nil
}

// checkLogSignatures verifies a checkpoint note against the keys of its
// origin: at least one line by one of them must verify, and every line
// that names one of them (name and key hash) must verify; lines by other
// keys are ignored. It returns the note's text and the lines that
// verified, one per key, in the note's order.
func checkLogSignatures(msg []byte, keys []*LogKey) (text []byte, logLines string, rerr *RequestError) {
	vs := make([]note.Verifier, len(keys))
	for i, k := range keys {
		vs[i] = k.Verifier
	}
	_, err := note.Open(msg, note.VerifierList(vs...))
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unverified):
		return nil, "", refuse(http.StatusForbidden, "no signature by a key of log %q", keys[0].Origin)
	case errors.As(err, &invalid):
		return nil, "", refuse(http.StatusForbidden, "the signature by %s+%08x does not verify", invalid.Name, invalid.Hash)
	case err != nil:
		return nil, "", refuse(http.StatusBadRequest, "checkpoint is not a signed note: %v", err)
	}
	// note.Open checks the first line by each key only, and accepts
	// base64 with stray low bits: check every line, canonically.
	text, lines, ok := NoteSignatures(msg)
	if !ok {
		return nil, "", refuse(http.StatusBadRequest, "checkpoint has a signature line that is not canonical")
	}
	var b strings.Builder
	done := map[*LogKey]bool{}
	for _, l := range lines {
		for _, k := range keys {
			if l.Name != k.Verifier.Name() || l.Hash != k.Verifier.KeyHash() {
				continue
			}
			if !k.Verifier.Verify(text, l.Sig[4:]) {
				return nil, "", refuse(http.StatusForbidden, "a signature line by %s+%08x does not verify", l.Name, l.Hash)
			}
			if !done[k] {
				done[k] = true
				b.WriteString(l.String())
			}
		}
	}
	return text, b.String(), nil
}

// parseCheckpointText parses a checkpoint's signed text strictly: the
// origin line, the size in canonical decimal, the root as canonical
// base64 of 32 bytes, then any extension lines.
func parseCheckpointText(text []byte) (size int64, root tlog.Hash, err error) {
	lines := strings.SplitN(string(text), "\n", 4)
	if len(lines) < 4 {
		return 0, root, errors.New("want an origin, a size and a root hash line")
	}
	if size, err = ParseSize(lines[1]); err != nil {
		return 0, root, fmt.Errorf("size: %v", err)
	}
	if root, err = parseHash(lines[2]); err != nil {
		return 0, root, fmt.Errorf("root hash: %v", err)
	}
	for _, ext := range strings.Split(strings.TrimSuffix(lines[3], "\n"), "\n") {
		if lines[3] != "" && ext == "" {
			return 0, root, errors.New("empty extension line")
		}
	}
	return size, root, nil
}

// emptyRoot is the root hash of the empty tree (RFC 6962, section 2.1).
var emptyRoot = tlog.Hash(sha256.Sum256(nil))

// checkConsistency applies the protocol's checks of a verified checkpoint
// of size and root against the latest cosigned one, prev (nil if none,
// then known is 0), in the order the specification gives them.
func checkConsistency(req *AddCheckpoint, size int64, root tlog.Hash, known int64, prev *Cosigned) *RequestError {
	switch {
	case req.Old > size:
		return refuse(http.StatusBadRequest, "old size %d is larger than the checkpoint's size %d", req.Old, size)
	case req.Old != known:
		return &RequestError{Status: http.StatusConflict, Known: known,
			Msg: fmt.Sprintf("old size %d is not the size of the latest checkpoint cosigned, %d", req.Old, known)}
	case size == 0 && root != emptyRoot:
		return refuse(http.StatusUnprocessableEntity, "a checkpoint of size 0 must have the empty tree's root hash")
	case req.Old == 0 && len(req.Proof) > 0:
		return refuse(http.StatusUnprocessableEntity, "a consistency proof from size 0 must be empty")
	case req.Old == 0:
		return nil
	case req.Old == size && root != prev.Root:
		return refuse(http.StatusUnprocessableEntity, "the checkpoint has the size of the one cosigned, %d, but another root hash", size)
	}
	if err := tlog.CheckTree(req.Proof, size, root, prev.Size, prev.Root); err != nil {
		return refuse(http.StatusUnprocessableEntity, "the consistency proof from size %d to %d does not verify", prev.Size, size)
	}
	return nil
}

// contradiction names how a refused, validly signed checkpoint
// contradicts the latest cosigned one, or returns "" when it does not (a
// client out of step, a malformed proof with nothing cosigned yet).
func contradiction(size int64, root tlog.Hash, prev *Cosigned, rerr *RequestError) string {
	switch {
	case prev == nil:
		return ""
	case size < prev.Size:
		return fmt.Sprintf("rollback: size %d is below the %d cosigned", size, prev.Size)
	case size == prev.Size && root != prev.Root:
		return fmt.Sprintf("fork: size %d as cosigned, another root hash", size)
	case rerr.Status == http.StatusUnprocessableEntity && size > prev.Size:
		return fmt.Sprintf("unproven: no valid consistency proof that size %d extends the %d cosigned", size, prev.Size)
	}
	return ""
}

// checkpointText is the signed text of a note (nil if it has none).
func checkpointText(msg []byte) []byte {
	text, _, _ := NoteSignatures(msg)
	return text
}

// cosign signs text with the witness key and checks the line it made.
func (w *Witness) cosign(text []byte) (SigLine, time.Time, error) {
	signed, err := note.Sign(&note.Note{Text: string(text)}, w.id.Signer)
	if err != nil {
		return SigLine{}, time.Time{}, fmt.Errorf("witness: cosign: %w", err)
	}
	_, lines, ok := NoteSignatures(signed)
	if !ok || len(lines) != 1 {
		return SigLine{}, time.Time{}, errors.New("witness: cosign: the signer made no single signature line")
	}
	c, err := w.id.Key.Verify(text, lines[0])
	if err != nil {
		return SigLine{}, time.Time{}, fmt.Errorf("witness: cosign: own cosignature: %w", err)
	}
	return c.Line, c.Time, nil
}

// OriginPath is the monitoring path of a log's latest cosigned
// checkpoint: "/" + the lowercase hex SHA-256 of its origin + "/checkpoint".
func OriginPath(origin string) string {
	h := sha256.Sum256([]byte(origin))
	return "/" + hex.EncodeToString(h[:]) + "/checkpoint"
}

func (w *Witness) serveCheckpoint(rw http.ResponseWriter, r *http.Request) {
	want := r.PathValue("origin")
	for _, o := range w.origin {
		if OriginPath(o) != "/"+want+"/checkpoint" {
			continue
		}
		c, err := w.state.Latest(r.Context(), o)
		if errors.Is(err, ErrNotCosigned) {
			break
		}
		if err != nil {
			w.log.Error("cannot read the latest cosigned checkpoint", "origin", o, "err", err)
			http.Error(rw, "the witness cannot read its state", http.StatusInternalServerError)
			return
		}
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.Write(c.Checkpoint)
		return
	}
	http.Error(rw, "no checkpoint cosigned for this origin hash", http.StatusNotFound)
}

func (w *Witness) serveIndex(rw http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	fmt.Fprintf(&b, "bastion witness %s\n\nkey %s\n\n", w.id.Name(), w.id.Key.VKey)
	b.WriteString("It cosigns checkpoints of these logs (C2SP tlog-witness):\n")
	for _, o := range w.origin {
		for _, k := range w.logs[o] {
			fmt.Fprintf(&b, "log %s\n", k.VKey)
		}
	}
	b.WriteString("\nPOST /add-checkpoint                     submit a checkpoint with a consistency proof\n")
	b.WriteString("GET  /<sha256 hex of origin>/checkpoint  the latest checkpoint cosigned for a log\n")
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(rw, b.String())
}

// quietLog logs refusals of requests no log signed at most once a second,
// with how many it left out: strangers cannot fill the log.
type quietLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	last time.Time
	left int
}

func (q *quietLog) note(r *http.Request, status int, msg string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	if now.Sub(q.last) < time.Second {
		q.left++
		return
	}
	q.log.Info("refused a request", "remote", r.RemoteAddr, "status", status, "reason", msg, "suppressed", q.left)
	q.last, q.left = now, 0
}
