package voucher_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/voucher"
)

func newIssuer(t *testing.T, s *voucher.Signer) *voucher.Issuer {
	t.Helper()
	n := 0
	i, err := voucher.NewIssuer(voucher.IssuerConfig{Issuer: issuer, APIAudience: apiAud, Signer: s,
		Now:   func() time.Time { return t0.Add(400 * time.Millisecond) },
		NewID: func() string { n++; return "voucher-" + string(rune('0'+n)) }})
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// openSigner opens a signer generating alg keys ("" for the default) in a temporary
// directory.
func openSigner(t *testing.T, alg string) *voucher.Signer {
	t.Helper()
	s, err := voucher.OpenSigner(voucher.SignerConfig{Dir: t.TempDir(), Algorithm: alg})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verified is the assertion k signs over c, verified against the test world.
func verified(t *testing.T, k key, c claims) voucher.Assertion {
	t.Helper()
	a, err := newVerifier(t, world(t)).Verify(context.Background(), request(mint(t, k, c, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestIssueEServiceVoucher: the voucher of an e-service client, end to end from the
// assertion.
func TestIssueEServiceVoucher(t *testing.T) {
	k := fixtures(t)
	s := openSigner(t, "")
	digest := map[string]any{"alg": "SHA256", "value": strings.Repeat("ab", 32)}
	c := goodClaims().with("digest", digest, "jti", "assertion-1")
	a := verified(t, k.rsa, c)
	v, err := newIssuer(t, s).Issue(a)
	if err != nil {
		t.Fatal(err)
	}
	claims, hdr := verifyWithJWKS(t, s.JWKS(), v.Token)
	if hdr["typ"] != "at+jwt" || hdr["kid"] != s.Current().KID || hdr["alg"] != "RS256" {
		t.Fatalf("header %v", hdr)
	}
	iat := float64(t0.Unix())
	want := map[string]any{"iss": issuer, "sub": esClient, "client_id": esClient, "aud": esAudience, "purposeId": purposeA,
		"jti": "voucher-1", "iat": iat, "nbf": iat, "exp": iat + 600, "digest": digest}
	if len(claims) != len(want) {
		t.Fatalf("claims %v, want %v", claims, want)
	}
	for name, w := range want {
		if name == "digest" {
			d, _ := claims["digest"].(map[string]any)
			if d["alg"] != "SHA256" || d["value"] != digest["value"] {
				t.Fatalf("digest %v", claims["digest"])
			}
			continue
		}
		if claims[name] != w {
			t.Fatalf("claim %s = %v, want %v", name, claims[name], w)
		}
	}
	if v.JTI != "voucher-1" || !v.IssuedAt.Equal(t0) || !v.ExpiresAt.Equal(t0.Add(600*time.Second)) || v.ExpiresIn != 600 {
		t.Fatalf("voucher %+v", v)
	}
	au := v.Audit
	if au.VoucherJTI != "voucher-1" || au.ClientID != esClient || au.ClientKind != client.KindEService || au.Tenant != "acme" ||
		au.KID != k.rsa.kid || au.AssertionAlg != "RS256" || au.PurposeID != purposeA || au.EServiceID != eserviceA ||
		au.Audience != esAudience || au.AssertionJTI != "assertion-1" || !au.AssertionIssuedAt.Equal(t0.Add(-5*time.Second)) ||
		!au.AssertionExpiresAt.Equal(t0.Add(55*time.Second)) || !au.VoucherIssuedAt.Equal(t0) ||
		!au.VoucherExpiresAt.Equal(t0.Add(600*time.Second)) || au.SigningKID != s.Current().KID ||
		au.Digest == nil || au.EntryPosition != "42" {
		t.Fatalf("audit %+v", au)
	}
}

// TestIssueAPIVoucher: an API client's voucher is for the Keyledger API, carries its
// tenant, and no purpose.
func TestIssueAPIVoucher(t *testing.T) {
	k := fixtures(t)
	s := openSigner(t, voucher.AlgES256)
	a := verified(t, k.p256, apiClaims())
	v, err := newIssuer(t, s).Issue(a)
	if err != nil {
		t.Fatal(err)
	}
	claims, hdr := verifyWithJWKS(t, s.JWKS(), v.Token)
	if hdr["alg"] != "ES256" || claims["aud"] != apiAud || claims["tenant"] != "acme" || claims["sub"] != apiClient ||
		claims["client_id"] != apiClient || claims["exp"] != float64(t0.Unix()+600) {
		t.Fatalf("claims %v", claims)
	}
	if _, ok := claims["purposeId"]; ok {
		t.Fatal("API voucher has a purposeId")
	}
	if _, ok := claims["digest"]; ok {
		t.Fatal("voucher has a digest the assertion did not")
	}
	if v.Audit.PurposeID != "" || v.Audit.Audience != apiAud || v.Audit.ClientKind != client.KindAPI {
		t.Fatalf("audit %+v", v.Audit)
	}
}

func TestIssueRefusesCorruptEntry(t *testing.T) {
	k := fixtures(t)
	s := openSigner(t, voucher.AlgEdDSA)
	a := verified(t, k.rsa, goodClaims())
	i := newIssuer(t, s)
	for name, change := range map[string]func(*voucher.Assertion){
		"no audience":   func(a *voucher.Assertion) { a.Entry.Audience = "" },
		"no lifetime":   func(a *voucher.Assertion) { a.Entry.VoucherLifetimeSeconds = 0 },
		"unknown kind":  func(a *voucher.Assertion) { a.Entry.ClientKind = "robot" },
		"API no tenant": func(a *voucher.Assertion) { a.Entry.ClientKind, a.Entry.Tenant = client.KindAPI, "" },
	} {
		b := a
		change(&b)
		if _, err := i.Issue(b); !errors.Is(err, voucher.ErrCorruptEntry) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestNewIssuerConfig(t *testing.T) {
	s := openSigner(t, voucher.AlgEdDSA)
	for name, cfg := range map[string]voucher.IssuerConfig{
		"no issuer":         {APIAudience: apiAud, Signer: s},
		"no API audience":   {Issuer: issuer, Signer: s},
		"no signer":         {Issuer: issuer, APIAudience: apiAud},
		"lifetime too long": {Issuer: issuer, APIAudience: apiAud, Signer: s, APILifetime: 48 * time.Hour},
	} {
		if _, err := voucher.NewIssuer(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestDraftSignsWithTheKeyItsRecordNames: a draft is signed with the key its audit
// record names, even when the signer rotated between Prepare and Sign; the signed
// voucher is the draft's with a token.
func TestDraftSignsWithTheKeyItsRecordNames(t *testing.T) {
	k := fixtures(t)
	s := openSigner(t, voucher.AlgES256)
	a := verified(t, k.rsa, goodClaims())
	d, err := newIssuer(t, s).Prepare(a)
	if err != nil {
		t.Fatal(err)
	}
	before := s.Current().KID
	if d.Token != "" || d.Audit.SigningKID != before || d.Audit.VoucherJTI != d.JTI {
		t.Fatalf("draft %+v", d.Voucher)
	}
	if _, err := s.Rotate(); err != nil {
		t.Fatal(err)
	}
	if s.Current().KID == before {
		t.Fatal("rotation kept the key")
	}
	v, err := d.Sign()
	if err != nil {
		t.Fatal(err)
	}
	claims, hdr := verifyWithJWKS(t, s.JWKS(), v.Token)
	if hdr["kid"] != before || claims["jti"] != d.JTI || claims["exp"] != float64(d.ExpiresAt.Unix()) {
		t.Fatalf("header %v claims %v, want kid %s jti %s", hdr, claims, before, d.JTI)
	}
	want := d.Voucher
	want.Token = v.Token
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("signed %+v, want the draft's %+v", v, want)
	}
}
