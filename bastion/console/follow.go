package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/playback"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage"
)

// Following a session's output (GET /ui/sessions/{id}/live, and its
// stream GET /ui/sessions/{id}/live/stream): what the journal recorded,
// read and verified by playback's follow mode as "bastion play --follow"
// reads it, sent as Server-Sent Events, from the start of the session,
// then each frame as it is committed, then the end.

// Bounds of following.
const (
	// MaxFollowsPerSession bounds the streams one person (one identity,
	// however many console sessions they hold) may have open at once.
	MaxFollowsPerSession = 4
	// MaxFollows bounds the streams open at once, for everyone.
	MaxFollows = 64
	// FollowPoll is how often a stream looks for a newer signed
	// checkpoint, and so for new frames.
	FollowPoll = 500 * time.Millisecond
	// followCheck is how often a stream checks that its console session
	// is still held and its person still may follow.
	followCheck = 2 * time.Second
	// followKeepAlive is how often an idle stream sends a comment, so that
	// nothing between the browser and the console takes it for dead.
	followKeepAlive = 15 * time.Second
	// followWriteTimeout bounds each write to the browser: the API's
	// server bounds a whole response otherwise.
	followWriteTimeout = 30 * time.Second
)

// follows counts the streams open, and stops them all at Close.
type follows struct {
	ctx  context.Context // done at Close
	stop context.CancelFunc

	mu    sync.Mutex
	total int            // guarded by mu
	per   map[string]int // by identity; guarded by mu
}

func newFollows() *follows {
	ctx, stop := context.WithCancel(context.Background())
	return &follows{ctx: ctx, stop: stop, per: map[string]int{}}
}

// acquire takes a stream for s, or says why there is none.
func (f *follows) acquire(s *session) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.per[s.who] >= MaxFollowsPerSession:
		return fmt.Sprintf("you are following %d sessions already, the most one person may: close one first", MaxFollowsPerSession)
	case f.total >= MaxFollows:
		return fmt.Sprintf("%d streams are open, the most the console serves at once: try again later", MaxFollows)
	}
	f.per[s.who]++
	f.total++
	return ""
}

func (f *follows) release(s *session) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.total--
	if f.per[s.who]--; f.per[s.who] <= 0 {
		delete(f.per, s.who)
	}
}

// Close ends every stream of the console; the server calls it as it
// shuts down. Pages are served as before.
func (c *Console) Close() { c.follow.stop() }

// held reports whether s is still a live console session whose person
// may follow sessions: not expired, not signed out, their identity not
// revoked or blocked since (a refused one's console session ends here),
// and still one of the followers the policy names.
func (c *Console) held(s *session) bool {
	now := c.o.Now()
	if c.refused(s, now) != "" {
		c.end(s)
		return false
	}
	c.mu.Lock()
	ok := false
	for _, o := range c.sessions {
		if o == s {
			ok = !c.expiredLocked(s, now)
			break
		}
	}
	if ok {
		// Watching a session is using the console: an open stream keeps
		// its console session from going idle (never past its MaxAge).
		s.lastSeen = now
	}
	c.mu.Unlock()
	if !ok {
		return false
	}
	v := &viewer{session: s, roles: Roles(c.o.Policy(), s.id)}
	return v.has(followers...)
}

type followData struct {
	ID, Stream                                  string
	Live                                        bool
	Identity, Target, Login, Client, StartedISO string
	KillURL                                     string
}

// sessionID is the path's session ID, or "" when it is not one.
func sessionID(r *http.Request) string {
	id := r.PathValue("id")
	if !isSessionID(id) {
		return ""
	}
	return id
}

// isSessionID says whether s is a journal session's ID as the journal
// writes it: a UUID in its canonical form.
func isSessionID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}

// followPage is the page that shows a session's output as it is
// recorded; its script reads the stream.
func (c *Console) followPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := sessionID(r)
	if id == "" {
		c.render(w, http.StatusNotFound, "message", "Not found", v.frame(pageData{Problem: "That is not a session ID."}, ""))
		return
	}
	d := followData{ID: id, Stream: Path + "/sessions/" + id + "/live/stream"}
	for _, l := range c.o.Live() {
		if l.ID == id {
			d.Live, d.Identity, d.Target, d.Login, d.Client = true, l.Identity, l.Target, l.Login, l.Client
			d.StartedISO = l.Started.UTC().Format(time.RFC3339)
		}
	}
	if d.Live && v.has(RoleOperator) {
		d.KillURL = Path + "/sessions/" + id + "/kill"
	}
	c.render(w, http.StatusOK, "follow", "Following a session", v.frame(pageData{Data: d, Scripts: []string{Path + "/static/follow.js"}}, Path+"/"))
}

// followStream sends a session's recorded output as Server-Sent Events:
// "output" events whose data is {"text": …} (the output as text, its
// control characters but line breaks and tabs shown as visible escapes),
// then one "end" event, {"reason", "detail", "by"}, once the session's end
// leaf is in a signed checkpoint; or a "stop" event, {"message"}, when the
// stream ends before (the console session ended, the record does not
// verify, the console is closing). The read is journaled (journal.accessed,
// action play, via console) before anything of the session is sent.
func (c *Console) followStream(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := sessionID(r)
	if id == "" {
		http.Error(w, "not a session ID", http.StatusNotFound)
		return
	}
	if why := c.follow.acquire(v.session); why != "" {
		http.Error(w, why, http.StatusTooManyRequests)
		return
	}
	defer c.follow.release(v.session)

	sid := uuid.MustParse(id)
	store, verifier := c.o.Store(), c.o.Verifier
	attrs := map[string]string{"session": id}
	err := sessionExists(r.Context(), store, sid)
	if errors.Is(err, storage.ErrNotFound) && c.o.MemberLog != nil {
		// In a cluster, a live session another member records: its log,
		// verified with that member's key.
		if ml, ok := c.o.MemberLog(r.Context(), id); ok {
			store, verifier, attrs["logs"] = ml.Store, ml.Verifier, ml.Name
			err = sessionExists(r.Context(), store, sid)
		}
	}
	if errors.Is(err, storage.ErrNotFound) {
		http.Error(w, "the journal holds no session "+id, http.StatusNotFound)
		return
	} else if err != nil {
		c.o.Logger.Error("console follow: read the journal", "session", id, "error", err)
		http.Error(w, "the journal cannot be read now", http.StatusServiceUnavailable)
		return
	}
	// As "bastion play --follow": the read is journaled, naming the
	// person, before the first byte of it is sent; if it cannot be,
	// nothing is.
	if _, err := c.o.RecordRead(r.Context(), v.id, clientIP(r), certauth.ReadRequest{
		Action: "play", Attrs: attrs,
	}); err != nil {
		c.o.Logger.Error("console follow: journal the read", "session", id, "identity", v.who, "error", err)
		http.Error(w, "the read could not be journaled, so nothing is shown: "+err.Error(), http.StatusServiceUnavailable)
		return
	}

	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	stopOnClose := context.AfterFunc(c.follow.ctx, func() { cancel(errors.New("the console is closing")) })
	defer stopOnClose()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("X-Accel-Buffering", "no")
	s := &eventStream{w: w, rc: http.NewResponseController(w)}
	// The request is read: the API server's read timeout must not end
	// the stream (each write has its own deadline).
	s.rc.SetReadDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	s.comment("following " + id)

	var watch sync.WaitGroup
	watch.Go(func() {
		check, alive := time.NewTicker(followCheck), time.NewTicker(followKeepAlive)
		defer check.Stop()
		defer alive.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-check.C:
				if !c.held(v.session) {
					cancel(errors.New("your console session ended, or you may no longer follow sessions"))
					return
				}
			case <-alive.C:
				if err := s.comment("still following"); err != nil {
					cancel(err)
					return
				}
			}
		}
	})
	out := &outputWriter{s: s}
	res, err := playback.Play(ctx, store, recorder.SessionID(sid), out, playback.Options{
		Verifier: verifier, Speed: 0, Follow: true, Poll: FollowPoll,
	})
	cancel(nil)
	watch.Wait()
	out.flush()
	switch {
	case err == nil && res.Ended:
		a := res.End
		s.event("end", map[string]string{
			"reason": termtext.Line(a["reason"]), "detail": termtext.Line(a["detail"]), "by": termtext.Line(a["killed-by"]),
		})
	case err == nil:
		s.event("stop", map[string]string{"message": "the stream stopped before the session ended"})
	case r.Context().Err() != nil:
		// The browser went away.
	default:
		msg := err.Error()
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			msg = cause.Error()
		} else if !errors.Is(err, recorder.ErrSessionBroken) {
			c.o.Logger.Warn("console follow", "session", id, "identity", v.who, "error", err)
			msg = "the session's record could not be read: " + msg
		}
		s.event("stop", map[string]string{"message": termtext.Line(msg)})
	}
}

// sessionExists looks the session up in the journal's index; what is
// sent of it is verified as it is read.
func sessionExists(ctx context.Context, st storage.Store, id uuid.UUID) error {
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return err
	}
	defer snap.Close()
	_, err = snap.SessionByID(ctx, id[:])
	return err
}

// eventStream writes Server-Sent Events; its writes are serialized.
type eventStream struct {
	mu  sync.Mutex
	w   io.Writer
	rc  *http.ResponseController
	err error // the first failed write: the browser is gone
}

func (s *eventStream) write(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.rc.SetWriteDeadline(time.Now().Add(followWriteTimeout))
	if _, err := s.w.Write(b); err != nil {
		s.err = err
		return err
	}
	if err := s.rc.Flush(); err != nil {
		s.err = err
	}
	return s.err
}

// event sends one event whose data is v as JSON (one line: JSON escapes
// every line break in it).
func (s *eventStream) event(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.write([]byte("event: " + name + "\ndata: " + string(data) + "\n\n"))
}

func (s *eventStream) comment(text string) error {
	return s.write([]byte(": " + text + "\n\n"))
}

// outputWriter turns the output playback writes into "output" events of
// text: line breaks ("\r\n" as "\n") and tabs are kept, every other
// control character, escape sequences included, is shown as a visible
// escape (termtext.Lines). A character or a "\r\n" cut between two writes
// is held until the next.
type outputWriter struct {
	s       *eventStream
	pending []byte
}

func (o *outputWriter) Write(p []byte) (int, error) {
	o.pending = append(o.pending, p...)
	b := o.pending
	keep := 0
	switch {
	case len(b) > 0 && b[len(b)-1] == '\r':
		keep = 1
	default:
		// An incomplete UTF-8 sequence at the end.
		for i := 1; i <= 3 && i <= len(b); i++ {
			if utf8.RuneStart(b[len(b)-i]) {
				if !utf8.FullRune(b[len(b)-i:]) {
					keep = i
				}
				break
			}
		}
	}
	if err := o.send(b[:len(b)-keep]); err != nil {
		return 0, err
	}
	o.pending = append(o.pending[:0], b[len(b)-keep:]...)
	return len(p), nil
}

// flush sends what is held.
func (o *outputWriter) flush() {
	o.send(o.pending)
	o.pending = o.pending[:0]
}

func (o *outputWriter) send(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	text := termtext.Lines(strings.ReplaceAll(string(b), "\r\n", "\n"))
	return o.s.event("output", map[string]string{"text": text})
}
