package bastion

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/certauth"
)

// FuzzCertificateEndpoint feeds arbitrary tokens and request bodies to the
// exchange endpoint of a server that trusts a real OpenID provider. It must
// never panic, always answer JSON with a reason, and grant a certificate
// only for the one valid token, and then only for a key that the key checks
// accept.
func FuzzCertificateEndpoint(f *testing.F) {
	m := startOP(f)
	ts := startServer(f, m, matrixConfig)
	valid := mint(f, m, agentClaims(m, "agent-1"))
	_, pub := newKey(f, f.TempDir(), "id")
	body := `{"public_key":` + jsonString(pub) + `}`
	f.Add(valid, body)
	f.Add(valid, `{"public_key":"ssh-rsa AAAA","logins":["deploy"],"ttl":"1m","ticket":"T-1"}`)
	f.Add(valid[:len(valid)-3], body)
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", body)
	f.Add("", "")
	f.Add(valid, `{"public_key":`+jsonString(pub)+`,"logins":["root"]}`)
	f.Fuzz(func(t *testing.T, token, reqBody string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/certificates", strings.NewReader(reqBody))
		req.RemoteAddr = "127.0.0.1:40000"
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		ts.api.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK {
			if strings.TrimSpace(token) != valid {
				t.Fatalf("certificate granted for token %q", token)
			}
			var resp certauth.CertificateResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatalf("200 with a body that is not a certificate response: %v", err)
			}
			k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(resp.Certificate))
			if err != nil {
				t.Fatalf("granted certificate does not parse: %v", err)
			}
			cert := k.(*ssh.Certificate)
			if cert.CertType != ssh.UserCert || len(cert.ValidPrincipals) == 0 || cert.ValidPrincipals[0] != "deploy" {
				t.Fatalf("granted certificate %+v", cert)
			}
			if _, err := certauth.ParsePublicKey(string(ssh.MarshalAuthorizedKey(cert.Key)), 0); err != nil {
				t.Fatalf("certified a key the checks refuse: %v", err)
			}
			return
		}
		var e certauth.ErrorResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Reason == "" || e.Error == "" {
			t.Fatalf("%d with body %q: not a JSON error with a reason", rec.Code, rec.Body.String())
		}
	})
}
