package bastion

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionhq/bastion/policy/webhook"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/witness"
)

// Witness events: a witness's change of state, one leaf per change, never
// one per push. Attributes: witness (its name in the configuration), key
// (its verifier key), url, state (refused, stale, ok), was (the state
// before), detail (why), latest (the size of the latest kept checkpoint),
// cosigned (the largest size the witness is known to have cosigned; -1
// when unknown). docs/witnesses.md.
const (
	EventWitnessRefused   = events.WitnessRefused
	EventWitnessStale     = events.WitnessStale
	EventWitnessRecovered = events.WitnessRecovered
)

// Witness alarms: the "event" of an alert, and the "alarm" label of the
// metrics. Each is raised while at least one witness is in that state.
const (
	AlarmWitnessRefused = "witness.refused"
	AlarmWitnessStale   = "witness.stale"
	// AlarmWitnessQuorum is raised while fewer witnesses than the
	// threshold cosign: the journal's newest leaves are not anchored.
	AlarmWitnessQuorum = "witness.quorum"
)

// DefaultWitnessStaleAfter is how long a kept checkpoint may wait for a
// witness's cosignature before the witness is stale.
const DefaultWitnessStaleAfter = 10 * time.Minute

// witnessFlushTimeout bounds how long serve waits, as it stops, for the
// witnesses to cosign its last checkpoint.
const witnessFlushTimeout = 10 * time.Second

// WitnessesConfig is the witness blocks and the witnesses block.
type WitnessesConfig struct {
	List []WitnessConfig
	// Threshold is how many witnesses must cosign a checkpoint for it to
	// count as witnessed (the default: all of them).
	Threshold int
	// StaleAfter is how long a kept checkpoint may wait for a witness's
	// cosignature before the witness is stale and the alarm raised.
	StaleAfter time.Duration
}

// WitnessConfig is one witness block.
type WitnessConfig struct {
	Name string
	// URL is its submission prefix (add-checkpoint is URL/add-checkpoint).
	URL string
	Key *witness.Key
}

// summary is what a reload compares: the keys' verifiers are functions.
func (w WitnessesConfig) summary() []string {
	out := []string{strconv.Itoa(w.Threshold), w.StaleAfter.String()}
	for _, x := range w.List {
		out = append(out, x.Name, x.URL, x.Key.VKey)
	}
	return out
}

type witnessBlock struct {
	Name     string    `hcl:"name,label"`
	URL      string    `hcl:"url"`
	Key      string    `hcl:"key"`
	DefRange hcl.Range `hcl:",def_range"`
}

type witnessesBlock struct {
	Threshold  *int      `hcl:"threshold,optional"`
	StaleAfter *string   `hcl:"stale_after,optional"`
	DefRange   hcl.Range `hcl:",def_range"`
}

func (v *validator) witnesses(fc *fileConfig, cfg *Config) {
	names := map[string]bool{}
	keys := map[string]string{}
	for _, b := range fc.Witness {
		if !providerName.MatchString(b.Name) {
			v.errf(b.DefRange, "witness %q: a name is lowercase letters, digits, '-' and '_'", b.Name)
		}
		if names[b.Name] {
			v.errf(b.DefRange, "witness %q is defined twice", b.Name)
		}
		names[b.Name] = true
		u, err := url.Parse(b.URL)
		if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
			v.attrf(b.DefRange, "url", "witness %q: url = %q is not an https URL (http only to a loopback address), the witness's submission prefix", b.Name, b.URL)
		}
		k, err := witness.ParseKey(b.Key)
		if err != nil {
			v.attrf(b.DefRange, "key", "witness %q: %v", b.Name, err)
			continue
		}
		id := fmt.Sprintf("%s+%08x", k.Name, k.Hash)
		if other, ok := keys[id]; ok {
			v.attrf(b.DefRange, "key", "witness %q has the key of witness %q: each witness counts once", b.Name, other)
		}
		keys[id] = b.Name
		cfg.Witnesses.List = append(cfg.Witnesses.List, WitnessConfig{Name: b.Name, URL: b.URL, Key: k})
	}
	cfg.Witnesses.Threshold = len(cfg.Witnesses.List)
	cfg.Witnesses.StaleAfter = DefaultWitnessStaleAfter
	if w := fc.Witnesses; w != nil {
		if len(fc.Witness) == 0 {
			v.errf(w.DefRange, "a witnesses block without witness blocks: add witness \"NAME\" { url = \"…\" key = \"…\" } blocks")
		}
		if w.Threshold != nil {
			if *w.Threshold < 1 || *w.Threshold > len(fc.Witness) {
				v.attrf(w.DefRange, "threshold", "witnesses threshold = %d: it is at least 1 and at most the %d witnesses configured", *w.Threshold, len(fc.Witness))
			}
			cfg.Witnesses.Threshold = *w.Threshold
		}
		cfg.Witnesses.StaleAfter = v.duration(w.DefRange, "stale_after", w.StaleAfter, DefaultWitnessStaleAfter)
	}
}

// witnessing pushes the journal's kept checkpoints to the configured
// witnesses, keeps their cosignatures beside the checkpoints, and turns
// their changes of state into journal events and alarms.
type witnessing struct {
	cfg     WitnessesConfig
	client  *witness.Client
	journal *liveJournal
	log     hclog.Logger
	metrics *metrics
	alerts  *webhook.Alerts

	// mu serializes the alarms' updates (each witness's goroutine makes
	// them); quorum, refused and stale are the alarms raised.
	mu                     sync.Mutex
	quorum, refused, stale bool
	// stopping is set as serve flushes its last checkpoint: a change of
	// state then is logged and alerted, not journaled, since a leaf after
	// the last checkpoint could never be witnessed.
	stopping atomic.Bool
}

// witnessLog is the journal in force, as the client needs it.
type witnessLog struct{ l *liveJournal }

func (w witnessLog) ConsistencyProof(ctx context.Context, old, size int64) (tlog.TreeProof, error) {
	return w.l.current().ConsistencyProof(ctx, old, size)
}

func (w witnessLog) AddCosignatures(ctx context.Context, note []byte) error {
	return w.l.current().AddCosignatures(ctx, note)
}

func newWitnessing(cfg WitnessesConfig, j *liveJournal, m *metrics, alerts *webhook.Alerts, log hclog.Logger) (*witnessing, error) {
	w := &witnessing{cfg: cfg, journal: j, log: log, metrics: m, alerts: alerts}
	list := make([]witness.Endpoint, 0, len(cfg.List))
	for _, x := range cfg.List {
		list = append(list, witness.Endpoint{Name: x.Name, URL: x.URL, Key: x.Key})
	}
	c, err := witness.NewClient(witness.ClientOptions{
		Witnesses: list, StaleAfter: cfg.StaleAfter, Log: witnessLog{j}, Logger: log, OnChange: w.changed,
	})
	if err != nil {
		return nil, err
	}
	w.client = c
	m.watchWitnesses(c)
	for _, a := range []string{AlarmWitnessRefused, AlarmWitnessStale, AlarmWitnessQuorum} {
		m.alarms.WithLabelValues(a)
		m.alarmsRaised.WithLabelValues(a)
	}
	return w, nil
}

// changed journals a witness's change of state and raises or clears the
// alarms. It runs on the witness's goroutine in the client.
func (w *witnessing) changed(before, now witness.Status) {
	event, level := EventWitnessRecovered, hclog.Info
	switch now.State {
	case witness.StateRefused:
		event, level = EventWitnessRefused, hclog.Error
	case witness.StateStale:
		event, level = EventWitnessStale, hclog.Error
	}
	attrs := recorder.Attrs{
		"witness": now.Name, "key": now.Key, "url": now.URL, "state": now.State, "was": before.State,
		"latest": strconv.FormatInt(now.Latest, 10), "cosigned": strconv.FormatInt(now.Cosigned, 10),
	}
	if now.Detail != "" {
		attrs["detail"] = limitAttr(now.Detail)
	}
	text := fmt.Sprintf("bastion: witness %s cosigns the journal's checkpoints again (it was %s)", now.Name, before.State)
	if level == hclog.Error {
		text = fmt.Sprintf("bastion: ALARM: witness %s is %s: %s", now.Name, now.State, now.Detail)
		w.log.Error("ALARM: witness "+now.State, "witness", now.Name, "url", now.URL, "detail", now.Detail, "latest", now.Latest, "cosigned", now.Cosigned)
	} else {
		w.log.Info("witness cosigns again", "witness", now.Name, "was", before.State)
	}
	if !w.stopping.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := w.journal.AppendEvent(ctx, event, attrs); err != nil {
			w.log.Error("journal a witness's change of state", "witness", now.Name, "event", event, "error", err)
		}
	}
	state := webhook.AlertCleared
	if level == hclog.Error {
		state = webhook.AlertRaised
	}
	postAlert(w.alerts, event, state, text, attrs)
	w.alarmGauges()
}

// alarmGauges sets the alarms' gauges from every witness's state, and
// raises or clears the quorum alarm.
func (w *witnessing) alarmGauges() {
	w.mu.Lock()
	defer w.mu.Unlock()
	refused, stale, ok := 0, 0, 0
	for _, s := range w.client.Status() {
		switch s.State {
		case witness.StateRefused:
			refused++
		case witness.StateStale:
			stale++
		case witness.StateOK, witness.StatePending, witness.StateFailing:
			ok++
		}
	}
	// Each alarm counts once as it is raised, and its gauge follows.
	set := func(alarm string, raised *bool, on bool) {
		if on != *raised {
			w.metrics.alarm(alarm, on)
		}
		*raised = on
	}
	set(AlarmWitnessRefused, &w.refused, refused > 0)
	set(AlarmWitnessStale, &w.stale, stale > 0)
	lost := ok < w.cfg.Threshold
	was := w.quorum
	w.quorum = lost
	switch {
	case lost && !was:
		w.metrics.alarm(AlarmWitnessQuorum, true)
		text := fmt.Sprintf("bastion: ALARM: %d of %d witnesses cosign, below the threshold of %d: new leaves are not anchored outside this host", ok, len(w.cfg.List), w.cfg.Threshold)
		w.log.Error("ALARM: witness quorum lost", "cosigning", ok, "threshold", w.cfg.Threshold)
		postAlert(w.alerts, AlarmWitnessQuorum, webhook.AlertRaised, text, map[string]string{"cosigning": strconv.Itoa(ok), "threshold": strconv.Itoa(w.cfg.Threshold)})
	case !lost && was:
		w.metrics.alarm(AlarmWitnessQuorum, false)
		text := fmt.Sprintf("bastion: %d of %d witnesses cosign again (threshold %d)", ok, len(w.cfg.List), w.cfg.Threshold)
		w.log.Info("witness quorum back", "cosigning", ok, "threshold", w.cfg.Threshold)
		postAlert(w.alerts, AlarmWitnessQuorum, webhook.AlertCleared, text, map[string]string{"cosigning": strconv.Itoa(ok), "threshold": strconv.Itoa(w.cfg.Threshold)})
	}
}

// limitAttr bounds a detail kept in a leaf, cut on a character boundary.
func limitAttr(s string) string {
	const max = 512
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// witnessReadiness is a witness in GET /readyz.
type witnessReadiness struct {
	Name  string `json:"name"`
	State string `json:"state"`
	// Cosigned is the largest size it has cosigned (-1: unknown),
	// Latest the latest kept checkpoint's size.
	Cosigned int64 `json:"cosigned"`
	Latest   int64 `json:"latest"`
	// WaitingSeconds is how long the oldest kept checkpoint it has not
	// cosigned has waited; 0 when it is caught up.
	WaitingSeconds float64 `json:"waiting_seconds"`
	Detail         string  `json:"detail,omitempty"`
}

// readiness is the witnesses' part of GET /readyz: they never make serve
// not ready (sessions go on while a witness is down); the alarms say so.
func (w *witnessing) readiness() (list []witnessReadiness, cosigning int) {
	now := time.Now()
	for _, s := range w.client.Status() {
		r := witnessReadiness{Name: s.Name, State: s.State, Cosigned: s.Cosigned, Latest: s.Latest, Detail: s.Detail}
		if !s.WaitingSince.IsZero() {
			r.WaitingSeconds = now.Sub(s.WaitingSince).Seconds()
		}
		if s.State != witness.StateRefused && s.State != witness.StateStale {
			cosigning++
		}
		list = append(list, r)
	}
	return list, cosigning
}

// watchWitnesses adds the witnesses' gauges and counters.
func (m *metrics) watchWitnesses(c *witness.Client) {
	m.reg.MustRegister(witnessCollector{c})
}

type witnessCollector struct{ c *witness.Client }

var (
	witnessStateDesc = prometheus.NewDesc("bastion_witness_state",
		"1 for a witness's current state (pending, ok, failing, refused, stale), 0 for the others.", []string{"witness", "state"}, nil)
	witnessCosignedDesc = prometheus.NewDesc("bastion_witness_cosigned_size",
		"The largest tree size a witness has cosigned for this journal (-1: unknown).", []string{"witness"}, nil)
	witnessLatestDesc = prometheus.NewDesc("bastion_witness_latest_size",
		"The size of the latest kept checkpoint pushed to a witness.", []string{"witness"}, nil)
	witnessCosignedAtDesc = prometheus.NewDesc("bastion_witness_cosigned_timestamp_seconds",
		"The witness's timestamp on its latest cosignature (0: none since serve started).", []string{"witness"}, nil)
	witnessWaitingDesc = prometheus.NewDesc("bastion_witness_waiting_seconds",
		"How long the oldest kept checkpoint a witness has not cosigned has waited; 0 when it is caught up.", []string{"witness"}, nil)
	witnessPushesDesc = prometheus.NewDesc("bastion_witness_requests_total",
		"add-checkpoint requests sent to a witness.", []string{"witness"}, nil)
	witnessFailuresDesc = prometheus.NewDesc("bastion_witness_failures_total",
		"Pushes to a witness that did not end in its cosignature.", []string{"witness"}, nil)
)

func (w witnessCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{witnessStateDesc, witnessCosignedDesc, witnessLatestDesc, witnessCosignedAtDesc, witnessWaitingDesc, witnessPushesDesc, witnessFailuresDesc} {
		ch <- d
	}
}

func (w witnessCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, s := range w.c.Status() {
		for _, st := range []string{witness.StatePending, witness.StateOK, witness.StateFailing, witness.StateRefused, witness.StateStale} {
			v := 0.0
			if s.State == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(witnessStateDesc, prometheus.GaugeValue, v, s.Name, st)
		}
		ch <- prometheus.MustNewConstMetric(witnessCosignedDesc, prometheus.GaugeValue, float64(s.Cosigned), s.Name)
		ch <- prometheus.MustNewConstMetric(witnessLatestDesc, prometheus.GaugeValue, float64(s.Latest), s.Name)
		at := 0.0
		if !s.CosignedAt.IsZero() {
			at = float64(s.CosignedAt.Unix())
		}
		ch <- prometheus.MustNewConstMetric(witnessCosignedAtDesc, prometheus.GaugeValue, at, s.Name)
		waiting := 0.0
		if !s.WaitingSince.IsZero() {
			waiting = now.Sub(s.WaitingSince).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(witnessWaitingDesc, prometheus.GaugeValue, waiting, s.Name)
		ch <- prometheus.MustNewConstMetric(witnessPushesDesc, prometheus.CounterValue, float64(s.Pushes), s.Name)
		ch <- prometheus.MustNewConstMetric(witnessFailuresDesc, prometheus.CounterValue, float64(s.Failures), s.Name)
	}
}
