package certauth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/bastionhq/bastion/recorder/events"
)

// Webhook delivery limits.
const (
	webhookQueue    = 256
	webhookAttempts = 4
	webhookTimeout  = 10 * time.Second
	// webhookDrain is how long Close waits for queued posts.
	webhookDrain = 5 * time.Second
)

// WebhookMessage is the JSON body posted to the grants webhook for each
// request and decision. Text makes it a Slack-compatible incoming-webhook
// message; Event and Grant are for programs.
type WebhookMessage struct {
	Text string `json:"text"`
	// Event is the journal event: grant.requested, grant.approved…
	Event string `json:"event"`
	Grant Grant  `json:"grant"`
	// By and Comment are the decider's, for approvals, denials and
	// revocations.
	By      string `json:"by,omitempty"`
	Comment string `json:"comment,omitempty"`
}

// webhook posts messages from a bounded queue, one at a time, in order,
// from one goroutine that close stops. Grants post [WebhookMessage]s,
// alarms [AlertMessage]s (see [Alerts]).
type webhook struct {
	url     string
	agent   string // the User-Agent header
	client  *http.Client
	log     hclog.Logger
	backoff time.Duration // first wait between attempts; doubles

	mu     sync.Mutex // guards closed against send on a closed queue
	closed bool
	queue  chan *webhookPost
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	delivered, failed, dropped atomic.Int64
}

// checkWebhookURL accepts https, and http only to a loopback address (for
// tests and a local relay): grant requests carry reasons and identities.
func checkWebhookURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("certauth: webhook URL %q is not an absolute URL", s)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return nil, fmt.Errorf("certauth: webhook URL %q: use https (http only to a loopback address)", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("certauth: webhook URL %q: credentials belong in the path, not user:password@", u.Redacted())
	}
	return u, nil
}

// webhookPost is one message in the queue: its JSON body, and what the
// log says of it (the event, and the grant's ID if any).
type webhookPost struct {
	event, grant string
	body         any
}

func newWebhook(rawURL, agent string, log hclog.Logger) (*webhook, error) {
	u, err := checkWebhookURL(rawURL)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &webhook{
		url: u.String(), agent: agent, log: log, backoff: time.Second,
		client: &http.Client{
			Timeout: webhookTimeout,
			// A redirect could take the message somewhere the operator
			// did not configure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		queue: make(chan *webhookPost, webhookQueue), ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
	go h.run()
	return h, nil
}

// send queues a message; it never blocks: with the queue full, the
// message is dropped, logged and counted.
func (h *webhook) send(event string, g Grant, by, comment string) {
	m := &WebhookMessage{Text: webhookText(event, &g, by, comment), Event: event, Grant: g, By: by, Comment: comment}
	h.post(&webhookPost{event: event, grant: g.ID, body: m})
}

// post queues m; it never blocks: with the queue full, the message is
// dropped, logged and counted.
func (h *webhook) post(m *webhookPost) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		h.dropped.Add(1)
		return
	}
	select {
	case h.queue <- m:
	default:
		h.dropped.Add(1)
		h.log.Warn("webhook queue full: message dropped", "event", m.event, "grant", m.grant)
	}
}

func (h *webhook) run() {
	defer close(h.done)
	for m := range h.queue {
		h.deliver(m)
	}
}

// deliver posts m, retrying with backoff on a transport error, a 5xx or a
// 429; a 4xx other than 429 is not retried.
func (h *webhook) deliver(m *webhookPost) {
	body, err := json.Marshal(m.body)
	if err != nil {
		h.failed.Add(1)
		h.log.Error("webhook message", "error", err)
		return
	}
	wait := h.backoff
	var last string
	for attempt := 1; attempt <= webhookAttempts; attempt++ {
		retry := false
		last, retry = h.attempt(body)
		if last == "" {
			h.delivered.Add(1)
			return
		}
		if !retry || attempt == webhookAttempts {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-h.ctx.Done():
			t.Stop()
			attempt = webhookAttempts
		case <-t.C:
		}
		wait *= 2
	}
	h.failed.Add(1)
	h.log.Error("webhook delivery failed", "event", m.event, "grant", m.grant, "error", last)
}

// attempt sends body once; it returns "" on success, else what went
// wrong and whether to retry.
func (h *webhook) attempt(body []byte) (string, bool) {
	req, err := http.NewRequestWithContext(h.ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return err.Error(), false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", h.agent)
	resp, err := h.client.Do(req)
	if err != nil {
		return err.Error(), h.ctx.Err() == nil
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return "", false
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return "HTTP " + resp.Status, true
	}
	return "HTTP " + resp.Status, false
}

// close stops taking messages, gives the queued ones webhookDrain to be
// delivered, then abandons the rest.
func (h *webhook) close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.queue)
	}
	h.mu.Unlock()
	t := time.NewTimer(webhookDrain)
	defer t.Stop()
	select {
	case <-h.done:
	case <-t.C:
		h.cancel()
		<-h.done
	}
	h.cancel()
}

// webhookText is the message's one line for people.
func webhookText(event string, g *Grant, by, comment string) string {
	var b strings.Builder
	access := fmt.Sprintf("%s@%s", g.Login, g.Target)
	if g.Command != "" {
		access += fmt.Sprintf(" (command %q)", truncate(g.Command, 200))
	}
	switch event {
	case events.GrantRequested:
		return fmt.Sprintf("%s requests %s for %s: %q%s — %s needs %d approval(s) before %s",
			g.Identity, access, time.Duration(g.Duration), truncate(g.Reason, 300), ticketSuffix(g.Ticket), g.ID, g.ApprovalsNeeded, g.PendingUntil.UTC().Format(time.RFC3339))
	case events.GrantApproved:
		fmt.Fprintf(&b, "%s approved %s (%s for %s, %d of %d)", by, g.ID, access, g.Identity, len(g.Approvals), g.ApprovalsNeeded)
	case events.GrantDenied:
		fmt.Fprintf(&b, "%s denied %s (%s for %s)", by, g.ID, access, g.Identity)
	case events.GrantActivated:
		fmt.Fprintf(&b, "%s is active: %s may reach %s until %s", g.ID, g.Identity, access, g.End.UTC().Format(time.RFC3339))
	case events.GrantExpired:
		fmt.Fprintf(&b, "%s expired without a decision (%s for %s)", g.ID, access, g.Identity)
	case events.GrantEnded:
		fmt.Fprintf(&b, "%s ended: %s no longer reaches %s", g.ID, g.Identity, access)
	case events.GrantRevoked:
		fmt.Fprintf(&b, "%s revoked %s (%s for %s)", by, g.ID, access, g.Identity)
	default:
		fmt.Fprintf(&b, "%s: %s", event, g.ID)
	}
	if comment != "" {
		fmt.Fprintf(&b, ": %q", truncate(comment, 300))
	}
	return b.String()
}

func ticketSuffix(t string) string {
	if t == "" {
		return ""
	}
	return " [" + t + "]"
}
