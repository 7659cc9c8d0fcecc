package webhook

import (
	"time"

	hclog "github.com/hashicorp/go-hclog"
)

// AlertMessage is the JSON body of an operational alarm posted to a
// webhook: Text makes it a Slack-compatible incoming-webhook message;
// Event, State and Attrs are for programs. An alarm is posted once when it
// is raised and once when it clears, never once per occurrence.
type AlertMessage struct {
	Text string `json:"text"`
	// Event names the alarm: journal.slow_commit, journal.write_failed…
	Event string `json:"event"`
	// State is "raised" or "cleared".
	State string    `json:"state"`
	Time  time.Time `json:"time"`
	// Attrs are the alarm's details (thresholds, durations), never
	// secrets.
	Attrs map[string]string `json:"attrs,omitempty"`
}

// Alert states.
const (
	AlertRaised  = "raised"
	AlertCleared = "cleared"
)

// Alerts posts [AlertMessage]s to a [Webhook]: a bounded queue that never
// blocks the caller, one post at a time in order, retries with backoff on
// transport errors, 429 and 5xx.
type Alerts struct {
	h *Webhook
}

// NewAlerts starts posting to url: https, or http to a loopback address.
// Close stops it.
func NewAlerts(url string, log hclog.Logger) (*Alerts, error) {
	h, err := New(url, "bastion-alerts-webhook", log)
	if err != nil {
		return nil, err
	}
	return &Alerts{h: h}, nil
}

// Post queues m; it never blocks: with the queue full, m is dropped,
// logged and counted.
func (a *Alerts) Post(m AlertMessage) {
	a.h.Post(m.Event, "", &m)
}

// Close gives the queued alerts a few seconds to be delivered, then
// abandons the rest.
func (a *Alerts) Close() { a.h.Close() }

// stats says how deliveries went: delivered, failed after retries, and
// dropped (queue full, or posted after Close).
func (a *Alerts) stats() (delivered, failed, dropped int64) {
	return a.h.Stats()
}
