package api_test

import (
	"context"
	"crypto/rsa"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/hashicorp/cap/oidc/clientassertion"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TestStandardOAuth2ClientWithPrivateKeyJWT: an off-the-shelf OAuth 2 client
// (golang.org/x/oauth2's client-credentials flow) authenticating with a private_key_jwt
// assertion built by a standard library (HashiCorp cap, which puts the issuer's
// identifier in aud and adds nbf) obtains a voucher, and the voucher calls the API.
func TestStandardOAuth2ClientWithPrivateKeyJWT(t *testing.T) {
	e := newVoucherEnv(t, nil)
	admin := e.tenant("acme")
	cid := e.client(admin, "api", map[string]any{"roles": []string{"auditor"}})
	k := e.upload(admin, cid, "RS256")

	// What such a client learns from the authorization server's metadata.
	meta := e.must(200, "GET", "/.well-known/oauth-authorization-server", "", nil).json(t)
	issuer, _ := meta["issuer"].(string)
	j, err := clientassertion.NewJWTWithRSAKey(cid, []string{issuer}, clientassertion.RS256, k.priv.(*rsa.PrivateKey),
		clientassertion.WithKeyID(k.kid))
	if err != nil {
		t.Fatal(err)
	}
	assertion, err := j.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcredentials.Config{
		ClientID:  cid,
		TokenURL:  e.srv.URL + "/oauth2/token", // the metadata names the public URL, testIssuer
		AuthStyle: oauth2.AuthStyleInParams,
		EndpointParams: url.Values{
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {assertion},
		},
	}
	tok, err := cfg.Token(context.Background())
	if err != nil {
		t.Fatalf("the standard client could not obtain a voucher: %v", err)
	}
	if tok.AccessToken == "" || tok.TokenType != "Bearer" || time.Until(tok.Expiry) < 9*time.Minute || time.Until(tok.Expiry) > 11*time.Minute {
		t.Fatalf("token %q type %q expiry in %s", tok.AccessToken, tok.TokenType, time.Until(tok.Expiry))
	}
	e.must(200, "GET", "/v1/clients/"+cid, tok.AccessToken, nil)

	// The same library's assertion replayed is refused with a precise OAuth error.
	_, err = cfg.Token(context.Background())
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.ErrorDescription == "" {
		t.Fatalf("replayed assertion: %v", err)
	}
}
