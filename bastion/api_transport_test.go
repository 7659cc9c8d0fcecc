package bastion

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/oidc"
	"github.com/bastionhq/bastion/recorder/events"
)

// The transport's limit must leave room for every token bastion can
// refuse itself, and the headers around it.
func TestHeaderLimitAboveTokenLimit(t *testing.T) {
	t.Parallel()
	if apiMaxHeaderBytes < 8*oidc.DefaultMaxTokenSize {
		t.Errorf("header limit %d is not well above the token limit %d", apiMaxHeaderBytes, oidc.DefaultMaxTokenSize)
	}
}

// apiClient is an HTTPS client of ts's API speaking HTTP/1.1 or HTTP/2.
func apiClient(t *testing.T, ts *testServer, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: insecurePinned(t, ts.TLS().Fingerprint), ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestOversizedTokenBothProtocols: a 100 KiB token, over bastion's 16 KiB
// limit and under the transport's 1 MiB, reaches bastion over HTTP/1.1 and
// HTTP/2, for a certificate and for a grant: bastion answers 401
// token_too_large in JSON and journals the refusal; the transport refuses
// nothing.
func TestOversizedTokenBothProtocols(t *testing.T) {
	t.Parallel()
	m := startOP(t)
	ts := startServer(t, m, matrixConfig+"grants {}\n")
	_, pub := newKey(t, t.TempDir(), "id")
	c := agentClaims(m, "agent-1")
	c["pad"] = strings.Repeat("x", 100<<10)
	token := mint(t, m, jwt.MapClaims(c))
	if len(token) < 100<<10 || len(token) > apiMaxHeaderBytes/2 {
		t.Fatalf("token is %d bytes", len(token))
	}
	for _, h2 := range []bool{false, true} {
		hc := apiClient(t, ts, h2)
		for _, ep := range []struct{ path, body string }{
			{"/v1/certificates", `{"public_key": ` + jsonString(pub) + `}`},
			{"/v1/grants", `{"logins": ["deploy"], "reason": "oversized token test", "ttl": "5m"}`},
		} {
			name := fmt.Sprintf("%s h2=%v", ep.path, h2)
			req, _ := http.NewRequest(http.MethodPost, ts.APIURL()+ep.path, strings.NewReader(ep.body))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != want {
				t.Errorf("%s: answered over %s, want HTTP/%d", name, resp.Proto, want)
			}
			var e certauth.ErrorResponse
			if err := json.Unmarshal(data, &e); err != nil {
				t.Fatalf("%s: %s, body not JSON: %q", name, resp.Status, data)
			}
			if resp.StatusCode != http.StatusUnauthorized || e.Reason != events.ReasonTokenTooLarge || !strings.Contains(e.Error, "more than the 16384 allowed") {
				t.Errorf("%s: %s %+v, want 401 %s", name, resp.Status, e, events.ReasonTokenTooLarge)
			}
		}
	}
	for _, ev := range []string{events.CertRefused, events.GrantRefused} {
		n := 0
		for _, a := range ts.events(t, ev) {
			if a["reason"] == events.ReasonTokenTooLarge {
				n++
			}
		}
		if n != 2 {
			t.Errorf("%d %s events with reason %s, want 2 (one per protocol)", n, ev, events.ReasonTokenTooLarge)
		}
	}
	metrics := scrape(t, ts)
	for _, want := range []string{
		`bastion_api_transport_refusals_total{protocol="http/1.1",reason="headers_too_large"} 0`,
		`bastion_api_transport_refusals_total{protocol="h2",reason="headers_too_large"} 0`,
		`bastion_api_transport_refusals_total{protocol="h2",reason="connection_error"} 0`,
		`bastion_certificates_total{reason="token_too_large",result="refused"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestHeadersPastTransportLimit: past the 1 MiB header limit net/http
// refuses the request before bastion's handler runs, over HTTP/1.1 (431)
// and HTTP/2 (a 431 on the stream when each field is under the limit, a
// COMPRESSION_ERROR for the connection when one field is over it). Nothing
// is journaled; each is counted in bastion_api_transport_refusals_total.
func TestHeadersPastTransportLimit(t *testing.T) {
	t.Parallel()
	m := startOP(t)
	ts := startServer(t, m, matrixConfig)
	refusedBefore := len(ts.events(t, events.CertRefused))
	huge := "Bearer " + strings.Repeat("a", 2<<20)

	// HTTP/1.1: net/http answers 431 once it has read the limit (and may
	// close before the client has sent the rest, so an error is allowed).
	hc := apiClient(t, ts, false)
	req, _ := http.NewRequest(http.MethodPost, ts.APIURL()+"/v1/certificates", strings.NewReader("{}"))
	req.Header.Set("Authorization", huge)
	if resp, err := hc.Do(req); err != nil {
		t.Logf("HTTP/1.1 with 2 MiB of headers: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("HTTP/1.1 with 2 MiB of headers: %s, want 431", resp.Status)
		}
	}

	// HTTP/2, one field over the limit: the connection ends.
	fr, code := h2Request(t, ts, []hpack.HeaderField{{Name: "authorization", Value: huge}})
	if fr != nil || code != http2.ErrCodeCompression {
		t.Errorf("HTTP/2 with a 2 MiB field: response %v, GOAWAY %v; want GOAWAY COMPRESSION_ERROR", fr, code)
	}
	// HTTP/2, two fields under the limit, together over it: 431.
	half := strings.Repeat("b", 600<<10)
	fr, code = h2Request(t, ts, []hpack.HeaderField{{Name: "x-a", Value: half}, {Name: "authorization", Value: "Bearer " + half}})
	if fr == nil || fr[":status"] != "431" {
		t.Errorf("HTTP/2 with 1.2 MiB of fields: response %v, GOAWAY %v; want 431", fr, code)
	}

	if n := len(ts.events(t, events.CertRefused)); n != refusedBefore {
		t.Errorf("%d cert.refused events journaled for requests the transport refused, want none", n-refusedBefore)
	}
	// net/http closes an HTTP/1.1 connection it answered 431 half a second
	// later (to let the client read the answer); it is counted then.
	deadline := time.Now().Add(5 * time.Second)
	for {
		metrics := scrape(t, ts)
		var missing []string
		for _, want := range []string{
			`bastion_api_transport_refusals_total{protocol="http/1.1",reason="headers_too_large"} 1`,
			`bastion_api_transport_refusals_total{protocol="h2",reason="headers_too_large"} 1`,
			`bastion_api_transport_refusals_total{protocol="h2",reason="connection_error"} 1`,
		} {
			if !strings.Contains(metrics, want) {
				missing = append(missing, want)
			}
		}
		if strings.Contains(metrics, `bastion_certificates_total{reason="unknown"`) {
			t.Errorf("a request the transport refused was counted as a certificate request")
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %s", strings.Join(missing, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// h2Request sends one POST /v1/certificates with extra header fields over
// a new HTTP/2 connection, written with x/net/http2's framer so that no
// client-side check of the server's advertised limit stops it. It returns
// the response's header fields, or the error code of the GOAWAY that ended
// the connection instead.
func h2Request(t *testing.T, ts *testServer, extra []hpack.HeaderField) (map[string]string, http2.ErrCode) {
	t.Helper()
	cfg := insecurePinned(t, ts.TLS().Fingerprint)
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", ts.apiLn.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: ts.apiLn.Addr().String()}, {Name: ":path", Value: "/v1/certificates"},
	}, extra...) {
		enc.WriteField(f)
	}
	// The server may end the connection before it has read everything.
	go func() {
		if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
			return
		}
		fr := http2.NewFramer(conn, nil)
		if fr.WriteSettings() != nil {
			return
		}
		b := block.Bytes()
		const max = 16 << 10 // the frame size every HTTP/2 server accepts
		first := b[:min(len(b), max)]
		b = b[len(first):]
		if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: true, EndHeaders: len(b) == 0}) != nil {
			return
		}
		for len(b) > 0 {
			n := min(len(b), max)
			if fr.WriteContinuation(1, n == len(b), b[:n]) != nil {
				return
			}
			b = b[n:]
		}
	}()
	fr := http2.NewFramer(io.Discard, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("HTTP/2: read: %v", err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			out := map[string]string{}
			for _, h := range f.Fields {
				out[h.Name] = h.Value
			}
			return out, 0
		case *http2.GoAwayFrame:
			return nil, f.ErrCode
		case *http2.SettingsFrame:
			if !f.IsAck() {
				// Acknowledged or not, the server reads on; no reply is needed here.
				continue
			}
		}
	}
}
