package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/playback"
)

func init() {
	register(&command{
		name:    "export",
		summary: "write a session as asciicast v2, or as a bundle verifiable offline",
		usage:   exportUsage,
		run:     runExport,
	})
}

var exportUsage = `Usage:
    bastion export [--db FILE] [--key FILE | --cluster FILE]
                   --format asciicast|bundle
                   [--input] [--out FILE] [--unrecorded] [--token-file FILE]
                   [--server URL [--ca-fingerprint SHA256:X]] ID

Writes session ID (or a unique prefix of it), verified first as "bastion
play" does (a session that does not verify is not exported, exit 1):

  asciicast  asciicast v2, for asciinema and asciinema-player: output ("o"),
             input ("i", with --input), resizes ("r") and bastion's markers
             ("m": exit status, signals, masking, file transfers, the end).
             A session without a terminal (an exec with no PTY) has its
             output's bare line feeds written as CR LF, as the client's
             terminal showed them; the bundle keeps the bytes recorded.
  bundle     the session's frames in exactly the encoding the chain hashes,
             its leaves, their inclusion proofs (C2SP tlog-proof) and the
             signed checkpoint they lead to, as one JSON document that
             "bastion verify --bundle FILE --key KEY" checks with no
             journal at all. Format: docs/journal-format.md, section 12.

` + clusterParagraph + `

` + readsParagraph("export") + `

Flags:
    --db FILE        the journal (default: journal.db in the home directory)
    --key FILE       the journal's public key (default: journal.pub in the
                     home directory)
    --format F       asciicast or bundle
    --input          asciicast: add the input as "i" events
    --out FILE       write to FILE (made 0600, replaced whole) instead of stdout
` + readFlagsUsage(21) + "\n" + clusterFlagUsage(21) + `

Examples:
    $ bastion export --format asciicast 0190b3c4-1f2e-7a6b-8c9d-0e1f2a3b4c5d > s.cast; asciinema play s.cast
    $ bastion export --format bundle --out s.bundle 0190b3c4-1f2e-7a6b-8c9d-0e1f2a3b4c5d
    $ bastion verify --bundle s.bundle --key journal.pub`

func runExport(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	db := fs.String("db", "", "journal `FILE`")
	keyFile := fs.String("key", "", "public key `FILE`")
	format := fs.String("format", "", "`asciicast` or bundle")
	input := fs.Bool("input", false, "asciicast: include input")
	out := fs.String("out", "", "output `FILE`")
	unrecorded := e.registerReadFlags(fs)
	clusterFlag := registerClusterFlag(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("export needs one session ID")
	}
	if *format != "asciicast" && *format != "bundle" {
		return usageErrorf("--format must be asciicast or bundle")
	}
	arg, err := parseSessionArg(pos[0])
	if err != nil {
		return err
	}
	sc, err := e.scope(*db, *keyFile, *clusterFlag)
	if err != nil {
		return err
	}
	ref, st, id, err := openSession(ctx, e, sc, arg)
	if err != nil {
		return err
	}
	defer st.Close()
	v, path := ref.v, sc.path
	sc.sayWhere(e, ref, id)
	if err := checkSessionExists(ctx, st, v, id, path); err != nil {
		return err
	}
	attrs := sc.readAttrs(ref, id)
	attrs["format"] = *format
	if err := recordRead(ctx, e, path, "export", attrs, *unrecorded); err != nil {
		return err
	}
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return journalError(err)
	}
	defer snap.Close()
	sid := recorder.SessionID(id)
	write := func(w io.Writer) error {
		if *format == "bundle" {
			b, err := recorder.ExportBundle(ctx, snap, sid, v)
			if err != nil {
				return err
			}
			data, err := b.Marshal()
			if err != nil {
				return err
			}
			_, err = w.Write(data)
			return err
		}
		rec, err := recorder.OpenSession(ctx, snap, sid, recorder.OpenOptions{Verifier: v})
		if err != nil {
			return err
		}
		return playback.WriteAsciicast(ctx, snap, rec, w, playback.AsciicastOptions{Input: *input})
	}
	if *out == "" {
		err = write(e.stdout)
	} else {
		err = writeFileAtomic(*out, write)
	}
	if errors.Is(err, recorder.ErrSessionBroken) {
		return withHint(fmt.Errorf("refusing to export: %w", err),
			"run \"bastion verify --session "+id.String()+"\" for the whole journal's findings")
	}
	return err
}

// writeBytesAtomic is writeFileAtomic of data.
func writeBytesAtomic(path string, data []byte) error {
	return writeFileAtomic(path, func(w io.Writer) error { _, err := w.Write(data); return err })
}

// writeFileAtomic writes path through a temporary file in its directory,
// synced and renamed into place: a reader never sees half a file.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriter(f)
	if err = write(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
