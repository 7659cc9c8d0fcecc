package bastion

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy/webhook"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
)

// slowStore holds each commit for delay (nanoseconds) first.
type slowStore struct {
	storage.Store
	delay atomic.Int64
}

func (s *slowStore) Commit(ctx context.Context, b *storage.Batch) error {
	time.Sleep(time.Duration(s.delay.Load()))
	return s.Store.Commit(ctx, b)
}

// alertSink is a webhook that keeps the alerts posted to it.
type alertSink struct {
	*httptest.Server
	mu  sync.Mutex
	got []webhook.AlertMessage
}

func startAlertSink(t *testing.T) *alertSink {
	a := &alertSink{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m webhook.AlertMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Errorf("alert body: %v", err)
		}
		a.mu.Lock()
		a.got = append(a.got, m)
		a.mu.Unlock()
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *alertSink) alerts() []webhook.AlertMessage {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]webhook.AlertMessage(nil), a.got...)
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// getHealth GETs path on the API and decodes its JSON body.
func getHealth(t *testing.T, ts *testServer, path string) (int, map[string]any) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: insecurePinned(t, ts.TLS().Fingerprint)}}
	resp, err := hc.Get(ts.APIURL() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %s %q: %v", path, resp.Status, b, err)
	}
	return resp.StatusCode, m
}

// metricValue is the value of the series named exactly series (name and
// labels) in a scrape, or -1.
func metricValue(body, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// errorLines are the log's ERROR lines that contain s.
func errorLines(log, s string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "[ERROR]") && strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// TestHealthJournalFails: /healthz answers while the process serves;
// /readyz, bastion_journal_up and the commit histogram follow the
// journal; once it fails, /readyz says not ready, journal_up is 0, and
// the failure is one ERROR line, one alarm in the metrics and one alert
// on the webhook, with the journal's own log line through serve's logger.
func TestHealthJournalFails(t *testing.T) {
	t.Parallel()
	sink := startAlertSink(t)
	var logs syncBuffer
	logger := hclog.New(&hclog.LoggerOptions{Name: "bastion", Output: &logs, Level: hclog.Info})
	ts := startServerWith(t, startOP(t), e2eConfigBase+"alerts {\n  webhook_url = \""+sink.URL+"/hook\"\n}\n", certauth.AlgorithmEd25519, serverTweaks{logger: logger})

	if code, body := getHealth(t, ts, "/healthz"); code != 200 || body["status"] != "alive" {
		t.Fatalf("/healthz: %d %v", code, body)
	}
	if code, body := getHealth(t, ts, "/readyz"); code != 200 || body["status"] != "ready" || body["journal"] != "ok" ||
		body["oldest_pending_seconds"] != 0.0 || body["slow_commit_seconds"] != DefaultSlowCommit.Seconds() {
		t.Fatalf("/readyz: %d %v", code, body)
	}
	// serve.started and the policy in force were committed and measured.
	metrics := scrape(t, ts)
	if metricValue(metrics, "bastion_journal_up") != 1 || metricValue(metrics, "bastion_journal_commit_seconds_count") < 1 ||
		metricValue(metrics, `bastion_journal_alarms_total{alarm="journal.write_failed"}`) != 0 {
		t.Fatalf("metrics before the failure:\n%s", metrics)
	}
	before := metricValue(metrics, "bastion_journal_commit_seconds_count")
	if _, err := ts.journal.AppendEvent(context.Background(), "test.poke", recorder.Attrs{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the histogram to count the event", func() bool {
		return metricValue(scrape(t, ts), "bastion_journal_commit_seconds_count") > before
	})

	// The store closes under the journal: its next commit fails.
	ts.closeStore()
	ts.journal.AppendEvent(context.Background(), "test.poke", recorder.Attrs{"a": "b"})
	if ts.journal.Err() == nil {
		t.Fatal("the journal did not fail")
	}
	if code, body := getHealth(t, ts, "/readyz"); code != 503 || body["status"] != "not_ready" || body["journal"] != "failed" {
		t.Fatalf("/readyz after the failure: %d %v", code, body)
	}
	waitFor(t, "the alert", func() bool { return len(sink.alerts()) > 0 })
	time.Sleep(300 * time.Millisecond) // time for a second alert, if one were wrongly sent
	metrics = scrape(t, ts)
	if metricValue(metrics, "bastion_journal_up") != 0 ||
		metricValue(metrics, `bastion_journal_alarms_total{alarm="journal.write_failed"}`) != 1 ||
		metricValue(metrics, `bastion_journal_alarm{alarm="journal.write_failed"}`) != 1 {
		t.Errorf("metrics after the failure:\n%s", metrics)
	}
	alerts := sink.alerts()
	if len(alerts) != 1 || alerts[0].Event != AlarmWriteFailed || alerts[0].State != webhook.AlertRaised ||
		!strings.Contains(alerts[0].Text, "the journal cannot be written") {
		t.Errorf("alerts: %+v", alerts)
	}
	log := logs.String()
	if n := errorLines(log, "ALARM: the journal cannot be written"); n != 1 {
		t.Errorf("%d alarm lines in the log:\n%s", n, log)
	}
	if !strings.Contains(log, "journal write failed; stopping all sessions") {
		t.Errorf("the journal's own line is not in serve's log:\n%s", log)
	}
	ts.cancel()
	ts.cancel = nil
	<-ts.done
	ts.journal.Close()
}

// TestSlowCommitAlarm: an append that waits past slow_commit makes
// /readyz not ready and raises one alarm (one ERROR line, the metrics,
// one alert), however many commits are slow; once commits are on time
// again for as long as the threshold, one alert says it cleared.
func TestSlowCommitAlarm(t *testing.T) {
	t.Parallel()
	sink := startAlertSink(t)
	var logs syncBuffer
	logger := hclog.New(&hclog.LoggerOptions{Name: "bastion", Output: &logs, Level: hclog.Info})
	slow := &slowStore{}
	config := e2eConfigBase + "grants {\n  webhook_url = \"" + sink.URL + "/hook\"\n}\nalerts {\n  slow_commit = \"1s\"\n}\n"
	// Commits that skip the fsync (synchronous=NORMAL), so that those
	// meant to be on time stay on time while other tests load the disk;
	// no checkpoint kept while the log grows, so that the slow commits
	// are the test's appends alone.
	ts := startServerWith(t, startOP(t), config, certauth.AlgorithmEd25519, serverTweaks{logger: logger,
		storage: storage.Options{Synchronous: storage.SyncNormal}, publishInterval: time.Hour,
		wrap: func(st storage.Store) storage.Store { slow.Store = st; return slow }})
	ctx := context.Background()

	// A threshold well above what a commit takes on a loaded machine
	// running the whole suite with -race, tests in parallel, and slow
	// commits well above it.
	slow.delay.Store(int64(2 * time.Second))
	done := make(chan error, 1)
	var seen atomic.Bool
	go func() {
		// Slow commits, one after the other, until /readyz has been seen
		// saying so (at least two: one alarm however many), so that a
		// loaded machine that answers /readyz late still sees one.
		var err error
		for n := 0; n < 2 || !seen.Load() && n < 15; n++ {
			if _, err = ts.journal.AppendEvent(ctx, "test.poke", recorder.Attrs{"a": "b"}); err != nil {
				break
			}
		}
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := getHealth(t, ts, "/readyz")
		if code == 503 && body["journal"] == "slow" && body["oldest_pending_seconds"].(float64) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for /readyz to say the journal is slow")
		}
		time.Sleep(10 * time.Millisecond)
	}
	seen.Store(true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	metrics := scrape(t, ts)
	if metricValue(metrics, `bastion_journal_alarms_total{alarm="journal.slow_commit"}`) != 1 ||
		metricValue(metrics, `bastion_journal_alarm{alarm="journal.slow_commit"}`) != 1 ||
		metricValue(metrics, `bastion_journal_commit_seconds_bucket{le="1"}`) >= metricValue(metrics, "bastion_journal_commit_seconds_count") {
		t.Errorf("metrics while slow:\n%s", metrics)
	}

	slow.delay.Store(0)
	for range 5 {
		if _, err := ts.journal.AppendEvent(ctx, "test.poke", recorder.Attrs{"a": "b"}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the alarm to clear", func() bool { return len(sink.alerts()) >= 2 })
	time.Sleep(300 * time.Millisecond)
	alerts := sink.alerts()
	if len(alerts) != 2 || alerts[0].Event != AlarmSlowCommit || alerts[0].State != webhook.AlertRaised || alerts[0].Attrs["threshold"] != "1s" ||
		alerts[1].Event != AlarmSlowCommit || alerts[1].State != webhook.AlertCleared || !strings.Contains(alerts[0].Text, "ALARM") {
		t.Errorf("alerts: %+v", alerts)
	}
	metrics = scrape(t, ts)
	if metricValue(metrics, `bastion_journal_alarms_total{alarm="journal.slow_commit"}`) != 1 ||
		metricValue(metrics, `bastion_journal_alarm{alarm="journal.slow_commit"}`) != 0 || metricValue(metrics, "bastion_journal_up") != 1 {
		t.Errorf("metrics after:\n%s", metrics)
	}
	if code, body := getHealth(t, ts, "/readyz"); code != 200 || body["journal"] != "ok" {
		t.Errorf("/readyz after: %d %v", code, body)
	}
	if n := errorLines(logs.String(), "ALARM: a journal commit is slower than the threshold"); n != 1 {
		t.Errorf("%d alarm lines in the log:\n%s", n, logs.String())
	}
}
