// Package cluster names the members of a bastion cluster: several serve
// instances sharing one database, each appending a log of its own under
// its own journal key. A member is a small number and the verifier key of
// its log; the key's name is the log's origin.
//
// The members are listed in a cluster file (File in a bastion home), one
// per line:
//
//	# bastion cluster members: ID VERIFIER-KEY
//	1 bastion-a.bank.example/journal+1a2b3c4d+AQ…
//	2 bastion-b.bank.example/journal+5e6f7a8b+AQ…
//
// Blank lines and lines starting with '#' are ignored. IDs are decimal,
// 1 to 65535, and unique; keys are journal verifier keys as in
// journal.pub (docs/journal-format.md, section 8), with unique names. The
// file holds no secret: every member's key is public, and readers verify
// each member's log with its own key only, so nothing one member signs
// speaks for another's log.
//
// A member's ID is also the top 16 bits of the serials of the
// certificates it issues (see [recorder.NumberOf]), so serials are unique
// across the cluster without the members coordinating. An ID must therefore
// never be given to another key, and a member's key never changes its ID.
package cluster

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/bastionhq/bastion/recorder"
)

// File is the cluster file's name in a bastion home.
const File = "cluster.pub"

// Member is one instance of the cluster.
type Member struct {
	ID  uint16
	Key *recorder.VerifierKey
}

// Name is the member's log origin, its key's name.
func (m Member) Name() string { return m.Key.Name() }

// String is the member's line in a cluster file.
func (m Member) String() string { return fmt.Sprintf("%d %s", m.ID, m.Key.Text) }

// Members are a cluster's members, in the order of their IDs.
type Members struct {
	list []Member
}

// ErrNotMember means a journal key is not among the cluster's members.
var ErrNotMember = errors.New("not a member of the cluster")

// Parse reads a cluster file. Every error names the line.
func Parse(data []byte) (*Members, error) {
	ms := &Members{}
	byID := map[uint16]int{}
	byName := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1024), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		idText, keyText, ok := strings.Cut(text, " ")
		if !ok {
			return nil, fmt.Errorf("cluster file, line %d: want \"ID VERIFIER-KEY\"", line)
		}
		id, err := strconv.ParseUint(idText, 10, 16)
		if err != nil || id == 0 || idText != strconv.FormatUint(id, 10) {
			return nil, fmt.Errorf("cluster file, line %d: member ID %q is not a number from 1 to 65535", line, idText)
		}
		key, err := recorder.ParseVerifierKey(keyText)
		if err != nil {
			return nil, fmt.Errorf("cluster file, line %d: %w", line, err)
		}
		m := Member{ID: uint16(id), Key: key}
		if prev, dup := byID[m.ID]; dup {
			return nil, fmt.Errorf("cluster file, line %d: member ID %d is already %s's", line, m.ID, ms.list[prev].Name())
		}
		if prev, dup := byName[m.Name()]; dup {
			return nil, fmt.Errorf("cluster file, line %d: log %q is already member %d's", line, m.Name(), ms.list[prev].ID)
		}
		byID[m.ID], byName[m.Name()] = len(ms.list), len(ms.list)
		ms.list = append(ms.list, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cluster file, line %d: %w", line+1, err)
	}
	if len(ms.list) == 0 {
		return nil, errors.New("cluster file: no members")
	}
	slices.SortFunc(ms.list, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return ms, nil
}

// Load reads the cluster file at path.
func Load(path string) (*Members, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster file: %w", err)
	}
	ms, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ms, nil
}

// All lists the members in ID order. The caller must not modify it.
func (ms *Members) All() []Member { return ms.list }

// ByName finds the member whose log has the given origin.
func (ms *Members) ByName(name string) (Member, bool) {
	for _, m := range ms.list {
		if m.Name() == name {
			return m, true
		}
	}
	return Member{}, false
}

// ByID finds member id.
func (ms *Members) ByID(id uint16) (Member, bool) {
	for _, m := range ms.list {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// Self finds the member whose key is own (this instance's journal key). A
// member with own's name and another key is an error, not a stranger: the
// cluster file and the home disagree.
func (ms *Members) Self(own *recorder.VerifierKey) (Member, error) {
	m, ok := ms.ByName(own.Name())
	switch {
	case !ok:
		return Member{}, fmt.Errorf("journal key %s: %w", own.Text, ErrNotMember)
	case m.Key.Text != own.Text:
		return Member{}, fmt.Errorf("journal key %s: the cluster file gives log %q another key, %s", own.Text, own.Name(), m.Key.Text)
	}
	return m, nil
}

// Format is the members as a cluster file.
func (ms *Members) Format() []byte {
	var b bytes.Buffer
	b.WriteString("# bastion cluster members: ID VERIFIER-KEY\n")
	for _, m := range ms.list {
		b.WriteString(m.String())
		b.WriteByte('\n')
	}
	return b.Bytes()
}
