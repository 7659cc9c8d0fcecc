package bastion

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// apiMaxHeaderBytes is the API transport's limit on a request's header
// section (http.Server.MaxHeaderBytes, which also sets HTTP/2's
// SETTINGS_MAX_HEADER_LIST_SIZE and HPACK's longest field). It is far above
// oidc.DefaultMaxTokenSize (16 KiB) so that a token too long for
// bastion still reaches bastion's handler, which refuses it as
// token_too_large and journals the refusal. Only a request past this limit
// is refused by net/http before any handler runs (see
// transportRefusal), and that is counted, not journaled.
const apiMaxHeaderBytes = 1 << 20

// http1ReadLimit is how much net/http reads of an HTTP/1.1 request's head
// before it answers 431: MaxHeaderBytes and its 4096 bytes of buffer slop.
const http1ReadLimit = apiMaxHeaderBytes + 4096

// Reasons of bastion_api_transport_refusals_total.
const (
	// TransportHeadersTooLarge: a request whose header section is over
	// apiMaxHeaderBytes, answered 431 by net/http (over HTTP/1.1, or on
	// an HTTP/2 stream whose fields are each under the limit).
	TransportHeadersTooLarge = "headers_too_large"
	// TransportH2ConnectionError: an HTTP/2 connection net/http ended with
	// a connection error (GOAWAY). A single header field over the limit
	// ends this way (COMPRESSION_ERROR: HPACK refuses a string longer than
	// the header list may be), as do header frames far past it
	// (PROTOCOL_ERROR) and other protocol violations.
	TransportH2ConnectionError = "connection_error"
)

// apiListener counts the bytes read from each API connection beneath TLS,
// so that a request net/http refuses before any handler runs can be told
// by how much of it was read.
type apiListener struct {
	net.Listener
}

func (l apiListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &apiConn{Conn: c}, nil
}

// apiConn is one API connection (beneath TLS) and what is known of the
// request it is reading.
type apiConn struct {
	net.Conn
	read atomic.Int64

	mu sync.Mutex // guards the fields below
	// mark is read when the connection was last idle or a handler last
	// started; handled is whether a handler started since the connection
	// was last idle; active is whether it has been active since.
	mark    int64
	handled bool
	active  bool
}

func (c *apiConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

type apiConnKey struct{}

// apiConnOf is the apiConn beneath a connection net/http serves.
func apiConnOf(c net.Conn) *apiConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	ac, _ := c.(*apiConn)
	return ac
}

// transportWatch notices the requests net/http refuses before any handler
// runs, which bastion cannot answer or journal, and counts them.
type transportWatch struct {
	metrics *metrics
	log     hclog.Logger
}

// connContext keeps the connection's apiConn in its requests' context,
// for handlerStarted.
func (tw *transportWatch) connContext(ctx context.Context, c net.Conn) context.Context {
	if ac := apiConnOf(c); ac != nil {
		return context.WithValue(ctx, apiConnKey{}, ac)
	}
	return ctx
}

// handler notes, before h runs, that a handler started on the request's
// connection.
func (tw *transportWatch) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ac, ok := r.Context().Value(apiConnKey{}).(*apiConn); ok {
			ac.mu.Lock()
			ac.mark, ac.handled = ac.read.Load(), true
			ac.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

// connState is the API server's ConnState hook. A connection that was
// active (reading a request, or over HTTP/2 holding a stream) and goes
// idle or closes without any handler having started, after reading more
// than a header section may hold, had its request refused by net/http
// for its headers' size. Over HTTP/1.1 that is exact up to TLS framing
// (net/http answers 431 once it has read http1ReadLimit bytes of the
// request head). Over HTTP/2 the stream's header block was read while the
// connection was idle; HPACK may compress it, so half the limit counts,
// and a stream beside others whose handlers run is not seen.
func (tw *transportWatch) connState(c net.Conn, state http.ConnState) {
	ac := apiConnOf(c)
	if ac == nil || state == http.StateNew {
		return
	}
	tc, _ := c.(*tls.Conn)
	ac.mu.Lock()
	if state == http.StateActive {
		ac.active = true
		ac.mu.Unlock()
		return
	}
	read := ac.read.Load()
	refused := ac.active && !ac.handled
	since := read - ac.mark
	ac.mark, ac.handled, ac.active = read, false, false
	ac.mu.Unlock()
	if !refused || tc == nil {
		return
	}
	proto, limit := "http/1.1", int64(http1ReadLimit)
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		proto, limit = "h2", apiMaxHeaderBytes/2
	}
	if since >= limit {
		tw.refused(proto, TransportHeadersTooLarge, c.RemoteAddr())
	}
}

func (tw *transportWatch) refused(proto, reason string, addr net.Addr) {
	tw.metrics.transportRefusals.WithLabelValues(proto, reason).Inc()
	tw.log.Warn("API request refused by the HTTP transport before bastion saw it", "protocol", proto, "reason", reason,
		"client", addr, "header_limit", apiMaxHeaderBytes)
}

// h2ConnError is how net/http's HTTP/2 server logs a connection error.
var h2ConnError = []byte("http2: server connection error from ")

// errorLog is the writer of the API server's ErrorLog: it counts the
// HTTP/2 connection errors net/http logs, then passes every line on.
func (tw *transportWatch) errorLog(next io.Writer) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		if bytes.Contains(p, h2ConnError) {
			tw.metrics.transportRefusals.WithLabelValues("h2", TransportH2ConnectionError).Inc()
		}
		return next.Write(p)
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
