package bastion

import (
	"fmt"
	"os"
	"reflect"
	"slices"
)

// targetSet is the targets in force, by name, with what the SSH ones need
// to be dialed. It is never changed once built: a reload builds another
// and swaps it in, and a connection keeps the set it resolved its target
// in, so a live session keeps the target it started with.
type targetSet struct {
	byName    map[string]TargetConfig
	upstreams map[string]*upstream // SSH targets by name
}

// newTargetSet checks targets and loads what their upstream connections
// need (host keys, known_hosts, user keys) from their files.
func (f *front) newTargetSet(targets []TargetConfig) (*targetSet, error) {
	set := &targetSet{byName: map[string]TargetConfig{}, upstreams: map[string]*upstream{}}
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

// targetChanges names the targets added, removed and changed from old to
// new, each list sorted.
func targetChanges(old, new []TargetConfig) (added, removed, changed []string) {
	before := map[string]TargetConfig{}
	for _, t := range old {
		before[t.Name] = t
	}
	after := map[string]bool{}
	for _, t := range new {
		after[t.Name] = true
		o, ok := before[t.Name]
		switch {
		case !ok:
			added = append(added, t.Name)
		case !reflect.DeepEqual(o, t):
			changed = append(changed, t.Name)
		}
	}
	for name := range before {
		if !after[name] {
			removed = append(removed, name)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	slices.Sort(changed)
	return added, removed, changed
}
