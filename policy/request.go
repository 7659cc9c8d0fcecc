package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MaxTicket is the longest change ticket a request may name, in bytes.
const MaxTicket = 128

// CheckTicket refuses a change ticket that is longer than MaxTicket or
// holds anything but printable ASCII without spaces: a ticket goes into
// certificate key IDs and log lines.
func CheckTicket(t string) error {
	if len(t) > MaxTicket {
		return fmt.Errorf("ticket is %d bytes, at most %d", len(t), MaxTicket)
	}
	for _, r := range t {
		if r <= ' ' || r > '~' {
			return fmt.Errorf("ticket %q has a character other than printable ASCII without spaces", t)
		}
	}
	return nil
}

// CheckLogins refuses a list of logins a request asks for that is longer
// than 64, names a login twice, or holds a login that is empty, longer
// than 64 bytes, or not printable ASCII without spaces, commas and "@"
// (which would break principals lists and LOGIN@TARGET user names).
func CheckLogins(ls []string) error {
	if len(ls) > 64 {
		return errors.New("more than 64 logins asked for")
	}
	for _, l := range ls {
		if l == "" || len(l) > 64 || strings.ContainsFunc(l, func(r rune) bool { return r <= ' ' || r > '~' || r == ',' || r == '@' }) {
			if len(l) > 70 {
				l = l[:70] + "…"
			}
			return fmt.Errorf("invalid login %q", l)
		}
	}
	if sorted := slices.Sorted(slices.Values(ls)); len(slices.Compact(sorted)) != len(ls) {
		return errors.New("a login is asked for twice")
	}
	return nil
}
