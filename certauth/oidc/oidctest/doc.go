// Package oidctest runs real OpenID providers on loopback for tests, and
// mints their tokens, so that tests go through discovery, the key set,
// signatures and audiences as production does:
//
//   - [StartMock] starts mockoidc (real discovery and JWKS), and [Sign]
//     signs any [Claims] with its key;
//   - [StartDeviceOP] starts zitadel's example provider, with a public
//     client allowed the device grant and one user who approves a code the
//     way a human does, through the provider's own pages;
//   - [Clock] is a settable clock for the times tokens are checked at.
//
// It imports nothing of bastion, so any package's tests may use it.
package oidctest
