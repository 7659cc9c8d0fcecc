package evidence

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agext/levenshtein"

	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// checkScope refuses a --target or --identity the journal never names.
// It runs on the verified log; with none (no valid checkpoint), there is
// nothing to check against, and the report says why.
func (b *builder) checkScope() error {
	if b.log.Size() == 0 || len(b.targets)+len(b.identities) == 0 {
		return nil
	}
	targets, ids := map[string]bool{}, map[string]bool{}
	add := func(m map[string]bool, v string) {
		if v != "" {
			m[v] = true
		}
	}
	for _, s := range b.log.Sessions {
		a := s.Start.Attrs
		add(targets, a["target"])
		add(ids, a["identity"])
		if a["kind"] == "record" {
			add(targets, a["host"])
			if a["identity"] == "" {
				add(ids, "local:"+a["user"]+"@"+a["host"])
			}
		}
	}
	for _, e := range b.log.Events {
		a := e.Leaf.Attrs
		add(ids, a["identity"])
		switch e.Leaf.Event {
		case events.GrantRequested, events.RequestRefused, events.ChannelRefused, events.GrantRefused:
			add(targets, a["target"])
		case events.ServeStarted, events.ConfigReloaded:
			for _, t := range recorder.SplitList(a["targets"]) {
				add(targets, t)
			}
		}
	}
	for _, c := range []struct {
		kind  string
		asked map[string]bool
		known map[string]bool
	}{{"target", b.targets, targets}, {"identity", b.identities, ids}} {
		for _, name := range sortedKeys(c.asked) {
			if !c.known[name] {
				return &ScopeError{Kind: c.kind, Name: name, Suggestion: Suggest(name, sortedKeys(c.known)), Known: len(c.known)}
			}
		}
	}
	return nil
}

// Suggest is the known name nearest to name by edit distance (in any
// case), if it is near enough to be a typing mistake: one edit,
// or a third of its length.
func Suggest(name string, known []string) string {
	best, bestD := "", -1
	for _, k := range known {
		d := levenshtein.Distance(strings.ToLower(name), strings.ToLower(k), nil)
		if bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	if bestD < 0 || bestD > max(1, len(name)/3) {
		return ""
	}
	return best
}

// retention states what the journal holds.
func (b *builder) retention() {
	r := &b.r.Custody.Retention
	r.Leaves, r.JournalBytes = b.r.Verification.TreeSize, b.opts.JournalBytes
	if b.log.Size() > 0 {
		r.OldestRecord = time.Unix(0, b.log.WallNS(0)).UTC()
	}
	r.Policy = "bastion deletes no record: the journal is append-only, and every record since its first is kept in it until the operator archives the journal file, which the operator's retention policy governs (PCI DSS 10.5.1: at least twelve months, the latest three immediately available)."
	switch {
	case r.OldestRecord.IsZero():
	case r.OldestRecord.After(b.opts.To):
		r.Policy += fmt.Sprintf(" This journal's oldest record, %s, is after the end of the period: it holds no record of the period, which, if any, are in another (older) journal.", r.OldestRecord.Format(time.RFC3339))
	default:
		r.Policy += fmt.Sprintf(" This journal holds records from %s, %d days before the end of the period.", r.OldestRecord.Format(time.RFC3339), int(b.opts.To.Sub(r.OldestRecord).Hours()/24))
		if r.OldestRecord.After(b.opts.From) {
			r.Policy += " Its first record is after the start of the period: records before it, if any, are in another (older) journal."
		}
	}
}

// readOperators reads what operators did through the admin socket or
// the web console: kills, revocations of certificates and of grants, CA
// rotations.
func (b *builder) readOperators() error {
	acts := &b.r.OperatorActions
	op := func(event, action string, idx int64, l *recorder.Leaf, by, detail string) {
		const prefix = "operator"
		if !b.inPeriod(l.WallNS) {
			return
		}
		a := l.Attrs
		verified := a[prefix+".verified"]
		if verified == "" {
			verified = "none"
		}
		*acts = append(*acts, OperatorAction{Event: event, Action: action, At: wall(l), Leaf: idx, Operator: a[prefix],
			Verified: verified, Issuer: a[prefix+".issuer"], UID: a[prefix+".uid"], User: a[prefix+".user"], By: by, Detail: detail})
	}
	err := b.events(events.CertRevoked, func(idx int64, l *recorder.Leaf) {
		a := l.Attrs
		if a["cause"] != "" {
			return // the bastion's own: a revoked grant's certificates
		}
		what := "serials " + a["serials"]
		if id := a["identity"]; id != "" {
			what = "identity " + id
		}
		if r := a["reason"]; r != "" {
			what += ": " + r
		}
		op(events.CertRevoked, "revoke-certificate", idx, l, a["by"], what)
	})
	if err != nil {
		return err
	}
	err = b.events(events.GrantRevoked, func(idx int64, l *recorder.Leaf) {
		a := l.Attrs
		// A grant revoked through the API by its requester or an
		// approver names a verified identity (by.issuer); one revoked
		// by an operator names the operator.
		if a["by.issuer"] != "" && a["operator.verified"] == "" {
			return
		}
		op(events.GrantRevoked, "revoke-grant", idx, l, a["by"], strings.TrimSpace("grant "+a["grant"]+" "+a["comment"]))
	})
	if err != nil {
		return err
	}
	err = b.events(events.CARotated, func(idx int64, l *recorder.Leaf) {
		a := l.Attrs
		op(events.CARotated, "ca-rotate", idx, l, a["by"], fmt.Sprintf("%s CA: %s → %s (old key trusted %s more)", a["role"], a["old.fingerprint"], a["new.fingerprint"], firstOf(a["grace"], "no")))
	})
	if err != nil {
		return err
	}
	for _, ls := range b.log.Sessions {
		if ls.End == nil || ls.End.Attrs["reason"] != events.EndKilled {
			continue
		}
		a := ls.End.Attrs
		s := ls.Start.Attrs
		detail := fmt.Sprintf("session of %s to %s@%s", s["identity"], s["login"], s["target"])
		if r := a["kill-reason"]; r != "" {
			detail += ": " + r
		}
		op("session.end", "kill", ls.EndIndex, ls.End, a["killed-by"], detail)
	}
	slices.SortFunc(*acts, func(x, y OperatorAction) int { return cmp.Compare(x.Leaf, y.Leaf) })
	return nil
}

// devIssuers are the issuers of the development OpenID provider that a
// serve.started leaf names.
func (b *builder) devIssuers() map[string]string {
	dev := map[string]string{}
	b.events(events.ServeStarted, func(_ int64, l *recorder.Leaf) {
		a := l.Attrs
		if iss := firstOf(a["dev.issuer"], a["dev-issuer"]); iss != "" {
			dev[iss] = firstOf(a["dev.provider"], "dev")
		}
	})
	return dev
}

// devFindings flags identities vouched for by the development provider,
// or by any issuer that is not HTTPS: no production identity provider
// serves its tokens' keys over plain HTTP.
func (b *builder) devFindings() {
	dev := b.devIssuers()
	type group struct {
		why   string
		names []string
	}
	byIssuer := map[string]*group{}
	var issuers, all []string
	add := func(issuer, who string) {
		why := ""
		switch u, err := url.Parse(issuer); {
		case issuer == "":
			return
		case dev[issuer] != "" || dev[strings.TrimSuffix(issuer, "/")] != "":
			why = "the development OpenID provider of \"bastion serve --dev\""
		case err == nil && u.Scheme != "https":
			why = "an issuer that is not served over HTTPS"
		default:
			return
		}
		g := byIssuer[issuer]
		if g == nil {
			g = &group{why: why}
			byIssuer[issuer] = g
			issuers = append(issuers, issuer)
		}
		if !slices.Contains(g.names, who) {
			g.names = append(g.names, who)
			all = append(all, who)
		}
	}
	for _, id := range b.r.Identities {
		add(id.Issuer, id.Identity)
	}
	// Operators and readers named by a token of such a provider.
	for _, a := range b.r.OperatorActions {
		if a.Verified == "token" {
			add(a.Issuer, a.Operator+" (operator)")
		}
	}
	for _, a := range b.r.Custody.Accesses {
		if a.Verified == "token" {
			add(a.Issuer, a.Identity+" (reader)")
		}
	}
	for _, iss := range issuers {
		g := byIssuer[iss]
		b.r.Summary.Exceptions = append(b.r.Summary.Exceptions, Finding{Kind: FindingDevProvider, Leaf: -1,
			What: fmt.Sprintf("%d identit%s (%s) were vouched for by %s (issuer %s): it vouches for whoever asks, so they prove nothing about a person",
				len(g.names), plural(len(g.names), "y", "ies"), strings.Join(g.names, ", "), g.why, iss)})
	}
	if len(all) > 0 {
		b.r.Banners = append(b.r.Banners, Banner{Kind: FindingDevProvider,
			What: fmt.Sprintf("DEVELOPMENT IDENTITIES: %d identit%s in this report came from a development or non-HTTPS identity provider, which vouches for whoever asks (section 2 names them). Nothing in it identifies a person.",
				len(all), plural(len(all), "y", "ies"))})
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// person is what the journal says of one identity, for segregation of
// duties: SUBJECT@PROVIDER, its subject and provider, e-mail and sponsor.
type person struct {
	id, subject, provider, email, sponsor string
}

func (p person) identity() *policy.Identity {
	return &policy.Identity{Provider: p.provider, Subject: p.subject, Email: p.email, Sponsor: p.sponsor}
}

func personOf(id, email, sponsor string) person {
	p := person{id: id, email: email, sponsor: sponsor}
	p.subject, p.provider, _ = cutLast(id, "@")
	return p
}

// sodFindings checks segregation of duties on every approval of the
// report's grants: an approver who is the requester's sponsor, an agent
// approving for its own sponsor, or two agents of one sponsor. Sponsors
// are compared as policy.SponsorMatches says (docs/policy.md,
// "Sponsors"). It also flags sponsors that match no identity the journal
// knows: nobody could be held to account for such an agent.
func (b *builder) sodFindings() {
	known := map[string]person{}
	// In serial order: an identity's latest certificate says who it is.
	for _, serial := range slices.Sorted(maps.Keys(b.certs)) {
		c := b.certs[serial]
		known[c.identity] = person{id: c.identity, subject: c.subject, provider: c.provider, email: c.email, sponsor: c.Sponsor}
	}
	for _, g := range b.grantOrder {
		if _, ok := known[g.Requester]; !ok {
			known[g.Requester] = personOf(g.Requester, b.grantEmail[g.ID], g.Sponsor)
		}
		for _, d := range append(slices.Clone(g.Approvals), derefDecision(g.Closed)...) {
			if _, ok := known[d.By]; !ok && d.By != "" {
				known[d.By] = personOf(d.By, d.ByEmail, d.BySponsor)
			}
		}
	}
	for _, g := range b.r.Grants {
		req := personOf(g.Requester, b.grantEmail[g.ID], g.Sponsor)
		for _, d := range g.Approvals {
			appr := personOf(d.By, d.ByEmail, d.BySponsor)
			if k, ok := known[d.By]; ok && appr.sponsor == "" && appr.email == "" {
				appr = k
			}
			// The rule approval { exclude_sponsor } enforces, and two
			// sponsor strings that name one known person.
			why := policy.SponsorConflict(req.identity(), appr.identity())
			if why == "" && req.sponsor != "" && appr.sponsor != "" && sameSponsor(req.sponsor, appr.sponsor, known) {
				why = fmt.Sprintf("%s and %s act for sponsors %s and %s, which name one known identity", appr.id, req.id, strconv.Quote(appr.sponsor), strconv.Quote(req.sponsor))
			}
			if why == "" {
				continue
			}
			// The grant's sessions are reviewed in detail.
			for _, id := range g.Sessions {
				b.exceptional[id] = true
			}
			b.r.Summary.Exceptions = append(b.r.Summary.Exceptions, Finding{Kind: FindingSegregation, Leaf: d.Leaf,
				What: fmt.Sprintf("grant %s: approved by %s, but %s (approval at leaf %d)", g.ID, appr.id, why, d.Leaf)})
		}
	}
	// Sponsors that match no identity the journal knows.
	seen := map[string]bool{}
	for _, id := range b.r.Identities {
		for _, sp := range id.Sponsors {
			if seen[sp] {
				continue
			}
			seen[sp] = true
			found := false
			for _, p := range known {
				if policy.SponsorMatches(sp, p.identity()) {
					found = true
					break
				}
			}
			if !found {
				b.r.Summary.Exceptions = append(b.r.Summary.Exceptions, Finding{Kind: FindingUnknownSponsor, Leaf: -1,
					What: fmt.Sprintf("%s acts for the sponsor %s, which matches no identity the journal knows (by SUBJECT@PROVIDER, subject or e-mail): confirm who answers for this agent", id.Identity, strconv.Quote(sp))})
			}
		}
	}
}

// sameSponsor reports whether two sponsor strings name one person: equal,
// or both matching one known identity.
func sameSponsor(a, b string, known map[string]person) bool {
	if a == b || strings.EqualFold(a, b) && strings.Contains(a, "@") {
		return true
	}
	for _, p := range known {
		if policy.SponsorMatches(a, p.identity()) && policy.SponsorMatches(b, p.identity()) {
			return true
		}
	}
	return false
}

func derefDecision(d *Decision) []Decision {
	if d == nil || d.Event != events.GrantDenied {
		return nil
	}
	return []Decision{*d}
}

// anchor states what the verdict rests on.
func (b *builder) anchor(vr *recorder.Report) {
	a := &b.r.Anchor
	need := b.periodLeaves()
	keptCovers := vr.Kept != nil && vr.Kept.Consistent && vr.Kept.Size > 0 && vr.Kept.Size >= need
	wr := vr.Witnessed
	end := time.Unix(0, b.to).Truncate(time.Second) // cosignatures carry whole seconds
	if wr != nil {
		a.Witnesses = &WitnessAnchor{Threshold: wr.Threshold, Witnesses: wr.Witnesses, WitnessedSize: wr.Size, Cosignatures: wr.Cosignatures,
			Needed: need, CoversPeriod: wr.Size > 0 && wr.Size >= need, Live: wr.Live}
		for _, c := range wr.Cosignatures {
			if !c.Time.Before(end) {
				a.Witnesses.CosignedAfterPeriod++
			}
		}
	}
	witnessesCover := a.Witnesses != nil && a.Witnesses.CoversPeriod && a.Witnesses.CosignedAfterPeriod >= wr.Threshold
	switch {
	case !b.r.Verification.Intact:
		a.Level, a.Basis = AnchorRed, "none"
		a.What = "The journal does not verify: nothing in this report can be relied on before the problems in section 8 are explained."
		if vr.Kept != nil && !vr.Kept.Consistent {
			a.Basis = "kept-checkpoint"
			a.What = fmt.Sprintf("The journal is NOT consistent with the checkpoint you kept (tree size %d): it was rolled back, truncated or rewritten since that checkpoint was signed.", vr.Kept.Size)
		}
	case witnessesCover:
		a.Level, a.Basis = AnchorGreen, "witnesses"
		a.What = fmt.Sprintf("The journal verifies, and its checkpoint of tree size %d, which covers every record of the period, is cosigned by %s: %d of the %d witnesses you gave, %d required. A witness cosigns a checkpoint only when it extends every checkpoint of this journal the witness cosigned before, so what was recorded up to it cannot have been rewritten or removed since without the witnesses refusing, even by whoever controls the bastion's host and its key.",
			wr.Size, cosignedBy(wr.Cosignatures), len(wr.Cosignatures), len(wr.Witnesses), wr.Threshold)
		switch {
		case keptCovers:
			a.What += fmt.Sprintf(" The checkpoint you kept (tree size %d) covers the period too, and the journal is proven consistent with it: the verdict rests on both.", vr.Kept.Size)
		case vr.Kept != nil && vr.Kept.Consistent:
			a.What += fmt.Sprintf(" The checkpoint you kept (tree size %d) is consistent with the journal but does not cover the whole period: the verdict rests on the witnesses.", vr.Kept.Size)
		}
	case keptCovers:
		a.Level, a.Basis = AnchorGreen, "kept-checkpoint"
		a.What = fmt.Sprintf("The journal verifies and is proven consistent with the checkpoint you kept (tree size %d), which covers every record of the period: the journal holds, unchanged, every record that checkpoint covers, and extends it. What was recorded up to that checkpoint cannot have been rewritten or removed since, even by whoever controls the bastion's host and its key.", vr.Kept.Size)
		if wr != nil && !a.Witnesses.CoversPeriod {
			a.What += " " + witnessShortfall(wr, need) + " The verdict rests on the checkpoint you kept."
		} else if wr != nil {
			a.What += fmt.Sprintf(" The witnesses' checkpoint (tree size %d) covers the period too, but %d of its cosignatures are from after the period's end, %d required: the verdict rests on the checkpoint you kept.", wr.Size, a.Witnesses.CosignedAfterPeriod, wr.Threshold)
		}
	case wr != nil && a.Witnesses.CoversPeriod:
		// Cosigned, but only before the period ended: a copy restored
		// from then carries the same cosignatures.
		a.Level, a.Basis = AnchorAmber, "witnesses"
		a.What = fmt.Sprintf("The journal verifies, and its checkpoint of tree size %d, which covers every record of the period, is cosigned by %s, but %d of them at or after the period's end (%s), and %d are required. Cosignatures from before the period ended cannot show that nothing was cut off its end: a copy of the journal restored from that time would carry the same ones. Ask a witness what it holds now (\"bastion witness latest\", or its monitoring URL) and make the report with that file as --checkpoint, or make it again once the witnesses have cosigned a checkpoint after the period's end.",
			wr.Size, cosignedBy(wr.Cosignatures), a.Witnesses.CosignedAfterPeriod, end.UTC().Format(time.RFC3339), wr.Threshold)
		if vr.Kept != nil && vr.Kept.Consistent {
			a.What += fmt.Sprintf(" The checkpoint you kept (tree size %d) is consistent with the journal but does not cover the whole period either.", vr.Kept.Size)
		}
	case wr != nil:
		a.Level, a.Basis = AnchorAmber, "witnesses"
		rest := " The records after it rest only on the journal's own head, which"
		if wr.Size == 0 {
			rest = " They rest only on the journal's own head, which"
		}
		a.What = witnessShortfall(wr, need) + rest + " whoever controls the bastion's host could have rewritten and signed again. Witnesses cosign the checkpoints serve pushes to them: see whether they refused or went stale (the journal's witness.refused and witness.stale records), or make the report again once they have cosigned a checkpoint after the period's end."
		if vr.Kept != nil && vr.Kept.Consistent {
			a.What += fmt.Sprintf(" The checkpoint you kept (tree size %d) is consistent with the journal but does not cover the whole period either.", vr.Kept.Size)
		}
	case vr.Kept != nil && vr.Kept.Consistent:
		a.Level, a.Basis = AnchorAmber, "kept-checkpoint"
		a.What = fmt.Sprintf("The journal verifies and is consistent with the checkpoint you kept (tree size %d), but that checkpoint does not cover the whole period: the period's records run to leaf %d, so a checkpoint of size %d at least covers them. The records it does not cover rest only on the journal's own head, which whoever controls the bastion's host could have rewritten and signed again. Keep a checkpoint after the period ends (\"bastion checkpoint\"), and make the report with it.", vr.Kept.Size, need-1, need)
	default:
		a.Level, a.Basis = AnchorAmber, "own-head"
		a.What = "The journal verifies against its own latest checkpoint only. That proves no record was changed after it was signed, but whoever controls the bastion's host holds the signing key: they could have rolled the journal back to an older copy, or rewritten it whole and signed it again. Run the report with --checkpoint FILE, a checkpoint kept outside the bastion's host (\"bastion checkpoint\"), to rest it on an anchor they do not control."
	}
	if a.Level == AnchorAmber {
		what := "the report's verdict rests on no checkpoint kept outside the bastion's host that covers the period (amber): "
		if wr != nil {
			what = "the report's verdict rests on no checkpoint that covers the period and that the witnesses cosigned or you kept (amber): "
		}
		b.r.Summary.Exceptions = append(b.r.Summary.Exceptions, Finding{Kind: FindingAnchor, Leaf: -1, What: what + a.What})
	}
	if vr.Kept != nil {
		a.CheckpointSize, a.CheckpointFile = vr.Kept.Size, b.opts.KeptFile
	}
}

// witnessShortfall says that no checkpoint the witnesses cosigned covers
// the period.
func witnessShortfall(wr *recorder.WitnessReport, need int64) string {
	if wr.Size == 0 {
		return fmt.Sprintf("No published checkpoint carries valid cosignatures by %d of the %d witnesses you gave, so none covers the period, whose records run to leaf %d.", wr.Threshold, len(wr.Witnesses), need-1)
	}
	return fmt.Sprintf("The largest checkpoint %d of the %d witnesses you gave cosigned (tree size %d, by %s) does not cover the whole period: its records run to leaf %d, so a checkpoint of size %d at least covers them.",
		wr.Threshold, len(wr.Witnesses), wr.Size, cosignedBy(wr.Cosignatures), need-1, need)
}

// cosignedBy lists cosignatures as "NAME (at TIME), ...".
func cosignedBy(cs []recorder.CosignatureInfo) string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s (at %s)", c.Witness, c.Time.UTC().Format(time.RFC3339))
	}
	return strings.Join(out, ", ")
}

// periodLeaves is how many leaves a checkpoint must cover to cover every
// record of the period: one past the last leaf signed at or before its
// end.
func (b *builder) periodLeaves() int64 {
	var n int64
	for i := int64(0); i < b.log.Size(); i++ {
		if b.log.WallNS(i) <= b.to {
			n = i + 1
		}
	}
	return n
}

// sample picks the sessions for detailed review: with Sample, the Sample
// sessions with the smallest SHA-256("SEED:ID"), and every session an
// exception names; without, every session.
func (b *builder) sample() {
	r := b.r
	if b.opts.Sample <= 0 {
		for i := range r.Sessions {
			r.Sessions[i].Detailed = true
		}
		return
	}
	s := &Sample{Size: b.opts.Sample, Seed: b.opts.Seed, Sessions: []string{}, Exceptions: []string{},
		Method: fmt.Sprintf("the %d sessions of the period with the smallest SHA-256 of \"%d:\" followed by the session ID (lower-case, with hyphens), and every session an exception names", b.opts.Sample, b.opts.Seed)}
	type keyed struct {
		key [32]byte
		i   int
	}
	ks := make([]keyed, len(r.Sessions))
	for i, ss := range r.Sessions {
		ks[i] = keyed{sha256.Sum256([]byte(strconv.FormatInt(b.opts.Seed, 10) + ":" + ss.ID)), i}
	}
	slices.SortFunc(ks, func(x, y keyed) int { return strings.Compare(string(x.key[:]), string(y.key[:])) })
	for _, k := range ks[:min(len(ks), b.opts.Sample)] {
		r.Sessions[k.i].Detailed = true
		s.Sessions = append(s.Sessions, r.Sessions[k.i].ID)
	}
	for i := range r.Sessions {
		ss := &r.Sessions[i]
		if b.exceptional[ss.ID] {
			s.Exceptions = append(s.Exceptions, ss.ID)
			ss.Detailed = true
		}
	}
	slices.Sort(s.Sessions)
	r.Sample = s
}
