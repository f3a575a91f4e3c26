package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"golang.org/x/time/rate"
)

const (
	// jwksHTTPTimeout bounds one fetch of a remote JWKS.
	jwksHTTPTimeout = 10 * time.Second
	// jwksRefreshInterval is how often a remote JWKS is fetched in the background.
	jwksRefreshInterval = time.Hour
	// jwksUnknownKIDEvery is the least time between two fetches caused by tokens naming
	// an unknown kid, so that forged kids cannot make Keyledger hammer the issuer.
	jwksUnknownKIDEvery = 30 * time.Second
	// jwksUnknownKIDWait bounds how long a request waits for such a fetch; a request
	// that would wait longer for the rate limiter fails at once with ErrUnknownKey.
	jwksUnknownKIDWait = 5 * time.Second
	// jwksFileCheckEvery is how often the JWKS file's modification time is looked at.
	jwksFileCheckEvery = 5 * time.Second
	// maxJWKSFileBytes caps the JWKS file.
	maxJWKSFileBytes = 1 << 20
)

// urlKeys trusts the keys published at cfg.JWKSURL, refreshed in the background until
// ctx ends, and on an unknown kid (rate-limited).
func urlKeys(ctx context.Context, cfg Config) (keyfunc.Keyfunc, error) {
	if err := checkJWKSURL(cfg.JWKSURL); err != nil {
		return nil, err
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{
			Timeout: jwksHTTPTimeout,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 5 {
					return errors.New("too many redirects")
				}
				return checkJWKSURL(req.URL.String()) // never downgrade to plain http
			},
		}
	}
	log := cfg.Logger
	noErrorOnFirstFetch := true
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:                    client,
		HTTPTimeout:               jwksHTTPTimeout,
		NoErrorReturnFirstHTTPReq: &noErrorOnFirstFetch,
		RateLimitWaitMax:          jwksUnknownKIDWait,
		RefreshInterval:           jwksRefreshInterval,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(jwksUnknownKIDEvery), 1),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				log.ErrorContext(ctx, "cannot fetch the user token issuer's JWKS; tokens signed with keys not yet known are refused", "url", u, "error", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS URL %s: %w", cfg.JWKSURL, err)
	}
	return keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: kf.Storage(), UseWhitelist: signingUses})
}

// checkJWKSURL admits https URLs, and http only on a loopback address, where no one on
// the network can swap the keys.
func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("auth: JWKS URL: %w", err)
	}
	if u.Host == "" {
		return fmt.Errorf("auth: JWKS URL %q has no host", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("auth: JWKS URL %q: http is allowed only on a loopback address; use https", s)
	default:
		return fmt.Errorf("auth: JWKS URL %q: scheme %q, want https", s, u.Scheme)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// fileSource is a JWKS file, re-read when it changes.
type fileSource struct {
	path       string
	store      *jwkset.MemoryJWKSet
	log        *slog.Logger
	checkEvery time.Duration

	mu        sync.Mutex
	lastCheck time.Time // monotonic clock; not the verifier's injectable clock
	modTime   time.Time
	size      int64
}

// openFileSource reads path, failing on anything but a valid set of public signing keys.
func openFileSource(path string, log *slog.Logger) (*fileSource, error) {
	keys, fi, err := readJWKSFile(path)
	if err != nil {
		return nil, err
	}
	store := jwkset.NewMemoryStorage()
	if err := store.KeyReplaceAll(context.Background(), keys); err != nil {
		return nil, fmt.Errorf("auth: JWKS file %s: %w", path, err)
	}
	return &fileSource{
		path: path, store: store, log: log, checkEvery: jwksFileCheckEvery,
		lastCheck: time.Now(), modTime: fi.ModTime(), size: fi.Size(),
	}, nil
}

// maybeReload re-reads the file when its modification time or size changed. A file that
// became invalid is logged and ignored: the keys read last stay trusted.
// A request never waits for another one's check: it goes on with the keys at hand.
func (f *fileSource) maybeReload() {
	if !f.mu.TryLock() {
		return
	}
	defer f.mu.Unlock()
	if time.Since(f.lastCheck) < f.checkEvery {
		return
	}
	f.lastCheck = time.Now()
	fi, err := os.Stat(f.path)
	if err != nil {
		f.log.Error("cannot stat the user token issuer's JWKS file; keeping the keys read last", "path", f.path, "error", err)
		return
	}
	if fi.ModTime().Equal(f.modTime) && fi.Size() == f.size {
		return
	}
	f.modTime, f.size = fi.ModTime(), fi.Size()
	keys, _, err := readJWKSFile(f.path)
	if err != nil {
		f.log.Error("the user token issuer's JWKS file changed but cannot be used; keeping the keys read last", "path", f.path, "error", err)
		return
	}
	_ = f.store.KeyReplaceAll(context.Background(), keys) // the memory store never fails
	f.log.Info("reloaded the user token issuer's JWKS file", "path", f.path, "keys", len(keys))
}

// readJWKSFile parses a JWKS file strictly: every key public, asymmetric, supported,
// with a unique kid.
func readJWKSFile(path string) ([]jwkset.JWK, os.FileInfo, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: JWKS file: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("auth: JWKS file: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxJWKSFileBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("auth: JWKS file %s: %w", path, err)
	}
	if len(data) > maxJWKSFileBytes {
		return nil, nil, fmt.Errorf("auth: JWKS file %s is larger than %d bytes", path, maxJWKSFileBytes)
	}
	keys, err := parseJWKS(data)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: JWKS file %s: %w", path, err)
	}
	return keys, fi, nil
}

func parseJWKS(data []byte) ([]jwkset.JWK, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWK set: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("holds no keys")
	}
	seen := make(map[string]bool, len(set.Keys))
	keys := make([]jwkset.JWK, 0, len(set.Keys))
	for i, m := range set.Keys {
		switch {
		case m.KID == "":
			return nil, fmt.Errorf("key %d has no kid; tokens name their key by kid", i)
		case seen[m.KID]:
			return nil, fmt.Errorf("kid %q appears twice", m.KID)
		case m.KTY == jwkset.KtyOct:
			return nil, fmt.Errorf("kid %q is a symmetric (oct) key; only public keys are trusted", m.KID)
		case m.D != "":
			return nil, fmt.Errorf("kid %q holds private key material; give only the issuer's public keys", m.KID)
		}
		seen[m.KID] = true
		k, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			return nil, fmt.Errorf("kid %q: %w", m.KID, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}
