package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyledger/keyledger/api"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/runner"
	"github.com/keyledger/keyledger/voucher"
)

// signerReload is how often a server re-reads its signing keys, so that a rotation by
// `keyledger signing-key rotate` (or another replica) reaches it.
const signerReload = 30 * time.Second

// replayPrefix prefixes the replay cache's Redis keys.
const replayPrefix = "keyledger:jti:"

// openSigner opens the voucher signing keys the configuration names.
func openSigner(cfg *Config) (*voucher.Signer, error) {
	sc := voucher.SignerConfig{Algorithm: cfg.SigningAlg}
	if len(cfg.SigningKeyFiles) > 0 {
		sc.Files = cfg.SigningKeyFiles
	} else {
		sc.Dir = cfg.signingKeyDir()
	}
	s, err := voucher.OpenSigner(sc)
	if err != nil {
		return nil, fmt.Errorf("voucher signing keys: %w", err)
	}
	return s, nil
}

// voucherPath builds the token endpoint's parts: signer, assertion verifier (entries
// from the voucher read model, jti replay in Redis when configured), issuer, batching
// audit writer and the verifier of API clients' vouchers. stop ends the signer reloads
// and drains the audit writer.
func voucherPath(ctx context.Context, cfg *Config, log *slog.Logger, store eventstore.Store,
	reader *runner.Reader, rdb redis.UniversalClient) (v *api.Vouchers, stop func(), err error) {
	signer, err := openSigner(cfg)
	if err != nil {
		return nil, nil, err
	}
	if cur := signer.Current(); cur.Alg != signer.Algorithm() {
		log.Warn("vouchers are signed with a key of another algorithm than signing-alg; rotate to switch",
			"signing_alg", signer.Algorithm(), "current_key_alg", cur.Alg, "kid", cur.KID)
	}
	var replay voucher.ReplayCache = voucher.NewMemoryReplayCache(0, nil)
	if rdb != nil {
		replay = voucher.NewRedisReplayCache(rdb, replayPrefix)
	}
	skew := cfg.ClockSkew
	if skew == 0 {
		skew = -1 // the voucher package reads 0 as its default
	}
	verifier, err := voucher.NewVerifier(voucher.Config{Audience: cfg.assertionAudience(), MaxLifetime: cfg.AssertionMaxLifetime,
		Skew: skew, Entries: api.VoucherEntries(reader), Replay: replay})
	if err != nil {
		return nil, nil, err
	}
	issuer, err := voucher.NewIssuer(voucher.IssuerConfig{Issuer: cfg.issuer(), APIAudience: cfg.apiAudience(),
		APILifetime: cfg.APIVoucherLifetime, Signer: signer})
	if err != nil {
		return nil, nil, err
	}
	apiVouchers, err := voucher.NewAPIVoucherVerifier(signer, cfg.issuer(), cfg.apiAudience(), max(cfg.ClockSkew, time.Second), nil)
	if err != nil {
		return nil, nil, err
	}
	audit, err := voucher.NewAuditWriter(voucher.AuditConfig{Store: store})
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(signerReload)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				if err := signer.Reload(); err != nil {
					log.Error("reloading the voucher signing keys; keeping the previous ones", "error", err.Error())
				}
			}
		}
	}()
	stop = func() {
		cancel()
		<-done
		if err := audit.Close(); err != nil {
			log.Error("closing the voucher audit writer", "error", err.Error())
		}
	}
	return &api.Vouchers{Issuer: cfg.issuer(), Verifier: verifier, Tokens: issuer, Signer: signer, Audit: audit,
		API: apiVouchers}, stop, nil
}
