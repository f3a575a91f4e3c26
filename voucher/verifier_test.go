package voucher_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/purpose"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/voucher"
)

// TestVerifyAccepts covers assertions that must pass, with every key type.
func TestVerifyAccepts(t *testing.T) {
	k := fixtures(t)
	cases := []struct {
		name      string
		assertion func() string
		clientID  string
		purpose   string
		kind      string
	}{
		{"RS256 e-service client", func() string { return mint(t, k.rsa, goodClaims(), nil) }, "", purposeA, "eservice"},
		{"EdDSA e-service client", func() string { return mint(t, k.ed, goodClaims(), nil) }, "", purposeA, "eservice"},
		{"ES256 API client", func() string { return mint(t, k.p256, apiClaims(), nil) }, "", "", "api"},
		{"ES384 API client", func() string {
			return mint(t, k.p384, apiClaims().with("iss", p384Cli, "sub", p384Cli), nil)
		}, "", "", "api"},
		{"client_id equal to sub", func() string { return mint(t, k.rsa, goodClaims(), nil) }, esClient, purposeA, "eservice"},
		{"aud as an array containing the audience", func() string {
			return mint(t, k.rsa, goodClaims().with("aud", []string{"https://elsewhere.example", audience}), nil)
		}, "", purposeA, "eservice"},
		{"extra private and registered claims", func() string {
			return mint(t, k.rsa, goodClaims().with("nbf", t0.Unix()-5, "client_id", esClient, "scope", "read",
				"x-trace", map[string]any{"a": []int{1, 2}}, "name", "payments batch"), nil)
		}, "", purposeA, "eservice"},
		{"extra header parameters", func() string {
			return mint(t, k.rsa, goodClaims(), header{"typ": "client-authentication+jwt", "x5t": "abc", "cty": "JWT"})
		}, "", purposeA, "eservice"},
		{"null optional claims", func() string {
			return mint(t, k.p256, apiClaims().with("nbf", jsonNull{}, "digest", jsonNull{}, "purposeId", jsonNull{}), nil)
		}, "", "", "api"},
		{"iat within the skew in the future", func() string {
			return mint(t, k.rsa, goodClaims().with("iat", t0.Unix()+10), nil)
		}, "", purposeA, "eservice"},
		{"exp passed within the skew", func() string {
			return mint(t, k.rsa, goodClaims().with("iat", t0.Unix()-60, "exp", t0.Unix()-9), nil)
		}, "", purposeA, "eservice"},
		{"nbf within the skew in the future", func() string {
			return mint(t, k.rsa, goodClaims().with("nbf", t0.Unix()+10), nil)
		}, "", purposeA, "eservice"},
		{"lifetime exactly the maximum", func() string {
			return mint(t, k.rsa, goodClaims().with("iat", t0.Unix()-5, "exp", t0.Unix()-5+3600), nil)
		}, "", purposeA, "eservice"},
		{"fractional NumericDates", func() string {
			return mint(t, k.rsa, goodClaims().with("iat", float64(t0.Unix())-0.5, "exp", float64(t0.Unix())+30.25), nil)
		}, "", purposeA, "eservice"},
		{"digest", func() string {
			return mint(t, k.rsa, goodClaims().with("digest", map[string]any{"alg": "SHA256", "value": strings.Repeat("aB", 32)}), nil)
		}, "", purposeA, "eservice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			entries := world(t)
			v := newVerifier(t, entries)
			a, err := v.Verify(context.Background(), voucher.TokenRequest{ClientAssertion: c.assertion(), ClientID: c.clientID})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if a.PurposeID != c.purpose || string(a.Entry.ClientKind) != c.kind || a.JTI == "" || a.ExpiresAt.IsZero() {
				t.Fatalf("assertion %+v", a)
			}
			if n := entries.calls.Load(); n != 1 {
				t.Fatalf("%d read-model lookups, want exactly 1 on the path that issues a voucher", n)
			}
		})
	}
}

// jsonNull marshals as null (the helpers drop nil members).
type jsonNull struct{}

func (jsonNull) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

// TestVerifyRefuses covers every check, each with its own case, real keys and real
// signatures: the error must name the check, carry the right RFC 6749 code, and say
// what was wrong.
func TestVerifyRefuses(t *testing.T) {
	k := fixtures(t)
	// impostor signs with its own key but names a registered kid.
	impostor := func(signer, named key, alg string) key {
		return key{priv: signer.priv, pem: named.pem, kid: named.kid, alg: alg}
	}
	bad := func(s string) func() string { return func() string { return s } }
	cases := []struct {
		name      string
		assertion func() string
		clientID  string
		probe     bool
		setup     func(*fakeEntries)
		check     string
		code      string
		desc      string // a substring of the description
	}{
		// Structure.
		{name: "not a JWT", assertion: bad("hello"), check: voucher.CheckJWS, code: voucher.CodeInvalidRequest, desc: "compact serialization"},
		{name: "JWE", assertion: bad("a.b.c.d.e"), check: voucher.CheckJWS, code: voucher.CodeInvalidRequest, desc: "encrypted JWT"},
		{name: "header not base64url", assertion: bad("e30=.e30.AA"), check: voucher.CheckJWS, code: voucher.CodeInvalidRequest, desc: "header is not base64url"},
		{name: "payload not JSON", assertion: func() string {
			return segment(t, header{"alg": "RS256"}) + "." + base64.RawURLEncoding.EncodeToString([]byte("[1]")) + ".AA"
		}, check: voucher.CheckJWS, code: voucher.CodeInvalidRequest, desc: "payload is not a JSON object"},
		{name: "repeated claim", assertion: func() string {
			p := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"a","sub":"b"}`))
			return segment(t, header{"alg": "RS256"}) + "." + p + ".AA"
		}, check: voucher.CheckJWS, code: voucher.CodeInvalidRequest, desc: "member 'sub' twice"},
		{name: "crit header", assertion: func() string { return mint(t, k.rsa, goodClaims(), header{"crit": []string{"b64"}, "b64": false}) },
			check: voucher.CheckJWS, code: voucher.CodeInvalidRequest, desc: "crit"},
		{name: "assertion too long", assertion: func() string {
			return mint(t, k.rsa, goodClaims().with("pad", strings.Repeat("x", voucher.MaxAssertionBytes)), nil)
		}, check: voucher.CheckJWS, code: voucher.CodeInvalidRequest, desc: "longer than"},

		// Header.
		{name: "alg none", assertion: func() string { return mint(t, k.rsa, goodClaims(), header{"alg": "none"}) },
			check: voucher.CheckAlg, code: voucher.CodeInvalidClient, desc: "alg none is not accepted"},
		{name: "alg NONE", assertion: func() string { return mint(t, k.rsa, goodClaims(), header{"alg": "NONE"}) },
			check: voucher.CheckAlg, code: voucher.CodeInvalidClient, desc: "not accepted"},
		{name: "HS256 signed with the public key", assertion: func() string { return mint(t, k.rsa, goodClaims(), header{"alg": "HS256"}) },
			check: voucher.CheckAlg, code: voucher.CodeInvalidClient, desc: "(HMAC) is not accepted"},
		{name: "unknown alg", assertion: func() string { return mint(t, k.rsa, goodClaims(), header{"alg": "RS1"}) },
			check: voucher.CheckAlg, code: voucher.CodeInvalidClient, desc: "is not supported"},
		{name: "no alg", assertion: func() string { return mint(t, k.rsa, goodClaims(), header{"alg": nil}) },
			check: voucher.CheckAlg, code: voucher.CodeInvalidRequest, desc: "no alg"},
		{name: "no kid", assertion: func() string { return mint(t, k.rsa, goodClaims(), header{"kid": nil}) },
			check: voucher.CheckKID, code: voucher.CodeInvalidRequest, desc: "has no kid"},
		{name: "kid not a thumbprint", assertion: func() string { return mint(t, k.rsa, goodClaims(), header{"kid": "my-key-1"}) },
			check: voucher.CheckKID, code: voucher.CodeInvalidRequest, desc: "43 base64url characters"},
		{name: "kid a number", assertion: func() string { return mint(t, k.rsa, goodClaims(), header{"kid": 7}) },
			check: voucher.CheckKID, code: voucher.CodeInvalidRequest, desc: "43 base64url characters"},

		// Identity claims.
		{name: "no iss", assertion: func() string { return mint(t, k.rsa, goodClaims().with("iss", nil), nil) },
			check: voucher.CheckIss, code: voucher.CodeInvalidRequest, desc: "has no iss"},
		{name: "no sub", assertion: func() string { return mint(t, k.rsa, goodClaims().with("sub", nil), nil) },
			check: voucher.CheckSub, code: voucher.CodeInvalidRequest, desc: "has no sub"},
		{name: "sub a number", assertion: func() string { return mint(t, k.rsa, goodClaims().with("sub", 12), nil) },
			check: voucher.CheckSub, code: voucher.CodeInvalidRequest, desc: "must be a string"},
		{name: "sub with a space", assertion: func() string { return mint(t, k.rsa, goodClaims().with("sub", "a b"), nil) },
			check: voucher.CheckSub, code: voucher.CodeInvalidRequest, desc: "white space"},
		{name: "iss differs from sub", assertion: func() string { return mint(t, k.rsa, goodClaims().with("iss", "https://client.example"), nil) },
			check: voucher.CheckIssSub, code: voucher.CodeInvalidClient, desc: "iss does not match sub"},
		{name: "client_id differs from sub", assertion: func() string { return mint(t, k.rsa, goodClaims(), nil) }, clientID: other,
			check: voucher.CheckClientID, code: voucher.CodeInvalidClient, desc: "sub does not match client_id"},

		// Audience.
		{name: "wrong aud", assertion: func() string { return mint(t, k.rsa, goodClaims().with("aud", "https://other.example/token"), nil) },
			check: voucher.CheckAud, code: voucher.CodeInvalidClient, desc: "assertion aud must be " + audience},
		{name: "aud with an https:// prefix", assertion: func() string {
			return mint(t, k.rsa, goodClaims().with("aud", "https://"+audience), nil)
		}, check: voucher.CheckAud, code: voucher.CodeInvalidClient, desc: "assertion aud must be " + audience + ", without the https:// prefix"},
		{name: "aud with a trailing slash", assertion: func() string {
			return mint(t, k.rsa, goodClaims().with("aud", audience+"/"), nil)
		}, check: voucher.CheckAud, code: voucher.CodeInvalidClient, desc: "without the trailing slash"},
		{name: "aud array without the audience", assertion: func() string {
			return mint(t, k.rsa, goodClaims().with("aud", []string{"a", "https://" + audience}), nil)
		}, check: voucher.CheckAud, code: voucher.CodeInvalidClient, desc: "or an array containing it, without the https:// prefix"},
		{name: "no aud", assertion: func() string { return mint(t, k.rsa, goodClaims().with("aud", nil), nil) },
			check: voucher.CheckAud, code: voucher.CodeInvalidRequest, desc: "has no aud; it must be " + audience},
		{name: "empty aud array", assertion: func() string { return mint(t, k.rsa, goodClaims().with("aud", []string{}), nil) },
			check: voucher.CheckAud, code: voucher.CodeInvalidRequest, desc: "has no aud"},
		{name: "aud an object", assertion: func() string { return mint(t, k.rsa, goodClaims().with("aud", map[string]int{"a": 1}), nil) },
			check: voucher.CheckAud, code: voucher.CodeInvalidRequest, desc: "string or an array of strings"},

		// jti and times.
		{name: "no jti", assertion: func() string { return mint(t, k.rsa, goodClaims().with("jti", nil), nil) },
			check: voucher.CheckJTI, code: voucher.CodeInvalidRequest, desc: "has no jti"},
		{name: "empty jti", assertion: func() string { return mint(t, k.rsa, goodClaims().with("jti", ""), nil) },
			check: voucher.CheckJTI, code: voucher.CodeInvalidRequest, desc: "jti is empty"},
		{name: "no iat", assertion: func() string { return mint(t, k.rsa, goodClaims().with("iat", nil), nil) },
			check: voucher.CheckIat, code: voucher.CodeInvalidRequest, desc: "has no iat"},
		{name: "iat a string", assertion: func() string { return mint(t, k.rsa, goodClaims().with("iat", "1700000000"), nil) },
			check: voucher.CheckIat, code: voucher.CodeInvalidRequest, desc: "NumericDate"},
		{name: "future iat", assertion: func() string { return mint(t, k.rsa, goodClaims().with("iat", t0.Unix()+11), nil) },
			check: voucher.CheckIat, code: voucher.CodeInvalidClient, desc: "iat is 11 s in the future (10 s of clock skew are tolerated)"},
		{name: "no exp", assertion: func() string { return mint(t, k.rsa, goodClaims().with("exp", nil), nil) },
			check: voucher.CheckExp, code: voucher.CodeInvalidRequest, desc: "has no exp"},
		{name: "expired", assertion: func() string {
			return mint(t, k.rsa, goodClaims().with("iat", t0.Unix()-600, "exp", t0.Unix()-300), nil)
		}, check: voucher.CheckExp, code: voucher.CodeInvalidClient, desc: "expired 300 s ago"},
		{name: "expired at the end of the skew", assertion: func() string {
			return mint(t, k.rsa, goodClaims().with("iat", t0.Unix()-60, "exp", t0.Unix()-10), nil)
		}, check: voucher.CheckExp, code: voucher.CodeInvalidClient, desc: "expired 10 s ago"},
		{name: "exp negative", assertion: func() string { return mint(t, k.rsa, goodClaims().with("exp", -1), nil) },
			check: voucher.CheckExp, code: voucher.CodeInvalidRequest, desc: "NumericDate"},
		{name: "not yet valid (nbf)", assertion: func() string { return mint(t, k.rsa, goodClaims().with("nbf", t0.Unix()+30), nil) },
			check: voucher.CheckNbf, code: voucher.CodeInvalidClient, desc: "not valid yet: nbf is 30 s in the future"},
		{name: "nbf a string", assertion: func() string { return mint(t, k.rsa, goodClaims().with("nbf", "soon"), nil) },
			check: voucher.CheckNbf, code: voucher.CodeInvalidRequest, desc: "NumericDate"},
		{name: "overlong lifetime", assertion: func() string {
			return mint(t, k.rsa, goodClaims().with("iat", t0.Unix()-5, "exp", t0.Unix()-5+3601), nil)
		}, check: voucher.CheckLifetime, code: voucher.CodeInvalidClient, desc: "lives 3601 s (exp - iat); at most 3600 s"},
		{name: "exp before iat", assertion: func() string {
			return mint(t, k.rsa, goodClaims().with("iat", t0.Unix(), "exp", t0.Unix()), nil)
		}, check: voucher.CheckLifetime, code: voucher.CodeInvalidClient, desc: "exp must be after iat"},

		// purposeId and digest form.
		{name: "purposeId a number", assertion: func() string { return mint(t, k.rsa, goodClaims().with("purposeId", 5), nil) },
			check: voucher.CheckPurposeID, code: voucher.CodeInvalidRequest, desc: "purposeId must be a string"},
		{name: "purposeId empty", assertion: func() string { return mint(t, k.rsa, goodClaims().with("purposeId", ""), nil) },
			check: voucher.CheckPurposeID, code: voucher.CodeInvalidRequest, desc: "purposeId is empty"},
		{name: "digest alg SHA-256", assertion: func() string {
			return mint(t, k.rsa, goodClaims().with("digest", map[string]any{"alg": "SHA-256", "value": strings.Repeat("a", 64)}), nil)
		}, check: voucher.CheckDigest, code: voucher.CodeInvalidRequest, desc: "digest.alg must be SHA256"},
		{name: "digest value short", assertion: func() string {
			return mint(t, k.rsa, goodClaims().with("digest", map[string]any{"alg": "SHA256", "value": strings.Repeat("a", 63)}), nil)
		}, check: voucher.CheckDigest, code: voucher.CodeInvalidRequest, desc: "64 hex digits"},
		{name: "digest value not hex", assertion: func() string {
			return mint(t, k.rsa, goodClaims().with("digest", map[string]any{"alg": "SHA256", "value": strings.Repeat("g", 64)}), nil)
		}, check: voucher.CheckDigest, code: voucher.CodeInvalidRequest, desc: "64 hex digits"},
		{name: "digest extra member", assertion: func() string {
			return mint(t, k.rsa, goodClaims().with("digest", map[string]any{"alg": "SHA256", "value": strings.Repeat("a", 64), "x": 1}), nil)
		}, check: voucher.CheckDigest, code: voucher.CodeInvalidRequest, desc: "unknown member 'x'"},
		{name: "digest a string", assertion: func() string {
			return mint(t, k.rsa, goodClaims().with("digest", strings.Repeat("a", 64)), nil)
		}, check: voucher.CheckDigest, code: voucher.CodeInvalidRequest, desc: "digest must be an object"},

		// The read model.
		{name: "kid of another client", assertion: func() string { return mint(t, k.rsaOther, goodClaims(), nil) },
			check: voucher.CheckKeyRegistered, code: voucher.CodeInvalidClient, desc: "no key with kid " + k.rsaOther.kid + " is registered on client " + esClient},
		{name: "kid of another client (probe)", assertion: func() string { return mint(t, k.rsaOther, goodClaims(), nil) }, probe: true,
			check: voucher.CheckKeyRegistered, code: voucher.CodeInvalidClient, desc: "no key with kid " + k.rsaOther.kid + " is registered on client " + esClient},
		{name: "deleted key", assertion: func() string { return mint(t, k.rsaSpare, goodClaims(), nil) },
			check: voucher.CheckKeyRegistered, code: voucher.CodeInvalidClient, desc: "is registered on client"},
		{name: "purposeId missing for an e-service client", assertion: func() string { return mint(t, k.rsa, goodClaims().with("purposeId", nil), nil) },
			check: voucher.CheckKeyRegistered, code: voucher.CodeInvalidClient, desc: "an e-service client must send purposeId"},
		{name: "purposeId missing for an e-service client (probe)", assertion: func() string { return mint(t, k.rsa, goodClaims().with("purposeId", nil), nil) },
			probe: true, check: voucher.CheckPurposeForKind, code: voucher.CodeInvalidRequest, desc: "purposeId is required: client " + esClient + " is an e-service client"},
		{name: "purposeId sent by an API client", assertion: func() string { return mint(t, k.p256, apiClaims().with("purposeId", purposeA), nil) },
			check: voucher.CheckPurposeForKind, code: voucher.CodeInvalidRequest, desc: "purposeId must not be sent: client " + apiClient + " is an API client"},
		{name: "purpose not linked", assertion: func() string {
			return mint(t, k.rsa, goodClaims().with("purposeId", "b1b1b1b1-0000-4000-8000-000000000000"), nil)
		},
			check: voucher.CheckKeyRegistered, code: voucher.CodeInvalidClient, desc: "or the purpose is not linked to it"},
		{name: "purpose not linked (probe)", assertion: func() string {
			return mint(t, k.rsa, goodClaims().with("purposeId", "b1b1b1b1-0000-4000-8000-000000000000"), nil)
		},
			probe: true, check: voucher.CheckPurposeLinked, code: voucher.CodeUnauthorizedClient, desc: "purpose b1b1b1b1-0000-4000-8000-000000000000 is not linked to client " + esClient},

		// The key.
		{name: "key use enc", assertion: func() string { return mint(t, k.rsa, goodClaims(), nil) },
			setup: func(f *fakeEntries) {
				f.update(esClient, k.rsa.kid, purposeA, func(e *models.VoucherEntry) { e.Use = "enc" })
			}, check: voucher.CheckKeyUse, code: voucher.CodeInvalidClient, desc: "registered for use 'enc'"},
		{name: "ES256 header on an RSA key", assertion: func() string { return mint(t, impostor(k.p256, k.rsa, "ES256"), goodClaims(), nil) },
			check: voucher.CheckKeyAlg, code: voucher.CodeInvalidClient, desc: "alg ES256 does not match key " + k.rsa.kid + ", an RSA 2048-bit key registered for RS256"},
		{name: "RS256 header on an EC key", assertion: func() string { return mint(t, impostor(k.rsa, k.p256, "RS256"), apiClaims(), nil) },
			check: voucher.CheckKeyAlg, code: voucher.CodeInvalidClient, desc: "an EC P-256 key registered for ES256"},
		{name: "ES384 header on a P-256 key", assertion: func() string { return mint(t, impostor(k.p384, k.p256, "ES384"), apiClaims(), nil) },
			check: voucher.CheckKeyAlg, code: voucher.CodeInvalidClient, desc: "registered for ES256"},
		{name: "PS256 on a key registered for RS256", assertion: func() string { return mint(t, impostor(k.rsa, k.rsa, "PS256"), goodClaims(), nil) },
			check: voucher.CheckKeyAlg, code: voucher.CodeInvalidClient, desc: "registered for RS256"},
		{name: "EdDSA header on an RSA key without a registered alg", assertion: func() string { return mint(t, impostor(k.ed, k.rsa, "EdDSA"), goodClaims(), nil) },
			setup: func(f *fakeEntries) {
				f.update(esClient, k.rsa.kid, purposeA, func(e *models.VoucherEntry) { e.Alg = "" })
			}, check: voucher.CheckKeyAlg, code: voucher.CodeInvalidClient, desc: "does not suit key"},

		// The signature.
		{name: "signed by another key", assertion: func() string { return mint(t, impostor(k.rsaOther, k.rsa, "RS256"), goodClaims(), nil) },
			check: voucher.CheckSignature, code: voucher.CodeInvalidClient, desc: "the signature does not verify with key " + k.rsa.kid + " registered on client " + esClient},
		{name: "payload changed after signing", assertion: func() string {
			parts := strings.Split(mint(t, k.rsa, goodClaims(), nil), ".")
			parts[1] = segment(t, goodClaims().with("purposeId", purposeA, "digest", map[string]any{"alg": "SHA256", "value": strings.Repeat("0", 64)}))
			return strings.Join(parts, ".")
		}, check: voucher.CheckSignature, code: voucher.CodeInvalidClient, desc: "does not verify"},
		{name: "empty signature", assertion: func() string {
			parts := strings.Split(mint(t, k.ed, goodClaims(), nil), ".")
			return parts[0] + "." + parts[1] + "."
		}, check: voucher.CheckSignature, code: voucher.CodeInvalidClient, desc: "does not verify"},

		// Purpose and e-service state.
		{name: "purpose suspended", assertion: func() string { return mint(t, k.rsa, goodClaims(), nil) },
			setup: func(f *fakeEntries) {
				f.update(esClient, k.rsa.kid, purposeA, func(e *models.VoucherEntry) { e.PurposeState = purpose.StateSuspended })
			}, check: voucher.CheckPurposeActive, code: voucher.CodeInvalidGrant, desc: "purpose " + purposeA + " is suspended"},
		{name: "purpose pending", assertion: func() string { return mint(t, k.rsa, goodClaims(), nil) },
			setup: func(f *fakeEntries) {
				f.update(esClient, k.rsa.kid, purposeA, func(e *models.VoucherEntry) { e.PurposeState = purpose.StatePending })
			}, check: voucher.CheckPurposeActive, code: voucher.CodeInvalidGrant, desc: "is pending"},
		{name: "purpose archived", assertion: func() string { return mint(t, k.rsa, goodClaims(), nil) },
			setup: func(f *fakeEntries) {
				f.update(esClient, k.rsa.kid, purposeA, func(e *models.VoucherEntry) { e.PurposeState = purpose.StateArchived })
			}, check: voucher.CheckPurposeActive, code: voucher.CodeInvalidGrant, desc: "is archived"},
		{name: "e-service suspended", assertion: func() string { return mint(t, k.rsa, goodClaims(), nil) },
			setup: func(f *fakeEntries) {
				f.update(esClient, k.rsa.kid, purposeA, func(e *models.VoucherEntry) { e.EServiceState = models.EServiceSuspended })
			}, check: voucher.CheckEServiceActive, code: voucher.CodeInvalidGrant, desc: "the e-service of purpose " + purposeA + " is suspended"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := world(t)
			if c.setup != nil {
				c.setup(f)
			}
			var entries voucher.Entries = f
			if c.probe {
				entries = withProbe(t, f)
			}
			v := newVerifier(t, entries)
			_, err := v.Verify(context.Background(), voucher.TokenRequest{ClientAssertion: c.assertion(), ClientID: c.clientID})
			oe := oauthError(t, err)
			if oe.Check != c.check || oe.Code != c.code || !strings.Contains(oe.Description, c.desc) {
				t.Fatalf("got check %s, %s: %q\nwant check %s, %s, containing %q", oe.Check, oe.Code, oe.Description, c.check, c.code, c.desc)
			}
			if oe.SafeDescription() != oe.Description {
				t.Errorf("description %q holds characters error_description may not", oe.Description)
			}
			if strings.Contains(oe.Description, "BEGIN") || strings.Contains(oe.Description, "MII") {
				t.Errorf("description %q quotes key material", oe.Description)
			}
			if errors.Is(err, voucher.ErrUnavailable) {
				t.Errorf("a refusal matches ErrUnavailable")
			}
		})
	}
}

// TestAudienceIsIssuerURL: standard private_key_jwt libraries put the authorization
// server's issuer in aud; configured so, Keyledger accepts them, and names the scheme a
// caller left out.
func TestAudienceIsIssuerURL(t *testing.T) {
	k := fixtures(t)
	v := newVerifier(t, world(t), func(c *voucher.Config) { c.Audience = issuer })
	if _, err := v.Verify(context.Background(), request(mint(t, k.rsa, goodClaims().with("aud", issuer), nil))); err != nil {
		t.Fatalf("aud = issuer URL: %v", err)
	}
	if _, err := v.Verify(context.Background(), request(mint(t, k.rsa, goodClaims().with("aud", []string{issuer}), nil))); err != nil {
		t.Fatalf("aud = [issuer URL]: %v", err)
	}
	_, err := v.Verify(context.Background(), request(mint(t, k.rsa, goodClaims().with("aud", "auth.example.org"), nil)))
	if oe := oauthError(t, err); oe.Description != "assertion aud must be https://auth.example.org, with the https:// prefix" {
		t.Fatalf("description %q", oe.Description)
	}
}

// TestReplayedJTI: a jti is accepted once per client, until the assertion expires;
// an assertion whose signature fails does not burn the jti.
func TestReplayedJTI(t *testing.T) {
	k := fixtures(t)
	now := t0
	clock := func() time.Time { return now }
	replay := voucher.NewMemoryReplayCache(100, clock)
	v := newVerifier(t, world(t), func(c *voucher.Config) { c.Now, c.Replay = clock, replay })
	ctx := context.Background()
	c := goodClaims().with("jti", "fixed-jti")

	forged := mint(t, key{priv: k.rsaOther.priv, kid: k.rsa.kid, alg: "RS256"}, c, nil)
	if _, err := v.Verify(ctx, request(forged)); oauthError(t, err).Check != voucher.CheckSignature {
		t.Fatalf("forged: %v", err)
	}
	good := mint(t, k.rsa, c, nil)
	if _, err := v.Verify(ctx, request(good)); err != nil {
		t.Fatalf("first use after a forged attempt with the same jti: %v", err)
	}
	_, err := v.Verify(ctx, request(good))
	if oe := oauthError(t, err); oe.Check != voucher.CheckJTIUnused || oe.Code != voucher.CodeInvalidClient || oe.Description != "jti already used: send a new assertion, with a fresh jti, for every token request" {
		t.Fatalf("replay: %+v", oe)
	}
	// Another assertion with the same jti is refused too.
	if _, err := v.Verify(ctx, request(mint(t, k.rsa, c.with("iat", t0.Unix()-1), nil))); oauthError(t, err).Check != voucher.CheckJTIUnused {
		t.Fatalf("same jti, new assertion: %v", err)
	}
	// Another client's same jti is its own.
	if _, err := v.Verify(ctx, request(mint(t, k.p256, apiClaims().with("jti", "fixed-jti"), nil))); err != nil {
		t.Fatalf("same jti, other client: %v", err)
	}
	// The jti is held until exp + skew, then forgotten along with the assertion's validity.
	now = time.Unix(c["exp"].(int64), 0).Add(9 * time.Second)
	if _, err := v.Verify(ctx, request(good)); oauthError(t, err).Check != voucher.CheckJTIUnused {
		t.Fatalf("replay just before exp + skew: %v", err)
	}
	now = now.Add(time.Second)
	if _, err := v.Verify(ctx, request(good)); oauthError(t, err).Check != voucher.CheckExp {
		t.Fatalf("at exp + skew: %v", err)
	}
	if replay.Len() > 2 {
		t.Fatalf("replay cache holds %d pairs", replay.Len())
	}
}

// TestStoreUnavailable: a read model that cannot answer is never a refusal: the error
// matches ErrUnavailable (503) and is no *Error.
func TestStoreUnavailable(t *testing.T) {
	k := fixtures(t)
	for _, name := range []string{"e-service", "API"} {
		t.Run(name, func(t *testing.T) {
			f := world(t)
			f.fail = errors.Join(readmodel.ErrUnavailable, errors.New("dial tcp 127.0.0.1:6379: connection refused"))
			v := newVerifier(t, f)
			a, clientID := mint(t, k.rsa, goodClaims(), nil), esClient
			if name == "API" {
				a, clientID = mint(t, k.p256, apiClaims(), nil), apiClient
			}
			_, err := v.Verify(context.Background(), request(a))
			var oe *voucher.Error
			if !errors.Is(err, voucher.ErrUnavailable) || !errors.Is(err, readmodel.ErrUnavailable) || errors.As(err, &oe) {
				t.Fatalf("got %v", err)
			}
			if _, err := v.Report(context.Background(), clientID, a); !errors.Is(err, voucher.ErrUnavailable) {
				t.Fatalf("report: %v", err)
			}
		})
	}
	t.Run("probe", func(t *testing.T) {
		f := world(t)
		v := newVerifier(t, failingProbe{f})
		_, err := v.Verify(context.Background(), request(mint(t, k.rsaSpare, goodClaims(), nil)))
		if !errors.Is(err, voucher.ErrUnavailable) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("replay cache", func(t *testing.T) {
		v := newVerifier(t, world(t), func(c *voucher.Config) { c.Replay = failingReplay{} })
		_, err := v.Verify(context.Background(), request(mint(t, k.rsa, goodClaims(), nil)))
		if !errors.Is(err, voucher.ErrUnavailable) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("replay cache full", func(t *testing.T) {
		clock := func() time.Time { return t0 }
		v := newVerifier(t, world(t), func(c *voucher.Config) { c.Replay = voucher.NewMemoryReplayCache(1, clock) })
		var err error
		for range 64 { // one pair per shard at most: the cache fills quickly
			if _, err = v.Verify(context.Background(), request(mint(t, k.ed, goodClaims(), nil))); err != nil {
				break
			}
		}
		if !errors.Is(err, voucher.ErrUnavailable) || !errors.Is(err, voucher.ErrReplayCacheFull) {
			t.Fatalf("got %v", err)
		}
	})
}

type failingProbe struct{ *fakeEntries }

func (failingProbe) ProbeKey(context.Context, string, string) (client.Kind, bool, error) {
	return "", false, errors.New("timeout")
}

type failingReplay struct{}

func (failingReplay) Use(context.Context, string, string, time.Time) (bool, error) {
	return false, errors.New("i/o timeout")
}

// TestCorruptEntry: an entry whose PEM is not the key its kid names, or that answers
// for another client, is a server error, never a refusal or a voucher.
func TestCorruptEntry(t *testing.T) {
	k := fixtures(t)
	cases := map[string]func(*models.VoucherEntry){
		"PEM of another key":     func(e *models.VoucherEntry) { e.PEM = k.rsaOther.pem },
		"PEM garbage":            func(e *models.VoucherEntry) { e.PEM = "garbage" },
		"entry of another":       func(e *models.VoucherEntry) { e.ClientID = other },
		"alg unfit for its key":  func(e *models.VoucherEntry) { e.Alg = "ES256" },
		"API kind under purpose": func(e *models.VoucherEntry) { e.ClientKind = "api" },
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			f := world(t)
			f.update(esClient, k.rsa.kid, purposeA, change)
			_, err := newVerifier(t, f).Verify(context.Background(), request(mint(t, k.rsa, goodClaims(), nil)))
			if !errors.Is(err, voucher.ErrCorruptEntry) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// TestRevocationIsImmediate: a key deleted, a purpose removed or an e-service
// suspended in the read model is refused at the next request, whatever was cached.
func TestRevocationIsImmediate(t *testing.T) {
	k := fixtures(t)
	f := world(t)
	v := newVerifier(t, f)
	ctx := context.Background()
	if _, err := v.Verify(ctx, request(mint(t, k.rsa, goodClaims(), nil))); err != nil {
		t.Fatal(err)
	}
	f.update(esClient, k.rsa.kid, purposeA, func(e *models.VoucherEntry) { e.EServiceState = models.EServiceSuspended })
	if _, err := v.Verify(ctx, request(mint(t, k.rsa, goodClaims(), nil))); oauthError(t, err).Check != voucher.CheckEServiceActive {
		t.Fatalf("after suspension: %v", err)
	}
	f.mu.Lock()
	delete(f.entries, models.EntryKey(esClient, k.rsa.kid, purposeA))
	f.mu.Unlock()
	if _, err := v.Verify(ctx, request(mint(t, k.rsa, goodClaims(), nil))); oauthError(t, err).Check != voucher.CheckKeyRegistered {
		t.Fatalf("after deletion: %v", err)
	}
}

// TestKeyCache: a client key's PEM is parsed once, not per request, and a changed
// PEM under the same kid is never verified with the old parse.
func TestKeyCache(t *testing.T) {
	k := fixtures(t)
	f := world(t)
	v := newVerifier(t, f)
	var parses int
	voucher.SetKeyParseHook(v, func() { parses++ })
	for range 5 {
		if _, err := v.Verify(context.Background(), request(mint(t, k.rsa, goodClaims(), nil))); err != nil {
			t.Fatal(err)
		}
	}
	if parses != 1 {
		t.Fatalf("%d parses for 5 requests", parses)
	}
	f.update(esClient, k.rsa.kid, purposeA, func(e *models.VoucherEntry) { e.PEM = k.rsaOther.pem })
	if _, err := v.Verify(context.Background(), request(mint(t, k.rsa, goodClaims(), nil))); !errors.Is(err, voucher.ErrCorruptEntry) {
		t.Fatalf("changed PEM: %v", err)
	}
}

// TestNoSkew: a negative Skew tolerates nothing.
func TestNoSkew(t *testing.T) {
	k := fixtures(t)
	v := newVerifier(t, world(t), func(c *voucher.Config) { c.Skew = -1 })
	_, err := v.Verify(context.Background(), request(mint(t, k.rsa, goodClaims().with("iat", t0.Unix()+1), nil)))
	if oe := oauthError(t, err); oe.Check != voucher.CheckIat || !strings.Contains(oe.Description, "no clock skew is tolerated") {
		t.Fatalf("got %+v", oe)
	}
	_, err = v.Verify(context.Background(), request(mint(t, k.rsa, goodClaims().with("iat", t0.Unix()-60, "exp", t0.Unix()), nil)))
	if oe := oauthError(t, err); oe.Check != voucher.CheckExp {
		t.Fatalf("got %+v", oe)
	}
}

// TestMaxLifetimeConfigurable: a shorter maximum lifetime is enforced.
func TestMaxLifetimeConfigurable(t *testing.T) {
	k := fixtures(t)
	v := newVerifier(t, world(t), func(c *voucher.Config) { c.MaxLifetime = 5 * time.Minute })
	_, err := v.Verify(context.Background(), request(mint(t, k.rsa, goodClaims().with("exp", t0.Unix()-5+301), nil)))
	if oe := oauthError(t, err); oe.Check != voucher.CheckLifetime || !strings.Contains(oe.Description, "at most 300 s") {
		t.Fatalf("got %+v", oe)
	}
}

func TestNewVerifierConfig(t *testing.T) {
	f := world(t)
	r := voucher.NewMemoryReplayCache(0, nil)
	bad := map[string]voucher.Config{
		"no audience":       {Entries: f, Replay: r},
		"no entries":        {Audience: audience, Replay: r},
		"no replay cache":   {Audience: audience, Entries: f},
		"skew too large":    {Audience: audience, Entries: f, Replay: r, Skew: time.Hour},
		"lifetime too long": {Audience: audience, Entries: f, Replay: r, MaxLifetime: 48 * time.Hour},
	}
	for name, cfg := range bad {
		if _, err := voucher.NewVerifier(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestChecksOrder: the lookup comes after every local check, the signature after the
// key checks, and the purpose state and jti after the signature.
func TestChecksOrder(t *testing.T) {
	pos := map[string]int{}
	for i, n := range voucher.Checks() {
		if _, dup := pos[n]; dup {
			t.Fatalf("check %s twice", n)
		}
		pos[n] = i
	}
	before := [][2]string{
		{voucher.CheckDigest, voucher.CheckKeyRegistered},
		{voucher.CheckLifetime, voucher.CheckKeyRegistered},
		{voucher.CheckAud, voucher.CheckKeyRegistered},
		{voucher.CheckKeyUse, voucher.CheckSignature},
		{voucher.CheckKeyAlg, voucher.CheckSignature},
		{voucher.CheckSignature, voucher.CheckPurposeActive},
		{voucher.CheckSignature, voucher.CheckEServiceActive},
		{voucher.CheckSignature, voucher.CheckJTIUnused},
		{voucher.CheckEServiceActive, voucher.CheckJTIUnused},
	}
	for _, b := range before {
		if pos[b[0]] >= pos[b[1]] {
			t.Errorf("%s does not come before %s", b[0], b[1])
		}
	}
}

// TestEntriesFunc: a function serves as the read model.
func TestEntriesFunc(t *testing.T) {
	k := fixtures(t)
	f := world(t)
	v := newVerifier(t, voucher.EntriesFunc(f.Entry))
	if _, err := v.Verify(context.Background(), request(mint(t, k.rsa, goodClaims(), nil))); err != nil {
		t.Fatal(err)
	}
}

// TestRegisteredAlgIsHonoured: an RSA key registered for PS256 verifies PS256
// assertions, and refuses RS256 ones.
func TestRegisteredAlgIsHonoured(t *testing.T) {
	k := fixtures(t)
	f := world(t)
	f.update(esClient, k.rsa.kid, purposeA, func(e *models.VoucherEntry) { e.Alg = "PS256" })
	v := newVerifier(t, f)
	ps := key{priv: k.rsa.priv, kid: k.rsa.kid, alg: "PS256"}
	if _, err := v.Verify(context.Background(), request(mint(t, ps, goodClaims(), nil))); err != nil {
		t.Fatalf("PS256: %v", err)
	}
	_, err := v.Verify(context.Background(), request(mint(t, k.rsa, goodClaims(), nil)))
	if oe := oauthError(t, err); oe.Check != voucher.CheckKeyAlg || !strings.Contains(oe.Description, "registered for PS256") {
		t.Fatalf("RS256 on a PS256 key: %+v", oe)
	}
}
