package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/mod/sumdb/tlog"
)

// Log is what the client needs of the journal whose checkpoints it pushes.
type Log interface {
	// ConsistencyProof proves the tree of size leaves extends the tree of
	// old leaves (RFC 6962).
	ConsistencyProof(ctx context.Context, old, size int64) (tlog.TreeProof, error)
	// AddCosignatures stores a published checkpoint's note with
	// cosignature lines added after its own.
	AddCosignatures(ctx context.Context, note []byte) error
}

// Endpoint is one witness the client pushes to.
type Endpoint struct {
	// Name is the configuration's name for it (its block label).
	Name string
	// URL is its submission prefix: add-checkpoint is URL + "/add-checkpoint".
	URL string
	// Key is its cosignature verifier key.
	Key *Key
}

// States of a witness, as the client sees it.
const (
	// StatePending: nothing pushed yet.
	StatePending = "pending"
	// StateOK: it cosigned the latest checkpoint pushed to it.
	StateOK = "ok"
	// StateFailing: the last push failed for a reason that may pass
	// (unreachable, timeout, a server error, an answer that does not
	// parse); not yet stale.
	StateFailing = "failing"
	// StateRefused: it refused the log's checkpoint: it holds a larger or
	// different tree (a rollback or a fork of the journal), it does not
	// know the log or its key, or the request was bad.
	StateRefused = "refused"
	// StateStale: a checkpoint has waited for its cosignature for longer
	// than the stale bound, or, on an idle journal whose latest checkpoint
	// is pushed again, the witness has not answered for as long (it is
	// down, or too slow).
	StateStale = "stale"
)

// Status is what the client knows of one witness.
type Status struct {
	Name, URL, Key string
	State          string
	// Detail says why, in the refused, stale and failing states.
	Detail string
	// Cosigned is the largest size it has cosigned for this log (as this
	// process saw it, or as it said in a 409 answer); -1 when unknown.
	Cosigned int64
	// CosignedAt is when it last cosigned (its timestamp); zero if never
	// since the start.
	CosignedAt time.Time
	// Latest is the latest kept checkpoint's size.
	Latest int64
	// WaitingSince is when the oldest kept checkpoint it has not cosigned
	// was kept; zero when it is caught up.
	WaitingSince time.Time
	// Pushes and Failures count add-checkpoint requests and those that
	// did not end in a cosignature.
	Pushes, Failures int64
}

// ClientOptions configure [NewClient].
type ClientOptions struct {
	Witnesses []Endpoint
	// StaleAfter is how long a checkpoint may wait for a witness's
	// cosignature before the witness is stale.
	StaleAfter time.Duration
	Log        Log
	// HTTPClient makes the requests; nil: one with Timeout.
	HTTPClient *http.Client
	// Timeout bounds one request; zero means 10 s.
	Timeout time.Duration
	// OnChange, if not nil, is called when a witness's state changes
	// between ok, refused and stale (failing is not a change anyone is
	// told of: it becomes stale, or passes), from that witness's
	// goroutine, never while the client's lock is held.
	OnChange func(old, now Status)
	Logger   hclog.Logger
	Now      func() time.Time
	// MinBackoff and MaxBackoff bound the wait between failed pushes;
	// zero means 500 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
}

// Client pushes a log's kept checkpoints to witnesses by the C2SP
// tlog-witness protocol, latest first: a witness is sent the latest
// checkpoint when it is free, with a consistency proof from the size it
// last cosigned, so a checkpoint kept while a push is in flight is covered
// by the next one instead of queued. Each witness has a goroutine of its
// own; nothing the client does waits on a session.
type Client struct {
	opts ClientOptions
	http *http.Client
	log  hclog.Logger
	now  func() time.Time

	mu sync.Mutex
	// latest is the latest kept checkpoint; notes holds the recent ones
	// by size, each with the cosignature lines gathered so far, and when
	// it was kept.
	latest  int64
	notes   map[int64]*kept
	ws      []*witnessState
	changed chan struct{} // closed and replaced at every change of status
}

type kept struct {
	// push is the checkpoint as pushed: its text and the log's own
	// signature lines, never other witnesses' cosignatures (a witness
	// bounds what it reads). note is the checkpoint with every
	// cosignature gathered so far, as stored. Both are replaced, never
	// written in place: a reader holding one under Client.mu keeps it.
	push, note []byte
	at         time.Time
}

// logLines is note without the signature lines of keys not named as its
// origin (its first line): the checkpoint as the log signed it, whatever
// cosignatures a stored row has gathered.
func logLines(note []byte) []byte {
	text, lines, ok := NoteSignatures(note)
	if !ok || len(text) == 0 {
		return note
	}
	origin, _, _ := strings.Cut(string(text), "\n")
	out := append(append([]byte{}, text...), '\n')
	for _, l := range lines {
		if l.Name == origin {
			out = append(out, l.String()...)
		}
	}
	return out
}

// keptMemory is how many recent kept checkpoints the client holds for
// cosignatures to be added to: a witness is always sent the latest, so
// only a push that outlives this many checkpoints answers for one gone.
const keptMemory = 64

type witnessState struct {
	w    Endpoint
	kick chan struct{}
	// hurry (capacity 1) cuts a pending backoff short: Flush wants the
	// last checkpoint pushed now.
	hurry chan struct{}
	st    Status // guarded by Client.mu
	// ours (guarded by Client.mu) is the largest of this process's kept
	// checkpoints the witness cosigned; st.Cosigned may be larger (a
	// witness that saw a tree this journal no longer has).
	ours int64
	// answered (guarded by Client.mu) is when, on this process's clock,
	// the witness last answered with a valid cosignature.
	answered time.Time
}

// NewClient checks the witnesses' configuration.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.Log == nil {
		return nil, errors.New("witness: a log is required")
	}
	if opts.StaleAfter <= 0 {
		return nil, errors.New("witness: stale_after must be positive")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 500 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	c := &Client{opts: opts, http: opts.HTTPClient, log: opts.Logger, now: opts.Now, notes: map[int64]*kept{}, changed: make(chan struct{})}
	if c.http == nil {
		c.http = &http.Client{Timeout: opts.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			// A witness is reached at the URL configured: a redirect
			// could lead to plain http or to another host.
			return http.ErrUseLastResponse
		}}
	}
	if c.log == nil {
		c.log = hclog.NewNullLogger()
	}
	if c.now == nil {
		c.now = time.Now
	}
	seen := map[string]bool{}
	for _, w := range opts.Witnesses {
		if w.Key == nil || w.URL == "" || w.Name == "" {
			return nil, fmt.Errorf("witness %q: a name, a URL and a key are required", w.Name)
		}
		if id := w.Key.Name + "+" + fmt.Sprintf("%08x", w.Key.Hash); seen[id] {
			return nil, fmt.Errorf("witness %q: key %s is configured twice", w.Name, w.Key.VKey)
		} else {
			seen[id] = true
		}
		c.ws = append(c.ws, &witnessState{w: w, kick: make(chan struct{}, 1), hurry: make(chan struct{}, 1), st: Status{
			Name: w.Name, URL: w.URL, Key: w.Key.VKey, State: StatePending, Cosigned: -1,
		}})
	}
	return c, nil
}

// Publish hands the client a newly kept checkpoint. It never blocks: the
// witnesses' goroutines pick it up.
func (c *Client) Publish(size int64, note []byte) {
	c.mu.Lock()
	if size <= c.latest {
		c.mu.Unlock()
		return
	}
	now := c.now()
	c.latest = size
	c.notes[size] = &kept{push: logLines(note), note: note, at: now}
	if len(c.notes) > keptMemory {
		sizes := slices.Sorted(mapKeys(c.notes))
		for _, s := range sizes[:len(sizes)-keptMemory] {
			delete(c.notes, s)
		}
	}
	for _, ws := range c.ws {
		ws.st.Latest = size
		if ws.st.WaitingSince.IsZero() && ws.ours < size {
			ws.st.WaitingSince = now
		}
		select {
		case ws.kick <- struct{}{}:
		default:
		}
	}
	c.mu.Unlock()
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Status reports every witness, in configuration order.
func (c *Client) Status() []Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Status, len(c.ws))
	for i, ws := range c.ws {
		out[i] = ws.st
	}
	return out
}

// Flush waits until every witness has cosigned the latest kept checkpoint
// and the cosignature is kept in the journal, or the witness refused it,
// or ctx ends; it then says which have not cosigned it.
func (c *Client) Flush(ctx context.Context) error {
	for _, ws := range c.ws {
		select {
		case ws.hurry <- struct{}{}:
		default:
		}
	}
	for {
		c.mu.Lock()
		var behind []string
		waiting := false
		for _, ws := range c.ws {
			if ws.ours < c.latest {
				behind = append(behind, fmt.Sprintf("%s (%s)", ws.w.Name, ws.st.State))
				// A refusal stands: waiting will not change it.
				waiting = waiting || ws.st.State != StateRefused
			}
		}
		ch := c.changed
		latest := c.latest
		c.mu.Unlock()
		if len(behind) == 0 {
			return nil
		}
		err := fmt.Errorf("checkpoint %d is not cosigned by %s", latest, strings.Join(behind, ", "))
		if !waiting {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return err
		}
	}
}

// Run pushes until ctx ends.
func (c *Client) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, ws := range c.ws {
		wg.Go(func() { c.run(ctx, ws) })
	}
	wg.Wait()
}

// run is one witness's loop: push the latest checkpoint whenever it is
// ahead of what the witness cosigned, back off after a failure, and check
// for staleness meanwhile.
func (c *Client) run(ctx context.Context, ws *witnessState) {
	backoff := time.Duration(0)
	check := time.NewTicker(min(max(c.opts.StaleAfter/4, 10*time.Millisecond), time.Second))
	defer check.Stop()
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-ws.kick:
			if retry != nil {
				continue // a failed push is retried when its backoff ends
			}
		case <-retry:
			retry = nil
		case <-ws.hurry:
			retry = nil
		case <-check.C:
			c.checkStale(ws)
			if retry != nil || !c.heartbeatDue(ws) {
				continue
			}
		}
		c.mu.Lock()
		size, k := c.latest, c.notes[c.latest]
		var push []byte
		if k != nil {
			push = k.push
		}
		ours, theirs, state := ws.ours, ws.st.Cosigned, ws.st.State
		c.mu.Unlock()
		heartbeat := size == ours && c.heartbeatDue(ws)
		if k == nil || (size <= ours && !heartbeat) || (state == StateRefused && size <= theirs) {
			// Cosigned already; or refused by a witness that holds a
			// larger tree, which no checkpoint this size can pass.
			continue
		}
		err := c.push(ctx, ws, size, theirs, push)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = 0
			c.mu.Lock()
			ahead := c.latest > ws.ours
			c.mu.Unlock()
			if ahead {
				select {
				case ws.kick <- struct{}{}:
				default:
				}
			}
			continue
		}
		backoff = min(max(2*backoff, c.opts.MinBackoff), c.opts.MaxBackoff)
		// Jitter: witnesses shared by many logs are not hit in step.
		wait := backoff/2 + rand.N(backoff/2+1)
		retry = time.After(wait)
	}
}

// refusal is an answer that will not change by itself.
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

// push sends the checkpoint of size to one witness, with a proof from old,
// the size it last cosigned (learned from a 409 answer when not known), and
// stores its cosignature.
func (c *Client) push(ctx context.Context, ws *witnessState, size, old int64, note []byte) error {
	if old < 0 || old > size {
		old = 0 // unknown: the witness's 409 answer will say
	}
	var err error
	for range 3 {
		var known int64
		known, err = c.add(ctx, ws, old, size, note)
		if err == nil || known < 0 {
			break
		}
		// 409: the witness last cosigned another size. Prove from it,
		// if the journal can.
		c.setCosigned(ws, known)
		if known > size {
			err = &refusal{fmt.Sprintf("the witness has cosigned a tree of %d leaves of this log, and the journal has %d: the journal was rolled back (restored from a copy), or the key signed another journal", known, size)}
			break
		}
		old = known
	}
	c.record(ws, size, err)
	return err
}

func (c *Client) setCosigned(ws *witnessState, n int64) {
	c.mu.Lock()
	ws.st.Cosigned = n
	c.mu.Unlock()
}

// add makes one add-checkpoint request. On a 409 answer it returns the
// size the witness holds, and an error; known is -1 otherwise.
func (c *Client) add(ctx context.Context, ws *witnessState, old, size int64, note []byte) (known int64, err error) {
	known = -1
	var proof tlog.TreeProof
	if old > 0 && old < size {
		if proof, err = c.opts.Log.ConsistencyProof(ctx, old, size); err != nil {
			return known, fmt.Errorf("prove %d extends %d: %w", size, old, err)
		}
	}
	body := (&AddCheckpoint{Old: old, Proof: proof, Checkpoint: note}).Marshal()
	rctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, strings.TrimSuffix(ws.w.URL, "/")+"/add-checkpoint", bytes.NewReader(body))
	if err != nil {
		return known, err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	c.mu.Lock()
	ws.st.Pushes++
	c.mu.Unlock()
	resp, err := c.http.Do(req)
	if err != nil {
		return known, fmt.Errorf("add-checkpoint: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return known, fmt.Errorf("add-checkpoint: read the answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return known, c.cosigned(ctx, ws, size, note, answer)
	case http.StatusConflict:
		n, perr := ParseConflict(answer)
		if perr != nil {
			return known, fmt.Errorf("add-checkpoint: 409 with %v", perr)
		}
		if n == old {
			return known, fmt.Errorf("add-checkpoint: 409 naming the size sent (%d)", n)
		}
		return n, fmt.Errorf("add-checkpoint: the witness last cosigned size %d, not %d", n, old)
	case http.StatusUnprocessableEntity:
		return known, &refusal{fmt.Sprintf("the witness refused checkpoint %d as inconsistent with the tree of %d leaves it cosigned (%s): the journal was rewritten, or rolled back and written again (a fork)", size, old, brief(answer))}
	case http.StatusForbidden:
		return known, &refusal{fmt.Sprintf("the witness does not accept the journal's signature (%s): is the log's key (journal.pub) registered with it?", brief(answer))}
	case http.StatusNotFound:
		return known, &refusal{fmt.Sprintf("the witness does not know this log (%s): register its origin and key (journal.pub) with it", brief(answer))}
	case http.StatusBadRequest:
		return known, &refusal{fmt.Sprintf("the witness calls the request malformed (%s)", brief(answer))}
	case http.StatusRequestEntityTooLarge:
		return known, &refusal{fmt.Sprintf("the witness refuses a request of %d bytes as too large (%s)", len(body), brief(answer))}
	default:
		return known, fmt.Errorf("add-checkpoint: %s (%s)", resp.Status, brief(answer))
	}
}

// brief is a short, printable excerpt of an answer.
func brief(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
}

// cosigned checks a 200 answer and stores the witness's cosignature with
// the checkpoint.
func (c *Client) cosigned(ctx context.Context, ws *witnessState, size int64, note, answer []byte) error {
	lines, err := ParseSignatureLines(answer)
	if err != nil {
		return fmt.Errorf("add-checkpoint: %w", err)
	}
	text, _, ok := NoteSignatures(note)
	if !ok {
		return errors.New("the checkpoint pushed is not a signed note")
	}
	var got *Cosignature
	for _, l := range lines {
		if !ws.w.Key.Owns(l) {
			continue // another key of the witness's: ignored, as the protocol says
		}
		cs, err := ws.w.Key.Verify(text, l)
		if err != nil {
			return fmt.Errorf("add-checkpoint: the answer's line by the witness's key: %w", err)
		}
		got = &cs
		break
	}
	if got == nil {
		return fmt.Errorf("add-checkpoint: the answer holds no cosignature by the configured key %s", ws.w.Key.VKey)
	}
	c.mu.Lock()
	k := c.notes[size]
	var merged []byte
	if k != nil {
		if _, have, _ := NoteSignatures(k.note); !slices.ContainsFunc(have, ws.w.Key.Owns) {
			k.note = append(slices.Clone(k.note), got.Line.String()...)
		}
		merged = k.note
	}
	c.mu.Unlock()
	// The cosignature is kept in the journal before the witness counts as
	// having cosigned: what Flush waits for is then in the journal too.
	if merged != nil { // else a checkpoint too old to be held: its cosignature is not kept
		if err := c.opts.Log.AddCosignatures(ctx, merged); err != nil {
			// Cosigned all the same: the witness moved on. The journal's
			// own failure raises its own alarm.
			c.log.Warn("keep a witness's cosignature", "witness", ws.w.Name, "size", size, "error", err)
		}
	}
	c.mu.Lock()
	ws.st.Cosigned, ws.ours = size, max(ws.ours, size)
	ws.st.CosignedAt = got.Time
	ws.answered = c.now()
	c.mu.Unlock()
	return nil
}

// record moves a witness's state after a push.
func (c *Client) record(ws *witnessState, size int64, err error) {
	c.mu.Lock()
	before := ws.st
	var ref *refusal
	switch {
	case err == nil:
		ws.st.State, ws.st.Detail = StateOK, ""
		ws.st.WaitingSince = time.Time{}
		if c.latest > ws.ours {
			// Kept while the push was in flight: waiting since then.
			ws.st.WaitingSince = c.keptAfter(ws.ours)
		}
	case errors.As(err, &ref):
		ws.st.Failures++
		ws.st.State, ws.st.Detail = StateRefused, ref.msg
	default:
		ws.st.Failures++
		ws.st.Detail = err.Error()
		if ws.st.State != StateStale && ws.st.State != StateRefused {
			ws.st.State = StateFailing
		}
		if ws.st.State == StateRefused {
			// A refusal stands until the witness cosigns again; what
			// failed since is told in the detail.
			ws.st.Detail = before.Detail
		}
	}
	now := ws.st
	c.notifyLocked()
	c.mu.Unlock()
	c.log.Debug("pushed a checkpoint", "witness", ws.w.Name, "size", size, "state", now.State, "error", err)
	c.changedState(before, now)
}

// keptAfter is when the first checkpoint above size was kept.
func (c *Client) keptAfter(size int64) time.Time {
	var at time.Time
	best := int64(-1)
	for s, k := range c.notes {
		if s > size && (best < 0 || s < best) {
			best, at = s, k.at
		}
	}
	if at.IsZero() {
		at = c.now()
	}
	return at
}

// heartbeatDue reports whether a witness that has cosigned the latest
// kept checkpoint has not answered for half the stale bound: an idle
// journal keeps no new checkpoint, so the latest is pushed again, and a
// witness that went away is noticed all the same.
func (c *Client) heartbeatDue(ws *witnessState) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ws.st.State != StateRefused && c.latest > 0 && ws.ours == c.latest &&
		!ws.answered.IsZero() && c.now().Sub(ws.answered) >= c.opts.StaleAfter/2
}

// checkStale makes a witness stale when a checkpoint has waited for it
// past the bound, or when it has not answered for as long (an idle
// journal's heartbeat pushes fail).
func (c *Client) checkStale(ws *witnessState) {
	c.mu.Lock()
	before := ws.st
	since := ws.st.WaitingSince
	what := fmt.Sprintf("checkpoint %d has waited", ws.st.Latest)
	if since.IsZero() && !ws.answered.IsZero() {
		since, what = ws.answered, "it has not answered the latest checkpoint pushed again for"
	}
	if since.IsZero() || ws.st.State == StateStale || ws.st.State == StateRefused || c.now().Sub(since) < c.opts.StaleAfter {
		c.mu.Unlock()
		return
	}
	ws.st.State = StateStale
	why := ws.st.Detail
	if why == "" {
		why = "no answer yet"
	}
	ws.st.Detail = fmt.Sprintf("%s %s for its cosignature (stale_after %s); last error: %s",
		what, c.now().Sub(since).Round(time.Second), c.opts.StaleAfter, why)
	now := ws.st
	c.notifyLocked()
	c.mu.Unlock()
	c.changedState(before, now)
}

func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// changedState tells OnChange of a change between the states anyone is
// told of.
func (c *Client) changedState(before, now Status) {
	told := func(s string) string {
		if s == StateFailing || s == StatePending {
			return ""
		}
		return s
	}
	b, n := told(before.State), told(now.State)
	if n == "" || b == n || (b == "" && n == StateOK) {
		return
	}
	if c.opts.OnChange != nil {
		c.opts.OnChange(before, now)
	}
}
