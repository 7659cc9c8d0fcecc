package oidctest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// DeviceClientID is the public client allowed the device grant.
const DeviceClientID = "bastion-cli"

// User is the one user, who approves device codes.
const User = "alice"

// StartDeviceOP starts the provider on a loopback port until the test
// ends. approve approves a user code as User.
func StartDeviceOP(t testing.TB) (issuer string, approve func(userCode string) error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer = "http://" + ln.Addr().String()
	st := storage.NewStorageWithClients(users{},
		map[string]*storage.Client{DeviceClientID: storage.NativeClient(DeviceClientID)})
	srv := &http.Server{Handler: exampleop.SetupServer(issuer, deviceGrantStorage{st}, nil, false)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	approve = func(userCode string) error {
		jar, _ := cookiejar.New(nil)
		browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
		resp, err := browser.PostForm(issuer+"/device/login", url.Values{
			"user_code": {userCode}, "username": {User}, "password": {"verysecure"},
		})
		if err != nil {
			return err
		}
		resp.Body.Close()
		resp, err = browser.PostForm(issuer+"/device/confirm", url.Values{"action": {"allowed"}})
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), "Device authorization allowed") {
			return errors.New("approval page says: " + string(body))
		}
		return nil
	}
	return issuer, approve
}

// users is the provider's one user. (The example's own users have IDs
// other than their names, which its device login mixes up.)
type users struct{}

func (users) GetUserByID(id string) *storage.User { return users{}.GetUserByUsername(id) }
func (users) ExampleClientID() string             { return storage.ServiceUserID }
func (users) GetUserByUsername(name string) *storage.User {
	if name != User {
		return nil
	}
	return &storage.User{ID: User, Username: User, Password: "verysecure", Email: User + "@example.com", EmailVerified: true}
}

// deviceGrantStorage lets the example's native (public) client use the
// device grant, which the example only gives its confidential clients.
type deviceGrantStorage struct{ *storage.Storage }

func (s deviceGrantStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return deviceGrantClient{c}, nil
}

// CreateAccessAndRefreshTokens makes the example record the client of a
// device login with its refresh token (it leaves it empty, so that the
// refresh is refused).
func (s deviceGrantStorage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	if d, ok := req.(*op.DeviceAuthorizationState); ok {
		req = &storage.AuthRequest{ApplicationID: d.ClientID, UserID: d.Subject, Scopes: d.Scopes}
	}
	return s.Storage.CreateAccessAndRefreshTokens(ctx, req, current)
}

type deviceGrantClient struct{ op.Client }

func (c deviceGrantClient) GrantTypes() []zoidc.GrantType {
	return append(c.Client.GrantTypes(), zoidc.GrantTypeDeviceCode)
}
