package bastion

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/bastionhq/bastion/bastion/console"
	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
)

// newConsole builds the web console for the identity provider that has a
// web client: the development issuer's "bastion-console" under serve
// --dev, else the first identity_provider block with web_client_id. It
// returns nil when there is none: /ui then answers 404 like any unknown
// path of the API.
func (s *Server) newConsole() (*console.Console, error) {
	o := console.Options{
		VerifyIDToken: s.verifier.VerifyIDToken,
		Policy:        s.Policy,
		Live:          s.consoleLive,
		Journal: func(ctx context.Context, name string, attrs recorder.Attrs) error {
			_, err := s.journal.AppendEvent(ctx, name, attrs)
			return err
		},
		Store:    s.journal.Store,
		Verifier: s.journal.current().Verifier(),
		RecordRead: func(ctx context.Context, who *policy.Identity, client netip.Addr, req certauth.ReadRequest) (*certauth.ReadResponse, error) {
			return s.recordReadVia(ctx, ViaConsole, who, client, &req)
		},
		Kill:            s.consoleKill,
		MaxSessions:     s.opts.ConsoleMaxSessions,
		IdentityRefused: s.registry.IdentityRefused,
		// No bound when the API has none for addresses (rate_per_address
		// negative); else the console's own, which its pages need.
		RatePerAddress: min(0, s.opts.Config.API.RatePerAddress),
		Now:            s.now,
		Logger:         s.log.Named("console"),
		Grants:         s.grants,
		RevokeGrant:    s.consoleRevokeGrant,
		Evidence:       s.consoleEvidence,
	}
	if s.cluster != nil {
		o.MemberLog = s.cluster.memberLog
	}
	if s.witnessing != nil {
		o.Witnesses = s.witnessing.consoleState
	}
	switch {
	case s.opts.Dev != nil:
		o.Provider, o.Issuer, o.ClientID, o.RedirectURL = DevProviderName, s.devURL, DevWebClientID, s.APIURL()+DevWebRedirectPath
	default:
		for _, p := range s.opts.Config.Providers {
			if p.Web.ClientID != "" {
				o.Provider, o.Issuer, o.ClientID, o.ClientSecret, o.RedirectURL = p.Name, p.Issuer, p.Web.ClientID, p.Web.Secret, p.Web.RedirectURL
				o.HTTPClient = p.HTTPClient
				break
			}
		}
		if o.ClientID == "" {
			return nil, nil
		}
		// The callback is the console's: a redirect URL elsewhere could
		// never complete a sign-in.
		if u, err := url.Parse(o.RedirectURL); err != nil || u.Path != DevWebRedirectPath {
			return nil, fmt.Errorf("identity_provider %q: web_redirect_url %q must be the console's callback, https://API%s (the API listener's address or host name)", o.Provider, o.RedirectURL, DevWebRedirectPath)
		}
	}
	return console.New(o)
}

// withConsole serves the console under /ui, and everything else with h.
func (s *Server) withConsole(h http.Handler) http.Handler {
	if s.console == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == console.Path || strings.HasPrefix(r.URL.Path, console.Path+"/") {
			s.console.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// consoleLive lists the live sessions for the console: this member's, and
// in a cluster those the other members' logs show open (member set, bytes
// unknown).
func (s *Server) consoleLive() []front.LiveSession {
	l := s.LiveSessions()
	if s.cluster != nil {
		l = append(l, s.cluster.remoteLive()...)
	}
	return l
}

// ConsoleURL is the web console's address (https://API/ui/), or "" when
// serve has none (no identity provider with a web client).
func (s *Server) ConsoleURL() string {
	if s.console == nil {
		return ""
	}
	return s.APIURL() + console.Path + "/"
}

// ConsoleProvider is the name of the identity provider people sign in to
// the console with, or "" when serve has no console.
func (s *Server) ConsoleProvider() string {
	if s.console == nil {
		return ""
	}
	return s.console.Provider()
}

// ConsoleRoutes lists the console's pages and actions behind its guard,
// or nil when serve has no console.
func (s *Server) ConsoleRoutes() []console.Route {
	if s.console == nil {
		return nil
	}
	return s.console.Routes()
}

// ConsoleSessions returns how many console sessions the server holds.
func (s *Server) ConsoleSessions() int {
	if s.console == nil {
		return 0
	}
	return s.console.Sessions()
}
