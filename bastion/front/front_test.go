package front

import (
	"net"
	"net/netip"
	"testing"
)

func TestConnKeyOf(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		"192.0.2.7:22":                "192.0.2.7/32",
		"[::ffff:192.0.2.7]:22":       "192.0.2.7/32",
		"[2001:db8:1:2:3:4:5:6]:2222": "2001:db8:1:2::/64",
	} {
		a, _ := net.ResolveTCPAddr("tcp", addr)
		if got := connKeyOf(a); got != netip.MustParsePrefix(want) {
			t.Errorf("%s: %v, want %s", addr, got, want)
		}
	}
}
