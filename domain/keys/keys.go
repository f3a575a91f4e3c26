// Package keys parses and describes the public keys that clients and producer keychains
// upload. Clients sign JWT client assertions with the private key; Keyledger verifies
// them with the public key kept here.
//
// Parse accepts exactly one public key, as PEM (SPKI "PUBLIC KEY" or PKCS#1 "RSA PUBLIC
// KEY"), as base64-encoded PEM (what PDND clients send), or as a JSON JWK. It accepts RSA
// of MinRSABits to MaxRSABits bits, EC P-256 and P-384, and Ed25519, and refuses anything
// else with one of the package's sentinel errors. A key's identity is its kid, the RFC 7638
// JWK thumbprint, which does not depend on the format it was uploaded in.
//
// The package is pure: no I/O, no clock, no randomness.
package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// Limits on what Parse accepts.
const (
	// MaxInputSize is the largest input Parse reads (16 KiB): a 4096-bit RSA key is under
	// 1 KiB in any accepted format, so anything larger is not a single public key.
	MaxInputSize = 16 << 10
	// MinRSABits is the shortest RSA modulus accepted.
	MinRSABits = 2048
	// MaxRSABits is the longest RSA modulus accepted: longer keys make every verification
	// slower for no security a client needs, and go-jose refuses them in JWKs.
	MaxRSABits = 4096
)

// Key types, as the JWK "kty" names them.
const (
	TypeRSA = "RSA"
	TypeEC  = "EC"
	TypeOKP = "OKP"
)

// Curve names, as the JWK "crv" names them.
const (
	CurveP256    = "P-256"
	CurveP384    = "P-384"
	CurveEd25519 = "Ed25519"
)

// Key is one validated public key. It is an immutable value: it holds the key as
// canonical DER and hands out fresh copies, so nothing a caller does to the result of
// Public changes it. Keys compare with ==, but == also compares DeclaredAlg; use Equal to
// ask whether two Keys are the same key material. The zero Key is no key: KID is empty
// and Public returns nil.
type Key struct {
	kid         string
	kty         string
	crv         string
	bits        int
	der         string // SPKI DER, canonical (as x509.MarshalPKIXPublicKey writes it)
	declaredAlg string
}

// Parse reads one public key from input (see the package documentation for the formats)
// and validates it. Errors match exactly one of the package's sentinels with errors.Is,
// and their Error() says precisely what was wrong in words safe to show the uploader.
//
// When input is a JWK, its "kid" is ignored: Key.KID is always the RFC 7638 thumbprint,
// so the same key gets the same kid whatever the format and whoever names it. Its "use",
// when present, must be "sig"; its "key_ops", when present, must include "verify"; its
// "alg", when present, must suit the key, and is kept as DeclaredAlg.
//
// When input holds a private key anywhere (even next to other PEM blocks, or as JWK
// private members), the error is ErrPrivateKey, before any other: the uploader must learn
// that the key has leaked.
func Parse(input []byte) (Key, error) {
	if len(input) > MaxInputSize {
		return Key{}, fail(ErrTooLarge, "the key is %d bytes; at most %d bytes are accepted", len(input), MaxInputSize)
	}
	data := trim(input)
	switch {
	case len(data) == 0:
		return Key{}, fail(ErrUnparsable, "the key is empty")
	case data[0] == '{':
		return parseJWK(data)
	case bytes.Contains(data, []byte(pemBegin)):
		return parsePEM(data)
	}
	decoded, ok := decodeBase64(data)
	if !ok {
		return Key{}, fail(ErrUnparsable, "the key is neither PEM, base64-encoded PEM, nor a JSON JWK")
	}
	decoded = trim(decoded)
	switch {
	case bytes.Contains(decoded, []byte(pemBegin)):
		return parsePEM(decoded)
	case len(decoded) > 0 && decoded[0] == '{':
		return Key{}, fail(ErrUnparsable, "the key is base64-encoded JSON; send a JWK as plain JSON")
	case len(decoded) > 0 && decoded[0] == 0x30:
		return Key{}, fail(ErrUnparsable, "the key is base64-encoded binary (DER?); send it as PEM or base64-encoded PEM")
	}
	return Key{}, fail(ErrUnparsable, "the key is base64 but does not decode to PEM")
}

// FromPublic validates a public key already in memory (*rsa.PublicKey, *ecdsa.PublicKey
// or ed25519.PublicKey) under the same rules as Parse.
func FromPublic(pub crypto.PublicKey) (Key, error) { return newKey(pub) }

// trim drops a UTF-8 byte-order mark and surrounding white space.
func trim(b []byte) []byte {
	b = bytes.TrimSpace(b)
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	return bytes.TrimSpace(b)
}

// decodeBase64 decodes b as standard or URL-safe base64, padded or not, ignoring white
// space (line-wrapped base64 is common).
func decodeBase64(b []byte) ([]byte, bool) {
	s := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, string(b))
	if s == "" {
		return nil, false
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if out, err := enc.DecodeString(s); err == nil {
			return out, true
		}
	}
	return nil, false
}

// newKey validates pub and computes its kid and canonical DER.
func newKey(pub crypto.PublicKey) (Key, error) {
	var k Key
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if p == nil || p.N == nil {
			return Key{}, fail(ErrUnparsable, "invalid RSA key: no modulus")
		}
		bits := p.N.BitLen()
		if bits < MinRSABits {
			return Key{}, fail(ErrRSATooShort, "RSA key of %d bits; at least %d required", bits, MinRSABits)
		}
		if bits > MaxRSABits {
			return Key{}, fail(ErrUnsupportedKeyType, "RSA key of %d bits; at most %d supported", bits, MaxRSABits)
		}
		if p.N.Bit(0) == 0 {
			return Key{}, fail(ErrUnparsable, "invalid RSA key: the modulus is even")
		}
		if p.E < 3 || p.E&1 == 0 || p.E > 1<<31-1 {
			return Key{}, fail(ErrUnparsable, "invalid RSA key: public exponent %d is not an odd number from 3 to 2^31-1", p.E)
		}
		k = Key{kty: TypeRSA, bits: bits}
	case *ecdsa.PublicKey:
		//lint:ignore SA1019 reading the coordinates only to refuse nil ones, on which the ecdsa methods panic
		if p == nil || p.Curve == nil || p.X == nil || p.Y == nil {
			return Key{}, fail(ErrUnparsable, "invalid EC key: no curve or point")
		}
		switch p.Curve {
		case elliptic.P256():
			k = Key{kty: TypeEC, crv: CurveP256, bits: 256}
		case elliptic.P384():
			k = Key{kty: TypeEC, crv: CurveP384, bits: 384}
		default:
			return Key{}, fail(ErrUnsupportedKeyType, "EC curve %s is not supported; use P-256 or P-384", p.Curve.Params().Name)
		}
		if _, err := p.ECDH(); err != nil {
			return Key{}, fail(ErrUnparsable, "invalid EC key: the point is not on curve %s", k.crv)
		}
	case ed25519.PublicKey:
		if len(p) != ed25519.PublicKeySize {
			return Key{}, fail(ErrUnparsable, "invalid Ed25519 key: %d bytes instead of %d", len(p), ed25519.PublicKeySize)
		}
		k = Key{kty: TypeOKP, crv: CurveEd25519, bits: 256}
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return Key{}, fail(ErrPrivateKey, "a private key was given where a public key is expected")
	default:
		return Key{}, fail(ErrUnsupportedKeyType, "keys of type %T are not supported; use RSA, EC P-256 or P-384, or Ed25519", pub)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return Key{}, fail(ErrUnparsable, "invalid %s key: %s", k.kty, strings.TrimPrefix(err.Error(), "x509: "))
	}
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return Key{}, fail(ErrUnparsable, "invalid %s key: %s", k.kty, joseMessage(err))
	}
	k.kid = base64.RawURLEncoding.EncodeToString(tp)
	k.der = string(der)
	return k, nil
}

// joseMessage is err's text without go-jose's prefix.
func joseMessage(err error) string {
	return strings.TrimPrefix(err.Error(), "go-jose/go-jose: ")
}

// KID is the key's id: its RFC 7638 JWK thumbprint (SHA-256, base64url without padding,
// 43 characters). It is the same for the same key in any input format, and it is what
// identifies the key across all clients and keychains.
func (k Key) KID() string { return k.kid }

// Type is the JWK key type: "RSA", "EC" or "OKP" (Ed25519).
func (k Key) Type() string { return k.kty }

// Curve is the JWK curve name: "P-256", "P-384" or "Ed25519"; "" for RSA.
func (k Key) Curve() string { return k.crv }

// Bits is the key's size: the modulus length for RSA, the curve's size for EC and
// Ed25519 (256 or 384).
func (k Key) Bits() int { return k.bits }

// DeclaredAlg is the "alg" the uploaded JWK named (already checked to suit the key), or
// "" when the input was PEM or the JWK named none. Callers may offer it as the default.
func (k Key) DeclaredAlg() string { return k.declaredAlg }

// Equal reports whether k and o are the same public key (the same kid). Two zero Keys
// are not equal.
func (k Key) Equal(o Key) bool { return k.kid != "" && k.kid == o.kid }

// Algorithms lists the JWS algorithms a signature by this key may use, DefaultAlg first.
// The slice is the caller's.
func (k Key) Algorithms() []string {
	switch {
	case k.kty == TypeRSA:
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case k.crv == CurveP256:
		return []string{"ES256"}
	case k.crv == CurveP384:
		return []string{"ES384"}
	case k.crv == CurveEd25519:
		return []string{"EdDSA"}
	}
	return nil
}

// DefaultAlg is the algorithm to assume when the uploader names none: RS256 for RSA,
// ES256 for P-256, ES384 for P-384, EdDSA for Ed25519; "" for the zero Key.
func (k Key) DefaultAlg() string {
	if algs := k.Algorithms(); len(algs) > 0 {
		return algs[0]
	}
	return ""
}

// CheckAlg returns an error matching ErrAlgMismatch unless alg is one of Algorithms.
// Verifiers must call it with the alg of each JWS header before verifying, so an
// attacker cannot choose an algorithm ("none", HS256 with the public key as secret,
// RS256 on an EC key).
func (k Key) CheckAlg(alg string) error {
	algs := k.Algorithms()
	if slices.Contains(algs, alg) {
		return nil
	}
	if len(algs) == 0 {
		return fail(ErrAlgMismatch, "no algorithm suits an empty key")
	}
	if alg == "" {
		return fail(ErrAlgMismatch, "no alg given; %s takes %s", k.describe(), strings.Join(algs, ", "))
	}
	return fail(ErrAlgMismatch, "alg %s does not suit %s; use %s", quoteShort(alg), k.describe(), strings.Join(algs, ", "))
}

// describe names the key for messages: "an RSA 2048-bit key", "an EC P-256 key".
func (k Key) describe() string {
	switch k.kty {
	case TypeRSA:
		return "an RSA " + strconv.Itoa(k.bits) + "-bit key"
	case TypeEC:
		return "an EC " + k.crv + " key"
	case TypeOKP:
		return "an " + k.crv + " key"
	}
	return "no key"
}

// Public returns a fresh copy of the public key (*rsa.PublicKey, *ecdsa.PublicKey or
// ed25519.PublicKey), or nil for the zero Key. Each call parses the stored DER again, so
// callers on a hot path should keep the result.
func (k Key) Public() crypto.PublicKey {
	if k.der == "" {
		return nil
	}
	pub, err := x509.ParsePKIXPublicKey([]byte(k.der))
	if err != nil {
		return nil // unreachable: der was written by x509.MarshalPKIXPublicKey
	}
	return pub
}

// DER is the key as DER-encoded SubjectPublicKeyInfo, canonical: the same bytes for the
// same key whatever the input format.
func (k Key) DER() []byte { return []byte(k.der) }

// PEM is the key as a canonical "PUBLIC KEY" (SPKI) PEM block, ending in a newline; ""
// for the zero Key. This is what Keyledger stores and shows: never the uploaded text.
func (k Key) PEM() string {
	if k.der == "" {
		return ""
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte(k.der)}))
}

// JWK returns the public JWK JSON of the key with its kid and the given use and alg. use
// must be "sig" (ErrUnsupportedUse otherwise); alg must suit the key (ErrAlgMismatch), or
// be "" to leave "alg" out. The JSON never holds private members.
func (k Key) JWK(use, alg string) ([]byte, error) {
	if k.der == "" {
		return nil, errors.New("keys: JWK of the zero Key")
	}
	if use != "sig" {
		return nil, fail(ErrUnsupportedUse, "key use %s is not supported; only \"sig\"", quoteShort(use))
	}
	if alg != "" {
		if err := k.CheckAlg(alg); err != nil {
			return nil, err
		}
	}
	return jose.JSONWebKey{Key: k.Public(), KeyID: k.kid, Use: use, Algorithm: alg}.MarshalJSON()
}

// quoteShort quotes s for a message, cut to 40 bytes so a long input is not echoed whole.
func quoteShort(s string) string {
	const limit = 40
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "…"
	}
	return strconv.Quote(s)
}
