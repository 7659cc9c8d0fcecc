package evidence

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// readCustody reads the journal's accesses, the bastion's starts and
// stops, and policy loads.
func (b *builder) readCustody() error {
	c := &b.r.Custody
	err := b.events(events.JournalAccessed, func(idx int64, l *recorder.Leaf) {
		if l.WallNS < b.from {
			return
		}
		a := l.Attrs
		acc := Access{At: wall(l), Leaf: idx, Action: a["action"], Session: a["session"], Format: a["format"], User: a["user"], UID: a["uid"], Host: a["host"],
			Via: a["via"], Identity: a["identity"], Verified: a["identity.verified"], Issuer: a["identity.issuer"], Role: a["reader.role"], PID: a["pid"]}
		if acc.Via == "" {
			acc.Via = "reader" // before serve recorded reads, every read was the reader's own
		}
		if f, t := a["period.from"], a["period.to"]; f != "" || t != "" {
			acc.Detail = "period " + f + " to " + t
			if ts := a["targets"]; ts != "" {
				acc.Detail += ", targets " + ts
			}
		}
		c.Accesses = append(c.Accesses, acc)
	})
	if err != nil {
		return err
	}
	var serve []ServeEvent
	for _, name := range []string{events.ServeStarted, events.ServeStopped} {
		err := b.events(name, func(idx int64, l *recorder.Leaf) {
			a := l.Attrs
			detail := a["reason"]
			if d := a["detail"]; d != "" {
				detail += ": " + d
			}
			if name == events.ServeStarted {
				detail = strings.TrimSpace("pid " + a["pid"] + " " + a["config"])
			}
			serve = append(serve, ServeEvent{Event: name, At: wall(l), Leaf: idx, Detail: detail})
		})
		if err != nil {
			return err
		}
	}
	slices.SortFunc(serve, func(x, y ServeEvent) int { return cmp.Compare(x.Leaf, y.Leaf) })
	before := -1
	for i := range serve {
		e := &serve[i]
		if e.Event == events.ServeStarted && i > 0 && serve[i-1].Event == events.ServeStarted {
			e.Unclean = true
		}
		ns := e.At.UnixNano()
		switch {
		case ns < b.from:
			before = i
		case ns <= b.to:
			if before >= 0 {
				c.Serve = append(c.Serve, serve[before])
				before = -1
			}
			c.Serve = append(c.Serve, *e)
			if e.Unclean {
				c.Gaps = append(c.Gaps, Finding{Kind: FindingUncleanStop, Leaf: e.Leaf,
					What: fmt.Sprintf("the bastion started again at %s (leaf %d) without recording a stop after its start at leaf %d: it crashed, was killed, or its host went down", e.At.Format(time.RFC3339), e.Leaf, serve[i-1].Leaf)})
			}
		}
	}
	if before >= 0 {
		c.Serve = append(c.Serve, serve[before])
	}
	var pol []PolicyEvent
	for _, name := range []string{events.PolicyLoaded, events.PolicyRefused} {
		err := b.events(name, func(idx int64, l *recorder.Leaf) {
			a := l.Attrs
			pol = append(pol, PolicyEvent{Event: name, At: wall(l), Leaf: idx, Trigger: a["trigger"], Hash: firstOf(a["hash"], a["in-force"]),
				Previous: a["previous"], Source: a["source"], Error: a["error"]})
		})
		if err != nil {
			return err
		}
	}
	slices.SortFunc(pol, func(x, y PolicyEvent) int { return cmp.Compare(x.Leaf, y.Leaf) })
	lastLoad := -1
	for i, p := range pol {
		ns := p.At.UnixNano()
		switch {
		case ns < b.from:
			if p.Event == events.PolicyLoaded {
				lastLoad = i
			}
		case ns <= b.to:
			if lastLoad >= 0 {
				c.Policies = append(c.Policies, pol[lastLoad])
				lastLoad = -1
			}
			c.Policies = append(c.Policies, p)
		}
	}
	if lastLoad >= 0 {
		c.Policies = append(c.Policies, pol[lastLoad])
	}
	return nil
}
