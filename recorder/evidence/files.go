package evidence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
)

// CheckpointFile is the signed checkpoint that covers the period, beside
// the report, for the verification command it prints.
const CheckpointFile = "checkpoint.txt"

// WriteFiles renders rep, the report of the log v verifies in st, as the
// files "bastion evidence" writes, each by a call of put with its name
// (slash-separated, under the report's directory) and what writes it: a
// verifiable bundle of each session the report details (bundles/ID.bundle,
// named in rep; a session whose frames do not verify gets none, and the
// report says why), then evidence.json, evidence.html and checkpoint.txt.
// ws are the witnesses whose cosignatures the bundles carry. The
// signature over the report (evidence.sig) is not among them: the
// journal's writer signs it when the report is recorded.
func WriteFiles(ctx context.Context, st storage.Store, v note.Verifier, ws recorder.Witnesses, rep *Report, put func(name string, write func(io.Writer) error) error) error {
	if err := writeBundles(ctx, st, v, ws, rep, put); err != nil {
		return err
	}
	for _, f := range []struct {
		name  string
		write func(io.Writer) error
	}{
		{JSONFile, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		}},
		{HTMLFile, func(w io.Writer) error { return WriteHTML(w, rep) }},
		{CheckpointFile, func(w io.Writer) error { _, err := io.WriteString(w, rep.Checkpoint.Note); return err }},
	} {
		if err := put(f.name, f.write); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}

// writeBundles puts a verifiable bundle of each session rep details, and
// names it in rep.
func writeBundles(ctx context.Context, st storage.Store, v note.Verifier, ws recorder.Witnesses, rep *Report, put func(string, func(io.Writer) error) error) error {
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return err
	}
	defer snap.Close()
	for i := range rep.Sessions {
		s := &rep.Sessions[i]
		if !s.Detailed || !s.Verified {
			continue
		}
		id, err := uuid.Parse(s.ID)
		if err != nil {
			return err
		}
		b, err := recorder.ExportBundleWitnessed(ctx, snap, recorder.SessionID(id), v, ws)
		if errors.Is(err, recorder.ErrSessionBroken) {
			continue
		}
		if err != nil {
			return fmt.Errorf("bundle of session %s: %w", s.ID, err)
		}
		data, err := b.Marshal()
		if err != nil {
			return err
		}
		name := "bundles/" + s.ID + ".bundle"
		if err := put(name, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		s.Bundle = name
	}
	return nil
}

// Digest is the lower-case hex SHA-256 of the file name in fsys.
func Digest(fsys fs.FS, name string) (string, error) {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// A SignatureCheck is what [CheckSignature] found of a report: the note
// the journal's key signed, and each file it covers with its digest now.
type SignatureCheck struct {
	Note  *recorder.EvidenceNote
	Files []FileDigest
}

// A FileDigest is one file of a report: its SHA-256 now, and the one
// signed.
type FileDigest struct {
	Name, SHA256, Signed string
}

// Intact reports whether f still has the digest signed.
func (f FileDigest) Intact() bool { return f.SHA256 == f.Signed }

// A SignatureError is a report's signature that does not verify with
// the key given.
type SignatureError struct{ Err error }

func (e *SignatureError) Error() string { return e.Err.Error() }
func (e *SignatureError) Unwrap() error { return e.Err }

// CheckSignature checks the report whose files are in fsys (a directory
// "bastion evidence" wrote, or the console's download, a zip archive of
// the same files): that evidence.sig is a note signed with v over a leaf
// and two digests, and what evidence.html and evidence.json digest to
// now. A signature that does not verify is a [*SignatureError]; any other
// error means a file could not be read.
func CheckSignature(fsys fs.FS, v note.Verifier) (*SignatureCheck, error) {
	msg, err := fs.ReadFile(fsys, SignatureFile)
	if err != nil {
		return nil, err
	}
	n, err := recorder.OpenEvidenceNote(msg, v)
	if err != nil {
		return nil, &SignatureError{err}
	}
	c := &SignatureCheck{Note: n}
	for _, f := range []FileDigest{{Name: HTMLFile, Signed: n.SHA256HTML}, {Name: JSONFile, Signed: n.SHA256JSON}} {
		if f.SHA256, err = Digest(fsys, f.Name); err != nil {
			return nil, err
		}
		c.Files = append(c.Files, f)
	}
	return c, nil
}
