package sessions

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/bastionhq/bastion/storage"
)

// Errors of [Ref.Resolve].
var (
	// ErrNoSession: no session of the journal has the ID or prefix.
	ErrNoSession = errors.New("no such session")
	// ErrAmbiguous: several sessions' IDs start with the prefix.
	ErrAmbiguous = errors.New("several sessions have IDs starting so")
)

// MinPrefix is the shortest prefix of a session ID a [Ref] takes.
const MinPrefix = 4

// A Ref names a session: by its whole ID, or by a unique prefix of one
// (at least [MinPrefix] characters).
type Ref struct {
	ID     uuid.UUID
	Prefix string // lower case; "" for a whole ID
}

// ParseRef reads a session ID or a prefix of one.
func ParseRef(s string) (Ref, error) {
	if id, err := uuid.Parse(s); err == nil {
		return Ref{ID: id}, nil
	}
	p := strings.ToLower(s)
	if len(p) >= MinPrefix && len(p) < 36 && strings.Trim(p, "0123456789abcdef-") == "" {
		return Ref{Prefix: p}, nil
	}
	return Ref{}, fmt.Errorf("%q is not a session ID", s)
}

// String is the ID, or the prefix.
func (r Ref) String() string {
	if r.Prefix != "" {
		return r.Prefix
	}
	return r.ID.String()
}

// Matches says whether the session id is the one r names.
func (r Ref) Matches(id uuid.UUID) bool {
	if r.Prefix == "" {
		return id == r.ID
	}
	return strings.HasPrefix(id.String(), r.Prefix)
}

// Resolve finds the session r names among snap's sessions: a whole ID is
// taken as it is; a prefix that names none is [ErrNoSession], one that
// names several [ErrAmbiguous]. It reads the index, which only helps to
// find the session: the caller reads and verifies the session found as
// any other.
func (r Ref) Resolve(ctx context.Context, snap storage.Snapshot) (uuid.UUID, error) {
	if r.Prefix == "" {
		return r.ID, nil
	}
	rows, err := snap.Sessions(ctx)
	if err != nil {
		return uuid.UUID{}, err
	}
	var hits []uuid.UUID
	for _, row := range rows {
		if id, err := uuid.FromBytes(row.ID); err == nil && r.Matches(id) {
			hits = append(hits, id)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return uuid.UUID{}, fmt.Errorf("%w: no session has an ID starting with %q", ErrNoSession, r.Prefix)
	}
	return uuid.UUID{}, &AmbiguousError{Prefix: r.Prefix, Sessions: len(hits)}
}

// AmbiguousError is [Ref.Resolve]'s error for a prefix several sessions'
// IDs start with; it is [ErrAmbiguous].
type AmbiguousError struct {
	Prefix   string
	Sessions int
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("%d sessions have IDs starting with %q", e.Sessions, e.Prefix)
}

func (e *AmbiguousError) Is(target error) bool { return target == ErrAmbiguous }
