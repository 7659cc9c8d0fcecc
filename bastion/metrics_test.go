package bastion

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/recorder/events"
)

// limitConfig is frontConfig with at most 2 connections per address.
var limitConfig = strings.Replace(frontConfig, `host_names = ["bastion.example"]`, `host_names = ["bastion.example"]
  max_connections_per_address = 2`, 1)

// closedAtOnce reports whether the server closes c without a word.
func closedAtOnce(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 64))
	return n == 0 && err == io.EOF
}

// TestFrontConnLimit: connections beyond the limit from one address are
// closed at accept while the address's connections have authenticated;
// the refusals are journaled, not one event each; a closed connection
// frees its slot.
func TestFrontConnLimit(t *testing.T) {
	t.Parallel()
	fx := startFrontWith(t, "ops", limitConfig)
	ts := fx.ts
	signer := fx.certSigner(t)
	var held []*ssh.Client
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ts.SSHAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for range 2 {
		c, err := fx.dialFrom("", "ops@box", signer)
		if err != nil {
			t.Fatalf("connection under the limit: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		held = append(held, c)
	}
	const refused = 10
	for i := range refused {
		if !closedAtOnce(t, dial()) {
			t.Fatalf("connection %d over the limit was not closed", i+3)
		}
	}
	held[0].Close()
	var ok bool
	for range 50 { // the server notices the close a moment later
		c := dial()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 8)
		if n, _ := c.Read(buf); n > 0 {
			ok = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !ok {
		t.Fatal("a closed connection's slot was not freed")
	}
	body := scrape(t, ts)
	if !strings.Contains(body, `bastion_ssh_connections_refused_total{reason="too_many_connections"} `) {
		t.Errorf("metrics:\n%s", body)
	}
	ts.stop(t)
	evs := ts.events(t, events.ConnRefused)
	if len(evs) == 0 || len(evs) > 3 {
		t.Fatalf("%d events: %v", len(evs), evs)
	}
	total := 0
	for _, e := range evs {
		if e["client"] != "127.0.0.1" || e["reason"] != events.ReasonTooManyConnections || e["limit"] != "2" {
			t.Errorf("event %v", e)
		}
		n, _ := strconv.Atoi(e["refused"])
		total += n
	}
	if evs[0]["refused"] != "1" || total < refused {
		t.Errorf("events %v: %d refused, want at least %d", evs, total, refused)
	}
}

// scrape reads GET /metrics from the API.
func scrape(t *testing.T, ts *testServer) string {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: insecurePinned(t, ts.TLS().Fingerprint)}}
	resp, err := hc.Get(ts.APIURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %s %s\n%s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	return string(b)
}

// TestMetrics: GET /metrics counts certificates, authentications and
// sessions, and names no identity, login or address.
func TestMetrics(t *testing.T) {
	t.Parallel()
	fx := startFront(t) // issues one certificate
	commits := metricValue(scrape(t, fx.ts), "bastion_journal_commit_seconds_count")
	if out, code := fx.ssh(t, fx.key, "ops@box", "printf 12345"); code != 0 {
		t.Fatalf("ssh: %d %s", code, out)
	}
	if out, code := fx.ssh(t, fx.key, "nobody@box", "true"); code == 0 {
		t.Fatalf("wrong principal accepted: %s", out)
	}
	body := scrape(t, fx.ts)
	for _, want := range []string{
		`bastion_certificates_total{reason="",result="issued"} 1`,
		`bastion_ssh_authentications_total{reason="",result="accepted"} 1`,
		`bastion_ssh_authentications_total{reason="principal_not_in_certificate",result="refused"} 1`,
		`bastion_ssh_connections_accepted_total 2`,
		`bastion_ssh_sessions 0`,
		`bastion_ssh_sessions_started_total{request="exec"} 1`,
		`bastion_ssh_sessions_ended_total{reason="exited"} 1`,
		`bastion_ssh_recorded_bytes_total{direction="output"} 5`,
		`bastion_policy_decisions_total{action="connect",result="allow"} 1`,
		`bastion_policy_decisions_total{action="exec",result="allow"} 1`,
		`bastion_policy_reloads_total{result="refused"} 0`,
		`# TYPE bastion_ssh_connections gauge`,
		`bastion_journal_up 1`,
		`bastion_journal_alarms_total{alarm="journal.slow_commit"} 0`,
		`# TYPE bastion_journal_commit_seconds histogram`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in:\n%s", want, body)
		}
	}
	// The session's start, frames and end were committed, and measured.
	if n := metricValue(body, "bastion_journal_commit_seconds_count"); commits < 1 || n <= commits {
		t.Errorf("commits measured: %v before the session, %v after", commits, n)
	}
	for _, secret := range []string{"agent-1", "ops", "nobody", "127.0.0.1"} {
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "bastion_") && strings.Contains(line, secret) {
				t.Errorf("metrics name %q: %s", secret, line)
			}
		}
	}
}

// TestFrontConnLimitEvictsSilent: an address at its limit with connections
// that have not authenticated (silent ones, behind a NAT) does not lock
// its other clients out: the oldest of them is closed to make room for a
// new connection, which logs in.
func TestFrontConnLimitEvictsSilent(t *testing.T) {
	t.Parallel()
	fx := startFrontWith(t, "ops", limitConfig)
	var silent []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", fx.ts.SSHAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		// Accepted and greeted before the next comes: the server's
		// banner has arrived, so the limit counts this connection.
		silent = append(silent, readBanner(t, c))
	}
	c, err := fx.dialFrom("", "ops@box", fx.certSigner(t))
	if err != nil {
		t.Fatalf("a login from an address full of silent connections: %v", err)
	}
	defer c.Close()
	if !closedAtOnce(t, silent[0]) {
		t.Fatal("the oldest silent connection was not closed")
	}
	if n := testutil.ToFloat64(fx.ts.metrics.connsRefused.WithLabelValues(front.ConnEvicted)); n != 1 {
		t.Fatalf("%v evicted, want 1", n)
	}
}

// readBanner reads the server's version line from c, and returns c.
func readBanner(t *testing.T, c net.Conn) net.Conn {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 0, 64)
	one := make([]byte, 1)
	for len(buf) < 255 {
		n, err := c.Read(one)
		if err != nil || n == 0 {
			break
		}
		buf = append(buf, one[0])
		if one[0] == '\n' {
			break
		}
	}
	if !strings.HasPrefix(string(buf), "SSH-2.0-") {
		t.Fatalf("no version line: %q", buf)
	}
	return c
}
