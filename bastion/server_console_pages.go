package bastion

import (
	"bytes"
	"path/filepath"
	"strconv"

	"github.com/bastionhq/bastion/bastion/console"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/evidence"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage"
	"github.com/bastionhq/bastion/storage/postgres"
)

// consoleEvidence is what the console builds an examiner's report of this
// instance's journal with, as "bastion evidence" builds one on the
// bastion's host: the journal, the key in the home, the verification
// command the report prints and that verification's output, and the
// configured witnesses (the report's anchor, since this server pushes its
// checkpoints to them).
func (s *Server) consoleEvidence() (evidence.Options, error) {
	keyFile := filepath.Join(s.opts.Home, certauth.JournalPubKeyFile)
	vkey, err := certauth.LoadVerifierKey(keyFile)
	if err != nil {
		return evidence.Options{}, err
	}
	path := s.journalPath()
	name := path
	if name == "" {
		name = postgres.Redact(s.opts.Config.Journal)
	}
	key := recorder.KeyInfo{File: keyFile, Key: vkey, Default: true}
	args := []string{"bastion", "verify", "--db", name, "--key", keyFile, "--checkpoint", evidence.CheckpointFile}
	var ws recorder.Witnesses
	if w := s.opts.Config.Witnesses; len(w.List) > 0 {
		for _, x := range w.List {
			ws.Keys = append(ws.Keys, x.Key)
			args = append(args, "--witness", x.Key.VKey)
		}
		ws.Threshold = w.Threshold
		args = append(args, "--witness-threshold", strconv.Itoa(w.Threshold))
	}
	o := evidence.Options{
		Verifier:      s.journal.current().Verifier(),
		Journal:       evidence.JournalInfo{Path: name, Key: vkey, KeyFile: keyFile, KeyFromHome: true},
		VerifyCommand: termtext.ShellJoin(args),
		VerifyOutput: func(r *recorder.Report) string {
			var b bytes.Buffer
			r.WriteText(&b, name, key)
			return b.String()
		},
		Witnesses: ws,
		Live:      true,
	}
	if path != "" {
		o.JournalBytes = storage.SQLiteBytes(path)
	}
	return o, nil
}

// consoleState is the witnesses' state for the console's evidence page.
func (w *witnessing) consoleState() console.WitnessState {
	st := console.WitnessState{Witnesses: w.client.Status(), Threshold: w.cfg.Threshold}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range []struct {
		name   string
		raised bool
	}{{AlarmWitnessRefused, w.refused}, {AlarmWitnessStale, w.stale}, {AlarmWitnessQuorum, w.quorum}} {
		if a.raised {
			st.Alarms = append(st.Alarms, a.name)
		}
	}
	return st
}
