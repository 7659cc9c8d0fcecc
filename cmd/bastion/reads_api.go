package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/apiclient"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// recordThroughAPI journals a read (or a report) of a journal in a
// database through the HTTPS API of a serve instance (POST /v1/reads): the
// one --server names, else the client profile's ("bastion login" wrote
// it). The instance writes the leaf in its own log, naming the identity
// the reader's token proves; the reader goes ahead only on its answer.
// through is false when no instance is named: the caller then records
// the read itself, as for a file.
func recordThroughAPI(ctx context.Context, e *env, event, action string, attrs recorder.Attrs, says string) (res *recorded, through bool, err error) {
	a := &apiFlags{server: e.readServer, fingerprint: e.readFingerprint, tokenFile: e.tokenFile}
	if a.tokenFile == "" {
		a.tokenFile = e.getenv("BASTION_TOKEN_FILE")
	}
	if a.server == "" {
		path, err := e.profilePath("")
		if err != nil {
			return nil, false, nil
		}
		p, err := loadProfile(path)
		if err != nil {
			return nil, true, fmt.Errorf("the client profile names the server that records reads, and it cannot be read: %w", err)
		}
		if p == nil {
			return nil, false, nil
		}
	}
	if err := a.resolve(e, "a recorded read"); err != nil {
		return nil, true, err
	}
	api, err := a.client()
	if err != nil {
		return nil, true, err
	}
	defer api.CloseIdleConnections()
	src, err := a.tokenSource(ctx, e, api)
	if err != nil {
		return nil, true, err
	}
	token, err := src(ctx)
	if err != nil {
		return nil, true, err
	}
	req := certauth.ReadRequest{Action: action, Attrs: map[string]string(attrs), User: says}
	if event != recorder.EventJournalAccessed {
		req.Event = event
	}
	out, err := api.RecordRead(ctx, token, req)
	if err != nil {
		return nil, true, &apiReadError{server: a.server, err: err}
	}
	fmt.Fprintf(e.stderr, "bastion: recorded by %s in log %s at leaf %d, as %s\n", a.server, messageText(out.Log), out.Leaf, messageText(out.Identity))
	return &recorded{leaf: out.Leaf, note: []byte(out.Note)}, true, nil
}

// apiReadError is a read the instance did not record: refused, or not
// reached.
type apiReadError struct {
	server string
	err    error
}

func (e *apiReadError) Error() string {
	return fmt.Sprintf("the server at %s did not record it: %v", e.server, e.err)
}

func (e *apiReadError) Unwrap() error { return e.err }

// apiReadHint helps with a read the instance did not record.
func apiReadHint(err error) string {
	var ae *apiclient.APIError
	if errors.As(err, &ae) && ae.Reason == events.ReasonNotReader {
		return "only the identities the policy's \"auditors\" and \"operators\" name may read the journal: ask an operator to add yours"
	}
	return "check --server and --ca-fingerprint, and that the instance runs (its /readyz)"
}
