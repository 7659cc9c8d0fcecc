// Package evidence builds the examiner's report of a journal: for one
// period, who held privileged access, who granted it and for how long,
// what was done with it, what was refused, and the proof that the record
// is whole, as JSON ([Report], schema in docs/evidence.schema.json) and as
// one self-contained HTML page ([WriteHTML]).
//
// # Sources
//
// Everything comes from the journal's signed records, read in one snapshot
// through the same APIs as verification and playback:
// [recorder.VerifySnapshot] for the integrity statement; [recorder.ReadLog]
// up to the latest checkpoint verification found valid, for the events
// (cert.*, grant.*, ssh.*, serve.*, policy.*, journal.accessed) and the
// sessions of the period, selected by the times and attributes inside
// their leaves; and, for those sessions only, their frames, proven against
// the signed log by [recorder.OpenSession] and summarized by
// [playback.Describe]. No index column and no listing table decides what
// the report shows. The event names and attributes are those the
// packages certauth, bastion and recorder write; docs/evidence.md lists
// them.
//
// # Determinism
//
// A report depends only on the journal, the options and [Options.Now]:
// every list is ordered by leaf index, every time is UTC, so that the same
// journal gives the same bytes.
package evidence

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/playback"
	"github.com/bastionhq/bastion/storage"
)

// refusalEvents are the events of section 6's refused actions.
var refusalEvents = []string{events.AuthRefused, events.ConnRefused, events.RequestRefused, events.ChannelRefused, events.CertRefused, events.GrantRefused}

// grantEvents are the events of a grant's life, in no particular order.
var grantEvents = []string{events.GrantRequested, events.GrantApproved, events.GrantDenied, events.GrantActivated, events.GrantExpired, events.GrantEnded, events.GrantRevoked}

// PastGrantGrace is how long after its grant's end a session's end record
// may be committed before the session counts as running past the grant:
// the front door ends it when the grant ends, and the end record takes a
// moment to commit.
const PastGrantGrace = 5 * time.Second

// Options configure [Build].
type Options struct {
	// From and To bound the period; To must not be before From.
	From, To time.Time
	// Targets limits grants, sessions and refusals to these targets (and
	// the inventory to the identities that reached them); empty means all.
	Targets []string
	// Verifier is the journal's public key. Required.
	Verifier note.Verifier
	// Journal names the journal and the key (Origin is set from the key).
	Journal JournalInfo
	// Now is the report's time: what is still open is open at Now.
	Now time.Time
	// VerifyCommand is the command that checks the journal
	// independently; VerifyOutput renders verification as "bastion
	// verify" prints it. Both are the caller's, which owns the CLI.
	VerifyCommand string
	VerifyOutput  func(*recorder.Report) string
	// Identities limits the report to these identities (SUBJECT@PROVIDER,
	// or local:USER@HOST); empty means all.
	Identities []string
	// Kept is a checkpoint the examiner kept outside the bastion's host,
	// read from KeptFile: the journal must extend it, and the report's
	// verdict then rests on it rather than on the journal's own head.
	Kept     []byte
	KeptFile string
	// Witnesses are the witnesses the examiner trusts: the report's
	// verdict rests on their cosignatures when the checkpoints they
	// cosigned cover the period. Live says a running server held the
	// journal (it pushes its checkpoints to them).
	Witnesses recorder.Witnesses
	Live      bool
	// Sample, when positive, picks that many sessions for detailed
	// review, reproducibly from Seed, plus every session an exception
	// names; the others are counted, not detailed.
	Sample int
	Seed   int64
	// JournalBytes is the size of the journal's files, for the
	// retention statement.
	JournalBytes int64
	// ScopeElsewhere lets Targets and Identities name what this log
	// never names, with no ScopeError: one member's part of a cluster's
	// report, whose filters the caller checks against every member's log.
	ScopeElsewhere bool
	// Member is the log's member ID in a cluster, which its serials and
	// grant numbers must carry ([recorder.VerifyOptions] Member); zero
	// outside one.
	Member uint16
}

// ScopeError is a --target or --identity that names nothing the journal
// holds: most likely a typing mistake, which would otherwise give a
// clean report of nothing.
type ScopeError struct {
	Kind       string // "target" or "identity"
	Name       string
	Suggestion string // the closest known name, or ""
	Known      int    // how many names of that kind the journal holds
}

func (e *ScopeError) Error() string {
	s := fmt.Sprintf("no %s %q in the journal", e.Kind, e.Name)
	if e.Suggestion != "" {
		s += fmt.Sprintf("; did you mean %q?", e.Suggestion)
	}
	return s
}

// Build verifies the journal in store and reads the report of the period
// from it. A journal that does not verify still gets a report, which says
// so first; an error means the report could not be made.
func Build(ctx context.Context, store storage.Store, opts Options) (*Report, error) {
	if opts.Verifier == nil {
		return nil, errors.New("evidence: the journal's public key is required")
	}
	for _, t := range []time.Time{opts.From, opts.To} {
		// Times are compared in Unix nanoseconds, as the journal keeps
		// them: beyond those years they do not fit.
		if !time.Unix(0, t.UnixNano()).Equal(t) {
			return nil, fmt.Errorf("evidence: %s is outside the years the journal's times can hold (1678 to 2262)", t.UTC().Format(time.RFC3339))
		}
	}
	if opts.To.Before(opts.From) {
		return nil, fmt.Errorf("evidence: the period ends (%s) before it starts (%s)", opts.To.UTC().Format(time.RFC3339), opts.From.UTC().Format(time.RFC3339))
	}
	snap, err := store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	vr, err := recorder.VerifySnapshot(ctx, snap, recorder.VerifyOptions{Verifier: opts.Verifier, Kept: opts.Kept, Witnesses: opts.Witnesses, Live: opts.Live,
		UnwitnessedFacts: true, Member: opts.Member})
	if err != nil {
		return nil, err
	}
	// The records the report shows are those the latest valid checkpoint
	// covers; with none, it shows nothing but the verification.
	log := &recorder.Log{}
	var logErr error
	if vr.Latest != "" {
		log, logErr = recorder.ReadLog(ctx, snap, recorder.ReadLogOptions{
			Verifier: opts.Verifier, Checkpoint: []byte(vr.Latest), Events: func(string) bool { return true }, Walls: true,
		})
		if logErr != nil {
			log = &recorder.Log{}
		}
	}
	b := &builder{ctx: ctx, snap: snap, log: log, opts: opts, bound: log.Size(),
		from: opts.From.UnixNano(), to: opts.To.UnixNano(), now: opts.Now.UTC(),
		certs: map[uint64]*certState{}, grants: map[string]*Grant{}, ids: map[string]*Identity{}, policies: map[string]*PolicyInForce{}, grantEmail: map[string]string{}, exceptional: map[string]bool{}}
	b.targets = map[string]bool{}
	for _, t := range opts.Targets {
		b.targets[t] = true
	}
	b.identities = map[string]bool{}
	for _, id := range opts.Identities {
		b.identities[id] = true
	}
	if err := b.checkScope(); err != nil && !opts.ScopeElsewhere {
		return nil, err
	}
	r := &Report{
		Format:      Format,
		GeneratedAt: b.now,
		Scope: Scope{From: opts.From.UTC(), To: opts.To.UTC(), Targets: nonNil(slices.Sorted(slices.Values(opts.Targets))),
			Identities: nonNil(slices.Sorted(slices.Values(opts.Identities)))},
		Banners:         []Banner{},
		OperatorActions: []OperatorAction{},
		LeastPrivilege:  LeastPrivilege{Policies: []PolicyInForce{}, Reach: []Reach{}},
		Journal:         opts.Journal,
		Verification: Verification{
			Intact: vr.Intact(), TreeSize: vr.TreeSize, Root: vr.Root, Sessions: vr.Sessions, SessionsChecked: vr.SessionsRead,
			Frames: vr.Frames, PayloadBytes: vr.PayloadBytes, Events: vr.Events, Checkpoints: vr.Checkpoints,
			Covered: vr.Covered, Uncovered: vr.Uncovered, Problems: []Problem{},
		},
		VerifyCommand:  opts.VerifyCommand,
		Identities:     []Identity{},
		Grants:         []Grant{},
		StandingAccess: []SessionRef{},
		Sessions:       []Session{},
		Refusals:       []Refusal{},
		Custody:        Custody{Checkpoints: []CheckpointRef{}, Accesses: []Access{}, Serve: []ServeEvent{}, Policies: []PolicyEvent{}, Gaps: []Finding{}},
		Controls:       Controls(),
	}
	r.Journal.Origin = opts.Verifier.Name()
	r.Summary.Exceptions, r.Summary.OpenItems = []Finding{}, []Finding{}
	for _, p := range vr.Problems {
		r.Verification.Problems = append(r.Verification.Problems, Problem{Leaf: p.Leaf, Where: p.Where, What: p.What})
	}
	if logErr != nil && len(r.Verification.Problems) == 0 {
		r.Verification.Intact = false
		r.Verification.Problems = append(r.Verification.Problems, Problem{Leaf: -1, Where: "log", What: logErr.Error()})
	}
	if opts.VerifyOutput != nil {
		r.Verification.Output = opts.VerifyOutput(vr)
	}
	b.r = r
	steps := []func() error{b.checkpoint, b.readCerts, b.readGrants, b.readSessions, b.readRefusals, b.readCustody, b.readPolicies, b.readOperators}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	for i := range r.Grants {
		r.Grants[i].Scope = b.scopeOf(&r.Grants[i])
	}
	b.retention()
	b.inventory()
	b.anchor(vr)
	b.findings(vr)
	b.sample()
	return r, nil
}

type builder struct {
	ctx      context.Context
	snap     storage.Snapshot
	log      *recorder.Log // the verified leaves the report reads
	opts     Options
	r        *Report
	bound    int64 // leaves at or past it are not in log: not read
	from, to int64 // the period, in Unix nanoseconds
	now      time.Time
	targets  map[string]bool
	// identities limits the report to these identities; empty: all.
	identities map[string]bool
	// policies are every policy.loaded leaf, by hash.
	policies map[string]*PolicyInForce

	certs  map[uint64]*certState
	grants map[string]*Grant
	// grantOrder is every grant by leaf, in scope or not; granted the
	// IDs in scope.
	grantOrder []*Grant
	// exceptional are the sessions an exception names.
	exceptional map[string]bool
	// grantEmail is each grant's requester's e-mail address, if known.
	grantEmail map[string]string
	ids        map[string]*Identity
}

// certState is an issued certificate with the identity it names.
type certState struct {
	Certificate
	identity, provider, issuer, subject, tokenSubject, email string
	leaf                                                     int64
}

func (b *builder) inPeriod(ns int64) bool { return ns >= b.from && ns <= b.to }

// overlaps reports whether [start, end] meets the period; end 0 is open.
func (b *builder) overlaps(start, end int64) bool {
	return start <= b.to && (end == 0 || end >= b.from)
}

func (b *builder) targetInScope(t string) bool { return len(b.targets) == 0 || b.targets[t] }

func (b *builder) identityInScope(id string) bool { return len(b.identities) == 0 || b.identities[id] }

// events calls fn for the verified event leaves named name, in index
// order.
func (b *builder) events(name string, fn func(idx int64, l *recorder.Leaf)) error {
	for _, e := range b.log.Events {
		if e.Leaf.Event == name {
			fn(e.Index, e.Leaf)
		}
	}
	return nil
}

func wall(l *recorder.Leaf) time.Time { return time.Unix(0, l.WallNS).UTC() }

func parseRFC3339(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t.UTC(), err == nil
}

// checkpoint picks the checkpoint that covers the period and lists those
// kept during it.
func (b *builder) checkpoint() error {
	kept, err := b.snap.Published(b.ctx)
	if err != nil {
		return fmt.Errorf("evidence: read checkpoints: %w", err)
	}
	var pick, witnessed *storage.Checkpoint
	var pickAt, witnessedAt, need int64
	if len(b.opts.Witnesses.Keys) > 0 {
		need = b.periodLeaves()
	}
	for i := range kept {
		c := &kept[i]
		if c.TreeSize > b.bound {
			break
		}
		if c.TreeSize < 1 {
			continue
		}
		// A checkpoint is as old as the last leaf it covers, which is
		// signed; the row's own time is not.
		if oc, err := recorder.OpenCheckpoint(c.Note, b.opts.Verifier); err != nil || oc.Size != c.TreeSize {
			continue
		}
		at := b.log.WallNS(c.TreeSize - 1)
		if b.inPeriod(at) {
			b.r.Custody.Checkpoints = append(b.r.Custody.Checkpoints, CheckpointRef{Size: c.TreeSize, Created: time.Unix(0, at).UTC()})
		}
		if pick == nil && at >= b.to {
			pick, pickAt = c, at
			b.r.Checkpoint.Why = "the first checkpoint kept at or after the end of the period: it covers every record of the period"
		}
		if len(b.opts.Witnesses.Keys) > 0 && witnessed == nil && c.TreeSize >= need && recorder.CheckCosignatures(c.Note, b.opts.Witnesses).Met() {
			witnessed, witnessedAt = c, at
		}
	}
	if witnessed != nil {
		pick, pickAt = witnessed, witnessedAt
		b.r.Checkpoint.Why = "the first checkpoint kept that the witnesses cosigned and that covers every record of the period: it carries their cosignatures"
	}
	if pick == nil {
		if b.log.Size() == 0 {
			b.r.Checkpoint.Why = "the journal has no valid signed checkpoint"
			return nil
		}
		pick = &storage.Checkpoint{TreeSize: b.log.Size(), Note: b.log.Note}
		pickAt = b.log.WallNS(b.log.Size() - 1)
		b.r.Checkpoint.Why = "the latest valid checkpoint: none was kept after the end of the period yet, and it covers every record the report reads"
	}
	b.r.Checkpoint.Note = string(pick.Note)
	b.r.Checkpoint.Size = pick.TreeSize
	b.r.Checkpoint.Created = time.Unix(0, pickAt).UTC()
	if c, err := recorder.OpenCheckpoint(pick.Note, b.opts.Verifier); err == nil {
		b.r.Checkpoint.Size = c.Size
		b.r.Checkpoint.Root = base64.StdEncoding.EncodeToString(c.Root[:])
	} else {
		b.r.Checkpoint.Why += "; it does NOT verify with the key: " + err.Error()
	}
	b.r.Summary.CheckpointsInTime = len(b.r.Custody.Checkpoints)
	return nil
}

// readCerts reads every issuance and revocation: a certificate issued
// before the period may be valid during it.
func (b *builder) readCerts() error {
	err := b.events(events.CertIssued, func(idx int64, l *recorder.Leaf) {
		a := l.Attrs
		va, ok1 := parseRFC3339(a["valid_after"])
		vb, ok2 := parseRFC3339(a["valid_before"])
		serial, err := strconv.ParseUint(a["serial"], 10, 64)
		if !ok1 || !ok2 || err != nil {
			return // verification names no such leaf bad; the issuer never writes one
		}
		c := &certState{
			Certificate: Certificate{
				Serial: serial, IssuedAt: wall(l), Principals: recorder.SplitList(a["principals"]), ValidAfter: va, ValidBefore: vb,
				TTLSeconds: int64(vb.Sub(va) / time.Second), Grant: a["grant"], Rule: a["rule"], Ticket: a["ticket"],
				Sponsor: a["sponsor"], Key: a["key.sha256"], Client: a["client.address"],
			},
			identity: a["identity"], provider: a["provider"], issuer: a["issuer"], subject: a["subject"],
			tokenSubject: a["token.subject"], email: a["email"], leaf: idx,
		}
		b.certs[serial] = c
	})
	if err != nil {
		return err
	}
	return b.events(events.CertRevoked, func(idx int64, l *recorder.Leaf) {
		for _, s := range recorder.SplitList(l.Attrs["serials"]) {
			n, err := strconv.ParseUint(s, 10, 64)
			if c := b.certs[n]; err == nil && c != nil && c.Revoked == nil {
				c.Revoked = &Revocation{At: wall(l), By: l.Attrs["by"], Reason: l.Attrs["reason"], Leaf: idx}
			}
		}
	})
}

// readGrants replays every grant event in leaf order.
func (b *builder) readGrants() error {
	type ev struct {
		idx  int64
		name string
		l    *recorder.Leaf
	}
	var evs []ev
	for _, name := range grantEvents {
		if err := b.events(name, func(idx int64, l *recorder.Leaf) { evs = append(evs, ev{idx, name, l}) }); err != nil {
			return err
		}
	}
	slices.SortFunc(evs, func(x, y ev) int { return cmp.Compare(x.idx, y.idx) })
	for _, e := range evs {
		a := e.l.Attrs
		at, ok := parseRFC3339(a["at"])
		if !ok {
			at = wall(e.l)
		}
		if e.name == events.GrantRequested {
			g := &Grant{
				ID: "G-" + strconv.FormatInt(e.idx, 10), State: "pending", Requester: a["identity"], Sponsor: a["sponsor"],
				Reason: a["reason"], Ticket: a["ticket"], Role: a["role"], Target: a["target"], Login: a["login"], Command: a["command"],
				Duration: a["duration"], Requested: at, Leaf: e.idx, Approvals: []Decision{}, Sessions: []string{}, Certificates: []uint64{},
				PolicyHash: a["policy.hash"],
			}
			b.grantEmail[g.ID] = a["email"]
			g.Needed, _ = strconv.Atoi(a["approvals"])
			b.grants[g.ID] = g
			b.grantOrder = append(b.grantOrder, g)
			continue
		}
		g := b.grants[a["grant"]]
		if g == nil {
			continue
		}
		d := Decision{Event: e.name, By: a["by"], BySponsor: a["by.sponsor"], ByEmail: a["by.email"], Comment: a["comment"], At: at, Leaf: e.idx}
		switch e.name {
		case events.GrantApproved:
			g.Approvals = append(g.Approvals, d)
		case events.GrantActivated:
			start, ok1 := parseRFC3339(a["start"])
			end, ok2 := parseRFC3339(a["end"])
			if ok1 && ok2 {
				g.Start, g.End = &start, &end
			}
			g.State = "active"
		case events.GrantDenied:
			g.State, g.Closed = "denied", &d
		case events.GrantExpired:
			g.State, g.Closed = "expired", &d
		case events.GrantEnded:
			g.State, g.Closed = "ended", &d
		case events.GrantRevoked:
			g.State, g.Closed = "revoked", &d
		}
	}
	for _, g := range b.grantOrder {
		var closed int64
		if g.Closed != nil {
			closed = g.Closed.At.UnixNano()
		}
		if b.overlaps(g.Requested.UnixNano(), closed) && b.targetInScope(g.Target) && b.identityInScope(g.Requester) {
			b.r.Grants = append(b.r.Grants, *g)
		}
	}
	return nil
}

// grantEnd is when grant g stopped allowing access: revoked, or its end.
func grantEnd(g *Grant) (time.Time, bool) {
	if g.Closed != nil && g.Closed.Event == events.GrantRevoked {
		return g.Closed.At, true
	}
	if g.End != nil {
		return *g.End, true
	}
	return time.Time{}, false
}

// readSessions reads the sessions active in the period, by the times of
// their signed start and end leaves, and their frames.
func (b *builder) readSessions() error {
	for _, ls := range b.log.Sessions {
		var end int64
		if ls.End != nil {
			end = ls.End.WallNS
		}
		if !b.overlaps(ls.Start.WallNS, end) {
			continue
		}
		s, err := b.session(ls)
		if err != nil {
			return err
		}
		if !b.targetInScope(s.Target) || !b.identityInScope(s.Identity) {
			continue
		}
		if s.Rule != "" && s.Grant == "" {
			b.r.StandingAccess = append(b.r.StandingAccess, SessionRef{ID: s.ID, Identity: s.Identity, Target: s.Target, Login: s.Login, Rule: s.Rule, Leaf: s.StartLeaf})
		}
		if g := b.grants[s.Grant]; g != nil {
			g.Sessions = append(g.Sessions, s.ID)
		}
		b.r.Sessions = append(b.r.Sessions, *s)
		b.r.Summary.Commands += len(s.Commands)
	}
	// Grants in the report were copied before their sessions were known.
	for i := range b.r.Grants {
		b.r.Grants[i].Sessions = b.grants[b.r.Grants[i].ID].Sessions
	}
	return nil
}

// session reads one session: its start and end leaves, and its frames,
// proven against the signed log.
func (b *builder) session(ls *recorder.LogSession) (*Session, error) {
	start := ls.Start
	a := start.Attrs
	id := uuid.UUID(start.Session).String()
	s := &Session{
		ID: id, Kind: a["kind"], Request: a["request"], Identity: a["identity"], Serial: a["serial"], Target: a["target"],
		Login: a["login"], Client: a["client"], Route: a["route"], Rule: a["policy.rule"], Grant: a["policy.grant"],
		Started: wall(start), StartLeaf: ls.StartIndex, EndLeaf: -1, Commands: []Command{}, Masked: map[string]int64{},
	}
	if s.Kind == "" {
		s.Kind = "ssh"
	}
	if s.Kind == "record" {
		// bastion record: a local command, run by an OS account.
		s.Target, s.Login = a["host"], a["user"]
		if s.Identity == "" {
			s.Identity = "local:" + a["user"] + "@" + a["host"]
		}
		s.Request = "record"
		if a["command"] != "" {
			s.Request = "record " + a["command"]
		}
	}
	if t, ok := parseRFC3339(a["policy.grant.end"]); ok {
		s.GrantEnd = &t
	}
	if g := b.grants[s.Grant]; g != nil {
		if t, ok := grantEnd(g); ok {
			s.GrantEnd = &t
		}
	}
	if end := ls.End; end != nil {
		t := wall(end)
		s.Ended, s.EndLeaf = &t, ls.EndIndex
		s.EndReason, s.EndDetail = end.Attrs["reason"], end.Attrs["detail"]
		s.ExitStatus, s.ExitSignal = end.Attrs["exit-status"], end.Attrs["exit-signal"]
	}
	rec, err := recorder.OpenSession(b.ctx, b.snap, recorder.SessionID(start.Session), recorder.OpenOptions{Verifier: b.opts.Verifier})
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			s.Problem = "its frames cannot be read: the sessions table has no row for it"
			return s, nil
		}
		if errors.Is(err, recorder.ErrSessionBroken) {
			s.Problem = err.Error()
			return s, nil
		}
		return nil, fmt.Errorf("evidence: session %s: %w", id, err)
	}
	sum, err := playback.Describe(b.ctx, b.snap, rec, nil)
	if sum != nil {
		for _, c := range sum.Commands {
			s.Commands = append(s.Commands, Command{At: s.Started.Add(c.Offset), Text: c.Text, Reconstructed: c.Reconstructed, Uncertain: c.Uncertain})
		}
		for k, v := range sum.Masked {
			s.Masked[k] = v
			s.MaskedTotal += v
		}
		s.Frames, s.InBytes, s.OutBytes = sum.Frames, sum.InBytes, sum.OutBytes
		if s.ExitStatus == "" {
			s.ExitStatus, s.ExitSignal = sum.Exit["status"], sum.Exit["signal"]
		}
	}
	switch {
	case errors.Is(err, recorder.ErrSessionBroken):
		s.Problem = err.Error()
	case err != nil:
		return nil, fmt.Errorf("evidence: session %s: %w", id, err)
	default:
		s.Verified = true
	}
	return s, nil
}

// certIdentity is the identity of the certificate a refused login
// offered, when it was one the user CA issued: its serial names a
// cert.issued leaf whose key is the key offered. A certificate of another
// CA (reason untrusted_ca, not_a_user_certificate) names nobody.
func (b *builder) certIdentity(a recorder.Attrs) string {
	if a["reason"] == events.ReasonUntrustedCA || a["reason"] == events.ReasonNotUserCert || a["serial"] == "" {
		return ""
	}
	serial, err := strconv.ParseUint(a["serial"], 10, 64)
	if err != nil {
		return ""
	}
	if c := b.certs[serial]; c != nil && c.Key != "" && c.Key == a["key.sha256"] {
		return c.identity
	}
	return ""
}

// readRefusals reads the refused actions and failed authentications of
// the period.
func (b *builder) readRefusals() error {
	for _, name := range refusalEvents {
		err := b.events(name, func(idx int64, l *recorder.Leaf) {
			if !b.inPeriod(l.WallNS) {
				return
			}
			a := l.Attrs
			r := Refusal{
				Event: name, At: wall(l), Leaf: idx, Identity: a["identity"], User: a["user"], Target: a["target"],
				Client: firstOf(a["client"], a["client.address"]), Reason: a["reason"], Detail: firstOf(a["detail"], a["error"]), Count: 1,
			}
			if n, err := strconv.Atoi(a["refused"]); err == nil && n > 1 {
				r.Count = n
			}
			switch name {
			case events.AuthRefused, events.CertRefused:
				r.FailedAuth = true
				if a["reason"] == events.ReasonSummary {
					r.What = a["refused"] + " connections: " + a["reasons"]
				}
			case events.RequestRefused:
				r.What = strings.TrimSpace(a["request"] + " " + a["command"])
			case events.ChannelRefused:
				r.What = strings.TrimSpace(a["channel"] + " " + a["destination"])
			case events.GrantRefused:
				r.What = strings.TrimSpace(a["action"] + " " + a["grant"])
			case events.ConnRefused:
				r.What = "connection"
				if n := a["refused"]; n != "" {
					r.What = n + " connections"
				}
			}
			if r.Target == "" {
				if _, t, ok := strings.Cut(r.User, "@"); ok {
					r.Target = t
				}
			}
			// A refused login with a certificate of the user CA names
			// its identity: the certificate's serial is the leaf of its
			// issuance, and its key must be the one issued.
			if r.Identity == "" && name == events.AuthRefused {
				r.Identity = b.certIdentity(a)
			}
			// A refusal that names no target (a login or a token
			// refused before any target was chosen) is about the
			// bastion itself: it is in every report.
			if r.Target != "" && !b.targetInScope(r.Target) {
				return
			}
			// With identities, only the refusals that name one of them.
			if len(b.identities) > 0 && !b.identities[r.Identity] {
				return
			}
			b.r.Refusals = append(b.r.Refusals, r)
		})
		if err != nil {
			return err
		}
	}
	slices.SortFunc(b.r.Refusals, func(x, y Refusal) int { return cmp.Compare(x.Leaf, y.Leaf) })
	for _, r := range b.r.Refusals {
		if r.FailedAuth {
			b.r.Summary.FailedAuth += r.Count
		}
	}
	return nil
}

// inventory lists the identities that held access in the period.
func (b *builder) inventory() {
	get := func(name string) *Identity {
		id := b.ids[name]
		if id == nil {
			id = &Identity{Identity: name, Sponsors: []string{}, TokenSubjects: []string{}, Certificates: []Certificate{}, Grants: []string{}}
			b.ids[name] = id
		}
		return id
	}
	for _, g := range b.r.Grants {
		id := get(g.Requester)
		id.Grants = append(id.Grants, g.ID)
		addUnique(&id.Sponsors, g.Sponsor)
	}
	for _, s := range b.r.Sessions {
		get(s.Identity).Sessions++
	}
	serials := make([]uint64, 0, len(b.certs))
	for s := range b.certs {
		serials = append(serials, s)
	}
	slices.Sort(serials)
	for _, serial := range serials {
		c := b.certs[serial]
		end := c.ValidBefore
		if c.Revoked != nil && c.Revoked.At.Before(end) {
			end = c.Revoked.At
		}
		if !b.overlaps(c.ValidAfter.UnixNano(), end.UnixNano()) {
			continue
		}
		// With targets, a certificate counts for the identities that
		// reached them (a certificate names logins, not targets).
		if (len(b.targets) > 0 && b.ids[c.identity] == nil) || !b.identityInScope(c.identity) {
			continue
		}
		id := get(c.identity)
		id.Provider, id.Issuer, id.Subject = c.provider, c.issuer, c.subject
		if c.email != "" {
			id.Email = c.email
		}
		addUnique(&id.Sponsors, c.Sponsor)
		addUnique(&id.TokenSubjects, c.tokenSubject)
		id.Certificates = append(id.Certificates, c.Certificate)
		if g := b.grants[c.Grant]; g != nil {
			g.Certificates = append(g.Certificates, c.Serial)
		}
	}
	for i := range b.r.Grants {
		b.r.Grants[i].Certificates = b.grants[b.r.Grants[i].ID].Certificates
	}
	for _, name := range slices.Sorted(maps.Keys(b.ids)) {
		id := b.ids[name]
		slices.Sort(id.Sponsors)
		slices.Sort(id.TokenSubjects)
		if id.Provider == "" {
			// No certificate in the period: take what its grants or
			// sessions say.
			for _, g := range b.grantOrder {
				if g.Requester == name {
					if sub, prov, ok := cutLast(name, "@"); ok {
						id.Subject, id.Provider = sub, prov
					}
					break
				}
			}
		}
		id.Kind = "human"
		if len(id.Sponsors) > 0 {
			id.Kind = "agent"
		}
		id.Authentication = authentication(id)
		b.r.Identities = append(b.r.Identities, *id)
		if id.Kind == "agent" {
			b.r.Summary.Agents++
		}
		b.r.Summary.Certificates += len(id.Certificates)
	}
}

func authentication(id *Identity) string {
	switch {
	case strings.HasPrefix(id.Identity, "local:"):
		return "a local operating-system account on the bastion's host, recording with \"bastion record\"; no identity provider"
	case id.Provider == "":
		return "no certificate of this identity was valid in the period"
	}
	s := fmt.Sprintf("OpenID Connect token from provider %q (issuer %s, subject %q), exchanged for short-lived SSH certificates signed by the user CA", id.Provider, id.Issuer, id.Subject)
	if len(id.TokenSubjects) > 0 {
		s += fmt.Sprintf("; delegation: the token's subject %s is the party the identity acted for", strings.Join(quoteAll(id.TokenSubjects), ", "))
	}
	if len(id.Sponsors) > 0 {
		s += "; acting on behalf of " + strings.Join(quoteAll(id.Sponsors), ", ")
	}
	return s
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func addUnique(list *[]string, v string) {
	if v != "" && !slices.Contains(*list, v) {
		*list = append(*list, v)
	}
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

func cutLast(s, sep string) (string, string, bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
