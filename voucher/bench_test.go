package voucher_test

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyledger/keyledger/voucher"
)

// The in-process crypto bound of the token path, on all cores (b.RunParallel): verify
// one client assertion signed RS256 with a 2048-bit key, and sign one voucher. Its
// ops/s is the ceiling the HTTP load generator's tokens/s is compared with:
//
//	go test -run '^$' -bench CryptoBound ./voucher/
func BenchmarkCryptoBoundRS256(b *testing.B) { benchCryptoBound(b, voucher.AlgRS256) }

// BenchmarkCryptoBoundES256 is the bound for ES256 vouchers (the assertion is still
// RS256, as the reference platform's clients sign).
func BenchmarkCryptoBoundES256(b *testing.B) { benchCryptoBound(b, voucher.AlgES256) }

// BenchmarkCryptoBoundEdDSA is the bound for EdDSA vouchers.
func BenchmarkCryptoBoundEdDSA(b *testing.B) { benchCryptoBound(b, voucher.AlgEdDSA) }

func benchCryptoBound(b *testing.B, alg string) {
	k := fixtures(b)
	s, err := voucher.OpenSigner(voucher.SignerConfig{Dir: b.TempDir(), Algorithm: alg})
	if err != nil {
		b.Fatal(err)
	}
	assertion := mint(b, k.rsa, goodClaims(), nil)
	i := strings.LastIndexByte(assertion, '.')
	signingInput := assertion[:i]
	sig, err := base64.RawURLEncoding.DecodeString(assertion[i+1:])
	if err != nil {
		b.Fatal(err)
	}
	pub := k.rsa.priv.Public()
	claims := map[string]any{"iss": issuer, "sub": esClient, "client_id": esClient, "aud": esAudience,
		"purposeId": purposeA, "jti": "0b2d5c1e-7f0a-4c3b-9d8e-1a2b3c4d5e6f", "iat": t0.Unix(), "nbf": t0.Unix(), "exp": t0.Unix() + 600}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := jwt.SigningMethodRS256.Verify(signingInput, sig, pub); err != nil {
				b.Error(err)
				return
			}
			if _, _, err := s.Sign(claims); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkTokenPathRS256 is the whole in-process token path on all cores: every check
// of Verify (one in-memory read-model lookup, the replay check) and Issue, for an RS256
// assertion and an RS256 voucher. Its distance from the crypto bound is what the
// checks and encoding cost.
func BenchmarkTokenPathRS256(b *testing.B) { benchTokenPath(b, voucher.AlgRS256) }

// BenchmarkTokenPathES256 is the same with an ES256 voucher.
func BenchmarkTokenPathES256(b *testing.B) { benchTokenPath(b, voucher.AlgES256) }

func benchTokenPath(b *testing.B, alg string) {
	k := fixtures(b)
	s, err := voucher.OpenSigner(voucher.SignerConfig{Dir: b.TempDir(), Algorithm: alg})
	if err != nil {
		b.Fatal(err)
	}
	iss, err := voucher.NewIssuer(voucher.IssuerConfig{Issuer: issuer, APIAudience: apiAud, Signer: s, Now: func() time.Time { return t0 }})
	if err != nil {
		b.Fatal(err)
	}
	// Replay protection is exercised (a fresh pair per request would need a fresh
	// signature per request, which is the load generator's job): a cache that always
	// answers fresh keeps one pre-signed assertion valid.
	v := newVerifier(b, world(b), func(c *voucher.Config) { c.Replay = alwaysFresh{} })
	req := request(mint(b, k.rsa, goodClaims(), nil))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a, err := v.Verify(ctx, req)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := iss.Issue(a); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

type alwaysFresh struct{}

func (alwaysFresh) Use(context.Context, string, string, time.Time) (bool, error) { return true, nil }

// BenchmarkMemoryReplayCache is one Use of a fresh pair, on all cores, with pairs
// expiring as fast as they come (the clock advances 1µs per call, each pair lives 1ms).
func BenchmarkMemoryReplayCache(b *testing.B) {
	var clock, ids atomic.Int64
	now := func() time.Time { return t0.Add(time.Duration(clock.Add(1)) * time.Microsecond) }
	c := voucher.NewMemoryReplayCache(0, now)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := strconv.FormatInt(ids.Add(1), 36)
			if _, err := c.Use(ctx, esClient, id, now().Add(time.Millisecond)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
