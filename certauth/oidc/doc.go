// Package oidc verifies OpenID Connect tokens and runs the development
// OpenID provider: the identity half of exchanging a token for a
// certificate.
//
// [Verifier] checks a token against the configured providers
// ([ProviderConfig]): discovery and the key set through go-oidc, the
// signature with an algorithm the provider allows (never "none" or HMAC),
// the issuer, the audience, expiry, not-before and issued-at with a bounded
// clock skew, and the token's size and age. It turns a token that passes
// into a *policy.Identity (issuer, subject, email, groups, claims, sponsor)
// and refuses any other with a [*TokenError] whose Reason is one of the
// token codes of package events, which the API sends to clients as they
// are.
//
// [DevIssuer] is an OpenID provider for development and demos only ("bastion
// demo", "bastion serve --dev", "bastion dev token"): the whole product can
// be tried on one machine through the same verification path, without an
// identity provider. Anyone who can read the home directory can mint any
// identity with it; a production configuration never trusts it. It also
// signs registered web clients in by the authorization-code flow with
// PKCE, with a page to pick a dev identity.
//
// The package knows nothing of certificates, sessions or the journal; the
// certificate authority (package certauth) takes a Verifier as its
// TokenVerifier, and the server wires the two.
package oidc
