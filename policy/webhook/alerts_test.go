package webhook

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestAlertsPost: an alert reaches the webhook as JSON with its event and
// Slack's text field, after a 503 is retried.
func TestAlertsPost(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	var agents []string
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Error(err)
		}
		got = append(got, m)
		agents = append(agents, r.UserAgent())
	}))
	defer srv.Close()
	a, err := NewAlerts(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.h.Backoff = time.Millisecond
	a.Post(AlertMessage{Text: "the journal is slow", Event: "journal.slow_commit", State: AlertRaised, Time: time.Unix(0, 0).UTC(), Attrs: map[string]string{"threshold": "5s"}})
	a.Close()
	if d, f, x := a.stats(); d != 1 || f != 0 || x != 0 {
		t.Fatalf("stats: delivered %d, failed %d, dropped %d", d, f, x)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0]["text"] != "the journal is slow" || got[0]["event"] != "journal.slow_commit" || got[0]["state"] != "raised" ||
		got[0]["attrs"].(map[string]any)["threshold"] != "5s" || agents[0] != "bastion-alerts-webhook" {
		t.Fatalf("posted %v (agent %q)", got, agents)
	}
	if _, err := NewAlerts("http://example.com/hook", nil); err == nil {
		t.Fatal("plain http to a remote host was accepted")
	}
}
