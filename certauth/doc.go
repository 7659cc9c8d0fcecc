// Package certauth is bastion's key and certificate authority: it creates and
// loads the keys that "bastion ca init" makes under the home directory.
//
// Today it holds the journal signing key (an Ed25519 signed-note key whose
// name is the journal's log origin). The user, host and target certificate
// authorities, OIDC token verification and certificate issuance come next,
// in this package.
//
// # Files
//
// Private keys are written with mode 0600 and public keys with 0644, each
// created exclusively: an existing key is never overwritten, because a
// journal signed by a lost key can no longer be extended.
package certauth
