package apiclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy/grants"
)

// RequestGrant asks for a just-in-time grant (POST /v1/grants), showing
// token as the bearer. A refusal is an [*APIError].
func (c *Client) RequestGrant(ctx context.Context, token string, req certauth.GrantRequest) (*grants.Grant, error) {
	var g grants.Grant
	if err := c.grantCall(ctx, http.MethodPost, "/v1/grants", token, &req, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// Grant returns grant id (GET /v1/grants/{id}).
func (c *Client) Grant(ctx context.Context, token, id string) (*grants.Grant, error) {
	var g grants.Grant
	if err := c.grantCall(ctx, http.MethodGet, "/v1/grants/"+url.PathEscape(id), token, nil, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// Grants lists the caller's grants and those the caller may approve
// (GET /v1/grants), in state if not "".
func (c *Client) Grants(ctx context.Context, token string, state grants.GrantState) ([]grants.Grant, error) {
	path := "/v1/grants"
	if state != "" {
		path += "?state=" + url.QueryEscape(string(state))
	}
	var l certauth.GrantList
	if err := c.grantCall(ctx, http.MethodGet, path, token, nil, &l); err != nil {
		return nil, err
	}
	return l.Grants, nil
}

// DecideGrant approves, denies or revokes grant id (POST
// /v1/grants/{id}/ACTION) and returns the grant after.
func (c *Client) DecideGrant(ctx context.Context, token, id, action, comment string) (*grants.Grant, error) {
	switch action {
	case "approve", "deny", "revoke":
	default:
		return nil, fmt.Errorf("unknown grant action %q", action)
	}
	var g grants.Grant
	if err := c.grantCall(ctx, http.MethodPost, "/v1/grants/"+url.PathEscape(id)+"/"+action, token, &certauth.GrantDecisionRequest{Comment: comment}, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

func (c *Client) grantCall(ctx context.Context, method, path, token string, body, out any) error {
	if token == "" || strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return errors.New("the token is empty or not a single word of printable ASCII")
	}
	return c.do(ctx, method, path, token, body, out)
}
