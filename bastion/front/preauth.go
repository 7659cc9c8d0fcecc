package front

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gl "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// How a connection that did not authenticate ended, as its event says.
const (
	endClosed   = "closed"           // the client went away
	endLimit    = "max_auth_tries"   // the bastion closed it at the limit
	endTimeout  = "pre_auth_timeout" // it did not authenticate in time
	endLoggedIn = "authenticated"    // it authenticated after refusals of keys it proved
)

// The budget of ssh.auth_refused events for strangers (connections that
// did not prove a key the user CA certified): per interval
// (connRefusedInterval), at most maxAuthRefusedEvents events journaled
// whole, at most authRefusedPerAddress of them for one address; the
// refusals past it are counted by address into as many summary events
// more, and one for the other addresses.
const (
	maxAuthRefusedEvents  = 32
	authRefusedPerAddress = 8
)

// preAuth is what one connection did before it authenticated: the keys
// it offered and why each was refused. A connection costs the journal one
// event at most: when it ends without authenticating, or when it
// authenticates after keys it proved were refused (a revoked
// certificate, then a good one). Keys merely offered and refused before
// a certificate that logs in (OpenSSH offers the plain key first) are
// part of that login, and cost nothing. Within the journal's budget for
// refusals (authBudget); past it, the connection is counted in a summary.
type preAuth struct {
	conn  net.Conn
	timer *time.Timer
	f     *Front

	mu       sync.Mutex
	user     string
	remote   net.Addr
	keys     map[string]bool // the distinct keys offered, by marshaled key
	reasons  map[string]int  // refusals by reason
	worst    *refusal        // the refusal the event names
	worstKey ssh.PublicKey
	rank     int  // worst's rank: proved > not proved > untrusted > plain
	offered  bool // a key worth proving was offered and not yet proved
	proved   bool // a key was proved, refused or not
	refused  bool // a key the client proved was refused
	ended    string
	done     bool // the event was journaled (or was not owed)
}

// preAuthKey is the gliderlabs context key of a connection's preAuth.
type preAuthKey struct{}

// preAuthStart is gliderlabs' connection callback: it starts the
// connection's pre-auth accounting and its timer, which closes a
// connection that has not authenticated within the pre-auth timeout.
// (gliderlabs resets the connection's deadlines on every read, so a
// deadline cannot do it.) The accounting is journaled when the
// connection ends.
func (f *Front) preAuthStart(ctx gl.Context, c net.Conn) net.Conn {
	pa := &preAuth{conn: c, f: f, remote: c.RemoteAddr(), keys: map[string]bool{}, reasons: map[string]int{}}
	pa.timer = time.AfterFunc(f.opts.Config.PreAuthTimeout, func() {
		f.log.Debug("ssh pre-auth timeout", "client", c.RemoteAddr().String())
		pa.mu.Lock()
		if pa.ended == "" {
			pa.ended = endTimeout
		}
		pa.mu.Unlock()
		c.Close()
	})
	ctx.SetValue(preAuthKey{}, pa)
	// No goroutine waits for the end: one per connection would stay
	// parked for a session's whole life, and the runtime never frees a
	// goroutine's descriptor once made, so the most connections ever held
	// would set the process's memory for good.
	f.preAuths.Add(1)
	context.AfterFunc(ctx, func() {
		defer f.preAuths.Done()
		pa.timer.Stop()
		pa.finish()
	})
	return c
}

func preAuthOf(ctx gl.Context) *preAuth {
	pa, _ := ctx.Value(preAuthKey{}).(*preAuth)
	return pa
}

// offer counts a key the client offered (queried or signed with). It
// returns false, having closed the connection, for the key past
// max_auth_tries: each distinct key is one try, whatever x/crypto counts.
func (pa *preAuth) offer(user string, key ssh.PublicKey, max int) bool {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	pa.user = user
	k := string(key.Marshal())
	if pa.keys[k] {
		return true
	}
	if len(pa.keys) >= max {
		pa.reasons[events.ReasonTooManyKeys]++
		if pa.ended == "" {
			pa.ended = endLimit
		}
		pa.conn.Close()
		return false
	}
	pa.keys[k] = true
	return true
}

// refusal ranks: which refusal names the event.
const (
	rankPlain = iota + 1
	rankUntrusted
	rankNotProved
	rankProved
)

// refuse records why a key was refused; proved says whether the client
// had proved it holds the key. The first refusal of a key the client
// proved (a certificate of the user CA: a certified identity, not a
// stranger) is journaled at once, outside the budget, as the
// connection's one event; later ones are counted in it no more.
func (pa *preAuth) refuse(key ssh.PublicKey, r *refusal, proved bool) {
	pa.mu.Lock()
	if proved && !pa.done {
		pa.reasons[r.reason]++
		pa.worst, pa.worstKey, pa.rank, pa.refused, pa.done = r, key, rankProved, true, true
		attrs := recorder.Attrs{"keys": strconv.Itoa(len(pa.keys)), "reasons": countList(pa.reasons)}
		user, remote := pa.user, pa.remote
		pa.mu.Unlock()
		pa.f.refusedWith(user, remote, key, r, attrs)
		return
	}
	defer pa.mu.Unlock()
	pa.reasons[r.reason]++
	rank := rankPlain
	switch {
	case proved:
		rank = rankProved
		pa.refused = true
	case r.reason == events.ReasonUntrustedCA:
		rank = rankUntrusted
	}
	if rank >= pa.rank {
		pa.worst, pa.worstKey, pa.rank = r, key, rank
	}
}

// worthProving notes a key offered that the client may now prove.
func (pa *preAuth) worthProving(key ssh.PublicKey) {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	pa.offered = true
	if pa.rank < rankNotProved {
		pa.worstKey = key
	}
}

// prove notes that the client proved a key.
func (pa *preAuth) prove() {
	pa.mu.Lock()
	pa.proved = true
	pa.mu.Unlock()
}

// accepted ends the accounting of a connection that authenticated: what
// came before costs an event only if keys it proved were refused.
func (pa *preAuth) accepted() {
	pa.timer.Stop()
	if lc, ok := pa.conn.(*limitedConn); ok {
		lc.authenticated()
	}
	pa.mu.Lock()
	pa.ended = endLoggedIn
	pa.mu.Unlock()
	pa.finish()
}

// finish journals the connection's event, once, if one is owed.
func (pa *preAuth) finish() {
	pa.mu.Lock()
	if pa.done {
		pa.mu.Unlock()
		return
	}
	pa.done = true
	if pa.ended == "" {
		pa.ended = endClosed
	}
	if pa.offered && !pa.proved && pa.rank < rankNotProved {
		// A key worth proving was offered and the client went away (or
		// its signature did not verify: x/crypto closes the connection
		// without a word to the bastion).
		pa.reasons[events.ReasonKeyNotProved]++
		pa.worst, pa.rank = &refusal{reason: events.ReasonKeyNotProved, detail: "the connection ended before the client proved it holds the key it offered"}, rankNotProved
	}
	owed := pa.worst != nil && (pa.ended != endLoggedIn || pa.refused)
	if pa.reasons[events.ReasonTooManyKeys] > 0 && pa.ended != endLoggedIn {
		pa.worst = &refusal{reason: events.ReasonTooManyKeys, detail: "more distinct keys offered than max_auth_tries (" + strconv.Itoa(pa.f.opts.Config.MaxAuthTries) + "): the connection was closed"}
		owed = true
	}
	var attrs recorder.Attrs
	var reasons map[string]int
	if owed {
		reasons = maps.Clone(pa.reasons)
		attrs = recorder.Attrs{"keys": strconv.Itoa(len(pa.keys)), "reasons": countList(reasons), "ended": pa.ended}
	}
	user, remote, key, r := pa.user, pa.remote, pa.worstKey, pa.worst
	pa.mu.Unlock()
	if !owed {
		return
	}
	if !pa.f.authBudget.take(connKeyOf(remote), reasons) {
		pa.f.metrics.AuthRefused(r.reason)
		return
	}
	pa.f.refusedWith(user, remote, key, r, attrs)
}

// countList renders counts by name as "name:n,…", sorted by name.
func countList(m map[string]int) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+":"+strconv.Itoa(m[k]))
	}
	return strings.Join(parts, ",")
}

// refusalBudget bounds what one kind of refusal from strangers costs the
// journal. In each interval the first perAddr refusals of an address are
// journaled whole while the interval has had fewer than max such events;
// the rest are counted by address and journaled at the end of the
// interval as summaries (at most max, the other addresses summed in one
// more). So an interval costs at most 2·max+1 events, however many
// addresses send.
type refusalBudget struct {
	max, perAddr int

	mu        sync.Mutex
	pending   map[netip.Prefix]*pendingRefusals
	journaled map[netip.Prefix]int
	events    int
	// overflow counts, without their addresses, the refusals of
	// addresses past what pending keeps (4·max): an attacker with many
	// addresses (an IPv6 /48 holds 65,536 /64s) cannot grow the map.
	overflow pendingRefusals
}

type pendingRefusals struct {
	count   int
	reasons map[string]int
	since   time.Time
}

func newRefusalBudget(max, perAddr int) *refusalBudget {
	return &refusalBudget{max: max, perAddr: perAddr, pending: map[netip.Prefix]*pendingRefusals{}, journaled: map[netip.Prefix]int{}}
}

// take reports whether a refusal from key may be journaled whole now;
// if not, it is counted (with its reasons, if any) for a summary.
func (b *refusalBudget) take(key netip.Prefix, reasons map[string]int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.journaled[key] < b.perAddr && b.events < b.max {
		b.journaled[key]++
		b.events++
		return true
	}
	p := b.pending[key]
	if p == nil && len(b.pending) >= 4*b.max {
		if b.overflow.reasons == nil {
			b.overflow = pendingRefusals{since: time.Now(), reasons: map[string]int{}}
		}
		p = &b.overflow
	}
	if p == nil {
		p = &pendingRefusals{since: time.Now(), reasons: map[string]int{}}
		b.pending[key] = p
	}
	p.count++
	for r, n := range reasons {
		p.reasons[r] += n
	}
	return false
}

// A refusalSummary is the refusals of one address (or, with others > 0,
// of that many other addresses) counted in an interval.
type refusalSummary struct {
	client  string
	others  int
	count   int
	reasons map[string]int
	since   time.Time
	// untracked is how many of count came from addresses past those
	// the budget keeps apart (they are not among the others counted).
	untracked int
}

// flush returns the summaries of the interval that ends, and starts the
// next.
func (b *refusalBudget) flush() []refusalSummary {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []refusalSummary
	var rest refusalSummary
	rest.reasons = map[string]int{}
	for key, p := range b.pending {
		if len(out) < b.max {
			out = append(out, refusalSummary{client: prefixString(key), count: p.count, reasons: p.reasons, since: p.since})
			continue
		}
		rest.others++
		rest.count += p.count
		for r, n := range p.reasons {
			rest.reasons[r] += n
		}
		if rest.since.IsZero() || p.since.Before(rest.since) {
			rest.since = p.since
		}
	}
	if o := b.overflow; o.count > 0 {
		rest.untracked = o.count
		rest.count += o.count
		for r, n := range o.reasons {
			rest.reasons[r] += n
		}
		if rest.since.IsZero() || o.since.Before(rest.since) {
			rest.since = o.since
		}
	}
	if rest.count > 0 {
		rest.client = "(others)"
		out = append(out, rest)
	}
	clear(b.pending)
	clear(b.journaled)
	b.events, b.overflow = 0, pendingRefusals{}
	return out
}

// prefixString is an address as events name it: the IPv4 address, or
// the IPv6 /64.
func prefixString(key netip.Prefix) string {
	if key.Bits() == 32 {
		return key.Addr().String()
	}
	return key.String()
}

// flushAuthRefusals journals the summaries of the auth refusals past the
// budget in the interval that ends.
func (f *Front) flushAuthRefusals() {
	for _, s := range f.authBudget.flush() {
		attrs := recorder.Attrs{
			"reason": events.ReasonSummary, "client": s.client, "refused": strconv.Itoa(s.count),
			"since": s.since.UTC().Format(time.RFC3339), "reasons": countList(s.reasons),
		}
		if s.others > 0 {
			attrs["addresses"] = strconv.Itoa(s.others)
		}
		if s.untracked > 0 {
			attrs["untracked"] = strconv.Itoa(s.untracked)
		}
		f.log.Warn("ssh authentications refused past the journal's budget", "client", s.client, "refused", s.count)
		f.journal(events.AuthRefused, attrs, "refused ssh authentications")
	}
}

// FlushRefusals journals now what Serve journals every interval: the
// summaries of the connections and the authentications refused past the
// journal's budget.
func (f *Front) FlushRefusals() {
	f.conns.flush()
	f.flushAuthRefusals()
}

// WaitPreAuth waits until every connection accepted so far has written
// its pre-auth accounting (each does as it authenticates or ends), or
// until ctx is done.
func (f *Front) WaitPreAuth(ctx context.Context) { waitOrDone(ctx, &f.preAuths) }
