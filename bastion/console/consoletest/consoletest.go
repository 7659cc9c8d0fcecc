// Package consoletest signs in to the web console as a person's browser
// does, for tests: an HTTP client with a cookie jar that trusts the API's
// pinned certificate, and the sign-in through the development provider's
// picker page.
package consoletest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/html"

	"github.com/bastionhq/bastion/certauth"
)

// Browser returns an HTTP client with a cookie jar that trusts only the
// TLS certificate whose fingerprint is pin (the API's, as serve prints
// it), as a person's browser would after accepting it.
func Browser(pin string) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		panic(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !certauth.SameFingerprint(pin, certauth.TLSFingerprint(cs.PeerCertificates[0])) {
				return errors.New("not the API's certificate")
			}
			return nil
		},
	}}
	return &http.Client{Jar: jar, Transport: tr, Timeout: 20 * time.Second}
}

// ReadPage reads and closes resp's body.
func ReadPage(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// FirstForm returns the first form of page: its action and its inputs'
// values.
func FirstForm(page string) (string, url.Values, error) {
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		return "", nil, err
	}
	var action string
	vals := url.Values{}
	found := false
	var walk func(n *html.Node, inForm bool)
	walk = func(n *html.Node, inForm bool) {
		if n.Type == html.ElementNode {
			attr := func(k string) string {
				for _, a := range n.Attr {
					if a.Key == k {
						return a.Val
					}
				}
				return ""
			}
			switch {
			case n.Data == "form" && !found:
				found, inForm, action = true, true, attr("action")
			case n.Data == "form":
				return
			case n.Data == "input" && inForm && attr("name") != "":
				vals.Set(attr("name"), attr("value"))
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, inForm)
		}
	}
	walk(doc, false)
	if !found {
		return "", nil, fmt.Errorf("no form in page:\n%s", page)
	}
	return action, vals, nil
}

// SignIn signs in to the console at consoleURL (https://API/ui/) as the
// development provider's subject sub, with b, as a browser does: the
// console sends it to sign in, the provider (at issuer) shows its picker
// form, the form goes back to the console's callback. It returns the
// callback's answer and page.
func SignIn(b *http.Client, consoleURL, issuer, sub string) (*http.Response, string, error) {
	resp, err := b.Get(consoleURL)
	if err != nil {
		return nil, "", err
	}
	picker, err := ReadPage(resp)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Request.URL.String(), issuer+"/authorize?") {
		return nil, "", fmt.Errorf("GET %s signed out: %d at %s, want the dev provider's picker:\n%s", consoleURL, resp.StatusCode, resp.Request.URL, picker)
	}
	action, form, err := FirstForm(picker)
	if err != nil {
		return nil, "", err
	}
	form.Set("sub", sub)
	form.Set("action", "allow")
	target, err := resp.Request.URL.Parse(action)
	if err != nil {
		return nil, "", err
	}
	resp, err = b.PostForm(target.String(), form)
	if err != nil {
		return nil, "", err
	}
	page, err := ReadPage(resp)
	if err != nil {
		return nil, "", err
	}
	if resp.Request.URL.Path != "/ui/callback" {
		return nil, "", fmt.Errorf("the picker's form led to %s, want the console's callback:\n%s", resp.Request.URL, page)
	}
	return resp, page, nil
}
