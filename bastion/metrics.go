package bastion

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// metrics are the bastion's Prometheus metrics, served at GET /metrics.
// Label values are only fixed reasons and results from this code, never
// identities, addresses, logins or serials, so the number of series is
// bounded.
type metrics struct {
	reg *prometheus.Registry

	connsOpen     prometheus.Gauge
	connsTotal    prometheus.Counter
	connsRefused  *prometheus.CounterVec // reason
	auths         *prometheus.CounterVec // result, reason
	certificates  *prometheus.CounterVec // result, reason
	journalEvents *prometheus.CounterVec // result
	sessions      *prometheus.CounterVec // request
	sessionEnds   *prometheus.CounterVec // reason
	bytes         *prometheus.CounterVec // direction
	// bytesIn and bytesOut are bytes' two series, looked up once: they
	// are counted on the session pumps' path.
	bytesIn, bytesOut prometheus.Counter
	decisions         *prometheus.CounterVec // action, result
	reloads           *prometheus.CounterVec // result
	// transportRefusals are the API requests net/http refused before
	// any handler ran (see transportWatch).
	transportRefusals *prometheus.CounterVec // protocol, reason
	// commitSeconds is the time from an append to its durable commit,
	// per batch (its oldest append).
	commitSeconds prometheus.Histogram
	alarms        *prometheus.CounterVec // alarm: raised
	alarmsRaised  *prometheus.GaugeVec   // alarm: 1 while raised
}

// newMetrics makes the metrics; liveSessions, if not nil, reports the SSH
// sessions running.
func newMetrics(liveSessions func() float64) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.connsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bastion_ssh_connections", Help: "SSH connections open now.",
	})
	m.connsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bastion_ssh_connections_accepted_total", Help: "SSH connections accepted.",
	})
	m.connsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bastion_ssh_connections_refused_total", Help: "SSH connections closed by the bastion before they authenticated, by reason: at accept (too_many_connections), or to make room under max_unauthenticated (evicted_unauthenticated).",
	}, []string{"reason"})
	m.auths = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bastion_ssh_authentications_total", Help: "SSH authentications decided, by result (accepted, refused) and the reason of a refusal.",
	}, []string{"result", "reason"})
	m.certificates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bastion_certificates_total", Help: "Certificate requests answered by the API, by result (issued, refused) and the reason of a refusal.",
	}, []string{"result", "reason"})
	m.journalEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bastion_journal_events_total", Help: "Journal events the front door appended, by result (committed, failed).",
	}, []string{"result"})
	m.sessions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bastion_ssh_sessions_started_total", Help: "Recorded SSH sessions started, by request (shell, exec, subsystem, direct-tcpip).",
	}, []string{"request"})
	m.sessionEnds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bastion_ssh_sessions_ended_total", Help: "Recorded SSH sessions ended, by the reason of their end leaf.",
	}, []string{"reason"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bastion_ssh_recorded_bytes_total", Help: "Bytes recorded and forwarded by the front door, by direction (input: to the target; output: to the client).",
	}, []string{"direction"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bastion_policy_decisions_total", Help: "Policy decisions the front door asked for, by action and result (allow, deny).",
	}, []string{"action", "result"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bastion_policy_reloads_total", Help: "Reloads of the configuration and policy, by result (loaded; refused, for mistakes or for changes that take a restart).",
	}, []string{"result"})
	m.transportRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bastion_api_transport_refusals_total",
		Help: "API requests refused by the HTTP transport before bastion's handler ran (not journaled), by protocol (http/1.1, h2) and reason (headers_too_large: headers over the 1 MiB limit; connection_error: an HTTP/2 connection ended by a protocol error, as a single header field over the limit is).",
	}, []string{"protocol", "reason"})
	m.commitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "bastion_journal_commit_seconds",
		Help:    "Time from an append to the journal to its durable commit, per committed batch (measured from the batch's oldest append).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	m.alarms = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bastion_journal_alarms_total", Help: "Alarms raised, by alarm (journal.slow_commit, journal.write_failed; with witnesses, witness.refused, witness.stale and witness.quorum): one per change of state, not per commit or push.",
	}, []string{"alarm"})
	m.alarmsRaised = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bastion_journal_alarm", Help: "1 while the alarm is raised, 0 once it clears, by alarm (journal.slow_commit, journal.write_failed; with witnesses, witness.refused and witness.stale while at least one witness is in that state, and witness.quorum).",
	}, []string{"alarm"})
	m.reg.MustRegister(m.connsOpen, m.connsTotal, m.connsRefused, m.auths, m.certificates, m.journalEvents,
		m.sessions, m.sessionEnds, m.bytes, m.decisions, m.reloads, m.transportRefusals,
		m.commitSeconds, m.alarms, m.alarmsRaised,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.connsRefused.WithLabelValues(events.ReasonTooManyConnections)
	m.connsRefused.WithLabelValues(front.ConnEvicted)
	m.auths.WithLabelValues("accepted", "")
	m.certificates.WithLabelValues("issued", "")
	m.bytesIn = m.bytes.WithLabelValues("input")
	m.bytesOut = m.bytes.WithLabelValues("output")
	m.reloads.WithLabelValues("loaded")
	m.reloads.WithLabelValues("refused")
	m.transportRefusals.WithLabelValues("http/1.1", TransportHeadersTooLarge)
	m.transportRefusals.WithLabelValues("h2", TransportHeadersTooLarge)
	m.transportRefusals.WithLabelValues("h2", TransportH2ConnectionError)
	for _, a := range []string{AlarmSlowCommit, AlarmWriteFailed} {
		m.alarms.WithLabelValues(a)
		m.alarmsRaised.WithLabelValues(a)
	}
	if liveSessions != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bastion_ssh_sessions", Help: "SSH sessions running now.",
		}, liveSessions))
	}
	return m
}

// watchJournal adds the journal's gauges: up, 1 while the journal can be
// written; pendingSeconds, how long its oldest uncommitted append has
// waited.
func (m *metrics) watchJournal(up, pendingSeconds func() float64) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bastion_journal_up", Help: "1 while the journal can be written, 0 once a write failed (sessions are then ended and refused).",
		}, up),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bastion_journal_oldest_pending_seconds", Help: "How long the oldest append not yet committed to the journal has waited; 0 when none waits.",
		}, pendingSeconds))
}

// alarm notes that alarm was raised or cleared.
func (m *metrics) alarm(alarm string, raised bool) {
	if raised {
		m.alarms.WithLabelValues(alarm).Inc()
		m.alarmsRaised.WithLabelValues(alarm).Set(1)
		return
	}
	m.alarmsRaised.WithLabelValues(alarm).Set(0)
}

// handler serves the metrics in the Prometheus text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// The front door counts through front.Metrics.
var _ front.Metrics = (*metrics)(nil)

func (m *metrics) ConnOpened() {
	m.connsTotal.Inc()
	m.connsOpen.Inc()
}

func (m *metrics) ConnClosed() { m.connsOpen.Dec() }

func (m *metrics) ConnRefused(reason string) { m.connsRefused.WithLabelValues(reason).Inc() }

func (m *metrics) JournalEvent(committed bool) {
	result := "failed"
	if committed {
		result = "committed"
	}
	m.journalEvents.WithLabelValues(result).Inc()
}

func (m *metrics) AuthAccepted() { m.auths.WithLabelValues("accepted", "").Inc() }

func (m *metrics) SessionStarted(request string) {
	m.sessions.WithLabelValues(boundedReason(request)).Inc()
}

func (m *metrics) SessionEnded(reason string) {
	m.sessionEnds.WithLabelValues(boundedReason(reason)).Inc()
}

// Recorded counts n bytes of kind recorded: input, or output (and stderr).
func (m *metrics) Recorded(kind recorder.Kind, n int) {
	switch kind {
	case recorder.KindInput:
		m.bytesIn.Add(float64(n))
	case recorder.KindOutput, recorder.KindStderr:
		m.bytesOut.Add(float64(n))
	}
}

func (m *metrics) Decided(action string, allow bool) {
	result := "deny"
	if allow {
		result = "allow"
	}
	m.decisions.WithLabelValues(boundedReason(action), result).Inc()
}

func (m *metrics) AuthRefused(reason string) {
	m.auths.WithLabelValues("refused", boundedReason(reason)).Inc()
}

// reasonPattern is what a reason label value may look like; anything
// else is counted as "other".
var reasonPattern = regexp.MustCompile(`^[a-z0-9_.-]{1,48}$`)

func boundedReason(r string) string {
	if !reasonPattern.MatchString(r) {
		return "other"
	}
	return r
}

// withMetrics serves GET /metrics beside api, and counts the answers of
// POST /v1/certificates: issued, or refused with the reason the API
// answered.
func (m *metrics) withMetrics(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handler())
	mux.Handle("POST /v1/certificates", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		api.ServeHTTP(rec, r)
		if rec.status == 0 || rec.status/100 == 2 {
			m.certificates.WithLabelValues("issued", "").Inc()
			return
		}
		var e struct {
			Reason string `json:"reason"`
		}
		reason := "unknown"
		if json.Unmarshal(rec.body.Bytes(), &e) == nil && e.Reason != "" {
			reason = boundedReason(e.Reason)
		}
		m.certificates.WithLabelValues("refused", reason).Inc()
	}))
	mux.Handle("/", api)
	return mux
}

// statusRecorder notes a response's status and, for an error, the start
// of its body (where the JSON reason is).
type statusRecorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if s.status/100 != 2 && s.body.Len() < 4096 {
		s.body.Write(p[:min(len(p), 4096-s.body.Len())])
	}
	return s.ResponseWriter.Write(p)
}
