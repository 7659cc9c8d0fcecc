// Package recordertest holds what tests of journals share outside the
// recorder package: a journal to write to on a SQLite file of the test's
// own ([NewJournal]), and the pieces of evidence the writer never makes
// itself ([Cosign]).
package recordertest

import (
	"bytes"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// Cosign appends a signature line by skey (a signed-note private key) to
// the signed note msg, as a witness cosigning a checkpoint would.
func Cosign(tb testing.TB, msg []byte, skey string) []byte {
	tb.Helper()
	s, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	text := msg[:bytes.LastIndex(msg, []byte("\n\n"))+1]
	signed, err := note.Sign(&note.Note{Text: string(text)}, s)
	if err != nil {
		tb.Fatal(err)
	}
	line := signed[bytes.LastIndex(signed, []byte("\n\n"))+2:]
	return append(bytes.Clone(msg), line...)
}
