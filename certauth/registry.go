package certauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/mask"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/storage"
)

// CertRecord is what the journal says of one issued certificate.
type CertRecord struct {
	Serial   uint64   `json:"serial"`
	KeyID    string   `json:"key_id"`
	Identity string   `json:"identity"`
	Provider string   `json:"provider"`
	Issuer   string   `json:"issuer"`
	Subject  string   `json:"subject"`
	Sponsor  string   `json:"sponsor,omitempty"`
	Email    string   `json:"email,omitempty"`
	Groups   []string `json:"groups,omitempty"`
	// Claims are the token's claims the certificate was issued on.
	Claims          map[string]any `json:"claims,omitempty"`
	Ticket          string         `json:"ticket,omitempty"`
	Grant           string         `json:"grant,omitempty"`
	KeyType         string         `json:"key_type"`
	KeyFingerprint  string         `json:"key_fingerprint"`
	Principals      []string       `json:"principals"`
	ValidAfter      time.Time      `json:"valid_after"`
	ValidBefore     time.Time      `json:"valid_before"`
	Extensions      []string       `json:"extensions"`
	SourceAddresses []string       `json:"source_addresses,omitempty"`
	Rule            string         `json:"rule"`
	ClientAddress   string         `json:"client_address,omitempty"`
	IssuedAt        time.Time      `json:"issued_at"`
	Revoked         bool           `json:"revoked"`
	RevokedAt       time.Time      `json:"revoked_at,omitzero"`
	RevokeReason    string         `json:"revoke_reason,omitempty"`
}

// Registry is the issued certificates and revocations the journal holds,
// kept in memory: the front door asks it whether a serial is revoked, the
// issuer whether an identity is, and it writes the KRL for targets.
//
// It is loaded from the journal's cert.issued and cert.revoked events and
// kept up to date by the issuer and by Revoke.
type Registry struct {
	// gate orders issuances against revocations: an issuance holds it
	// shared from its revocation check until the certificate is
	// registered, a revocation holds it exclusively.
	gate sync.RWMutex

	mu         sync.Mutex
	certs      map[uint64]*CertRecord        // guarded by mu
	identities map[string]identityRevocation // guarded by mu
	keepAll    bool                          // keep expired certificates too
	early      map[uint64]earlyRevocation    // guarded by mu: see markRevoked
	own        uint16                        // guarded by mu: this member's ID (0 standalone)
	onMiss     func(serial uint64)           // guarded by mu: see SetOnMiss
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{certs: map[uint64]*CertRecord{}, identities: map[string]identityRevocation{}}
}

// identityRevocation is what revoking an identity left in force: tokens it
// was issued before At are refused, and until Until (if later) every token.
type identityRevocation struct {
	At, Until time.Time
}

// covers reports whether a certificate of the identity issued at issued
// is revoked: issued before the revocation, or during the block.
func (rev identityRevocation) covers(issued time.Time) bool {
	return !issued.After(rev.At) || issued.Before(rev.Until)
}

// RegistryEvents selects the events [LoadRegistry] reads, for
// recorder.ReadLogOptions.
func RegistryEvents(name string) bool { return name == events.CertIssued || name == events.CertRevoked }

// LoadRegistry reads the certificates and revocations of a journal's log,
// read with [RegistryEvents] selected: the signed leaves, never an index of
// them. Unless all is set, certificates that expired before now are left
// out. Every serial must be its issuance leaf's index with one cluster
// member's ID on top (recorder.NumberOf), the same ID for the whole log: 0
// for a standalone bastion's.
func LoadRegistry(log *recorder.Log, now time.Time, all bool) (*Registry, error) {
	return loadRegistry(log, -1, now, all)
}

// LoadRegistryOf is LoadRegistry for the log of cluster member id (0: a
// standalone bastion), whose serials must all carry id.
func LoadRegistryOf(log *recorder.Log, id uint16, now time.Time, all bool) (*Registry, error) {
	return loadRegistry(log, int(id), now, all)
}

func loadRegistry(log *recorder.Log, member int, now time.Time, all bool) (*Registry, error) {
	r := NewRegistry()
	r.keepAll = all
	if member >= 0 {
		r.own = uint16(member)
	}
	err := eachEvent(log, events.CertIssued, func(idx int64, l *recorder.Leaf) error {
		rec, err := recordFromAttrs(l.Attrs)
		if err != nil {
			return fmt.Errorf("leaf %d (%s): %w", idx, events.CertIssued, err)
		}
		id, at := recorder.SplitNumber(rec.Serial)
		if member < 0 {
			member = int(id)
			r.own = id
		}
		if at != idx || int(id) != member {
			return fmt.Errorf("leaf %d (%s): serial %d is not the leaf's index with member ID %d on top", idx, events.CertIssued, rec.Serial, member)
		}
		rec.IssuedAt = time.Unix(0, l.WallNS).UTC()
		if all || rec.ValidBefore.After(now) {
			r.certs[rec.Serial] = rec
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read issued certificates: %w", err)
	}
	err = eachEvent(log, events.CertRevoked, func(idx int64, l *recorder.Leaf) error {
		_, err := r.applyRevoked(idx, l)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read revocations: %w", err)
	}
	return r, nil
}

// applyRevoked applies the cert.revoked event l (leaf idx) and returns
// what it revoked. r.mu must be held, or r not shared yet.
func (r *Registry) applyRevoked(idx int64, l *recorder.Leaf) (*RevokeResult, error) {
	at := time.Unix(0, l.WallNS).UTC()
	serials, err := parseSerials(l.Attrs["serials"])
	if err != nil {
		return nil, fmt.Errorf("leaf %d (%s): %w", idx, events.CertRevoked, err)
	}
	res := &RevokeResult{Serials: serials, Leaf: idx, At: at}
	r.markRevoked(serials, at, l.Attrs["reason"])
	if id := l.Attrs["identity"]; id != "" {
		rev := r.identities[id]
		rev.At = maxTime(rev.At, at)
		if u := l.Attrs["blocked_until"]; u != "" {
			until, err := time.Parse(time.RFC3339Nano, u)
			if err != nil {
				return nil, fmt.Errorf("leaf %d (%s): bad blocked_until %q", idx, events.CertRevoked, u)
			}
			rev.Until = maxTime(rev.Until, until)
			res.BlockedUntil = until
		}
		r.identities[id] = rev
		res.Identity = id
		// Every certificate of the identity issued before, those the
		// revoking member had not read yet included, and every one
		// issued during a block: another member may have issued it
		// before it read this leaf.
		for _, rec := range r.certs {
			if rec.Identity == id && !rec.Revoked && rev.covers(rec.IssuedAt) {
				rec.Revoked, rec.RevokedAt, rec.RevokeReason = true, at, l.Attrs["reason"]
			}
		}
	}
	return res, nil
}

// ApplyForeign makes an event of another cluster member's log take
// effect here: member's (ID member, log origin) leaf idx, read under a
// checkpoint that verified with that member's key. A cert.issued leaf
// registers the certificate, whose serial must be one member issues
// (recorder.NumberOf(member, idx)): no member speaks for another's
// serials. A cert.revoked leaf revokes what it names, the certificates
// of every member included, and returns what it revoked (RevokeResult
// Log is origin) for the caller to end the sessions and rewrite the KRL.
// Other events are ignored (nil, nil).
func (r *Registry) ApplyForeign(member uint16, origin string, idx int64, l *recorder.Leaf, now time.Time) (*RevokeResult, error) {
	switch l.Event {
	case events.CertIssued:
		rec, err := recordFromAttrs(l.Attrs)
		if err != nil {
			return nil, fmt.Errorf("%s leaf %d (%s): %w", origin, idx, events.CertIssued, err)
		}
		if want, err := recorder.NumberOf(member, idx); err != nil || rec.Serial != want {
			return nil, fmt.Errorf("%s leaf %d (%s): serial %d is not member %d's serial for the leaf", origin, idx, events.CertIssued, rec.Serial, member)
		}
		rec.IssuedAt = time.Unix(0, l.WallNS).UTC()
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, known := r.certs[rec.Serial]; !known && (r.keepAll || rec.ValidBefore.After(now)) {
			r.register(rec)
		}
		return nil, nil
	case events.CertRevoked:
		r.gate.Lock()
		defer r.gate.Unlock()
		r.mu.Lock()
		defer r.mu.Unlock()
		res, err := r.applyRevoked(idx, l)
		if err != nil {
			return nil, fmt.Errorf("%s %w", origin, err)
		}
		res.Log = origin
		return res, nil
	}
	return nil, nil
}

// SetOnMiss sets fn, called by Lookup when it does not know a serial that
// another cluster member issued (its ID is not own): the server reads
// that member's log up to date before Lookup looks again, so that a
// certificate issued through one member a moment ago works at once
// through another.
func (r *Registry) SetOnMiss(own uint16, fn func(serial uint64)) {
	r.mu.Lock()
	r.own, r.onMiss = own, fn
	r.mu.Unlock()
}

// eachEvent calls fn for the events of log named name, in index order.
func eachEvent(log *recorder.Log, name string, fn func(idx int64, l *recorder.Leaf) error) error {
	for _, e := range log.Events {
		if e.Leaf.Event == name {
			if err := fn(e.Index, e.Leaf); err != nil {
				return err
			}
		}
	}
	return nil
}

func recordFromAttrs(a recorder.Attrs) (*CertRecord, error) {
	serial, err := strconv.ParseUint(a["serial"], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("bad serial %q", a["serial"])
	}
	va, err1 := time.Parse(time.RFC3339, a["valid_after"])
	vb, err2 := time.Parse(time.RFC3339, a["valid_before"])
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("bad validity: %w", err)
	}
	rec := &CertRecord{
		Serial: serial, Identity: a["identity"], Provider: a["provider"], Issuer: a["issuer"], Subject: a["subject"],
		Sponsor: a["sponsor"], Ticket: a["ticket"], Grant: a["grant"], KeyType: a["key.type"], KeyFingerprint: a["key.sha256"],
		Principals: recorder.SplitList(a["principals"]), ValidAfter: va, ValidBefore: vb, Extensions: recorder.SplitList(a["extensions"]),
		SourceAddresses: recorder.SplitList(a["source_address"]), Rule: a["rule"], ClientAddress: a["client.address"],
	}
	rec.Email = a["email"]
	if g := a["groups"]; g != "" {
		rec.Groups = strings.Split(g, ",")
	}
	if c := a["token.claims"]; c != "" {
		if err := json.Unmarshal([]byte(c), &rec.Claims); err != nil {
			return nil, fmt.Errorf("bad token claims: %w", err)
		}
	}
	rec.KeyID = KeyID(rec)
	return rec, nil
}

// PolicyIdentity is the identity the certificate was issued to, as policy
// decisions see it: the same provider, subject, sponsor and token claims.
func (r *CertRecord) PolicyIdentity() *policy.Identity {
	return &policy.Identity{
		Provider: r.Provider, Issuer: r.Issuer, Subject: r.Subject, Sponsor: r.Sponsor,
		Email: r.Email, Groups: slices.Clone(r.Groups), Claims: r.Claims,
	}
}

func parseSerials(s string) ([]uint64, error) {
	var out []uint64
	for _, f := range recorder.SplitList(s) {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad serial %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// markRevoked revokes serials. A serial the registry does not know yet
// (a cluster member's certificate whose issuance is in a log not read that
// far) is kept, and revoked when its issuance is registered.
func (r *Registry) markRevoked(serials []uint64, at time.Time, reason string) {
	for _, s := range serials {
		rec := r.certs[s]
		switch {
		case rec == nil:
			if id, _ := recorder.SplitNumber(s); id == r.own {
				continue // this member's own, expired
			}
			if r.early == nil {
				r.early = map[uint64]earlyRevocation{}
			}
			if _, ok := r.early[s]; !ok {
				r.early[s] = earlyRevocation{at, reason}
			}
		case !rec.Revoked:
			rec.Revoked, rec.RevokedAt, rec.RevokeReason = true, at, reason
		}
	}
}

// earlyFor is how long a revocation of a serial not registered yet is
// kept: longer than any certificate lives.
const earlyFor = 7 * 24 * time.Hour

// earlyRevocation is a revocation of a serial not registered yet.
type earlyRevocation struct {
	at     time.Time
	reason string
}

// register adds an issued certificate that another member's log records,
// revoked if a revocation already read names it, or names its identity
// after it was issued or with a block it was issued during. r.mu must be
// held.
func (r *Registry) register(rec *CertRecord) {
	if e, ok := r.early[rec.Serial]; ok {
		rec.Revoked, rec.RevokedAt, rec.RevokeReason = true, e.at, e.reason
		delete(r.early, rec.Serial)
	}
	if rev, ok := r.identities[rec.Identity]; ok && !rec.Revoked && rev.covers(rec.IssuedAt) {
		rec.Revoked, rec.RevokedAt, rec.RevokeReason = true, rev.At, "identity revoked"
	}
	r.certs[rec.Serial] = rec
}

func (r *Registry) issuing() func() {
	r.gate.RLock()
	return r.gate.RUnlock
}

func (r *Registry) add(rec *CertRecord) {
	r.mu.Lock()
	r.certs[rec.Serial] = rec
	r.mu.Unlock()
}

// identityRefused says why a token of identity id issued at iat is
// refused, or "" when it is not.
// IdentityRefused says why the identity id, proved by a token issued at
// iat, is refused at now: it is blocked, or was revoked after the token
// was issued; "" when it is not.
func (r *Registry) IdentityRefused(id string, iat, now time.Time) string {
	return r.identityRefused(id, iat, now)
}

func (r *Registry) identityRefused(id string, iat, now time.Time) string {
	r.mu.Lock()
	rev, ok := r.identities[id]
	r.mu.Unlock()
	switch {
	case !ok:
		return ""
	case now.Before(rev.Until):
		return fmt.Sprintf("%s is blocked until %s", id, rev.Until.UTC().Format(time.RFC3339))
	case !iat.After(rev.At):
		return fmt.Sprintf("%s was revoked at %s; a token issued before then is refused: get a new token", id, rev.At.UTC().Format(time.RFC3339))
	}
	return ""
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// IsRevoked reports whether the certificate with serial was revoked. A
// serial the registry does not know is not revoked (it may have expired).
func (r *Registry) IsRevoked(serial uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.certs[serial]
	return rec != nil && rec.Revoked
}

// Lookup returns the record of the certificate with serial, if the
// registry knows it (it knows every certificate not yet expired).
func (r *Registry) Lookup(serial uint64) (CertRecord, bool) {
	r.mu.Lock()
	rec, miss := r.certs[serial], r.onMiss
	if rec == nil && miss != nil {
		if id, _ := recorder.SplitNumber(serial); id != 0 && id != r.own {
			r.mu.Unlock()
			miss(serial)
			r.mu.Lock()
			rec = r.certs[serial]
		}
	}
	defer r.mu.Unlock()
	if rec == nil {
		return CertRecord{}, false
	}
	return *rec, true
}

// Certificates lists the registry's certificates in serial order.
func (r *Registry) Certificates() []CertRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]CertRecord, 0, len(r.certs))
	for _, rec := range r.certs {
		out = append(out, *rec)
	}
	slices.SortFunc(out, func(a, b CertRecord) int { return compareUint(a.Serial, b.Serial) })
	return out
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Prune forgets certificates that expired before now (unless the registry
// keeps all): they can no longer be used, revoked or not.
func (r *Registry) Prune(now time.Time) {
	if r.keepAll {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for s, rec := range r.certs {
		if !rec.ValidBefore.After(now) {
			delete(r.certs, s)
		}
	}
	// A revocation of another member's serial whose issuance never came
	// names a certificate long expired by now.
	for s, e := range r.early {
		if now.Sub(e.at) > earlyFor {
			delete(r.early, s)
		}
	}
}

// RevokeRequest names what to revoke: certificates by serial, or every
// certificate of an identity (which also refuses, from then on, tokens of
// that identity issued before the revocation).
type RevokeRequest struct {
	Serials  []uint64
	Identity string
	// BlockFor, with Identity, also refuses every token of the identity,
	// new ones included, for this long.
	BlockFor time.Duration
	Reason   string
	// By names who revoked (an operator's user name).
	By string
	// Attrs, if any, are journaled with the revocation besides its own
	// attributes (which they never replace): the server names the
	// operator who asked with them. Not part of the admin API's JSON.
	Attrs recorder.Attrs `json:"-"`
	// TextMasker returns the masker of Reason, applied before it is
	// journaled (the leaf says what it masked), as [grants.GrantsOptions]
	// TextMasker: without one, every built-in detector masks; a nil
	// masker returned masks nothing. It is not part of the admin API's
	// JSON: the server sets its own.
	TextMasker func() *mask.Masker `json:"-"`
}

// RevocationReason is a revocation's reason as the journal keeps it and
// the log shows it, and what was masked in it (the "masked" attribute;
// "" for nothing): on one line, blanks of any kind (a tab, a line break)
// becoming single spaces, which also lets the masker see a value they
// split; masked with textMasker's masker (as [grants.GrantsOptions] TextMasker);
// then cut to 1 KiB, so that a value across the cut is masked too.
func RevocationReason(textMasker func() *mask.Masker, reason string) (kept, masked string) {
	a := map[string]string{"reason": strings.Join(strings.Fields(reason), " ")}
	masked = mask.Configured(textMasker).Fields(a, "reason")
	return truncate(a["reason"], 1024), masked
}

// RevokeResult says what a revocation did.
type RevokeResult struct {
	// Serials are the certificates newly revoked.
	Serials      []uint64  `json:"serials"`
	Identity     string    `json:"identity,omitempty"`
	Leaf         int64     `json:"leaf"`
	At           time.Time `json:"revoked_at"`
	BlockedUntil time.Time `json:"blocked_until,omitzero"`
	// Log is the origin of the log whose leaf Leaf is, when it is another
	// cluster member's (ApplyForeign); "" for this bastion's own.
	Log string `json:"log,omitempty"`
}

// Revoke journals a revocation and applies it. Serials must name
// certificates the registry knows and that have not expired; revoking an
// identity with no live certificate still records the identity's
// revocation.
func (r *Registry) Revoke(ctx context.Context, j recorder.EventJournal, req RevokeRequest, now time.Time) (*RevokeResult, error) {
	if (len(req.Serials) == 0) == (req.Identity == "") {
		return nil, errors.New("revoke either serials or an identity")
	}
	if req.BlockFor < 0 || req.BlockFor > 0 && req.Identity == "" {
		return nil, errors.New("a block is for an identity, and for a positive duration")
	}
	r.gate.Lock()
	defer r.gate.Unlock()
	r.mu.Lock()
	var serials []uint64
	for _, s := range req.Serials {
		rec := r.certs[s]
		switch {
		case rec == nil:
			r.mu.Unlock()
			return nil, fmt.Errorf("no certificate with serial %d is known (or it has expired)", s)
		case !rec.ValidBefore.After(now):
			r.mu.Unlock()
			return nil, fmt.Errorf("certificate %d expired at %s: it can no longer be used", s, rec.ValidBefore.UTC().Format(time.RFC3339))
		case !rec.Revoked:
			serials = append(serials, s)
		}
	}
	if req.Identity != "" {
		for s, rec := range r.certs {
			if rec.Identity == req.Identity && !rec.Revoked && rec.ValidBefore.After(now) {
				serials = append(serials, s)
			}
		}
	}
	r.mu.Unlock()
	slices.Sort(serials)
	serials = slices.Compact(serials)
	if len(serials) == 0 && req.Identity == "" {
		return nil, errors.New("every certificate named is already revoked")
	}
	strs := make([]string, len(serials))
	for i, s := range serials {
		strs[i] = strconv.FormatUint(s, 10)
	}
	attrs := recorder.Attrs{"serials": strings.Join(strs, ","), "revoked_at": now.UTC().Format(time.RFC3339Nano)}
	if req.Identity != "" {
		attrs["identity"] = req.Identity
	}
	var until time.Time
	if req.BlockFor > 0 {
		until = now.Add(req.BlockFor)
		attrs["blocked_until"] = until.UTC().Format(time.RFC3339Nano)
	}
	if req.Reason != "" {
		attrs["reason"], attrs[mask.MaskedKey] = RevocationReason(req.TextMasker, req.Reason)
		if attrs[mask.MaskedKey] == "" {
			delete(attrs, mask.MaskedKey)
		}
	}
	if req.By != "" {
		attrs["by"] = truncate(req.By, 256)
	}
	attrs.AddMissing(req.Attrs)
	// Not cancelled with the caller: once queued, the event is committed
	// whatever the caller does, and the revocation must then take effect
	// here too, or the journal and the registry would disagree.
	idx, err := j.AppendEvent(context.WithoutCancel(ctx), events.CertRevoked, attrs)
	if err != nil {
		return nil, fmt.Errorf("journal the revocation (nothing was revoked): %w", err)
	}
	r.mu.Lock()
	r.markRevoked(serials, now, req.Reason)
	if req.Identity != "" {
		rev := r.identities[req.Identity]
		rev.At, rev.Until = maxTime(rev.At, now), maxTime(rev.Until, until)
		r.identities[req.Identity] = rev
	}
	r.mu.Unlock()
	return &RevokeResult{Serials: serials, Identity: req.Identity, Leaf: idx, At: now, BlockedUntil: until}, nil
}

// KRL builds an OpenSSH key revocation list of the revoked certificates
// that have not expired, under each of the given CA keys (serials are
// unique across keys: they are journal leaf indexes, with the issuing
// cluster member's ID on top).
func (r *Registry) KRL(caKeys []ssh.PublicKey, now time.Time) *KRL {
	r.mu.Lock()
	var serials []uint64
	for s, rec := range r.certs {
		if rec.Revoked && rec.ValidBefore.After(now) {
			serials = append(serials, s)
		}
	}
	r.mu.Unlock()
	slices.Sort(serials)
	k := &KRL{Version: uint64(now.Unix()), Generated: now, Comment: "bastion revoked certificates"}
	if len(serials) > 0 {
		for _, ca := range caKeys {
			k.Revoked = append(k.Revoked, RevokedSerials{CA: ca, Serials: serials})
		}
	}
	return k
}

// WriteKRL writes the registry's KRL to path atomically, readable by all
// (sshd reads it as root, but targets may copy it around).
func (r *Registry) WriteKRL(path string, caKeys []ssh.PublicKey, now time.Time) error {
	data, err := r.KRL(caKeys, now).Marshal()
	if err != nil {
		return err
	}
	if err := storage.WriteFileAtomic(path, data, 0o644); err != nil {
		return fmt.Errorf("write KRL %s: %w", path, err)
	}
	return nil
}
