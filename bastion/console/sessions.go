package console

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/playback"
	"github.com/bastionhq/bastion/recorder/sessions"
	"github.com/bastionhq/bastion/storage"
)

// The recorded sessions' pages: the search (GET /ui/sessions), a
// session's details and its replay (GET /ui/sessions/{id}), and its
// downloads (…/cast, the asciicast; …/bundle, the bundle verifiable
// offline). They are for the operators and auditors, the readers of the
// journal. Each read is journaled (journal.accessed, via "console",
// naming the person) before anything of it is shown, as its CLI twin
// journals it; a read that cannot be journaled shows nothing. What is
// shown is verified with the journal's key first, as the CLI verifies it.

// readers are the console roles that may read the journal.
var readers = []string{RoleOperator, RoleAuditor}

// Bounds of a search page: the work one request may make the server do.
const (
	// MaxListed is how many sessions a search page lists at most, the
	// latest first.
	MaxListed = 200
	// MaxSearched is how many sessions a text search reads at most, the
	// latest first.
	MaxSearched = 1000
	// MaxHitsShown is how many matched lines a search page shows of one
	// session; it says how many more there were.
	MaxHitsShown = 20
)

// Bounds of what the reads of recorded sessions may cost the server: a
// searcher or a downloader may be a stranger to the machine's CPU and
// memory. [Bounds] sets others.
const (
	// DefaultSearchTime is how long one text search may run; it then
	// stops and shows what it found.
	DefaultSearchTime = 20 * time.Second
	// DefaultSearchBytes is how many bytes of lines (output and
	// commands) one text search may match; it then stops and shows what
	// it found.
	DefaultSearchBytes = 256 << 20
	// DefaultSearches is how many text searches may run at once in all;
	// one person runs one at a time.
	DefaultSearches = 4
	// DefaultBundleBytes bounds a session's bundle, built in memory
	// before it is sent: a larger one is refused (413), and "bastion
	// export --format bundle" on the bastion's host writes it.
	DefaultBundleBytes = MaxReportBytes
	// DefaultBundles is how many bundles may be built at once in all.
	DefaultBundles = 2
	// DefaultHeldReports bounds the examiner's reports held in memory for
	// their download, all console sessions together: a new one drops the
	// oldest held until it fits.
	DefaultHeldReports = 256 << 20
)

// Bounds are what the console's costly reads may cost; a zero field is
// its default.
type Bounds struct {
	SearchTime  time.Duration // DefaultSearchTime
	SearchBytes int64         // DefaultSearchBytes
	Searches    int           // DefaultSearches
	BundleBytes int64         // DefaultBundleBytes
	Bundles     int           // DefaultBundles
	HeldReports int64         // DefaultHeldReports
	// Holding, when set, is called by a text search or a bundle's build
	// once it holds its place ("search" or "bundle", and who asked), before
	// it reads anything: a test holds one open with it.
	Holding func(what, who string)
}

func (b Bounds) withDefaults() Bounds {
	b.SearchTime = positiveOr(b.SearchTime, DefaultSearchTime)
	b.SearchBytes = positiveOr(b.SearchBytes, DefaultSearchBytes)
	b.Searches = positiveOr(b.Searches, DefaultSearches)
	b.BundleBytes = positiveOr(b.BundleBytes, DefaultBundleBytes)
	b.Bundles = positiveOr(b.Bundles, DefaultBundles)
	b.HeldReports = positiveOr(b.HeldReports, DefaultHeldReports)
	return b
}

// positiveOr is v, or def when v is zero or negative: a bound's default.
func positiveOr[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// costs are the bounds in force and what the costly reads hold now. Its
// zero value holds the defaults.
type costs struct {
	mu        sync.Mutex
	b         *Bounds
	searching map[string]bool // the identities with a text search running
	searches  int
	bundles   int
}

// SetBounds sets what the console's costly reads may cost from now on
// (the reads running keep theirs).
func (c *Console) SetBounds(b Bounds) {
	b = b.withDefaults()
	k := &c.costs
	k.mu.Lock()
	k.b = &b
	k.mu.Unlock()
}

// bounds returns the bounds in force.
func (c *Console) bounds() Bounds {
	k := &c.costs
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.b == nil {
		return Bounds{}.withDefaults()
	}
	return *k.b
}

// startSearch takes a text search's place for who: it returns why not
// (one at a time per person, Bounds.Searches in all), or "" and the
// function that gives the place back.
func (c *Console) startSearch(who string, b Bounds) (string, func()) {
	k := &c.costs
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case k.searching[who]:
		return "You have a search running already: wait for it to end (a search stops after " + b.SearchTime.String() + " at most), then search again.", nil
	case k.searches >= b.Searches:
		return "Too many text searches are running (the console runs at most " + strconv.Itoa(b.Searches) + " at once): try again in a moment.", nil
	}
	if k.searching == nil {
		k.searching = map[string]bool{}
	}
	k.searching[who] = true
	k.searches++
	return "", func() {
		k.mu.Lock()
		delete(k.searching, who)
		k.searches--
		k.mu.Unlock()
	}
}

// startBundle takes a bundle's build's place: it returns false when
// Bounds.Bundles are being built, or true and the function that gives
// the place back.
func (c *Console) startBundle(b Bounds) (bool, func()) {
	k := &c.costs
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.bundles >= b.Bundles {
		return false, nil
	}
	k.bundles++
	return true, func() {
		k.mu.Lock()
		k.bundles--
		k.mu.Unlock()
	}
}

// sessionRoutes registers the sessions' pages.
func (c *Console) sessionRoutes() {
	c.handle("GET "+Path+"/sessions", readers, c.searchSessions)
	c.handle("GET "+Path+"/sessions/{id}", readers, c.showSession)
	c.handle("GET "+Path+"/sessions/{id}/cast", readers, c.sessionCast)
	c.handle("GET "+Path+"/sessions/{id}/bundle", readers, c.sessionBundle)
}

// searchQuery is the search form, as the query string gives it.
type searchQuery struct {
	Identity, Target, Login, State, Since, Until, Text, In string
	Regex                                                  bool
}

type sessionsData struct {
	Q        searchQuery
	States   []string
	Ins      []string // where a text search looks
	Shown    bool     // the search ran: the results follow
	Searched bool     // with a text: rows have matched lines
	Rows     []sessionRow
	// Matched is how many sessions matched (a text search stops at
	// MaxListed); Capped says the page lists MaxListed of them and more
	// matched; Stopped that a text search read MaxSearched sessions and
	// stopped.
	Matched         int
	Capped, Stopped bool
	Max, MaxRead    int
	Skipped         []string // sessions that do not verify, not searched
	IndexProblems   []string
}

type sessionRow struct {
	ID, Identity, Target, Login, Started, State, End, Bytes, Command string
	Hits                                                             []hitRow
	MoreHits                                                         int
}

type hitRow struct{ Offset, In, Text string }

// searchSessions lists and searches the recorded sessions.
func (c *Console) searchSessions(w http.ResponseWriter, r *http.Request, v *viewer) {
	q := r.URL.Query()
	d := sessionsData{
		Q: searchQuery{
			Identity: q.Get("identity"), Target: q.Get("target"), Login: q.Get("login"), State: q.Get("state"),
			Since: q.Get("since"), Until: q.Get("until"), Text: q.Get("text"), In: q.Get("in"), Regex: q.Get("regex") != "",
		},
		States: []string{sessions.StateLive, sessions.StateEnded, sessions.StateAbandoned, sessions.StateUnterminated},
		Ins:    []string{sessions.InAll, sessions.InCommands, sessions.InOutput},
		Max:    MaxListed, MaxRead: MaxSearched,
	}
	page := func(code int, problem string) {
		c.render(w, code, "sessions", "Sessions", v.frame(pageData{Problem: problem, Data: d}, Path+"/sessions"))
	}
	f := sessions.Filter{Identity: d.Q.Identity, Target: d.Q.Target, Login: d.Q.Login, State: d.Q.State}
	var err error
	if err = f.Check(); err != nil {
		page(http.StatusBadRequest, err.Error())
		return
	}
	for _, t := range []struct {
		name, in string
		out      *time.Time
	}{{"since", d.Q.Since, &f.Since}, {"until", d.Q.Until, &f.Until}} {
		if t.in == "" {
			continue
		}
		if *t.out, err = sessions.ParseTime(t.in); err != nil {
			page(http.StatusBadRequest, t.name+": "+err.Error())
			return
		}
	}
	switch d.Q.In {
	case "":
		d.Q.In = sessions.InAll
	case sessions.InAll, sessions.InCommands, sessions.InOutput:
	default:
		page(http.StatusBadRequest, "search in: want all, commands or output")
		return
	}
	var find sessions.Matcher
	action := "list"
	bounds := c.bounds()
	if d.Q.Text != "" {
		if d.Q.Regex {
			if err = sessions.CheckRegexpCost(d.Q.Text); err != nil {
				page(http.StatusBadRequest, "the regular expression: "+err.Error())
				return
			}
		}
		if find, err = sessions.NewMatcher(d.Q.Text, d.Q.Regex); err != nil {
			page(http.StatusBadRequest, "the regular expression: "+err.Error())
			return
		}
		action = "search"
		why, done := c.startSearch(v.who, bounds)
		if why != "" {
			w.Header().Set("Retry-After", "5")
			page(http.StatusTooManyRequests, why)
			return
		}
		defer done()
		if bounds.Holding != nil {
			bounds.Holding("search", v.who)
		}
	}

	snap, err := c.o.Store().Snapshot(r.Context())
	if err != nil {
		c.o.Logger.Error("console: read the journal", "error", err)
		page(http.StatusInternalServerError, "The journal cannot be read: "+err.Error())
		return
	}
	defer snap.Close()
	log, err := recorder.ReadLog(r.Context(), snap, recorder.ReadLogOptions{Verifier: c.o.Verifier})
	if err != nil {
		c.o.Logger.Error("console: the journal's log does not verify", "error", err)
		page(http.StatusInternalServerError, "The journal's log does not verify, so nothing of it is shown: "+err.Error()+
			` ("bastion verify" names every finding).`)
		return
	}
	// The pattern is not journaled: it may be a secret.
	if !c.recordRead(w, r, v, action, f.AccessAttrs()) {
		return
	}
	for _, p := range log.IndexProblems {
		d.IndexProblems = append(d.IndexProblems, p.Where+": "+p.What)
	}
	list := sessions.List(log, &f, false)
	slices.Reverse(list) // the latest first
	d.Shown, d.Searched = true, find != nil
	if find == nil {
		d.Matched = len(list)
		d.Capped = len(list) > MaxListed
		for _, s := range list[:min(len(list), MaxListed)] {
			d.Rows = append(d.Rows, newSessionRow(s))
		}
		page(http.StatusOK, "")
		return
	}
	// The search's budget: its time, from now, and the bytes it matches.
	ctx, cancel := context.WithTimeoutCause(r.Context(), bounds.SearchTime, errSearchTime)
	defer cancel()
	budget := sessions.Budget{MaxBytes: bounds.SearchBytes}
	notice := ""
	for i, s := range list {
		if i == MaxSearched {
			d.Stopped = true
			break
		}
		if context.Cause(ctx) == errSearchTime {
			notice = stoppedEarly(errSearchTime, bounds)
			break
		}
		row := newSessionRow(s)
		err := budget.Search(ctx, snap, c.o.Verifier, s, find, d.Q.In, func(h sessions.Hit) {
			if len(row.Hits) == MaxHitsShown {
				row.MoreHits++
				return
			}
			in := h.In
			if h.Reconstructed {
				in += " (reconstructed)"
			}
			row.Hits = append(row.Hits, hitRow{Offset: h.Offset, In: in, Text: h.Text})
		})
		stop := errors.Is(err, sessions.ErrScanBudget) || errors.Is(err, errSearchTime)
		if stop {
			// What was found before it stopped verified: it is shown.
			notice = stoppedEarly(err, bounds)
		} else if errors.Is(err, recorder.ErrSessionBroken) {
			d.Skipped = append(d.Skipped, s.ID+": "+err.Error())
			continue
		}
		if err != nil && !stop {
			c.o.Logger.Error("console: search", "session", s.ID, "error", err)
			d.Rows = nil
			page(http.StatusInternalServerError, "The search failed: "+err.Error())
			return
		}
		if len(row.Hits) > 0 {
			if len(d.Rows) == MaxListed {
				d.Capped = true
				break
			}
			d.Matched++
			d.Rows = append(d.Rows, row)
		}
		if stop {
			break
		}
	}
	c.render(w, http.StatusOK, "sessions", "Sessions", v.frame(pageData{Notice: notice, Data: d}, Path+"/sessions"))
}

// errSearchTime is the cause of a text search's end when its time is up.
var errSearchTime = errors.New("the search ran for as long as one may")

// stoppedEarly says why a text search stopped before it read all it
// would have, what the page shows, and what to do.
func stoppedEarly(why error, b Bounds) string {
	reason := "it ran for " + b.SearchTime.String() + ", as long as a search may here"
	if errors.Is(why, sessions.ErrScanBudget) {
		reason = "it read " + recorder.ByteCount(b.SearchBytes) + " of output and commands, as much as a search may here"
	}
	return "The search stopped early: " + reason + ". The sessions it matched so far are shown; narrow the filters (identity, target, period) " +
		`to search the others, or search on the bastion's host with "bastion sessions search".`
}

func newSessionRow(s sessions.Session) sessionRow {
	row := sessionRow{
		ID: s.ID, Identity: s.Identity, Target: s.Target, Login: s.Login, State: s.State,
		Started: s.Started.Format(time.RFC3339), Bytes: byteCount(s.InBytes) + " in, " + byteCount(s.OutBytes) + " out",
		Command: sessions.ShortCommand(s.Summary, sessions.CommandWidth),
	}
	if s.Ended != nil {
		row.End = s.Ended.Format(time.RFC3339)
		if s.EndReason != "" {
			row.End += " (" + s.EndReason + ")"
		}
	}
	return row
}

// byteCount prints a count the records may not hold as "-".
func byteCount(n *int64) string {
	if n == nil {
		return "-"
	}
	return recorder.ByteCount(*n)
}

// recordRead journals a read by v before anything of it is shown: a
// journal.accessed leaf with action and attrs, via "console". When that
// fails it answers a page that says so, with nothing of the data, and
// returns false.
func (c *Console) recordRead(w http.ResponseWriter, r *http.Request, v *viewer, action string, attrs map[string]string) bool {
	_, err := c.o.RecordRead(r.Context(), v.id, clientIP(r), certauth.ReadRequest{Action: action, Attrs: attrs})
	if err == nil {
		return true
	}
	c.o.Logger.Error("console: a read could not be journaled", "action", action, "identity", v.who, "error", err)
	c.page(w, http.StatusServiceUnavailable, "Not journaled", v.frame(pageData{
		Problem: "This read could not be journaled, so nothing of it is shown: " + err.Error(),
	}, ""))
	return false
}

// openSession reads the session the request's {id} names (an ID, or a
// unique prefix of one) from a snapshot of the journal, its leaves proven
// in the head checkpoint with the journal's key, as "bastion play" reads
// it, with its full ID. When it cannot, it answers a page that says why
// and returns a nil rec; otherwise the caller closes snap.
func (c *Console) openSession(w http.ResponseWriter, r *http.Request, v *viewer) (snap storage.Snapshot, rec *recorder.SessionRecord, sid string) {
	fail := func(code int, title, problem string) (storage.Snapshot, *recorder.SessionRecord, string) {
		c.page(w, code, title, v.frame(pageData{Problem: problem}, Path+"/sessions"))
		return nil, nil, ""
	}
	ref, err := sessions.ParseRef(r.PathValue("id"))
	if err != nil {
		return fail(http.StatusBadRequest, "No such session", err.Error()+": session IDs look like 0190b3c4-1f2e-7a6b-8c9d-0e1f2a3b4c5d (or at least their first 4 characters)")
	}
	snap, err = c.o.Store().Snapshot(r.Context())
	if err != nil {
		c.o.Logger.Error("console: read the journal", "error", err)
		return fail(http.StatusInternalServerError, "Journal unavailable", "The journal cannot be read: "+err.Error())
	}
	id, err := ref.Resolve(r.Context(), snap)
	if err == nil {
		rec, err = recorder.OpenSession(r.Context(), snap, recorder.SessionID(id), recorder.OpenOptions{Verifier: c.o.Verifier})
	}
	switch {
	case err == nil:
		return snap, rec, id.String()
	case errors.Is(err, sessions.ErrNoSession), errors.Is(err, storage.ErrNotFound):
		snap.Close()
		return fail(http.StatusNotFound, "No such session", "The journal holds no session "+ref.String()+".")
	case errors.Is(err, sessions.ErrAmbiguous):
		snap.Close()
		return fail(http.StatusNotFound, "Which session?", err.Error()+": give more of the ID.")
	case errors.Is(err, recorder.ErrSessionBroken):
		snap.Close()
		c.o.Logger.Error("console: a session does not verify", "session", id, "error", err)
		return fail(http.StatusInternalServerError, "Session does not verify", "Session "+id.String()+
			" does not verify, so nothing of it is shown: "+err.Error()+` ("bastion verify" names every finding).`)
	}
	snap.Close()
	c.o.Logger.Error("console: read a session", "session", id, "error", err)
	return fail(http.StatusInternalServerError, "Journal unavailable", "The session cannot be read: "+err.Error())
}

type sessionData struct {
	*sessions.Details
	Masked           []string // "detector count", sorted
	Files            []string
	StartAttrs       [][2]string
	Player           bool // the player is built into the binary
	Cast, Download   string
	Bundle, Duration string
	Bytes            string
}

// playerCSP is the Content-Security-Policy of the session page: the
// console's, plus 'wasm-unsafe-eval', which asciinema-player needs to
// compile its terminal emulator (WebAssembly, from its own script). It
// allows no other script, and no eval of JavaScript.
var playerCSP = strings.Replace(consoleCSP, cspScripts, cspScripts+" 'wasm-unsafe-eval'", 1)

// showSession shows a session's details, as "bastion sessions show"
// does, and replays it.
func (c *Console) showSession(w http.ResponseWriter, r *http.Request, v *viewer) {
	snap, rec, id := c.openSession(w, r, v)
	if rec == nil {
		return
	}
	defer snap.Close()
	if !c.recordRead(w, r, v, "show", map[string]string{"session": id}) {
		return
	}
	sum, err := playback.Describe(r.Context(), snap, rec, nil)
	if err != nil {
		c.o.Logger.Error("console: a session does not verify", "session", id, "error", err)
		c.page(w, http.StatusInternalServerError, "Session does not verify", v.frame(pageData{
			Problem: "Session " + id + " does not verify, so nothing of it is shown: " + err.Error(),
		}, Path+"/sessions"))
		return
	}
	det := sessions.NewDetails(sessions.DescribeRecord(rec), rec, sum)
	d := sessionData{
		Details: det, Player: playerBuilt(),
		Cast: Path + "/sessions/" + id + "/cast", Bundle: Path + "/sessions/" + id + "/bundle",
		Bytes: recorder.ByteCount(det.InBytes) + " in, " + recorder.ByteCount(det.OutBytes) + " out, in " + strconv.FormatInt(det.Frames, 10) + " frames over " + det.Duration,
	}
	d.Download = d.Cast + "?download=1"
	for _, k := range slices.Sorted(maps.Keys(det.Masked)) {
		d.Masked = append(d.Masked, fmt.Sprintf("%s %d", k, det.Masked[k]))
	}
	for _, f := range det.Files {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(f)) {
			parts = append(parts, k+"="+f[k])
		}
		d.Files = append(d.Files, strings.Join(parts, " "))
	}
	for _, k := range slices.Sorted(maps.Keys(det.Start)) {
		d.StartAttrs = append(d.StartAttrs, [2]string{k, det.Start[k]})
	}
	pd := pageData{Data: d}
	if d.Player {
		w.Header().Set("Content-Security-Policy", playerCSP)
		pd.Scripts = []string{Path + "/static/player/asciinema-player.min.js", Path + "/static/replay.js"}
		pd.Styles = []string{Path + "/static/player/asciinema-player.css"}
	}
	c.render(w, http.StatusOK, "session", "Session "+id, v.frame(pd, Path+"/sessions"))
}

// sessionCast answers the session as asciicast v2, as "bastion export
// --format asciicast" writes it: for the player (journaled as "play"),
// or, with ?download=1, as a file to keep (journaled as "export").
func (c *Console) sessionCast(w http.ResponseWriter, r *http.Request, v *viewer) {
	snap, rec, id := c.openSession(w, r, v)
	if rec == nil {
		return
	}
	defer snap.Close()
	download := r.URL.Query().Get("download") == "1"
	action, attrs := "play", map[string]string{"session": id}
	if download {
		action, attrs["format"] = "export", "asciicast"
	}
	if !c.recordRead(w, r, v, action, attrs) {
		return
	}
	// Nothing is sent before the first frames verified: a session that
	// does not verify at its start gets a page that says so. One that
	// fails later has its answer cut off, so that no one keeps half a
	// recording as if it were whole.
	out := &lazyWriter{w: w, start: func() {
		w.Header().Set("Content-Type", "application/x-asciicast")
		if download {
			w.Header().Set("Content-Disposition", `attachment; filename="session-`+id+`.cast"`)
		}
		w.WriteHeader(http.StatusOK)
	}}
	bw := bufio.NewWriterSize(out, 64<<10)
	err := playback.WriteAsciicast(r.Context(), snap, rec, bw, playback.AsciicastOptions{})
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		return
	}
	c.o.Logger.Error("console: asciicast", "session", id, "error", err)
	if out.started {
		panic(http.ErrAbortHandler)
	}
	c.page(w, http.StatusInternalServerError, "Session does not verify", v.frame(pageData{
		Problem: "Session " + id + " cannot be exported: " + err.Error(),
	}, Path+"/sessions"))
}

// lazyWriter sends the answer's header at the first write.
type lazyWriter struct {
	w       http.ResponseWriter
	start   func()
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.start()
	}
	return l.w.Write(p)
}

// sessionBundle answers the session's bundle, verifiable offline, as
// "bastion export --format bundle" writes it.
func (c *Console) sessionBundle(w http.ResponseWriter, r *http.Request, v *viewer) {
	snap, rec, id := c.openSession(w, r, v)
	if rec == nil {
		return
	}
	defer snap.Close()
	bounds := c.bounds()
	ok, done := c.startBundle(bounds)
	if !ok {
		w.Header().Set("Retry-After", "5")
		c.page(w, http.StatusTooManyRequests, "Too many downloads", v.frame(pageData{
			Problem: "Too many bundles are being built (the console builds at most " + strconv.Itoa(bounds.Bundles) + " at once): try again in a moment.",
		}, Path+"/sessions"))
		return
	}
	defer done()
	if bounds.Holding != nil {
		bounds.Holding("bundle", v.who)
	}
	// The bundle is built in memory, bounded, before its read is
	// journaled: one too large is refused whole, with nothing journaled
	// (nothing of it was handed out), and the frames are measured first so
	// that a large one is never held.
	size, err := bundleFramesSize(r.Context(), snap, rec, bounds.BundleBytes)
	var data []byte
	if err == nil {
		var b *recorder.Bundle
		b, err = recorder.ExportBundle(r.Context(), snap, rec.ID, c.o.Verifier)
		if err == nil {
			data, err = b.Marshal()
		}
		if err == nil && int64(len(data)) > bounds.BundleBytes {
			size, err = int64(len(data)), errBundleTooLarge
		}
	}
	if errors.Is(err, errBundleTooLarge) {
		c.o.Logger.Warn("console: bundle refused: too large", "session", id, "bytes", size, "by", v.who)
		c.page(w, http.StatusRequestEntityTooLarge, "Bundle too large", v.frame(pageData{
			Problem: "Session " + id + "'s bundle is larger than the console hands out (" + recorder.ByteCount(bounds.BundleBytes) +
				`), so none of it is sent: on the bastion's host, "bastion export --format bundle ` + id + `" writes it.`,
		}, Path+"/sessions"))
		return
	}
	if err == nil && !c.recordRead(w, r, v, "export", map[string]string{"session": id, "format": "bundle"}) {
		return
	}
	if err != nil {
		c.o.Logger.Error("console: bundle", "session", id, "error", err)
		c.page(w, http.StatusInternalServerError, "Session does not verify", v.frame(pageData{
			Problem: "Session " + id + " cannot be exported: " + err.Error(),
		}, Path+"/sessions"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="session-`+id+`.bundle"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

var errBundleTooLarge = errors.New("the bundle is too large")

// bundleFramesSize reads rec's frames, verified, and adds up the bytes
// they take in its bundle (each encoded in base64, quoted, on a line of
// its own): a part of the bundle's size. Past limit it stops with
// errBundleTooLarge.
func bundleFramesSize(ctx context.Context, snap storage.Snapshot, rec *recorder.SessionRecord, limit int64) (int64, error) {
	var n int64
	var enc []byte
	err := rec.ReadFrames(ctx, snap, 1, func(f *recorder.Frame) error {
		enc = recorder.AppendFrame(enc[:0], f)
		n += int64(base64.StdEncoding.EncodedLen(len(enc))) + 4
		if n > limit {
			return errBundleTooLarge
		}
		return nil
	})
	return n, err
}

// playerBuilt says whether the binary holds the player ("make player").
func playerBuilt() bool {
	_, err := fs.Stat(playerFiles, "player/dist/asciinema-player.min.js")
	return err == nil
}
