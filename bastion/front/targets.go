package front

import (
	"fmt"
	"os"
)

// TargetSet is the targets in force, by name, with what the SSH ones need
// to be dialed. It is never changed once built: a reload builds another
// and swaps it in, and a connection keeps the set it resolved its target
// in, so a live session keeps the target it started with.
type TargetSet struct {
	byName    map[string]Target
	upstreams map[string]*upstream // SSH targets by name
}

// LoadTargets checks targets and loads what their upstream connections
// need (host keys, known_hosts, user keys) from their files; SetTargets
// puts the set in force.
func (f *Front) LoadTargets(targets []Target) (*TargetSet, error) {
	set := &TargetSet{byName: map[string]Target{}, upstreams: map[string]*upstream{}}
	for _, t := range targets {
		set.byName[t.Name] = t
		if len(t.Command) > 0 && t.User == "" && os.Geteuid() == 0 {
			f.log.Warn("a command target runs as root, the bastion's own user: set its user", "target", t.Name)
		}
		if t.SSH != "" {
			u, err := newUpstream(t, f.opts.Now)
			if err != nil {
				return nil, fmt.Errorf("ssh: %w", err)
			}
			u.fips = f.opts.Config.FIPS
			set.upstreams[t.Name] = u
		}
	}
	return set, nil
}

// SetTargets puts set, from LoadTargets, in force for the connections
// that authenticate from now on.
func (f *Front) SetTargets(set *TargetSet) { f.targets.Store(set) }
