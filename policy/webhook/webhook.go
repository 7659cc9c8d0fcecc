package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Delivery limits.
const (
	// QueueSize is how many messages may wait for delivery; past it,
	// Post drops them.
	QueueSize = 256
	attempts  = 4
	timeout   = 10 * time.Second
	// drain is how long Close waits for queued posts.
	drain = 5 * time.Second
)

// Webhook posts JSON messages from a bounded queue, one at a time, in
// order, from one goroutine that Close stops. It is safe for concurrent
// use.
type Webhook struct {
	url    string
	agent  string // the User-Agent header
	client *http.Client
	log    hclog.Logger
	// Backoff is the first wait between attempts; it doubles at each
	// retry. New sets one second; set it, if at all, before the first
	// Post.
	Backoff time.Duration

	mu     sync.Mutex // guards closed against send on a closed queue
	closed bool
	queue  chan *post
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	delivered, failed, dropped atomic.Int64
}

// checkURL accepts https, and http only to a loopback address (for tests
// and a local relay): messages carry reasons and identities.
func checkURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("webhook URL %q is not an absolute URL", s)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return nil, fmt.Errorf("webhook URL %q: use https (http only to a loopback address)", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("webhook URL %q: credentials belong in the path, not user:password@", u.Redacted())
	}
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// post is one message in the queue: its JSON body, and what the log says
// of it (the event, and the grant's ID if any).
type post struct {
	event, grant string
	body         any
}

// New starts posting to rawURL: https, or http to a loopback address.
// agent is the User-Agent of the posts; log says what fails. Close stops
// it.
func New(rawURL, agent string, log hclog.Logger) (*Webhook, error) {
	u, err := checkURL(rawURL)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Webhook{
		url: u.String(), agent: agent, log: log, Backoff: time.Second,
		client: &http.Client{
			Timeout: timeout,
			// A redirect could take the message somewhere the operator
			// did not configure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		queue: make(chan *post, QueueSize), ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
	go h.run()
	return h, nil
}

// Post queues body, to be posted as JSON; it never blocks: with the queue
// full, the message is dropped, logged and counted. event and grant (the
// ID of the grant the message is about, or "") are for the log.
func (h *Webhook) Post(event, grant string, body any) {
	m := &post{event: event, grant: grant, body: body}
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

// Stats says how deliveries went: delivered, failed after every retry, and
// dropped (queue full, or posted after Close).
func (h *Webhook) Stats() (delivered, failed, dropped int64) {
	return h.delivered.Load(), h.failed.Load(), h.dropped.Load()
}

func (h *Webhook) run() {
	defer close(h.done)
	for m := range h.queue {
		h.deliver(m)
	}
}

// deliver posts m, retrying with backoff on a transport error, a 5xx or a
// 429; a 4xx other than 429 is not retried.
func (h *Webhook) deliver(m *post) {
	body, err := json.Marshal(m.body)
	if err != nil {
		h.failed.Add(1)
		h.log.Error("webhook message", "error", err)
		return
	}
	wait := h.Backoff
	var last string
	for attempt := 1; attempt <= attempts; attempt++ {
		retry := false
		last, retry = h.attempt(body)
		if last == "" {
			h.delivered.Add(1)
			return
		}
		if !retry || attempt == attempts {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-h.ctx.Done():
			t.Stop()
			attempt = attempts
		case <-t.C:
		}
		wait *= 2
	}
	h.failed.Add(1)
	h.log.Error("webhook delivery failed", "event", m.event, "grant", m.grant, "error", last)
}

// attempt sends body once; it returns "" on success, else what went
// wrong and whether to retry.
func (h *Webhook) attempt(body []byte) (string, bool) {
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

// Close stops taking messages, gives the queued ones a few seconds to be
// delivered, then abandons the rest.
func (h *Webhook) Close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.queue)
	}
	h.mu.Unlock()
	t := time.NewTimer(drain)
	defer t.Stop()
	select {
	case <-h.done:
	case <-t.C:
		h.cancel()
		<-h.done
	}
	h.cancel()
}
