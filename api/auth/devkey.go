package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// DevelopmentKeyFile is the name, inside the data directory, of the development signing
// key: an Ed25519 private key in PKCS #8 PEM, mode 0600. Whoever can read it can mint a
// token for any principal, the operator included.
const DevelopmentKeyFile = "dev-signing-key.pem"

// developmentKey is the loaded development key and its kid.
type developmentKey struct {
	private ed25519.PrivateKey
	kid     string
}

// developmentKeys trusts exactly the development key of dataDir, creating it if missing.
func developmentKeys(dataDir string) (keyfunc.Keyfunc, error) {
	k, err := loadOrCreateDevelopmentKey(dataDir)
	if err != nil {
		return nil, err
	}
	jwk, err := jwkset.NewJWKFromKey(k.private.Public(), jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{ALG: jwkset.AlgEdDSA, KID: k.kid, USE: jwkset.UseSig},
	})
	if err != nil {
		return nil, fmt.Errorf("auth: development key: %w", err)
	}
	store := jwkset.NewMemoryStorage()
	if err := store.KeyWrite(context.Background(), jwk); err != nil {
		return nil, fmt.Errorf("auth: development key: %w", err)
	}
	return keyfunc.New(keyfunc.Options{Storage: store, UseWhitelist: signingUses})
}

// loadOrCreateDevelopmentKey reads dataDir's development key, or creates it with a new
// random key. Creation is atomic and never replaces a key another process created
// meanwhile, so tokens minted with the first key keep verifying.
func loadOrCreateDevelopmentKey(dataDir string) (developmentKey, error) {
	if dataDir == "" {
		return developmentKey{}, errors.New("auth: development mode needs a data directory for its signing key")
	}
	path := filepath.Join(dataDir, DevelopmentKeyFile)
	k, err := readDevelopmentKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := createDevelopmentKey(dataDir, path); err != nil {
		return developmentKey{}, err
	}
	return readDevelopmentKey(path)
}

// readDevelopmentKey loads path, refusing a file others may read or that is not an
// Ed25519 PKCS #8 key. A missing file is reported as fs.ErrNotExist.
func readDevelopmentKey(path string) (developmentKey, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return developmentKey{}, err
	}
	if err != nil {
		return developmentKey{}, fmt.Errorf("auth: development key %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return developmentKey{}, fmt.Errorf("auth: development key %s is not a regular file (%s); remove it to create a new key", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return developmentKey{}, fmt.Errorf("auth: development key %s has mode %04o, so others may read it and mint tokens; run chmod 600 on it, or remove it to create a new key", path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return developmentKey{}, fmt.Errorf("auth: development key %s: %w", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return developmentKey{}, fmt.Errorf("auth: development key %s is not a PEM \"PRIVATE KEY\"; remove it to create a new key", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return developmentKey{}, fmt.Errorf("auth: development key %s cannot be parsed (%v); remove it to create a new key", path, err)
	}
	priv, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return developmentKey{}, fmt.Errorf("auth: development key %s holds a %T, want an Ed25519 key; remove it to create a new key", path, parsed)
	}
	return developmentKey{private: priv, kid: ed25519Thumbprint(priv.Public().(ed25519.PublicKey))}, nil
}

// createDevelopmentKey writes a new key to a temporary file and links it into place,
// so that path is either absent or complete, and a key created concurrently wins.
func createDevelopmentKey(dataDir, path string) error {
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return fmt.Errorf("auth: data directory %s: %w", dataDir, err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("auth: generate development key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("auth: encode development key: %w", err)
	}
	tmp, err := os.CreateTemp(dataDir, ".dev-signing-key-*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("auth: create development key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("auth: create development key: %w", err)
	}
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("auth: write development key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("auth: write development key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("auth: write development key: %w", err)
	}
	// A hard link never replaces an existing file: if another process created the key
	// first, keep its key.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		// A file system without hard links: rename is still atomic, though it may
		// replace a key created in the same instant.
		if err := os.Rename(tmp.Name(), path); err != nil {
			return fmt.Errorf("auth: install development key: %w", err)
		}
	}
	if d, err := os.Open(dataDir); err == nil {
		_ = d.Sync() // make the new name durable; best effort
		_ = d.Close()
	}
	return nil
}

// ed25519Thumbprint is the RFC 7638 JWK thumbprint of pub, used as its kid.
func ed25519Thumbprint(pub ed25519.PublicKey) string {
	// Members in lexicographic order, no whitespace, as RFC 7638 §3.2 requires.
	canonical, _ := json.Marshal(struct {
		Crv string `json:"crv"`
		Kty string `json:"kty"`
		X   string `json:"x"`
	}{"Ed25519", "OKP", base64.RawURLEncoding.EncodeToString(pub)})
	sum := sha256.Sum256(canonical)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// MintDevelopmentToken signs a token for p with the development key of dataDir,
// creating the key if missing. The token carries iss keyledger-dev, sub, tenant,
// keyledger_operator, iat and nbf (now), exp (now+ttl) and a random jti. Only a Verifier
// in development mode on the same dataDir accepts it. p must have a Subject, and a
// Tenant unless it is the operator, who must have none.
func MintDevelopmentToken(dataDir string, p Principal, ttl time.Duration, now time.Time) (string, error) {
	if p.Subject == "" {
		return "", errors.New("auth: a token needs a subject (user id)")
	}
	if err := checkClaimValue("subject", p.Subject); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	switch {
	case p.Operator && p.Tenant != "":
		return "", errors.New("auth: an operator token carries no tenant")
	case !p.Operator && p.Tenant == "":
		return "", errors.New("auth: a token that is not an operator token needs a tenant")
	}
	if p.Tenant != "" {
		if err := checkClaimValue("tenant", p.Tenant); err != nil {
			return "", fmt.Errorf("auth: %w", err)
		}
	}
	if ttl <= 0 {
		return "", fmt.Errorf("auth: token lifetime %s: must be positive", ttl)
	}
	k, err := loadOrCreateDevelopmentKey(dataDir)
	if err != nil {
		return "", err
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("auth: token id: %w", err)
	}
	c := claims{
		Tenant:   p.Tenant,
		Operator: p.Operator,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    DevelopmentIssuer,
			Subject:   p.Subject,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        base64.RawURLEncoding.EncodeToString(id[:]),
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.private)
	if err != nil {
		return "", fmt.Errorf("auth: sign development token: %w", err)
	}
	return s, nil
}
