package bastion

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/bastionhq/bastion/bastion/tick"
	"github.com/bastionhq/bastion/policy/webhook"
)

// DefaultSlowCommit is how long an append may wait for its commit before
// the slow-commit alarm is raised, when the configuration sets none.
const DefaultSlowCommit = 5 * time.Second

// Alarm events: the "event" of an alert, and the "alarm" label of the
// metrics.
const (
	AlarmSlowCommit  = "journal.slow_commit"
	AlarmWriteFailed = "journal.write_failed"
)

// CommitObserver carries the journal's commit reports to the server
// built after it: whoever opens the journal passes its OnCommit as
// recorder.Options.OnCommit, and the same observer as
// ServerOptions.Commits. Until a server attaches, reports are dropped.
type CommitObserver struct {
	sink atomic.Pointer[func(time.Duration, int)]

	// The kept checkpoints go to the witnesses (recorder.Options.OnPublish):
	// the latest seen before a server attaches is handed to it then.
	pubMu   sync.Mutex
	pubSink func(size int64, note []byte) // guarded by pubMu
	pubSize int64                         // guarded by pubMu
	pubNote []byte                        // guarded by pubMu
}

// NewCommitObserver returns an observer with no server attached.
func NewCommitObserver() *CommitObserver { return &CommitObserver{} }

// OnCommit reports a batch of appends committed d after the oldest of
// them was made. It never blocks.
func (o *CommitObserver) OnCommit(d time.Duration, appends int) {
	if f := o.sink.Load(); f != nil {
		(*f)(d, appends)
	}
}

func (o *CommitObserver) attach(f func(time.Duration, int)) { o.sink.Store(&f) }

// OnPublish reports a checkpoint the journal kept. It never blocks.
func (o *CommitObserver) OnPublish(size int64, note []byte) {
	o.pubMu.Lock()
	defer o.pubMu.Unlock()
	if size > o.pubSize {
		o.pubSize, o.pubNote = size, note
	}
	if o.pubSink != nil {
		o.pubSink(size, note)
	}
}

func (o *CommitObserver) attachPublish(f func(size int64, note []byte)) {
	o.pubMu.Lock()
	defer o.pubMu.Unlock()
	o.pubSink = f
	if o.pubNote != nil {
		f(o.pubSize, o.pubNote)
	}
}

// journalProbe is what the health checks read of the journal.
type journalProbe interface {
	Err() error
	OldestPending() time.Time
}

// Journal states, as /readyz names them.
const (
	journalOK     = "ok"
	journalSlow   = "slow"
	journalFailed = "failed"
)

// journalHealth watches the journal: it serves /readyz, and raises and
// clears the alarms (an ERROR log line, a metric and an alert on the
// webhook), once per change of state, never once per commit.
type journalHealth struct {
	journal   func() journalProbe // the journal in force
	threshold time.Duration
	log       hclog.Logger
	metrics   *metrics
	alerts    *webhook.Alerts // nil: no webhook
	// witnesses, when configured, are reported by /readyz; set before
	// the API serves.
	witnesses *witnessing

	slowest atomic.Int64  // the longest commit (ns) since the last check
	kick    chan struct{} // capacity 1: a slow commit was seen
	// failure is a journal failure the recovery saw, which the next
	// check raises even if the journal has recovered by then: a fault
	// that lasts less than a check still ended sessions.
	failure atomic.Pointer[error]

	// Owned by the goroutine that runs check.
	state     string    // journalOK, journalSlow or journalFailed
	raisedAt  time.Time // when the alarm in state was raised
	onTimeFor time.Time // in journalSlow: since when commits are on time again
}

func newJournalHealth(journal func() journalProbe, threshold time.Duration, m *metrics, alerts *webhook.Alerts, log hclog.Logger) *journalHealth {
	if threshold <= 0 {
		threshold = DefaultSlowCommit
	}
	return &journalHealth{journal: journal, threshold: threshold, log: log, metrics: m, alerts: alerts, kick: make(chan struct{}, 1), state: journalOK}
}

// observe is the commit observer: it must not block the journal's writer.
func (h *journalHealth) observe(d time.Duration, appends int) {
	h.metrics.commitSeconds.Observe(d.Seconds())
	if d < h.threshold {
		return
	}
	for {
		old := h.slowest.Load()
		if int64(d) <= old || h.slowest.CompareAndSwap(old, int64(d)) {
			break
		}
	}
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// pendingAge is how long the oldest append not yet committed has waited.
func pendingAge(j journalProbe) time.Duration {
	if t := j.OldestPending(); !t.IsZero() {
		return time.Since(t)
	}
	return 0
}

// now is the journal's state at this moment: failed, slow (an append has
// waited past the threshold), or ok.
func (h *journalHealth) now() (state string, waited time.Duration) {
	j := h.journal()
	if j.Err() != nil {
		return journalFailed, 0
	}
	if w := pendingAge(j); w >= h.threshold {
		return journalSlow, w
	}
	return journalOK, 0
}

// failed notes a journal failure (the recovery calls it as it starts) and
// has it raised at once.
func (h *journalHealth) failed(err error) {
	h.failure.Store(&err)
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// run checks the journal until ctx is done: often enough to see an
// append wait past the threshold, and at once when a commit took longer.
func (h *journalHealth) run(ctx context.Context) {
	tick.Every(ctx, min(max(h.threshold/4, 10*time.Millisecond), time.Second), h.kick, h.check)
}

// check moves the alarms to the journal's state. The slow-commit alarm
// clears once commits have been on time for as long as the threshold, so
// that a disk that stalls now and then raises one alarm, not one a commit.
func (h *journalHealth) check() {
	state, waited := h.now()
	latched := h.failure.Swap(nil)
	if latched != nil && h.state != journalFailed {
		state = journalFailed
	}
	if slowest := time.Duration(h.slowest.Swap(0)); state == journalOK && slowest >= h.threshold {
		state, waited = journalSlow, slowest
	}
	now := time.Now()
	switch {
	case state == journalFailed && h.state != journalFailed:
		if h.state == journalSlow {
			h.metrics.alarm(AlarmSlowCommit, false)
		}
		err := h.journal().Err()
		if err == nil && latched != nil {
			err = *latched
		}
		h.log.Error("ALARM: the journal cannot be written: audit logging has stopped, sessions are ended and refused", "error", err)
		h.raise(AlarmWriteFailed, fmt.Sprintf("bastion: ALARM: the journal cannot be written (%v): audit logging has stopped; live sessions were ended and new ones are refused", err),
			map[string]string{"error": err.Error()})
		h.state, h.raisedAt = journalFailed, now
		return
	case state != journalFailed && h.state == journalFailed:
		down := now.Sub(h.raisedAt).Round(time.Millisecond)
		h.log.Info("the journal is written again: audit logging resumed", "down", down)
		h.clear(AlarmWriteFailed, fmt.Sprintf("bastion: the journal is written again after %s: audit logging resumed", down),
			map[string]string{"down": down.String()})
		h.state = journalOK
	}
	switch {
	case state == journalSlow && h.state == journalOK:
		h.log.Error("ALARM: a journal commit is slower than the threshold: sessions and logins wait for the journal",
			"waited", waited.Round(time.Millisecond), "threshold", h.threshold)
		h.raise(AlarmSlowCommit, fmt.Sprintf("bastion: ALARM: a journal commit took %s (threshold %s): sessions and logins wait for the journal", waited.Round(time.Millisecond), h.threshold),
			map[string]string{"waited": waited.Round(time.Millisecond).String(), "threshold": h.threshold.String()})
		h.state, h.raisedAt, h.onTimeFor = journalSlow, now, time.Time{}
	case state == journalSlow && h.state == journalSlow:
		h.onTimeFor = time.Time{}
	case state == journalOK && h.state == journalSlow:
		if h.onTimeFor.IsZero() {
			h.onTimeFor = now
		}
		if now.Sub(h.onTimeFor) < h.threshold {
			return
		}
		slow := h.onTimeFor.Sub(h.raisedAt).Round(time.Millisecond)
		h.log.Info("journal commits are on time again", "slow for", slow, "threshold", h.threshold)
		h.clear(AlarmSlowCommit, fmt.Sprintf("bastion: journal commits are on time again (slow for %s, threshold %s)", slow, h.threshold),
			map[string]string{"slow": slow.String(), "threshold": h.threshold.String()})
		h.state = journalOK
	}
}

func (h *journalHealth) raise(event, text string, attrs map[string]string) {
	h.metrics.alarm(event, true)
	h.post(event, webhook.AlertRaised, text, attrs)
}

func (h *journalHealth) clear(event, text string, attrs map[string]string) {
	h.metrics.alarm(event, false)
	h.post(event, webhook.AlertCleared, text, attrs)
}

func (h *journalHealth) post(event, state, text string, attrs map[string]string) {
	postAlert(h.alerts, event, state, text, attrs)
}

// postAlert posts an alarm raised or cleared to the alerts' webhook, if
// there is one (alerts nil: none).
func postAlert(alerts *webhook.Alerts, event, state, text string, attrs map[string]string) {
	if alerts != nil {
		alerts.Post(webhook.AlertMessage{Text: text, Event: event, State: state, Time: time.Now().UTC(), Attrs: attrs})
	}
}

// readiness is the body of GET /readyz.
type readiness struct {
	// Status is "ready" or "not_ready".
	Status string `json:"status"`
	// Journal is "ok", "slow" (an append has waited past the slow-commit
	// threshold) or "failed" (the journal cannot be written).
	Journal string `json:"journal"`
	// OldestPendingSeconds is how long the oldest append not yet
	// committed has waited; 0 when none waits (an idle bastion).
	OldestPendingSeconds float64 `json:"oldest_pending_seconds"`
	// SlowCommitSeconds is the threshold.
	SlowCommitSeconds float64 `json:"slow_commit_seconds"`
	// Witnesses, when configured: each one's state, how many cosign
	// (neither refused nor stale), and the threshold. They never make
	// serve not ready: sessions go on while a witness is down, and the
	// witness alarms say so.
	Witnesses          []witnessReadiness `json:"witnesses,omitempty"`
	WitnessesCosigning *int               `json:"witnesses_cosigning,omitempty"`
	WitnessThreshold   int                `json:"witness_threshold,omitempty"`
	// WitnessQuorum is "ok", or "lost" while fewer witnesses than the
	// threshold cosign.
	WitnessQuorum string `json:"witness_quorum,omitempty"`
}

// withHealth serves GET /healthz and GET /readyz beside next, without
// authentication, as /metrics: they say nothing but whether the process
// and its journal work.
func (h *journalHealth) withHealth(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		state, _ := h.now()
		rd := readiness{Status: "ready", Journal: state, SlowCommitSeconds: h.threshold.Seconds()}
		if state != journalFailed {
			rd.OldestPendingSeconds = pendingAge(h.journal()).Seconds()
		}
		if w := h.witnesses; w != nil {
			list, n := w.readiness()
			rd.Witnesses, rd.WitnessesCosigning, rd.WitnessThreshold, rd.WitnessQuorum = list, &n, w.cfg.Threshold, "ok"
			if n < w.cfg.Threshold {
				rd.WitnessQuorum = "lost"
			}
		}
		code := http.StatusOK
		if state != journalOK {
			rd.Status, code = "not_ready", http.StatusServiceUnavailable
		}
		writeHealth(w, code, rd)
	})
	mux.Handle("/", next)
	return mux
}

// writeHealth answers a probe: JSON, never cached.
func writeHealth(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Cache-Control", "no-store")
	writeAdminJSON(w, code, body)
}
