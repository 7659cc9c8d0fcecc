package grants

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastionhq/bastion/policy/grants/grantstest"
	"github.com/bastionhq/bastion/policy/webhook"
	"github.com/bastionhq/bastion/recorder/events"
)

// hookServer is a webhook receiver on 127.0.0.1 that answers with the
// statuses of fail first (one per attempt), then 200.
type hookServer struct {
	srv *httptest.Server

	mu       sync.Mutex
	fail     []int
	attempts int
	got      []WebhookMessage // delivered, guarded by mu
	arrived  chan struct{}
}

func newHookServer(t *testing.T, fail ...int) *hookServer {
	h := &hookServer{fail: fail, arrived: make(chan struct{}, 1024)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.attempts++
		if len(h.fail) > 0 {
			code := h.fail[0]
			h.fail = h.fail[1:]
			w.WriteHeader(code)
			return
		}
		var m WebhookMessage
		if r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &m) != nil {
			t.Errorf("webhook got %q: %s", r.Header.Get("Content-Type"), body)
		}
		h.got = append(h.got, m)
		h.arrived <- struct{}{}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// wait waits for n more deliveries.
func (h *hookServer) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-h.arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("webhook message not delivered")
		}
	}
}

func TestGrantWebhook(t *testing.T) {
	h := newHookServer(t)
	f := newGrantsFixture(t, grantstest.Policy(t, 1, "bob"), func(o *GrantsOptions) { o.WebhookURL = h.srv.URL + "/hook" })
	g := f.request(grantAgent, "db-1", 30*time.Minute)
	f.mustDecide("approve", g.ID, grantBob)
	f.mustDecide("revoke", g.ID, grantBob)
	denied := f.request(grantAgent, "db-2", 30*time.Minute)
	f.decide("deny", denied.ID, grantBob, "no")
	h.wait(t, 6)

	h.mu.Lock()
	defer h.mu.Unlock()
	var events []string
	for _, m := range h.got {
		events = append(events, m.Event)
	}
	if got := strings.Join(events, " "); got != "grant.requested grant.approved grant.activated grant.revoked grant.requested grant.denied" {
		t.Fatalf("webhook events: %s", got)
	}
	req, appr := h.got[0], h.got[1]
	if req.Grant.ID != g.ID || !strings.Contains(req.Text, "agent-1@corp requests postgres@db-1 for 30m0s") || !strings.Contains(req.Text, "rotate the replication password") {
		t.Fatalf("request message: %+v", req)
	}
	if appr.By != "bob@corp" || appr.Comment != "ok by bob" || !strings.Contains(appr.Text, "bob@corp approved "+g.ID) {
		t.Fatalf("approval message: %+v", appr)
	}
	if m := h.got[5]; m.Grant.State != GrantDenied || !strings.Contains(m.Text, `denied `+denied.ID) || !strings.Contains(m.Text, `"no"`) {
		t.Fatalf("denial message: %+v", m)
	}
	wantHookStats(t, f.g, 6, 0)
}

// wantHookStats waits for the webhook's counts to be delivered and failed
// (a delivery is counted once its answer is read, after the receiver has
// seen it), with nothing dropped.
func wantHookStats(t *testing.T, g *Grants, delivered, failed int64) {
	t.Helper()
	eventually(t, func() error {
		if d, f, dropped := g.webhookStats(); d != delivered || f != failed || dropped != 0 {
			return fmt.Errorf("webhook: %d delivered, %d failed, %d dropped; want %d, %d, 0", d, f, dropped, delivered, failed)
		}
		return nil
	})
}

// eventually retries f for a few seconds until it returns nil.
func eventually(t testing.TB, f func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGrantWebhookRetries(t *testing.T) {
	h := newHookServer(t, http.StatusServiceUnavailable, http.StatusTooManyRequests)
	f := newGrantsFixture(t, grantstest.Policy(t, 1, "bob"), func(o *GrantsOptions) { o.WebhookURL = h.srv.URL })
	f.g.hook.Backoff = time.Millisecond
	f.request(grantAgent, "db-1", 30*time.Minute)
	h.wait(t, 1)
	wantHookStats(t, f.g, 1, 0)
	h.mu.Lock()
	attempts := h.attempts
	h.mu.Unlock()
	if attempts != 3 {
		t.Fatalf("%d attempts, want 3", attempts)
	}

	// A client error is not retried, and counts as a failure.
	h.mu.Lock()
	h.fail = []int{http.StatusBadRequest}
	h.mu.Unlock()
	f.request(grantAgent, "db-2", 30*time.Minute)
	f.request(grantAgent, "db-3", 30*time.Minute)
	h.wait(t, 1)
	wantHookStats(t, f.g, 2, 1)
}

// TestGrantWebhookNeverBlocks: a webhook that does not answer delays no
// grant action, and a full queue drops messages rather than wait.
func TestGrantWebhookNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	f := newGrantsFixture(t, grantstest.Policy(t, 1, "bob"), func(o *GrantsOptions) { o.WebhookURL = srv.URL })
	// Runs before the store closes (cleanups run last first), so that
	// the queue drains at once.
	t.Cleanup(func() { close(release) })
	f.g.hook.Backoff = time.Millisecond

	g := f.request(grantAgent, "db-1", 30*time.Minute)
	f.mustDecide("approve", g.ID, grantBob)
	f.mustDecide("revoke", g.ID, grantAgent)
	f.wantEnd(g.ID, GrantRevokedWhy)
	for range webhook.QueueSize + 10 {
		f.g.notify(events.GrantRequested, g, "", "")
	}
	if _, _, dropped := f.g.webhookStats(); dropped == 0 {
		t.Fatal("a full queue dropped nothing")
	}
}
