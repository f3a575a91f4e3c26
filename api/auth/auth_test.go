package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "https://idp.example.com/"
	testAudience = "keyledger"
)

// t0 is the injected clock of every verifier in these tests.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func fixedNow() time.Time { return t0 }

var quiet = slog.New(slog.DiscardHandler)

// testKeys are generated once: RSA generation is slow under the race detector.
var testKeys = sync.OnceValue(func() (k struct {
	rsa, rsaOther *rsa.PrivateKey
	ec            *ecdsa.PrivateKey
	ed            ed25519.PrivateKey
}) {
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.rsaOther, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	return k
})

type jwkEntry struct {
	kid string
	pub any
	use jwkset.USE
}

// jwksJSON is the public JWK set of entries.
func jwksJSON(t *testing.T, entries ...jwkEntry) []byte {
	t.Helper()
	store := jwkset.NewMemoryStorage()
	for _, e := range entries {
		use := e.use
		if use == "" {
			use = jwkset.UseSig
		}
		k, err := jwkset.NewJWKFromKey(e.pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: e.kid, USE: use}})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.KeyWrite(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := store.JSONPublic(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// claimsAt is a valid payload for testIssuer at t0, changed by edit.
func claimsAt(edit func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss":    testIssuer,
		"aud":    testAudience,
		"sub":    "u1",
		"tenant": "t1",
		"iat":    t0.Add(-time.Minute).Unix(),
		"exp":    t0.Add(time.Hour).Unix(),
		"jti":    "j1",
	}
	if edit != nil {
		edit(c)
	}
	return c
}

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fileVerifier trusts a JWKS file holding an RSA, an EC and an Ed25519 key.
func fileVerifier(t *testing.T) *Verifier {
	t.Helper()
	k := testKeys()
	path := filepath.Join(t.TempDir(), "jwks.json")
	data := jwksJSON(t,
		jwkEntry{kid: "rsa-1", pub: &k.rsa.PublicKey},
		jwkEntry{kid: "ec-1", pub: &k.ec.PublicKey},
		jwkEntry{kid: "ed-1", pub: k.ed.Public()},
		jwkEntry{kid: "enc-1", pub: &k.rsaOther.PublicKey, use: jwkset.UseEnc},
	)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := New(t.Context(), Config{Issuer: testIssuer, JWKSFile: path, Audience: testAudience, Now: fixedNow, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if v.Development() {
		t.Fatal("a verifier with an issuer says it is in development mode")
	}
	return v
}

func TestJWKSFileAcceptsEachAllowedAlgorithm(t *testing.T) {
	k := testKeys()
	v := fileVerifier(t)
	for _, tc := range []struct {
		name   string
		method jwt.SigningMethod
		key    any
		kid    string
	}{
		{"RS256", jwt.SigningMethodRS256, k.rsa, "rsa-1"},
		{"ES256", jwt.SigningMethodES256, k.ec, "ec-1"},
		{"EdDSA", jwt.SigningMethodEdDSA, k.ed, "ed-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := sign(t, tc.method, tc.key, tc.kid, claimsAt(nil))
			p, err := v.Verify(t.Context(), "Bearer "+tok)
			if err != nil {
				t.Fatal(err)
			}
			if want := (Principal{Subject: "u1", Tenant: "t1"}); p != want {
				t.Fatalf("principal %+v, want %+v", p, want)
			}
			// The bare token is accepted too.
			if _, err := v.Verify(t.Context(), tok); err != nil {
				t.Fatalf("bare token: %v", err)
			}
		})
	}
}

func TestVerifyRejections(t *testing.T) {
	k := testKeys()
	v := fileVerifier(t)
	rs := func(kid string, edit func(jwt.MapClaims)) string {
		return sign(t, jwt.SigningMethodRS256, k.rsa, kid, claimsAt(edit))
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	enc := base64.RawURLEncoding.EncodeToString
	noneToken := enc([]byte(`{"alg":"none","kid":"rsa-1","typ":"JWT"}`)) + "." +
		enc([]byte(`{"iss":"`+testIssuer+`","aud":"keyledger","sub":"u1","tenant":"t1","exp":`+
			strconv.FormatInt(t0.Add(time.Hour).Unix(), 10)+`}`)) + "."

	for _, tc := range []struct {
		name   string
		bearer string
		want   error
	}{
		{"empty", "", ErrMissingToken},
		{"blank bearer", "Bearer   ", ErrMissingToken},
		{"other scheme", "Basic dTpw", ErrMissingToken},
		{"not a JWT", "Bearer not-a-jwt", ErrMalformedToken},
		{"garbage segments", "Bearer a.b.c", ErrMalformedToken},
		{"oversized", "Bearer " + strings.Repeat("a", 9000) + ".b.c", ErrMalformedToken},
		{"signed by another key under the same kid", sign(t, jwt.SigningMethodRS256, k.rsaOther, "rsa-1", claimsAt(nil)), ErrInvalidSignature},
		{"tampered payload", tamper(t, rs("rsa-1", nil)), ErrInvalidSignature},
		{"ES256 naming an RSA kid", sign(t, jwt.SigningMethodES256, k.ec, "rsa-1", claimsAt(nil)), ErrInvalidSignature},
		{"unknown kid", rs("rsa-9", nil), ErrUnknownKey},
		{"no kid", rs("", nil), ErrUnknownKey},
		{"kid of an encryption key", sign(t, jwt.SigningMethodRS256, k.rsaOther, "enc-1", claimsAt(nil)), ErrUnknownKey},
		{"expired beyond the leeway", rs("rsa-1", func(c jwt.MapClaims) { c["exp"] = t0.Add(-31 * time.Second).Unix() }), ErrExpired},
		{"not yet valid", rs("rsa-1", func(c jwt.MapClaims) { c["nbf"] = t0.Add(time.Minute).Unix() }), ErrNotYetValid},
		{"issued in the future", rs("rsa-1", func(c jwt.MapClaims) { c["iat"] = t0.Add(time.Minute).Unix() }), ErrNotYetValid},
		{"wrong issuer", rs("rsa-1", func(c jwt.MapClaims) { c["iss"] = "https://evil.example.com/" }), ErrWrongIssuer},
		{"wrong issuer and expired", rs("rsa-1", func(c jwt.MapClaims) {
			c["iss"] = "https://evil.example.com/"
			c["exp"] = t0.Add(-time.Hour).Unix()
		}), ErrWrongIssuer},
		{"development issuer", rs("rsa-1", func(c jwt.MapClaims) { c["iss"] = DevelopmentIssuer }), ErrWrongIssuer},
		{"wrong audience", rs("rsa-1", func(c jwt.MapClaims) { c["aud"] = []string{"other", "another"} }), ErrWrongAudience},
		{"no audience", rs("rsa-1", func(c jwt.MapClaims) { delete(c, "aud") }), ErrMissingClaims},
		{"alg none", noneToken, ErrDisallowedAlgorithm},
		{"HS256 with the public key as secret", sign(t, jwt.SigningMethodHS256, pubPEM, "rsa-1", claimsAt(nil)), ErrDisallowedAlgorithm},
		{"RS384", sign(t, jwt.SigningMethodRS384, k.rsa, "rsa-1", claimsAt(nil)), ErrDisallowedAlgorithm},
		{"PS256", sign(t, jwt.SigningMethodPS256, k.rsa, "rsa-1", claimsAt(nil)), ErrDisallowedAlgorithm},
		{"unknown alg", enc([]byte(`{"alg":"XX999","kid":"rsa-1"}`)) + "." + enc([]byte(`{}`)) + ".c2ln", ErrDisallowedAlgorithm},
		{"no alg", enc([]byte(`{"kid":"rsa-1"}`)) + "." + enc([]byte(`{}`)) + ".c2ln", ErrMalformedToken},
		{"missing tenant", rs("rsa-1", func(c jwt.MapClaims) { delete(c, "tenant") }), ErrMissingClaims},
		{"empty tenant", rs("rsa-1", func(c jwt.MapClaims) { c["tenant"] = "" }), ErrMissingClaims},
		{"operator false is not operator", rs("rsa-1", func(c jwt.MapClaims) {
			delete(c, "tenant")
			c["keyledger_operator"] = false
		}), ErrMissingClaims},
		{"missing sub", rs("rsa-1", func(c jwt.MapClaims) { delete(c, "sub") }), ErrMissingClaims},
		{"operator without sub", rs("rsa-1", func(c jwt.MapClaims) {
			delete(c, "sub")
			c["keyledger_operator"] = true
		}), ErrMissingClaims},
		{"missing exp", rs("rsa-1", func(c jwt.MapClaims) { delete(c, "exp") }), ErrMissingClaims},
		{"missing iss", rs("rsa-1", func(c jwt.MapClaims) { delete(c, "iss") }), ErrMissingClaims},
		{"tenant of the wrong type", rs("rsa-1", func(c jwt.MapClaims) { c["tenant"] = 42 }), ErrMalformedToken},
		{"operator flag of the wrong type", rs("rsa-1", func(c jwt.MapClaims) { c["keyledger_operator"] = "true" }), ErrMalformedToken},
		{"tenant with a newline", rs("rsa-1", func(c jwt.MapClaims) { c["tenant"] = "t1\nlevel=ERROR" }), ErrMalformedToken},
		{"overlong sub", rs("rsa-1", func(c jwt.MapClaims) { c["sub"] = strings.Repeat("u", 300) }), ErrMalformedToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Verify(t.Context(), tc.bearer)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("%v does not wrap ErrUnauthenticated", err)
			}
			if p != (Principal{}) {
				t.Fatalf("refused token still yields principal %+v", p)
			}
			if _, sig, ok := strings.Cut(strings.TrimPrefix(tc.bearer, "Bearer "), "."); ok && len(sig) > 8 && strings.Contains(err.Error(), sig) {
				t.Fatalf("error message contains the token: %v", err)
			}
		})
	}
}

// tamper changes the tenant in a signed token's payload, keeping the signature.
func tamper(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(payload), `"tenant":"t1"`, `"tenant":"t2"`, 1)
	if changed == string(payload) {
		t.Fatal("tamper: tenant not found")
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(changed))
	return strings.Join(parts, ".")
}

func TestLeeway(t *testing.T) {
	k := testKeys()
	v := fileVerifier(t) // default leeway 30s
	within := sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", claimsAt(func(c jwt.MapClaims) {
		c["exp"] = t0.Add(-20 * time.Second).Unix()
		c["nbf"] = t0.Add(20 * time.Second).Unix()
	}))
	if _, err := v.Verify(t.Context(), within); err != nil {
		t.Fatalf("token within the leeway refused: %v", err)
	}
	strict, err := New(t.Context(), Config{Issuer: testIssuer, JWKSFile: v.file.path, Leeway: time.Second, Now: fixedNow, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strict.Verify(t.Context(), within); !errors.Is(err, ErrExpired) {
		t.Fatalf("with 1s leeway: err = %v, want ErrExpired", err)
	}
}

func TestOperatorToken(t *testing.T) {
	k := testKeys()
	v := fileVerifier(t)
	for name, edit := range map[string]func(jwt.MapClaims){
		"without tenant": func(c jwt.MapClaims) { delete(c, "tenant"); c["keyledger_operator"] = true },
		"with a tenant":  func(c jwt.MapClaims) { c["keyledger_operator"] = true },
	} {
		t.Run(name, func(t *testing.T) {
			tok := sign(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", claimsAt(edit))
			p, err := v.Verify(t.Context(), "bearer "+tok)
			if err != nil {
				t.Fatal(err)
			}
			if want := (Principal{Subject: "u1", Operator: true}); p != want {
				t.Fatalf("principal %+v, want %+v (an operator has no tenant)", p, want)
			}
		})
	}
}

func TestNoAudienceConfiguredAcceptsAnyAudience(t *testing.T) {
	k := testKeys()
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksJSON(t, jwkEntry{kid: "ec-1", pub: &k.ec.PublicKey}), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := New(t.Context(), Config{Issuer: testIssuer, JWKSFile: path, Now: fixedNow, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for _, aud := range []any{nil, "elsewhere"} {
		tok := sign(t, jwt.SigningMethodES256, k.ec, "ec-1", claimsAt(func(c jwt.MapClaims) {
			if aud == nil {
				delete(c, "aud")
			} else {
				c["aud"] = aud
			}
		}))
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("aud %v: %v", aud, err)
		}
	}
}

// --- development mode ---

func TestDevelopmentRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // created on demand
	v, err := New(t.Context(), Config{DataDir: dir, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if !v.Development() || v.Issuer() != DevelopmentIssuer {
		t.Fatalf("Development() = %v, Issuer() = %q", v.Development(), v.Issuer())
	}
	fi, err := os.Stat(filepath.Join(dir, DevelopmentKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", perm)
	}
	for _, p := range []Principal{
		{Subject: "u1", Tenant: "t1"},
		{Subject: "root", Operator: true},
	} {
		tok, err := MintDevelopmentToken(dir, p, time.Hour, t0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(t.Context(), "Bearer "+tok)
		if err != nil {
			t.Fatal(err)
		}
		if got != p {
			t.Fatalf("principal %+v, want %+v", got, p)
		}
		// The token carries the claims the API and auditors rely on.
		var c claims
		if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
			t.Fatal(err)
		}
		if c.Issuer != DevelopmentIssuer || c.ID == "" || !c.IssuedAt.Equal(t0) || !c.NotBefore.Equal(t0) || !c.ExpiresAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("claims %+v", c)
		}
	}
	// Expiry is enforced for development tokens too.
	tok, err := MintDevelopmentToken(dir, Principal{Subject: "u1", Tenant: "t1"}, time.Minute, t0.Add(-2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired development token: err = %v", err)
	}
	// Two tokens never share a jti.
	a, _ := MintDevelopmentToken(dir, Principal{Subject: "u1", Tenant: "t1"}, time.Hour, t0)
	b, _ := MintDevelopmentToken(dir, Principal{Subject: "u1", Tenant: "t1"}, time.Hour, t0)
	if a == b {
		t.Fatal("two tokens minted at the same instant are identical (no random jti)")
	}
}

func TestDevelopmentKeySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	tok, err := MintDevelopmentToken(dir, Principal{Subject: "u1", Tenant: "t1"}, time.Hour, t0) // creates the key
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, DevelopmentKeyFile)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // two "restarts"
		v, err := New(t.Context(), Config{DataDir: dir, Now: fixedNow})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("restart %d: token minted before refused: %v", i, err)
		}
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Fatal("the development key was replaced")
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".dev-signing-key-*")); len(leftovers) > 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}
}

func TestDevelopmentKeyCreatedOnceUnderConcurrency(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	toks := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			toks[i], errs[i] = MintDevelopmentToken(dir, Principal{Subject: "u1", Tenant: "t1"}, time.Hour, t0)
		})
	}
	wg.Wait()
	v, err := New(t.Context(), Config{DataDir: dir, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("mint %d: %v", i, errs[i])
		}
		if _, err := v.Verify(t.Context(), toks[i]); err != nil {
			t.Fatalf("token %d, minted while the key was being created, refused: %v", i, err)
		}
	}
}

func TestDevelopmentRejectsForeignTokens(t *testing.T) {
	dir := t.TempDir()
	v, err := New(t.Context(), Config{DataDir: dir, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	own, err := readDevelopmentKey(filepath.Join(dir, DevelopmentKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	foreign, err := MintDevelopmentToken(other, Principal{Subject: "u1", Tenant: "t1"}, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), foreign); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("token from another data dir: err = %v, want ErrUnknownKey", err)
	}
	// Another key claiming our kid.
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	c := claimsAt(func(c jwt.MapClaims) { c["iss"] = DevelopmentIssuer; delete(c, "aud") })
	forged := sign(t, jwt.SigningMethodEdDSA, otherKey, own.kid, c)
	if _, err := v.Verify(t.Context(), forged); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("token signed by another key under our kid: err = %v, want ErrInvalidSignature", err)
	}
	// Our key, another issuer.
	c["iss"] = testIssuer
	if _, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodEdDSA, own.private, own.kid, c)); !errors.Is(err, ErrWrongIssuer) {
		t.Fatalf("development key, other issuer: err = %v, want ErrWrongIssuer", err)
	}
}

func TestDevelopmentKeyFileRefused(t *testing.T) {
	ed := testKeys().ed
	der, _ := x509.MarshalPKCS8PrivateKey(testKeys().ec)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	der, _ = x509.MarshalPKCS8PrivateKey(ed)
	edPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for _, tc := range []struct {
		name string
		data []byte
		mode os.FileMode
		want string
	}{
		{"readable by others", edPEM, 0o644, "chmod 600"},
		{"readable by the group", edPEM, 0o640, "chmod 600"},
		{"not PEM", []byte("hello"), 0o600, "not a PEM"},
		{"truncated DER", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x03}}), 0o600, "cannot be parsed"},
		{"not Ed25519", ecPEM, 0o600, "want an Ed25519 key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, DevelopmentKeyFile)
			if err := os.WriteFile(path, tc.data, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil { // umask-proof
				t.Fatal(err)
			}
			_, err := New(t.Context(), Config{DataDir: dir})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: err = %v, want one mentioning %q", err, tc.want)
			}
			if _, err := MintDevelopmentToken(dir, Principal{Subject: "u", Tenant: "t"}, time.Hour, t0); err == nil {
				t.Fatal("MintDevelopmentToken signed with a refused key file")
			}
			if got, _ := os.ReadFile(path); string(got) != string(tc.data) {
				t.Fatal("the refused key file was overwritten")
			}
		})
	}
	t.Run("a 0600 key written by hand is used", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, DevelopmentKeyFile), edPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		v, err := New(t.Context(), Config{DataDir: dir, Now: fixedNow})
		if err != nil {
			t.Fatal(err)
		}
		c := claimsAt(func(c jwt.MapClaims) { c["iss"] = DevelopmentIssuer; delete(c, "aud") })
		tok := sign(t, jwt.SigningMethodEdDSA, ed, ed25519Thumbprint(ed.Public().(ed25519.PublicKey)), c)
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
	})
}

func TestMintDevelopmentTokenRefuses(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		p   Principal
		ttl time.Duration
	}{
		"no subject":             {Principal{Tenant: "t1"}, time.Hour},
		"no tenant":              {Principal{Subject: "u1"}, time.Hour},
		"operator with a tenant": {Principal{Subject: "u1", Tenant: "t1", Operator: true}, time.Hour},
		"zero lifetime":          {Principal{Subject: "u1", Tenant: "t1"}, 0},
		"negative lifetime":      {Principal{Subject: "u1", Tenant: "t1"}, -time.Hour},
		"tenant with a space":    {Principal{Subject: "u1", Tenant: "t 1"}, time.Hour},
	} {
		if tok, err := MintDevelopmentToken(dir, tc.p, tc.ttl, t0); err == nil {
			t.Errorf("%s: minted %q", name, tok)
		}
	}
	if _, err := MintDevelopmentToken("", Principal{Subject: "u1", Tenant: "t1"}, time.Hour, t0); err == nil {
		t.Error("minted without a data dir")
	}
}

// --- configuration ---

func TestConfigErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksJSON(t, jwkEntry{kid: "ec-1", pub: &testKeys().ec.PublicKey}), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"issuer without JWKS", Config{Issuer: testIssuer}, "without a JWKS URL or file"},
		{"both JWKS URL and file", Config{Issuer: testIssuer, JWKSURL: "https://idp.example.com/jwks", JWKSFile: path}, "exactly one"},
		{"remote http URL", Config{Issuer: testIssuer, JWKSURL: "http://idp.example.com/jwks"}, "use https"},
		{"remote http URL on a private address", Config{Issuer: testIssuer, JWKSURL: "http://10.0.0.1/jwks"}, "use https"},
		{"other scheme", Config{Issuer: testIssuer, JWKSURL: "ftp://idp.example.com/jwks"}, "want https"},
		{"URL without host", Config{Issuer: testIssuer, JWKSURL: "https:///jwks"}, "no host"},
		{"JWKS without issuer", Config{JWKSURL: "https://idp.example.com/jwks", DataDir: dir}, "without an issuer"},
		{"JWKS file without issuer", Config{JWKSFile: path, DataDir: dir}, "without an issuer"},
		{"audience in development mode", Config{Audience: "x", DataDir: dir}, "without an issuer"},
		{"development without data dir", Config{}, "data directory"},
		{"reserved issuer", Config{Issuer: DevelopmentIssuer, JWKSFile: path}, "reserved"},
		{"negative leeway", Config{Issuer: testIssuer, JWKSFile: path, Leeway: -time.Second}, "leeway"},
		{"huge leeway", Config{Issuer: testIssuer, JWKSFile: path, Leeway: time.Hour}, "leeway"},
		{"missing JWKS file", Config{Issuer: testIssuer, JWKSFile: filepath.Join(dir, "nope.json")}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = quiet
			v, err := New(t.Context(), tc.cfg)
			if err == nil {
				t.Fatalf("New accepted %+v", tc.cfg)
			}
			if v != nil {
				t.Fatal("New returned a verifier with an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestJWKSFileRefused(t *testing.T) {
	k := testKeys()
	good := jwksJSON(t, jwkEntry{kid: "ec-1", pub: &k.ec.PublicKey})
	private := jwkset.NewMemoryStorage()
	pk, err := jwkset.NewJWKFromKey(k.ec, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "ec-1"}, Marshal: jwkset.JWKMarshalOptions{Private: true}})
	if err != nil {
		t.Fatal(err)
	}
	_ = private.KeyWrite(t.Context(), pk)
	privateJSON, err := private.JSONPrivate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data string
		want string
	}{
		{"not JSON", "{", "not a JWK set"},
		{"empty set", `{"keys":[]}`, "no keys"},
		{"no kid", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`, "no kid"},
		{"duplicate kid", strings.Replace(string(jwksJSON(t, jwkEntry{kid: "a", pub: &k.ec.PublicKey}, jwkEntry{kid: "b", pub: k.ed.Public()})), `"b"`, `"a"`, 1), "twice"},
		{"symmetric key", `{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}`, "symmetric"},
		{"private key", string(privateJSON), "private key material"},
		{"bad key", strings.Replace(string(good), `"crv":"P-256"`, `"crv":"P-999"`, 1), "ec-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "jwks.json")
			if err := os.WriteFile(path, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := New(t.Context(), Config{Issuer: testIssuer, JWKSFile: path, Logger: quiet})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestJWKSFileReload(t *testing.T) {
	k := testKeys()
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksJSON(t, jwkEntry{kid: "rsa-1", pub: &k.rsa.PublicKey}), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := New(t.Context(), Config{Issuer: testIssuer, JWKSFile: path, Now: fixedNow, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	v.file.checkEvery = 0 // look at the file on every Verify
	old := sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", claimsAt(nil))
	rotated := sign(t, jwt.SigningMethodEdDSA, k.ed, "ed-2", claimsAt(nil))
	if _, err := v.Verify(t.Context(), rotated); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("before rotation: err = %v, want ErrUnknownKey", err)
	}
	mtime := time.Now().Add(time.Minute) // a distinct modification time, whatever the file system's granularity
	rewrite := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		mtime = mtime.Add(time.Minute)
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	rewrite(jwksJSON(t, jwkEntry{kid: "ed-2", pub: k.ed.Public()}))
	if _, err := v.Verify(t.Context(), rotated); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if _, err := v.Verify(t.Context(), old); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("key removed from the file still trusted: err = %v", err)
	}
	rewrite([]byte("{broken"))
	if _, err := v.Verify(t.Context(), rotated); err != nil {
		t.Fatalf("a broken rewrite dropped the keys read last: %v", err)
	}
}

// --- JWKS URL ---

// jwksServer serves whatever set is stored in it, counting requests.
type jwksServer struct {
	set  atomic.Pointer[[]byte]
	hits atomic.Int64
}

func (s *jwksServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.hits.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(*s.set.Load())
}

func TestJWKSURLWithRotation(t *testing.T) {
	k := testKeys()
	for _, tlsOn := range []bool{true, false} {
		name := "https"
		if !tlsOn {
			name = "loopback http"
		}
		t.Run(name, func(t *testing.T) {
			js := &jwksServer{}
			first := jwksJSON(t, jwkEntry{kid: "rsa-1", pub: &k.rsa.PublicKey})
			js.set.Store(&first)
			var srv *httptest.Server
			if tlsOn {
				srv = httptest.NewTLSServer(js)
			} else {
				srv = httptest.NewServer(js)
			}
			defer srv.Close()
			v, err := New(t.Context(), Config{
				Issuer: testIssuer, JWKSURL: srv.URL + "/jwks", Audience: testAudience,
				HTTPClient: srv.Client(), Now: fixedNow, Logger: quiet,
			})
			if err != nil {
				t.Fatal(err)
			}
			if js.hits.Load() != 1 {
				t.Fatalf("JWKS fetched %d times by New, want 1", js.hits.Load())
			}
			old := sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", claimsAt(nil))
			if p, err := v.Verify(t.Context(), old); err != nil || p.Tenant != "t1" {
				t.Fatalf("Verify = %+v, %v", p, err)
			}
			if js.hits.Load() != 1 {
				t.Fatal("a known kid caused a fetch")
			}

			// The issuer rotates: a new kid appears, the old one goes.
			rotated := jwksJSON(t, jwkEntry{kid: "ec-2", pub: &k.ec.PublicKey})
			js.set.Store(&rotated)
			tok := sign(t, jwt.SigningMethodES256, k.ec, "ec-2", claimsAt(nil))
			if _, err := v.Verify(t.Context(), tok); err != nil {
				t.Fatalf("token with the new kid: %v", err)
			}
			if js.hits.Load() != 2 {
				t.Fatalf("JWKS fetched %d times, want 2 (one refresh for the new kid)", js.hits.Load())
			}
			if _, err := v.Verify(t.Context(), old); !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("retired kid: err = %v, want ErrUnknownKey", err)
			}
			// Unknown kids do not hammer the issuer: the refresh is rate-limited.
			for i := range 5 {
				forged := sign(t, jwt.SigningMethodES256, k.ec, "forged-"+string(rune('a'+i)), claimsAt(nil))
				if _, err := v.Verify(t.Context(), forged); !errors.Is(err, ErrUnknownKey) {
					t.Fatalf("forged kid: err = %v, want ErrUnknownKey", err)
				}
			}
			if n := js.hits.Load(); n != 2 {
				t.Fatalf("JWKS fetched %d times after forged kids, want still 2", n)
			}
		})
	}
}

func TestJWKSURLUnreachableAtStart(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/jwks"
	srv.Close() // nothing listens there any more
	v, err := New(t.Context(), Config{Issuer: testIssuer, JWKSURL: url, Now: fixedNow, Logger: quiet})
	if err != nil {
		t.Fatalf("an unreachable identity provider stopped start-up: %v", err)
	}
	tok := sign(t, jwt.SigningMethodRS256, testKeys().rsa, "rsa-1", claimsAt(nil))
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrUnknownKey", err)
	}
}

func TestJWKSURLCheck(t *testing.T) {
	for url, ok := range map[string]bool{
		"https://idp.example.com/jwks":    true,
		"http://127.0.0.1:8080/jwks":      true,
		"http://127.1.2.3/jwks":           true,
		"http://[::1]:9000/jwks":          true,
		"http://localhost:9000/jwks":      true,
		"http://idp.example.com/jwks":     false,
		"http://localhost.evil.com/jwks":  false,
		"http://192.168.1.1/jwks":         false,
		"file:///etc/jwks.json":           false,
		"https://":                        false,
		"http://127.0.0.1.nip.io/jwks":    false,
		"HTTPS://idp.example.com/jwks":    true,
		"https://idp.example.com:8443/jw": true,
	} {
		if err := checkJWKSURL(url); (err == nil) != ok {
			t.Errorf("checkJWKSURL(%q) = %v, want ok=%v", url, err, ok)
		}
	}
}

func TestCodesAreDistinct(t *testing.T) {
	seen := map[string]error{}
	for _, c := range codes {
		if got := Code(fmt.Errorf("wrapped: %w", c.err)); got != c.code {
			t.Errorf("Code(%v) = %q, want %q", c.err, got, c.code)
		}
		if prev, dup := seen[c.code]; dup {
			t.Errorf("%v and %v share the code %q", prev, c.err, c.code)
		}
		seen[c.code] = c.err
		for _, other := range codes {
			if other.err != c.err && errors.Is(c.err, other.err) {
				t.Errorf("%v matches %v too", c.err, other.err)
			}
		}
	}
	if Code(errors.New("disk full")) != "" || Code(ErrUnauthenticated) != "token_invalid" {
		t.Error("Code of a non-authentication error or of the bare ErrUnauthenticated")
	}
}
