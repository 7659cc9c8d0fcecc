package oidc

import (
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/bastionhq/bastion/recorder/events"
)

// oidcJWS is a compact JWS taken apart before its signature is checked:
// enough to pick the provider and refuse a bad algorithm without doing any
// cryptography. Nothing in it is trusted until go-oidc has verified the
// signature over the same bytes.
type oidcJWS struct {
	alg, kid string
	payload  []byte         // the decoded payload part
	claims   map[string]any // payload decoded as a JSON object
}

// oidcB64 is base64url without padding, refusing non-zero trailing bits: one
// token has exactly one encoding, so a token that verifies cannot be
// re-encoded into a different string that also verifies.
var oidcB64 = base64.RawURLEncoding.Strict()

// parseOIDCJWS checks that raw is three base64url parts separated by dots,
// the first two JSON objects. The signature part may be empty, as in an
// "alg": "none" token, so that such a token is refused for its algorithm.
func parseOIDCJWS(raw string) (*oidcJWS, *TokenError) {
	h, rest, ok1 := strings.Cut(raw, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		return nil, oidcRefuse(events.ReasonTokenMalformed, "", "token is not a JWT: it must be three base64url parts separated by dots")
	}
	header, err := oidcB64.DecodeString(h)
	if err != nil || len(header) == 0 {
		return nil, oidcRefuse(events.ReasonTokenMalformed, "", "token's header is not base64url (unpadded)")
	}
	payload, err := oidcB64.DecodeString(p)
	if err != nil || len(payload) == 0 {
		return nil, oidcRefuse(events.ReasonTokenMalformed, "", "token's payload is not base64url (unpadded)")
	}
	if _, err := oidcB64.DecodeString(sig); err != nil {
		return nil, oidcRefuse(events.ReasonTokenMalformed, "", "token's signature is not base64url (unpadded)")
	}

	// Decode into maps, not structs: encoding/json matches struct fields
	// case-insensitively, go-jose does not, and the two must agree on
	// which member is "alg".
	var hdr map[string]any
	if err := json.Unmarshal(header, &hdr); err != nil || hdr == nil {
		return nil, oidcRefuse(events.ReasonTokenMalformed, "", "token's header is not a JSON object")
	}
	alg, ok := hdr["alg"].(string)
	if !ok || alg == "" {
		return nil, oidcRefuse(events.ReasonTokenMalformed, "", "token's header has no \"alg\" naming its signing algorithm")
	}
	kid, ok := hdr["kid"].(string)
	if _, present := hdr["kid"]; present && !ok {
		return nil, oidcRefuse(events.ReasonTokenMalformed, "", "token's header has a \"kid\" that is not a string")
	}
	if _, ok := hdr["crit"]; ok {
		// RFC 7515 extensions (such as RFC 7797's unencoded payload)
		// change what the signature covers; no OpenID provider uses them.
		return nil, oidcRefuse(events.ReasonTokenMalformed, "", "token's header lists critical extensions (\"crit\"), which the bastion does not support")
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil || claims == nil {
		return nil, oidcRefuse(events.ReasonTokenMalformed, "", "token's payload is not a JSON object")
	}
	return &oidcJWS{alg: alg, kid: kid, payload: payload, claims: claims}, nil
}

// issuer returns the (unverified) "iss" claim.
func (j *oidcJWS) issuer() (string, *TokenError) {
	switch v := j.claims["iss"].(type) {
	case nil:
		return "", oidcRefuse(events.ReasonMissingClaim, "", "token has no \"iss\" claim naming its issuer")
	case string:
		return v, nil
	default:
		return "", oidcRefuse(events.ReasonTokenMalformed, "", "token's \"iss\" claim is a %s, not a string", oidcJSONType(v))
	}
}
