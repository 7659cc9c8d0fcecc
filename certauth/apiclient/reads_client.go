package apiclient

import (
	"context"
	"fmt"
	"net/http"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder/events"
)

// RecordRead asks the instance to journal a read in its own log (POST
// /v1/reads), showing token as the bearer, before the reader shows
// anything of what it reads. A refusal is an [*APIError]; any error means
// the read is not journaled, and the reader must not go ahead.
func (c *Client) RecordRead(ctx context.Context, token string, req certauth.ReadRequest) (*certauth.ReadResponse, error) {
	var out certauth.ReadResponse
	if err := c.do(ctx, http.MethodPost, "/v1/reads", token, &req, &out); err != nil {
		return nil, err
	}
	want := req.Event
	if want == "" {
		want = events.JournalAccessed
	}
	if out.Log == "" || out.Leaf < 0 || out.Identity == "" || (want == events.EvidenceGenerated) != (out.Note != "") {
		return nil, fmt.Errorf("POST /v1/reads: %w: no log, leaf, identity or note as asked", ErrMalformedResponse)
	}
	return &out, nil
}
