package main

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/purpose"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/voucher"
)

// formContentType is the Content-Type of every token request.
const formContentType = "application/x-www-form-urlencoded"

// boundWorld is what the in-process bound needs of the seeded world: the read-model
// entry of every load key, as the server's voucher model holds it.
type boundWorld struct {
	issuer   string
	audience string // the assertion audience
	entries  map[string]models.VoucherEntry
}

func newBoundWorld(w *world, keys []loadKey, issuer, audience string) boundWorld {
	bw := boundWorld{issuer: issuer, audience: audience, entries: map[string]models.VoucherEntry{}}
	for _, k := range keys {
		e := models.VoucherEntry{ClientID: k.clientID, ClientKind: client.KindEService, Tenant: w.ConsumerTenant,
			KID: k.key.kid, PEM: k.key.pem, Use: "sig", Alg: "RS256",
			PurposeID: w.PurposeID, PurposeState: purpose.StateActive,
			EServiceID: w.EServiceID, EServiceState: models.EServiceActive,
			Audience: w.EServiceAudience, VoucherLifetimeSeconds: w.VoucherLifetime, Position: "1"}
		bw.entries[models.EntryKey(e.ClientID, e.KID, e.PurposeID)] = e
	}
	return bw
}

// measureBound measures, for one voucher algorithm, on GOMAXPROCS goroutines for d
// each:
//
//   - the token path in process: voucher.ParseTokenRequest, Verifier.Verify (an
//     in-memory read model, a MemoryReplayCache) and Issuer.Issue (a Signer of alg) of
//     the pool's pre-signed RS256 assertions — everything the server does for a token
//     but HTTP and the audit append;
//   - the bare crypto: one RS256 verification of an assertion and one Signer.Sign of a
//     voucher's claims (as voucher's BenchmarkCryptoBound* do).
//
// The pool's assertions are distinct; when the path has used them all it goes on with a
// fresh Verifier (an empty replay cache), as a fresh server would.
func measureBound(ctx context.Context, alg string, bw boundWorld, p *pool, d time.Duration, tmp string) (bound, error) {
	b := bound{alg: alg}
	s, err := voucher.OpenSigner(voucher.SignerConfig{Dir: tmp, Algorithm: alg})
	if err != nil {
		return b, err
	}
	iss, err := voucher.NewIssuer(voucher.IssuerConfig{Issuer: bw.issuer, APIAudience: strings.TrimSuffix(bw.issuer, "/") + "/v1", Signer: s})
	if err != nil {
		return b, err
	}
	entries := voucher.EntriesFunc(func(_ context.Context, clientID, kid, purposeID string) (models.VoucherEntry, bool, error) {
		e, ok := bw.entries[models.EntryKey(clientID, kid, purposeID)]
		return e, ok, nil
	})
	n := len(p.items)
	if n == 0 {
		return b, errors.New("the bound needs pre-signed assertions")
	}
	var mu sync.Mutex
	verifiers := map[int64]*voucher.Verifier{}
	verifierOf := func(round int64) (*voucher.Verifier, error) {
		mu.Lock()
		defer mu.Unlock()
		if v, ok := verifiers[round]; ok {
			return v, nil
		}
		v, err := voucher.NewVerifier(voucher.Config{Audience: bw.audience, Entries: entries, Replay: voucher.NewMemoryReplayCache(0, nil)})
		if err != nil {
			return nil, err
		}
		verifiers[round] = v
		delete(verifiers, round-2) // rounds only move forward
		return v, nil
	}
	if _, err := verifierOf(0); err != nil {
		return b, err
	}

	var next atomic.Int64
	ops, sec, err := onAllCores(ctx, d, func() error {
		i := next.Add(1) - 1
		v, err := verifierOf(i / int64(n))
		if err != nil {
			return err
		}
		it := p.items[i%int64(n)]
		req, err := voucher.ParseTokenRequest(formContentType, it.body)
		if err != nil {
			return err
		}
		a, err := v.Verify(ctx, req)
		if err != nil {
			return fmt.Errorf("in-process verify: %w", err)
		}
		_, err = iss.Issue(a)
		return err
	})
	if err != nil {
		return b, err
	}
	b.pathOps, b.pathSec = ops, sec

	// The bare crypto, on the pool's assertions and their keys.
	type verification struct {
		pub    *rsa.PublicKey
		digest []byte
		sig    []byte
	}
	vs := make([]verification, min(n, 4096))
	for i := range vs {
		it := p.items[i]
		a := it.assertion()
		dot := strings.LastIndexByte(a, '.')
		sig, err := base64.RawURLEncoding.DecodeString(a[dot+1:])
		if err != nil {
			return b, err
		}
		sum := sha256.Sum256([]byte(a[:dot]))
		vs[i] = verification{pub: &p.keys[it.key].key.priv.PublicKey, digest: sum[:], sig: sig}
	}
	now := time.Now().Unix()
	claims := map[string]any{"iss": bw.issuer, "sub": p.keys[0].clientID, "client_id": p.keys[0].clientID,
		"aud": "https://api.bench.example/eservice", "purposeId": p.purposeID, "jti": "0b2d5c1e-7f0a-4c3b-9d8e-1a2b3c4d5e6f",
		"iat": now, "nbf": now, "exp": now + 600}
	next.Store(0)
	ops, sec, err = onAllCores(ctx, d, func() error {
		v := vs[(next.Add(1)-1)%int64(len(vs))]
		if err := rsa.VerifyPKCS1v15(v.pub, crypto.SHA256, v.digest, v.sig); err != nil {
			return fmt.Errorf("verify a pre-signed assertion: %w", err)
		}
		_, _, err := s.Sign(claims)
		return err
	})
	if err != nil {
		return b, err
	}
	b.cryptoOps, b.cryptoSec = ops, sec
	return b, nil
}

// onAllCores runs op in a loop on GOMAXPROCS goroutines for d and returns how many ops
// completed and the seconds they took (from the start until the last goroutine
// stopped).
func onAllCores(ctx context.Context, d time.Duration, op func() error) (float64, float64, error) {
	procs := runtime.GOMAXPROCS(0)
	var count atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, procs)
	start := time.Now()
	deadline := start.Add(d)
	for w := range procs {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if err := op(); err != nil {
					errs[w] = err
					return
				}
				count.Add(1)
			}
		})
	}
	wg.Wait()
	took := time.Since(start).Seconds()
	if err := errors.Join(errs...); err != nil {
		return 0, 0, err
	}
	return float64(count.Load()), took, ctx.Err()
}
