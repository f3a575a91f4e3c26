package voucher

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyledger/keyledger/domain/keys"
)

// Voucher signing algorithms.
const (
	// AlgRS256 is the default: what the reference platform's resource servers expect.
	AlgRS256 = "RS256"
	// AlgES256 signs with P-256: about twenty times cheaper to sign than RS256.
	AlgES256 = "ES256"
	// AlgEdDSA signs with Ed25519.
	AlgEdDSA = "EdDSA"
)

// Files of a signing-key directory (see the package documentation).
const (
	// CurrentKeyFile names the file holding the kid of the key that signs.
	CurrentKeyFile = "current"
	// keyFileSuffix ends each key file's name: "<kid>.pem".
	keyFileSuffix = ".pem"
)

// DefaultRSABits is the size of generated RSA keys when SignerConfig.RSABits is 0.
const DefaultRSABits = 2048

// SignerConfig says where a Signer's keys come from. Set exactly one of Dir and Files.
type SignerConfig struct {
	// Dir is a key directory Keyledger manages: a key is generated into it at first
	// start, Rotate adds keys and Remove deletes them. Its key files are private keys,
	// mode 0600: whoever reads one can sign vouchers for any client. Replicas must share
	// the directory's content (or use Files) so that every replica's vouchers verify
	// against the JWKS every replica publishes.
	Dir string
	// Files are PEM private keys managed by the operator (PKCS #8 "PRIVATE KEY", PKCS #1
	// "RSA PRIVATE KEY" or SEC 1 "EC PRIVATE KEY"): the first signs, all are published.
	// Rotate by changing the list (new key first, old one kept until the vouchers it
	// signed have expired) and calling Reload. Protect the files yourself.
	Files []string
	// Algorithm is the algorithm of keys generated into Dir: RS256 (default), ES256 or
	// EdDSA. The current key keeps its algorithm until the next Rotate: changing this
	// setting alone changes nothing already on disk.
	Algorithm string
	// RSABits is the size of generated RSA keys: 2048 (default), 3072 or 4096. Each
	// doubling of the size makes signing about eight times slower.
	RSABits int
}

// SigningKey describes one of a Signer's keys; never the key itself.
type SigningKey struct {
	// KID is the key's RFC 7638 thumbprint, the kid of the vouchers it signs.
	KID string
	// Alg is the JWS algorithm it signs with.
	Alg string
	// Current is true for the key that signs new vouchers.
	Current bool
}

// Signer signs vouchers with its current key and publishes all its keys as a JWKS. It
// is safe for concurrent use; Rotate, Remove and Reload swap the key set atomically
// under concurrent Sign calls. It never logs, and no error it returns holds key
// material.
type Signer struct {
	dir     string
	files   []string
	alg     string
	rsaBits int

	mu  sync.Mutex // serialises Rotate, Remove and Reload
	set atomic.Pointer[keySet]
}

// keySet is an immutable snapshot of a Signer's keys.
type keySet struct {
	current *signingKey
	all     []*signingKey // current first, then by kid
	jwks    []byte
}

type signingKey struct {
	kid     string
	alg     string
	method  jwt.SigningMethod
	private crypto.Signer
	header  string // the base64url JWS header of the vouchers it signs
	jwk     json.RawMessage
}

// OpenSigner loads the keys cfg names; with Dir, it creates the directory (0700) and a
// first key of cfg.Algorithm when there is none.
func OpenSigner(cfg SignerConfig) (*Signer, error) {
	if cfg.Algorithm == "" {
		cfg.Algorithm = AlgRS256
	}
	switch cfg.Algorithm {
	case AlgRS256, AlgES256, AlgEdDSA:
	default:
		return nil, fmt.Errorf("voucher: signing algorithm %q: want RS256, ES256 or EdDSA", cfg.Algorithm)
	}
	switch cfg.RSABits {
	case 0:
		cfg.RSABits = DefaultRSABits
	case 2048, 3072, 4096:
	default:
		return nil, fmt.Errorf("voucher: RSA key size %d: want 2048, 3072 or 4096", cfg.RSABits)
	}
	switch {
	case cfg.Dir != "" && len(cfg.Files) > 0:
		return nil, errors.New("voucher: both a signing-key directory and signing-key files are given; set one")
	case cfg.Dir == "" && len(cfg.Files) == 0:
		return nil, errors.New("voucher: no signing-key directory or files")
	}
	s := &Signer{dir: cfg.Dir, files: slices.Clone(cfg.Files), alg: cfg.Algorithm, rsaBits: cfg.RSABits}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir != "" {
		if err := s.initDir(); err != nil {
			return nil, err
		}
	}
	if err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Algorithm is the algorithm of keys the Signer generates (SignerConfig.Algorithm);
// Current().Alg is the one it signs with now. Wiring may warn when they differ.
func (s *Signer) Algorithm() string { return s.alg }

// Current describes the key that signs.
func (s *Signer) Current() SigningKey {
	k := s.current()
	return SigningKey{KID: k.kid, Alg: k.alg, Current: true}
}

// Keys describes every published key, the current one first.
func (s *Signer) Keys() []SigningKey {
	set := s.set.Load()
	out := make([]SigningKey, len(set.all))
	for i, k := range set.all {
		out[i] = SigningKey{KID: k.kid, Alg: k.alg, Current: k == set.current}
	}
	return out
}

// JWKS is the content of /.well-known/jwks.json: {"keys": [...]} with every key's
// public JWK (kty, its parameters, kid, use "sig", alg), the current key first. The
// slice is the caller's.
func (s *Signer) JWKS() []byte { return bytes.Clone(s.set.Load().jwks) }

// Sign returns a JWS compact JWT of claims (marshalled with encoding/json) signed with
// the current key, with the header {alg, kid, typ: "at+jwt"} (RFC 9068), and the kid
// that signed it.
func (s *Signer) Sign(claims any) (token, kid string, err error) {
	k := s.current()
	token, err = k.sign(claims)
	return token, k.kid, err
}

// current is the key Sign uses now.
func (s *Signer) current() *signingKey { return s.set.Load().current }

// sign signs claims' JSON with k.
func (k *signingKey) sign(claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("voucher: encode claims: %w", err)
	}
	signingInput := k.header + "." + b64.EncodeToString(payload)
	sig, err := k.method.Sign(signingInput, k.private)
	if err != nil {
		return "", fmt.Errorf("voucher: sign with key %s: %w", k.kid, err)
	}
	return signingInput + "." + b64.EncodeToString(sig), nil
}

// Rotate generates a key of SignerConfig.Algorithm into the directory and makes it the
// current key. The previous keys stay published until Remove deletes them: remove one
// only once every voucher it signed has expired (the longest voucher lifetime after
// the rotation). Other processes sharing the directory sign with the new key after
// their Reload. Rotate fails for a Signer over Files.
func (s *Signer) Rotate() (SigningKey, error) {
	if s.dir == "" {
		return SigningKey{}, errors.New("voucher: signing keys come from files; rotate by changing the files and reloading")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kid, err := s.generate()
	if err != nil {
		return SigningKey{}, err
	}
	if err := writeCurrent(s.dir, kid, true); err != nil {
		return SigningKey{}, err
	}
	if err := s.reload(); err != nil {
		return SigningKey{}, err
	}
	return s.Current(), nil
}

// Remove deletes the key kid from the directory and stops publishing it. The current
// key cannot be removed. Vouchers kid signed stop verifying wherever the JWKS is
// refreshed.
func (s *Signer) Remove(kid string) error {
	if s.dir == "" {
		return errors.New("voucher: signing keys come from files; remove one by changing the files and reloading")
	}
	if !isKID(kid) {
		return fmt.Errorf("voucher: %q is not a signing key's kid", kid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reload(); err != nil { // the current key may have changed on disk
		return err
	}
	if s.set.Load().current.kid == kid {
		return fmt.Errorf("voucher: key %s is the current signing key; rotate first", kid)
	}
	if err := os.Remove(filepath.Join(s.dir, kid+keyFileSuffix)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("voucher: no signing key %s", kid)
		}
		return fmt.Errorf("voucher: remove signing key: %w", err)
	}
	syncDir(s.dir)
	return s.reload()
}

// Reload reads the keys again: the directory (after another process rotated or
// removed a key) or the files. On error the keys in use are kept.
func (s *Signer) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reload()
}

// reload builds a new key set from disk and swaps it in. s.mu is held.
func (s *Signer) reload() error {
	var (
		loaded  []*signingKey
		current *signingKey
	)
	if s.dir != "" {
		var err error
		loaded, err = readDir(s.dir)
		if err != nil {
			return err
		}
		kid, err := readCurrent(s.dir)
		if err != nil {
			return err
		}
		for _, k := range loaded {
			if k.kid == kid {
				current = k
			}
		}
		if current == nil {
			return fmt.Errorf("voucher: %s names key %s, which is not in %s", filepath.Join(s.dir, CurrentKeyFile), kid, s.dir)
		}
	} else {
		seen := map[string]string{}
		for _, f := range s.files {
			k, err := readKeyFile(f, false)
			if err != nil {
				return err
			}
			if prev, dup := seen[k.kid]; dup {
				return fmt.Errorf("voucher: signing-key files %s and %s hold the same key", prev, f)
			}
			seen[k.kid] = f
			loaded = append(loaded, k)
		}
		current = loaded[0]
	}
	slices.SortFunc(loaded, func(a, b *signingKey) int {
		switch {
		case a == current:
			return -1
		case b == current:
			return 1
		}
		return strings.Compare(a.kid, b.kid)
	})
	var jwks bytes.Buffer
	jwks.WriteString(`{"keys":[`)
	for i, k := range loaded {
		if i > 0 {
			jwks.WriteByte(',')
		}
		jwks.Write(k.jwk)
	}
	jwks.WriteString("]}")
	s.set.Store(&keySet{current: current, all: loaded, jwks: jwks.Bytes()})
	return nil
}

// initDir creates the directory and, when it has no current file, a first key: its
// own new key when the directory holds none, else the key with the smallest kid (a
// first start interrupted, or racing another, between writing a key and naming it
// current). Concurrent first starts agree: the current file is only ever created by a
// hard link, which fails when it exists, and each process then reads the winner's. A
// racing loser's key stays in the directory, published but unused, until removed.
func (s *Signer) initDir() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("voucher: signing-key directory: %w", err)
	}
	if _, err := readCurrent(s.dir); !errors.Is(err, fs.ErrNotExist) {
		return err // present (nil) or unreadable
	}
	existing, err := readDir(s.dir)
	if err != nil {
		return err
	}
	var kid string
	if len(existing) == 0 {
		if kid, err = s.generate(); err != nil {
			return err
		}
	} else {
		kid = existing[0].kid
		for _, k := range existing[1:] {
			kid = min(kid, k.kid)
		}
	}
	if err := writeCurrent(s.dir, kid, false); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// generate creates a key of s.alg in the directory and returns its kid.
func (s *Signer) generate() (string, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch s.alg {
	case AlgRS256:
		priv, err = rsa.GenerateKey(rand.Reader, s.rsaBits)
	case AlgES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgEdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return "", fmt.Errorf("voucher: generate signing key: %w", err)
	}
	k, err := newSigningKey(priv, "generated key")
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("voucher: encode signing key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := writeFileAtomic(s.dir, k.kid+keyFileSuffix, data, false); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	return k.kid, nil
}

// readDir loads every "<kid>.pem" of dir.
func readDir(dir string) ([]*signingKey, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("voucher: signing-key directory: %w", err)
	}
	var out []*signingKey
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, keyFileSuffix) || strings.HasPrefix(name, ".") {
			continue
		}
		k, err := readKeyFile(filepath.Join(dir, name), true)
		if err != nil {
			return nil, err
		}
		if name != k.kid+keyFileSuffix {
			return nil, fmt.Errorf("voucher: signing-key file %s holds the key %s; name it %s%s", filepath.Join(dir, name), k.kid, k.kid, keyFileSuffix)
		}
		out = append(out, k)
	}
	return out, nil
}

// readCurrent reads the kid in dir's current file; fs.ErrNotExist when there is none.
func readCurrent(dir string) (string, error) {
	path := filepath.Join(dir, CurrentKeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err != nil {
		return "", fmt.Errorf("voucher: current signing key: %w", err)
	}
	kid := strings.TrimSpace(string(data))
	if !isKID(kid) {
		return "", fmt.Errorf("voucher: %s does not hold a kid", path)
	}
	return kid, nil
}

// readKeyFile loads one PEM private key. private demands a regular file others cannot
// read (the directory's own files).
func readKeyFile(path string, private bool) (*signingKey, error) {
	if private {
		fi, err := os.Lstat(path)
		if err != nil {
			return nil, fmt.Errorf("voucher: signing key: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("voucher: signing-key file %s is not a regular file", path)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return nil, fmt.Errorf("voucher: signing-key file %s has mode %04o, so others may read it and sign vouchers; run chmod 600 on it", path, perm)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("voucher: signing key: %w", err)
	}
	priv, err := parsePrivatePEM(data)
	if err != nil {
		return nil, fmt.Errorf("voucher: signing-key file %s: %w", path, err)
	}
	return newSigningKey(priv, path)
}

// parsePrivatePEM reads exactly one private key block ("EC PARAMETERS" blocks, which
// openssl writes before SEC 1 keys, are skipped).
func parsePrivatePEM(data []byte) (crypto.Signer, error) {
	var found *pem.Block
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			break
		}
		data = rest
		if block.Type == "EC PARAMETERS" {
			continue
		}
		if found != nil {
			return nil, errors.New("more than one PEM block; put one private key in each file")
		}
		found = block
	}
	if found == nil {
		return nil, errors.New("no PEM block")
	}
	var (
		key any
		err error
	)
	switch found.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(found.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(found.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(found.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", found.Type)
	}
	if err != nil {
		return nil, errors.New("the private key does not parse") // x509's text could quote the key
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	return signer, nil
}

// newSigningKey derives a key's kid, algorithm, JWK and JWS header.
func newSigningKey(priv crypto.Signer, source string) (*signingKey, error) {
	var (
		alg    string
		method jwt.SigningMethod
	)
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		alg, method = AlgRS256, jwt.SigningMethodRS256
	case *ecdsa.PrivateKey:
		if p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("voucher: signing key %s: EC curve %s is not supported; use P-256 (ES256)", source, p.Curve.Params().Name)
		}
		alg, method = AlgES256, jwt.SigningMethodES256
	case ed25519.PrivateKey:
		alg, method = AlgEdDSA, jwt.SigningMethodEdDSA
	default:
		return nil, fmt.Errorf("voucher: signing key %s: type %T is not supported; use RSA, EC P-256 or Ed25519", source, priv)
	}
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("voucher: signing key %s: %w", source, err)
	}
	pub, err := keys.Parse(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err != nil {
		return nil, fmt.Errorf("voucher: signing key %s: %w", source, err)
	}
	jwk, err := pub.JWK("sig", alg)
	if err != nil {
		return nil, fmt.Errorf("voucher: signing key %s: %w", source, err)
	}
	header, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{alg, pub.KID(), "at+jwt"})
	if err != nil {
		return nil, fmt.Errorf("voucher: signing key %s: %w", source, err)
	}
	return &signingKey{kid: pub.KID(), alg: alg, method: method, private: priv,
		header: b64.EncodeToString(header), jwk: jwk}, nil
}

// writeCurrent makes kid the current key: replacing the current file atomically, or,
// when replace is false, only if there is none (fs.ErrExist otherwise).
func writeCurrent(dir, kid string, replace bool) error {
	return writeFileAtomic(dir, CurrentKeyFile, []byte(kid+"\n"), replace)
}

// writeFileAtomic writes name in dir with mode 0600 through a synced temporary file, so
// that name is absent or complete. Without replace it never replaces an existing file
// (a hard link fails with fs.ErrExist); with replace it renames over it.
func writeFileAtomic(dir, name string, data []byte, replace bool) error {
	tmp, err := os.CreateTemp(dir, ".tmp-*") // mode 0600
	if err != nil {
		return fmt.Errorf("voucher: write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("voucher: write %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("voucher: write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("voucher: write %s: %w", name, err)
	}
	path := filepath.Join(dir, name)
	if replace {
		err = os.Rename(tmp.Name(), path)
	} else if err = os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		// A file system without hard links: rename is still atomic, though it may
		// replace a file created in the same instant.
		if _, statErr := os.Lstat(path); errors.Is(statErr, fs.ErrNotExist) {
			err = os.Rename(tmp.Name(), path)
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("voucher: write %s: %w", name, fs.ErrExist)
		}
		return fmt.Errorf("voucher: write %s: %w", name, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a directory's new names durable; best effort.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
