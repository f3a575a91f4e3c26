package voucher_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/keys"
	"github.com/keyledger/keyledger/domain/purpose"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/voucher"
)

// The fixed clock of the tests.
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

const (
	audience   = "auth.example.org/client-assertion"
	esAudience = "payments.example.org/api"
	issuer     = "https://auth.example.org"
	apiAud     = "https://auth.example.org/v1"

	esClient  = "6f1c0e1e-0d9a-4f4e-9a51-3c1f1f9e0a01" // e-service client, RSA and Ed25519 keys
	apiClient = "0b7e7d58-5f0c-4d35-8a3e-0f6bb1a5e2c2" // API client, P-256 key
	p384Cli   = "9e0f4c2a-3b1d-4c5e-8f7a-6b5c4d3e2f10" // API client, P-384 key
	other     = "1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d" // e-service client with another RSA key
	purposeA  = "a7c3c1f5-6a2b-4d3e-9f10-11aa22bb33cc"
	eserviceA = "e5e5e5e5-1111-4222-8333-944444444444"
)

// key is a test client key: its private half and its registered public half.
type key struct {
	priv crypto.Signer
	pem  string
	kid  string
	alg  string
}

var (
	fixturesOnce sync.Once
	fx           struct{ rsa, rsaOther, p256, p384, ed, rsaSpare key }
)

// fixtures generates the test keys once per test binary (RSA generation is slow).
func fixtures(t testing.TB) *struct{ rsa, rsaOther, p256, p384, ed, rsaSpare key } {
	t.Helper()
	fixturesOnce.Do(func() {
		mk := func(priv crypto.Signer) key {
			der, err := x509.MarshalPKIXPublicKey(priv.Public())
			if err != nil {
				panic(err)
			}
			k, err := keys.Parse(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
			if err != nil {
				panic(err)
			}
			return key{priv: priv, pem: k.PEM(), kid: k.KID(), alg: k.DefaultAlg()}
		}
		rsaKey := func() crypto.Signer {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			return k
		}
		ecKey := func(c elliptic.Curve) crypto.Signer {
			k, err := ecdsa.GenerateKey(c, rand.Reader)
			if err != nil {
				panic(err)
			}
			return k
		}
		_, ed, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		fx.rsa, fx.rsaOther, fx.rsaSpare = mk(rsaKey()), mk(rsaKey()), mk(rsaKey())
		fx.p256, fx.p384, fx.ed = mk(ecKey(elliptic.P256())), mk(ecKey(elliptic.P384())), mk(ed)
	})
	return &fx
}

// fakeEntries is an in-memory voucher read model. It counts lookups, and can fail.
type fakeEntries struct {
	mu      sync.Mutex
	entries map[string]models.VoucherEntry
	fail    error
	calls   atomic.Int64
}

func (f *fakeEntries) Entry(_ context.Context, clientID, kid, purposeID string) (models.VoucherEntry, bool, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return models.VoucherEntry{}, false, f.fail
	}
	e, ok := f.entries[models.EntryKey(clientID, kid, purposeID)]
	return e, ok, nil
}

func (f *fakeEntries) put(e models.VoucherEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries[models.EntryKey(e.ClientID, e.KID, e.PurposeID)] = e
}

func (f *fakeEntries) update(clientID, kid, purposeID string, change func(*models.VoucherEntry)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := models.EntryKey(clientID, kid, purposeID)
	e := f.entries[k]
	change(&e)
	f.entries[k] = e
}

// probingEntries adds a KeyProbe: it knows which keys each client has, and its kind.
type probingEntries struct {
	*fakeEntries
	clients map[string]client.Kind
	keys    map[string]bool // clientID + " " + kid
}

func (p probingEntries) ProbeKey(_ context.Context, clientID, kid string) (client.Kind, bool, error) {
	if !p.keys[clientID+" "+kid] {
		return "", false, nil
	}
	return p.clients[clientID], true, nil
}

// world is the read model of the tests: client esClient (e-service) has the RSA and
// Ed25519 keys and purpose purposeA of e-service eserviceA, all active; apiClient (API)
// has the P-256 key; p384Cli (API) the P-384 key; other (e-service) the second RSA key.
func world(t testing.TB) *fakeEntries {
	k := fixtures(t)
	f := &fakeEntries{entries: map[string]models.VoucherEntry{}}
	es := func(clientID string, k key) models.VoucherEntry {
		return models.VoucherEntry{ClientID: clientID, ClientKind: client.KindEService, Tenant: "acme", KID: k.kid,
			PEM: k.pem, Use: "sig", Alg: k.alg, PurposeID: purposeA, PurposeState: purpose.StateActive,
			EServiceID: eserviceA, EServiceState: models.EServiceActive, Audience: esAudience,
			VoucherLifetimeSeconds: 600, Position: "42"}
	}
	api := func(clientID string, k key) models.VoucherEntry {
		return models.VoucherEntry{ClientID: clientID, ClientKind: client.KindAPI, Tenant: "acme", KID: k.kid,
			PEM: k.pem, Use: "sig", Alg: k.alg, Position: "43"}
	}
	f.put(es(esClient, k.rsa))
	f.put(es(esClient, k.ed))
	f.put(api(apiClient, k.p256))
	f.put(api(p384Cli, k.p384))
	f.put(es(other, k.rsaOther))
	return f
}

// withProbe gives the world a KeyProbe.
func withProbe(t testing.TB, f *fakeEntries) probingEntries {
	k := fixtures(t)
	return probingEntries{fakeEntries: f,
		clients: map[string]client.Kind{esClient: client.KindEService, apiClient: client.KindAPI, p384Cli: client.KindAPI, other: client.KindEService},
		keys: map[string]bool{esClient + " " + k.rsa.kid: true, esClient + " " + k.ed.kid: true,
			apiClient + " " + k.p256.kid: true, p384Cli + " " + k.p384.kid: true, other + " " + k.rsaOther.kid: true}}
}

// newVerifier builds a Verifier on entries with the fixed clock and a memory replay
// cache.
func newVerifier(t testing.TB, entries voucher.Entries, change ...func(*voucher.Config)) *voucher.Verifier {
	t.Helper()
	now := func() time.Time { return t0 }
	cfg := voucher.Config{Audience: audience, Entries: entries, Replay: voucher.NewMemoryReplayCache(1000, now), Now: now}
	for _, c := range change {
		c(&cfg)
	}
	v, err := voucher.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// claims are an assertion's claims; header its header. A nil value deletes a member.
type (
	claims map[string]any
	header map[string]any
)

// goodClaims are the claims of a valid e-service assertion of esClient for purposeA.
func goodClaims() claims {
	return claims{"iss": esClient, "sub": esClient, "aud": audience, "jti": uuid.NewString(),
		"iat": t0.Unix() - 5, "exp": t0.Unix() + 55, "purposeId": purposeA}
}

// apiClaims are the claims of a valid assertion of apiClient.
func apiClaims() claims {
	c := goodClaims()
	c["iss"], c["sub"], c["purposeId"] = apiClient, apiClient, nil
	return c
}

func (c claims) with(kv ...any) claims {
	out := claims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// segment base64url-encodes the JSON of m, leaving out nil members.
func segment(t testing.TB, m map[string]any) string {
	t.Helper()
	clean := map[string]any{}
	for k, v := range m {
		if v != nil {
			clean[k] = v
		}
	}
	b, err := json.Marshal(clean)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// methodOf is golang-jwt's implementation of alg (including HS256 and none, for
// attacks).
func methodOf(alg string) jwt.SigningMethod {
	if alg == "none" {
		return jwt.SigningMethodNone
	}
	return jwt.GetSigningMethod(alg)
}

// mint signs an assertion: header {alg: k.alg, kid: k.kid, typ: JWT} changed by h,
// claims c, signed with k's private key under the header's alg.
func mint(t testing.TB, k key, c claims, h header) string {
	t.Helper()
	hd := map[string]any{"alg": k.alg, "kid": k.kid, "typ": "JWT"}
	for name, v := range h {
		hd[name] = v
	}
	si := segment(t, hd) + "." + segment(t, c)
	alg, _ := hd["alg"].(string)
	var signKey any = k.priv
	switch alg {
	case "none":
		signKey = jwt.UnsafeAllowNoneSignatureType
	case "HS256":
		signKey = []byte(k.pem) // the classic alg-confusion attack: the public key as HMAC secret
	}
	m := methodOf(alg)
	if m == nil {
		return si + "." + base64.RawURLEncoding.EncodeToString([]byte("not a signature"))
	}
	sig, err := m.Sign(si, signKey)
	if err != nil {
		t.Fatalf("sign %s: %v", alg, err)
	}
	return si + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// request is a token request carrying assertion.
func request(assertion string) voucher.TokenRequest {
	return voucher.TokenRequest{ClientAssertion: assertion}
}

// oauthError returns err as an *voucher.Error, failing the test when it is not one.
func oauthError(t testing.TB, err error) *voucher.Error {
	t.Helper()
	var oe *voucher.Error
	if !errors.As(err, &oe) {
		t.Fatalf("error %v (%T) is not a *voucher.Error", err, err)
	}
	return oe
}
