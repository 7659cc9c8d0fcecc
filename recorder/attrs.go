package recorder

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Attrs is a set of named values carried by leaves and by metadata frames
// (exit status, PTY request, masking events…). Keys are lowercase ASCII
// letters, digits, '.', '_' and '-'; values are arbitrary bytes.
//
// The encoding is canonical, so equal sets always hash equally:
//
//	count u16 ‖ { key_len u16 ‖ key ‖ value_len u32 ‖ value } sorted by key, no duplicates
type Attrs map[string]string

// AddMissing adds to a the attributes of extra it does not have, never
// replacing one of its own.
func (a Attrs) AddMissing(extra Attrs) {
	for k, v := range extra {
		if _, own := a[k]; !own {
			a[k] = v
		}
	}
}

// Cap cuts the values of keys to n bytes at most, at a character
// boundary, noting how long they were ("… (N bytes)"): a leaf must cost a
// bounded number of bytes whatever its callers chose to send. A value
// within the bound, one cut before included, is left as it is.
func (a Attrs) Cap(n int, keys ...string) {
	for _, k := range keys {
		v, ok := a[k]
		if !ok || len(v) <= n {
			continue
		}
		note := "… (" + strconv.Itoa(len(v)) + " bytes)"
		cut := n - len(note)
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		a[k] = v[:cut] + note
	}
}

// SplitList splits the value of a list attribute (principals, serials,
// approvers), which the journal writes comma-separated. "" is the empty
// list, never nil.
func SplitList(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}

const (
	maxAttrs     = 1024
	maxAttrKey   = 128
	maxAttrValue = 1 << 20
)

func validKey(k string) bool {
	if k == "" || len(k) > maxAttrKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// AppendAttrs appends the canonical encoding of a to b. It fails on an
// invalid key or an oversized value, never silently dropping either.
func AppendAttrs(b []byte, a Attrs) ([]byte, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = binary.BigEndian.AppendUint16(b, uint16(len(keys)))
	for _, k := range keys {
		b = binary.BigEndian.AppendUint16(b, uint16(len(k)))
		b = append(b, k...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(a[k])))
		b = append(b, a[k]...)
	}
	return b, nil
}

// check reports what keeps a from being encoded, without encoding it.
func (a Attrs) check() error {
	if len(a) > maxAttrs {
		return fmt.Errorf("recorder: %d attributes, at most %d", len(a), maxAttrs)
	}
	for k, v := range a {
		if !validKey(k) {
			return fmt.Errorf("recorder: invalid attribute key %q", k)
		}
		if len(v) > maxAttrValue {
			return fmt.Errorf("recorder: attribute %q is %d bytes, at most %d", k, len(v), maxAttrValue)
		}
	}
	return nil
}

// EncodeAttrs is AppendAttrs to a new slice.
func EncodeAttrs(a Attrs) ([]byte, error) { return AppendAttrs(nil, a) }

// ParseAttrs decodes an attribute list from the start of b and returns the
// rest. It rejects every non-canonical encoding.
func ParseAttrs(b []byte) (Attrs, []byte, error) {
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("%w: attribute count truncated", ErrMalformed)
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if n > maxAttrs {
		return nil, nil, fmt.Errorf("%w: %d attributes, at most %d", ErrMalformed, n, maxAttrs)
	}
	a := make(Attrs, n)
	prev := ""
	for i := 0; i < n; i++ {
		if len(b) < 2 {
			return nil, nil, fmt.Errorf("%w: attribute %d: key length truncated", ErrMalformed, i)
		}
		kl := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if len(b) < kl {
			return nil, nil, fmt.Errorf("%w: attribute %d: key truncated", ErrMalformed, i)
		}
		k := string(b[:kl])
		b = b[kl:]
		if !validKey(k) {
			return nil, nil, fmt.Errorf("%w: attribute %d: invalid key %q", ErrMalformed, i, k)
		}
		if i > 0 && k <= prev {
			return nil, nil, fmt.Errorf("%w: attribute keys not strictly ascending at %q", ErrMalformed, k)
		}
		prev = k
		if len(b) < 4 {
			return nil, nil, fmt.Errorf("%w: attribute %q: value length truncated", ErrMalformed, k)
		}
		vl := binary.BigEndian.Uint32(b)
		b = b[4:]
		if vl > maxAttrValue || uint32(len(b)) < vl {
			return nil, nil, fmt.Errorf("%w: attribute %q: value of %d bytes truncated or too long", ErrMalformed, k, vl)
		}
		a[k] = string(b[:vl])
		b = b[vl:]
	}
	return a, b, nil
}

// ParseAttrsPayload decodes a frame payload that is exactly one attribute list.
func ParseAttrsPayload(p []byte) (Attrs, error) {
	a, rest, err := ParseAttrs(p)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after attribute list", ErrMalformed, len(rest))
	}
	return a, nil
}
