package main

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/keyledger/keyledger/domain/keys"
)

// Client assertions are signed RS256 with 2048-bit RSA keys, as the reference platform's
// clients sign and as the crypto bound verifies.
const (
	clientKeyBits = 2048
	// assertionLifetime is exp − iat of every assertion: long enough for a whole run,
	// within the server's default maximum (1h).
	assertionLifetime = 30 * time.Minute
	// assertionMaxAge is how old a pre-signed assertion may be when a server starts
	// using the pool; older ones are signed again (exp must stay ahead of their use).
	assertionMaxAge = 20 * time.Minute
	// keyCacheFile holds generated client private keys between runs (RSA generation takes
	// about 50 ms a key); they are a benchmark's throwaway keys, never anything else.
	keyCacheFile = "client-keys-rsa2048.pem"
)

// clientKey is a client key the load signs with: the private key, and its registered
// public half with its kid (RFC 7638 thumbprint, as the server computes it).
type clientKey struct {
	priv *rsa.PrivateKey
	pem  string // the public key, as keys.Key.PEM gives it
	kid  string
}

func newClientKey(priv *rsa.PrivateKey) (clientKey, error) {
	k, err := keys.FromPublic(&priv.PublicKey)
	if err != nil {
		return clientKey{}, err
	}
	return clientKey{priv: priv, pem: k.PEM(), kid: k.KID()}, nil
}

// loadClientKeys returns n RSA keys: those of the cache file in dir first (when dir is
// not empty), then fresh ones, generated on every core and added to the cache file.
func loadClientKeys(dir string, n int, logf func(string, ...any)) ([]clientKey, error) {
	var privs []*rsa.PrivateKey
	path := ""
	if dir != "" {
		path = filepath.Join(dir, keyCacheFile)
		data, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for len(privs) < n {
			var b *pem.Block
			b, data = pem.Decode(data)
			if b == nil {
				break
			}
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w (delete the file to regenerate the keys)", path, err)
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok || rk.N.BitLen() != clientKeyBits {
				return nil, fmt.Errorf("%s: not an RSA-%d key (delete the file to regenerate the keys)", path, clientKeyBits)
			}
			privs = append(privs, rk)
		}
	}
	if missing := n - len(privs); missing > 0 {
		logf("generating %d RSA-%d client keys", missing, clientKeyBits)
		fresh := make([]*rsa.PrivateKey, missing)
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make([]error, runtime.GOMAXPROCS(0))
		for w := range errs {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= missing {
						return
					}
					k, err := rsa.GenerateKey(rand.Reader, clientKeyBits)
					if err != nil {
						errs[w] = err
						return
					}
					fresh[i] = k
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		if path != "" {
			if err := appendKeyCache(path, fresh); err != nil {
				logf("could not cache the client keys (they are regenerated next time): %v", err)
			}
		}
		privs = append(privs, fresh...)
	}
	out := make([]clientKey, n)
	seen := map[string]bool{}
	for i, p := range privs {
		k, err := newClientKey(p)
		if err != nil {
			return nil, err
		}
		if seen[k.kid] {
			return nil, fmt.Errorf("%s holds the same key twice (delete it to regenerate the keys)", path)
		}
		seen[k.kid] = true
		out[i] = k
	}
	return out, nil
}

func appendKeyCache(path string, privs []*rsa.PrivateKey) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, k := range privs {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return err
		}
		if err := pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// loadKey is a key the load signs with, on its client.
type loadKey struct {
	clientID string
	key      clientKey
}

// assertionClaims are the claims of a client assertion of an e-service client.
type assertionClaims struct {
	Iss       string `json:"iss"`
	Sub       string `json:"sub"`
	Aud       string `json:"aud"`
	JTI       string `json:"jti"`
	Iat       int64  `json:"iat"`
	Exp       int64  `json:"exp"`
	PurposeID string `json:"purposeId"`
}

type assertionHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// signAssertion returns the compact JWS of a client assertion of k's client for
// purposeID, with a fresh jti, signed RS256 with k.
func signAssertion(k loadKey, audience, purposeID string, now time.Time) (string, error) {
	h, err := json.Marshal(assertionHeader{Alg: "RS256", Kid: k.key.kid, Typ: "JWT"})
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(assertionClaims{Iss: k.clientID, Sub: k.clientID, Aud: audience, JTI: uuid.NewString(),
		Iat: now.Unix(), Exp: now.Add(assertionLifetime).Unix(), PurposeID: purposeID})
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(nil, k.key.priv, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return input + "." + enc.EncodeToString(sig), nil
}

// tokenForm is the body of a token request carrying assertion.
func tokenForm(assertion, clientID string) []byte {
	v := url.Values{}
	v.Set("grant_type", "client_credentials")
	v.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
	v.Set("client_assertion", assertion)
	v.Set("client_id", clientID)
	return []byte(v.Encode())
}

// signed is one pre-signed assertion and its request body.
type signed struct {
	clientID string
	key      int    // index of the signing key in pool.keys
	body     []byte // the form; the assertion is body[at:at+n]
	at, n    int32
	iat      int64 // the assertion's iat, Unix seconds
}

// assertion is the compact JWS the request carries.
func (s signed) assertion() string { return string(s.body[s.at : s.at+s.n]) }

// pool holds distinct pre-signed assertions, spread round-robin over the load keys. A
// server's replay cache refuses a jti twice, so each server start uses the pool from its
// beginning and never one assertion twice: take hands them out in order.
type pool struct {
	keys      []loadKey
	audience  string
	purposeID string

	items    []signed
	next     atomic.Int64
	capacity int // the most items ensure may hold
}

func newPool(keys []loadKey, audience, purposeID string, capacity int) *pool {
	return &pool{keys: keys, audience: audience, purposeID: purposeID, capacity: capacity}
}

// reset starts handing out from the first assertion again (a fresh server, whose replay
// cache is empty), first signing again, with fresh jtis, the assertions older than
// assertionMaxAge (their exp must stay ahead of the measurements that use them).
func (p *pool) reset(logf func(string, ...any)) error {
	p.next.Store(0)
	cutoff := time.Now().Add(-assertionMaxAge).Unix()
	var stale []int
	for i, it := range p.items {
		if it.iat < cutoff {
			stale = append(stale, i)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	start := time.Now()
	if err := p.sign(stale); err != nil {
		return err
	}
	logf("signed again %d assertions older than %s in %s", len(stale), assertionMaxAge, time.Since(start).Round(time.Millisecond))
	return nil
}

// take returns the next unused assertion, or false when none is left.
func (p *pool) take() (signed, bool) {
	i := p.next.Add(1) - 1
	if i >= int64(len(p.items)) {
		return signed{}, false
	}
	return p.items[i], true
}

// used is how many assertions were taken since the last reset (at most len(items)).
func (p *pool) used() int { return min(int(p.next.Load()), len(p.items)) }

// left is how many assertions remain untaken.
func (p *pool) left() int { return len(p.items) - p.used() }

// ensure signs assertions until the pool holds at least n (at most its capacity), on
// every core. Never call it while take is in use.
func (p *pool) ensure(n int, logf func(string, ...any)) error {
	n = min(n, p.capacity)
	have := len(p.items)
	if n <= have {
		return nil
	}
	start := time.Now()
	p.items = append(p.items, make([]signed, n-have)...)
	idx := make([]int, n-have)
	for i := range idx {
		idx[i] = have + i
	}
	if err := p.sign(idx); err != nil {
		p.items = p.items[:have]
		return err
	}
	logf("signed %d assertions in %s (pool: %d)", n-have, time.Since(start).Round(time.Millisecond), len(p.items))
	return nil
}

// sign (re)signs the items at the given indexes on every core, item i with key
// i mod len(keys).
func (p *pool) sign(idx []int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, runtime.GOMAXPROCS(0))
	for w := range errs {
		wg.Go(func() {
			for {
				j := int(next.Add(1)) - 1
				if j >= len(idx) {
					return
				}
				i := idx[j]
				k := p.keys[i%len(p.keys)]
				now := time.Now()
				a, err := signAssertion(k, p.audience, p.purposeID, now)
				if err != nil {
					errs[w] = err
					return
				}
				body := tokenForm(a, k.clientID)
				at := bytes.Index(body, []byte(a)) // base64url and dots: the form leaves it as is
				if at < 0 {
					errs[w] = errors.New("the token form escaped the assertion")
					return
				}
				p.items[i] = signed{clientID: k.clientID, key: i % len(p.keys), body: body, at: int32(at), n: int32(len(a)), iat: now.Unix()}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
