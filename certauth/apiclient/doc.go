// Package apiclient is the client of the bastion's HTTPS API, as "bastion
// login", "bastion grants" and "bastion status" use it: [Client] fetches the
// authorities and identity providers (GET /v1/ca), trades a token for a
// certificate (POST /v1/certificates) and requests, lists and decides
// just-in-time grants (/v1/grants); [DeviceFlow] gets a token from an
// identity provider with the device authorization flow, for people.
//
// The client pins the server's TLS certificate by fingerprint when told
// to, checks that a certificate it receives is for the key it sent, and
// turns a refusal into an [*APIError] whose Reason is one of the API codes
// of package events. The request and answer types are the API's own, in
// package certauth.
package apiclient
