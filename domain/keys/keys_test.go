package keys_test

import (
	"bytes"
	"crypto"
	"crypto/dsa" //lint:ignore SA1019 DSA keys are generated only to check that they are refused
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/keys"
)

// fixtures are real keys, generated once per test binary.
type fixtures struct {
	rsa2048, rsa1024 *rsa.PrivateKey
	rsa3072          *rsa.PrivateKey
	p224, p256       *ecdsa.PrivateKey
	p384, p521       *ecdsa.PrivateKey
	ed               ed25519.PrivateKey
	x25519           *ecdh.PrivateKey
	dsa              *dsa.PrivateKey
	cert, csr        []byte // DER, self-signed with rsa2048
}

var (
	fixOnce sync.Once
	fix     fixtures
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func loadFixtures() *fixtures {
	fixOnce.Do(func() {
		fix.rsa2048 = must(rsa.GenerateKey(rand.Reader, 2048))
		fix.rsa3072 = must(rsa.GenerateKey(rand.Reader, 3072))
		fix.rsa1024 = must(rsa.GenerateKey(rand.Reader, 1024))
		fix.p224 = must(ecdsa.GenerateKey(elliptic.P224(), rand.Reader))
		fix.p256 = must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
		fix.p384 = must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
		fix.p521 = must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader))
		_, fix.ed = must2(ed25519.GenerateKey(rand.Reader))
		fix.x25519 = must(ecdh.X25519().GenerateKey(rand.Reader))
		var d dsa.PrivateKey
		if err := dsa.GenerateParameters(&d.Parameters, rand.Reader, dsa.L1024N160); err != nil {
			panic(err)
		}
		if err := dsa.GenerateKey(&d, rand.Reader); err != nil {
			panic(err)
		}
		fix.dsa = &d
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "keyledger test"},
			NotBefore:    time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
			NotAfter:     time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC),
		}
		fix.cert = must(x509.CreateCertificate(rand.Reader, tmpl, tmpl, &fix.rsa2048.PublicKey, fix.rsa2048))
		fix.csr = must(x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: tmpl.Subject}, fix.rsa2048))
	})
	return &fix
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func spkiPEM(pub any) []byte { return pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(pub))) }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func pad(b []byte, n int) []byte { return append(make([]byte, n-len(b)), b...) }

// jwkOf writes a public JWK by hand, independently of the package and of go-jose,
// adding extra members.
func jwkOf(pub crypto.PublicKey, extra map[string]any) []byte {
	m := map[string]any{}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", b64(p.N.Bytes()), b64(big.NewInt(int64(p.E)).Bytes())
	case *ecdsa.PublicKey:
		x, y := ecXY(p)
		m["kty"], m["crv"], m["x"], m["y"] = "EC", p.Curve.Params().Name, b64(x), b64(y)
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64(p)
	case *ecdh.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "X25519", b64(p.Bytes())
	default:
		panic(fmt.Sprintf("jwkOf %T", pub))
	}
	for k, v := range extra {
		m[k] = v
	}
	return must(json.Marshal(m))
}

// ecXY splits the uncompressed point of p into its fixed-size coordinates.
func ecXY(p *ecdsa.PublicKey) (x, y []byte) {
	b := must(p.Bytes()) // 0x04 || X || Y
	size := (len(b) - 1) / 2
	return b[1 : 1+size], b[1+size:]
}

// thumbprint is RFC 7638 computed by hand: SHA-256 of the required members in
// lexicographic order, no white space.
func thumbprint(pub crypto.PublicKey) string {
	var canon string
	switch p := pub.(type) {
	case *rsa.PublicKey:
		canon = fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`, b64(big.NewInt(int64(p.E)).Bytes()), b64(p.N.Bytes()))
	case *ecdsa.PublicKey:
		x, y := ecXY(p)
		canon = fmt.Sprintf(`{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`, p.Curve.Params().Name, b64(x), b64(y))
	case ed25519.PublicKey:
		canon = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":"%s"}`, b64(p))
	}
	sum := sha256.Sum256([]byte(canon))
	return b64(sum[:])
}

func TestParseAcceptsEveryFormat(t *testing.T) {
	f := loadFixtures()
	cases := []struct {
		name    string
		pub     crypto.PublicKey
		typ     string
		crv     string
		bits    int
		def     string
		pkcs1   bool
		wantLen int
	}{
		{"RSA 2048", &f.rsa2048.PublicKey, "RSA", "", 2048, "RS256", true, 0},
		{"RSA 3072", &f.rsa3072.PublicKey, "RSA", "", 3072, "RS256", true, 0},
		{"EC P-256", &f.p256.PublicKey, "EC", "P-256", 256, "ES256", false, 0},
		{"EC P-384", &f.p384.PublicKey, "EC", "P-384", 384, "ES384", false, 0},
		{"Ed25519", f.ed.Public(), "OKP", "Ed25519", 256, "EdDSA", false, 0},
	}
	for _, c := range cases {
		spki := spkiPEM(c.pub)
		inputs := map[string][]byte{
			"SPKI PEM":                  spki,
			"SPKI PEM, CRLF and spaces": []byte("\r\n  " + strings.ReplaceAll(string(spki), "\n", "\r\n") + "\r\n\n"),
			"SPKI PEM with BOM":         append([]byte("\xef\xbb\xbf"), spki...),
			"base64 PEM":                []byte(base64.StdEncoding.EncodeToString(spki)),
			"base64 PEM, no padding":    []byte(base64.RawStdEncoding.EncodeToString(spki)),
			"base64 PEM, wrapped":       wrap(base64.StdEncoding.EncodeToString(spki), 64),
			"JWK":                       jwkOf(c.pub, nil),
			"JWK with use, alg, kid":    jwkOf(c.pub, map[string]any{"use": "sig", "alg": c.def, "kid": "my-own-kid"}),
			"JWK with key_ops":          jwkOf(c.pub, map[string]any{"key_ops": []string{"verify"}}),
		}
		if c.pkcs1 {
			pkcs1 := pemOf("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(c.pub.(*rsa.PublicKey)))
			inputs["PKCS#1 PEM"] = pkcs1
			inputs["base64 PKCS#1 PEM"] = []byte(base64.StdEncoding.EncodeToString(pkcs1))
		}
		want := thumbprint(c.pub)
		for format, input := range inputs {
			t.Run(c.name+"/"+format, func(t *testing.T) {
				k, err := keys.Parse(input)
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if k.KID() != want {
					t.Errorf("KID = %s, want the independent thumbprint %s", k.KID(), want)
				}
				if len(k.KID()) != 43 {
					t.Errorf("KID has %d characters, want 43", len(k.KID()))
				}
				if k.Type() != c.typ || k.Curve() != c.crv || k.Bits() != c.bits || k.DefaultAlg() != c.def {
					t.Errorf("got %s/%s/%d/%s, want %s/%s/%d/%s", k.Type(), k.Curve(), k.Bits(), k.DefaultAlg(),
						c.typ, c.crv, c.bits, c.def)
				}
				if k.PEM() != string(spki) {
					t.Errorf("PEM is not the canonical SPKI PEM:\n%s", k.PEM())
				}
				if !bytes.Equal(k.DER(), must(x509.MarshalPKIXPublicKey(c.pub))) {
					t.Error("DER is not the canonical SPKI")
				}
				if eq, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(c.pub) {
					t.Errorf("Public() = %v, not the input key", k.Public())
				}
			})
		}
	}
}

func wrap(s string, n int) []byte {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	b.WriteString(s + "\n")
	return []byte(b.String())
}

// TestRFC7638Example checks the thumbprint against the example in RFC 7638 section 3.1.
func TestRFC7638Example(t *testing.T) {
	const n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	const want = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
	jwk := `{"kty":"RSA","n":"` + n + `","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`
	k, err := keys.Parse([]byte(jwk))
	if err != nil {
		t.Fatal(err)
	}
	if k.KID() != want {
		t.Errorf("KID = %s, want %s", k.KID(), want)
	}
	if k.DeclaredAlg() != "RS256" {
		t.Errorf("DeclaredAlg = %q, want RS256", k.DeclaredAlg())
	}
	// The same key as PEM gets the same kid.
	fromPEM, err := keys.Parse([]byte(k.PEM()))
	if err != nil {
		t.Fatal(err)
	}
	if fromPEM.KID() != want || !fromPEM.Equal(k) {
		t.Errorf("PEM of the RFC key has kid %s, want %s", fromPEM.KID(), want)
	}
	if fromPEM == k {
		t.Error("== must see the declared alg; Equal compares key material only")
	}
}

// sentinels are every error Parse, CheckAlg and JWK may match.
var sentinels = []*domain.Error{
	keys.ErrTooLarge, keys.ErrUnparsable, keys.ErrMultiplePEMBlocks, keys.ErrPrivateKey,
	keys.ErrCertificate, keys.ErrRSATooShort, keys.ErrUnsupportedKeyType, keys.ErrUnsupportedUse,
	keys.ErrAlgMismatch,
}

// checkOnly fails unless err matches want and no other sentinel.
func checkOnly(t *testing.T, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	for _, s := range sentinels {
		if got := errors.Is(err, s); got != (s == want) {
			t.Errorf("errors.Is(%q, %s) = %v", err, s.Code, got)
		}
	}
	if err.Error() == "" {
		t.Error("empty message")
	}
}

func TestSentinelsHaveDistinctCodes(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range sentinels {
		if seen[s.Code] {
			t.Errorf("code %s used twice", s.Code)
		}
		seen[s.Code] = true
		if s.Kind != domain.KindInvalid {
			t.Errorf("%s is not KindInvalid", s.Code)
		}
	}
}

// spkiDER marshals a SubjectPublicKeyInfo by hand, for algorithms crypto/x509 cannot
// marshal.
func spkiDER(alg asn1.ObjectIdentifier, params any, key []byte) []byte {
	ai := pkix.AlgorithmIdentifier{Algorithm: alg}
	if params != nil {
		ai.Parameters = asn1.RawValue{FullBytes: must(asn1.Marshal(params))}
	}
	return must(asn1.Marshal(struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}{ai, asn1.BitString{Bytes: key, BitLength: 8 * len(key)}}))
}

// fakeRSA is an RSA public key with a random odd modulus of the given size: enough to
// test size limits without generating an 8192-bit key.
func fakeRSA(bits int) *rsa.PublicKey {
	n := must(rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits))))
	n.SetBit(n, bits-1, 1)
	n.SetBit(n, 0, 1)
	return &rsa.PublicKey{N: n, E: 65537}
}

func TestParseRejects(t *testing.T) {
	f := loadFixtures()
	rsaPub := &f.rsa2048.PublicKey
	spki := spkiPEM(rsaPub)
	pkcs8 := func(k any) []byte { return pemOf("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(k))) }

	// DSA: crypto/x509 parses DSA keys but cannot marshal them.
	type dsaParams struct{ P, Q, G *big.Int }
	dsaDER := spkiDER(asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1},
		dsaParams{f.dsa.P, f.dsa.Q, f.dsa.G}, must(asn1.Marshal(f.dsa.Y)))
	if _, err := x509.ParsePKIXPublicKey(dsaDER); err != nil {
		t.Fatalf("the DSA fixture is not a valid SPKI: %v", err)
	}
	// secp256k1: its generator point, a real point of the curve.
	gx, _ := new(big.Int).SetString("79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798", 16)
	gy, _ := new(big.Int).SetString("483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8", 16)
	k1Point := append(append([]byte{4}, pad(gx.Bytes(), 32)...), pad(gy.Bytes(), 32)...)
	k1DER := spkiDER(asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}, asn1.ObjectIdentifier{1, 3, 132, 0, 10}, k1Point)
	k1JWK := fmt.Sprintf(`{"kty":"EC","crv":"secp256k1","x":"%s","y":"%s"}`, b64(pad(gx.Bytes(), 32)), b64(pad(gy.Bytes(), 32)))
	ed448DER := spkiDER(asn1.ObjectIdentifier{1, 3, 101, 113}, nil, make([]byte, 57))

	rsaJWK := func(extra map[string]any) []byte { return jwkOf(rsaPub, extra) }
	privJWK := func(k *rsa.PrivateKey) []byte {
		return rsaJWK(map[string]any{"d": b64(k.D.Bytes()), "p": b64(k.Primes[0].Bytes()), "q": b64(k.Primes[1].Bytes())})
	}
	offCurve := map[string]any{"kty": "EC", "crv": "P-256", "x": b64(make([]byte, 32)), "y": b64(append(make([]byte, 31), 1))}

	cases := []struct {
		name  string
		input []byte
		want  error
		msg   string // a substring the message must hold
	}{
		{"empty", nil, keys.ErrUnparsable, "empty"},
		{"white space", []byte(" \n\t "), keys.ErrUnparsable, "empty"},
		{"garbage", []byte("hello, world!"), keys.ErrUnparsable, ""},
		{"binary garbage", []byte{0x30, 0x82, 0xff, 0x00, 0x01, 0x02}, keys.ErrUnparsable, ""},
		{"too large", bytes.Repeat([]byte("A"), keys.MaxInputSize+1), keys.ErrTooLarge, "16384"},

		{"two public keys", append(spkiPEM(rsaPub), spkiPEM(&f.p256.PublicKey)...), keys.ErrMultiplePEMBlocks, "2 PEM blocks"},
		{"public key and certificate", append(spkiPEM(rsaPub), pemOf("CERTIFICATE", f.cert)...), keys.ErrMultiplePEMBlocks, ""},
		{"base64 of two blocks", []byte(base64.StdEncoding.EncodeToString(append(spki, spki...))), keys.ErrMultiplePEMBlocks, ""},
		{"trailing data", append(spkiPEM(rsaPub), "trailing"...), keys.ErrUnparsable, "after the PEM block"},
		{"leading text", append([]byte("my key:\n"), spki...), keys.ErrUnparsable, "before the PEM block"},
		{"broken base64 in PEM", []byte("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n"), keys.ErrUnparsable, "malformed PEM"},
		{"no END line", bytes.TrimSuffix(spki, []byte("-----END PUBLIC KEY-----\n")), keys.ErrUnparsable, ""},
		{"truncated DER", pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(rsaPub))[:100]), keys.ErrUnparsable, ""},
		{"DER trailing data", pemOf("PUBLIC KEY", append(must(x509.MarshalPKIXPublicKey(rsaPub)), 0)), keys.ErrUnparsable, ""},
		{"unknown PEM type", pemOf("SOMETHING ELSE", []byte{1, 2, 3}), keys.ErrUnparsable, "SOMETHING ELSE"},
		{"base64 of garbage", []byte(base64.StdEncoding.EncodeToString([]byte("not a key at all"))), keys.ErrUnparsable, ""},
		{"base64 of DER", []byte(base64.StdEncoding.EncodeToString(must(x509.MarshalPKIXPublicKey(rsaPub)))), keys.ErrUnparsable, "DER"},
		{"base64 of a JWK", []byte(base64.StdEncoding.EncodeToString(rsaJWK(nil))), keys.ErrUnparsable, "JSON"},

		{"PKCS#1 RSA private key", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(f.rsa2048)), keys.ErrPrivateKey, "RSA PRIVATE KEY"},
		{"PKCS#8 RSA private key", pkcs8(f.rsa2048), keys.ErrPrivateKey, "compromised"},
		{"PKCS#8 EC private key", pkcs8(f.p256), keys.ErrPrivateKey, ""},
		{"PKCS#8 Ed25519 private key", pkcs8(f.ed), keys.ErrPrivateKey, ""},
		{"SEC1 EC private key", pemOf("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(f.p384))), keys.ErrPrivateKey, ""},
		{"EC parameters then SEC1 key", append(pemOf("EC PARAMETERS", must(asn1.Marshal(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}))),
			pemOf("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(f.p256)))...), keys.ErrPrivateKey, ""},
		{"public then private key", append(spkiPEM(rsaPub), pkcs8(f.rsa2048)...), keys.ErrPrivateKey, ""},
		{"encrypted private key", pemOf("ENCRYPTED PRIVATE KEY", []byte{0x30, 0}), keys.ErrPrivateKey, ""},
		{"base64 private key", []byte(base64.StdEncoding.EncodeToString(pkcs8(f.p256))), keys.ErrPrivateKey, ""},
		{"PKCS#8 labelled PUBLIC KEY", pemOf("PUBLIC KEY", must(x509.MarshalPKCS8PrivateKey(f.p256))), keys.ErrPrivateKey, "PKCS#8"},
		{"PKCS#1 private labelled RSA PUBLIC KEY", pemOf("RSA PUBLIC KEY", x509.MarshalPKCS1PrivateKey(f.rsa2048)), keys.ErrPrivateKey, ""},
		{"RSA private JWK", privJWK(f.rsa2048), keys.ErrPrivateKey, "private member"},
		{"EC private JWK", jwkOf(&f.p256.PublicKey, map[string]any{"d": b64(must(f.p256.Bytes()))}), keys.ErrPrivateKey, ""},
		{"Ed25519 private JWK", jwkOf(f.ed.Public(), map[string]any{"d": b64(f.ed.Seed())}), keys.ErrPrivateKey, ""},
		{"JWK with private member in capitals", rsaJWK(map[string]any{"D": "AQAB"}), keys.ErrPrivateKey, ""},
		{"P-521 private JWK", jwkOf(&f.p521.PublicKey, map[string]any{"d": b64(must(f.p521.Bytes()))}), keys.ErrPrivateKey, ""},

		{"certificate", pemOf("CERTIFICATE", f.cert), keys.ErrCertificate, "openssl x509"},
		{"base64 certificate", []byte(base64.StdEncoding.EncodeToString(pemOf("CERTIFICATE", f.cert))), keys.ErrCertificate, ""},
		{"certificate labelled PUBLIC KEY", pemOf("PUBLIC KEY", f.cert), keys.ErrCertificate, ""},
		{"certificate request", pemOf("CERTIFICATE REQUEST", f.csr), keys.ErrCertificate, "signing request"},

		{"RSA 1024 SPKI", spkiPEM(&f.rsa1024.PublicKey), keys.ErrRSATooShort, "RSA key of 1024 bits; at least 2048 required"},
		{"RSA 1024 PKCS#1", pemOf("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&f.rsa1024.PublicKey)), keys.ErrRSATooShort, "1024"},
		{"RSA 1024 JWK", jwkOf(&f.rsa1024.PublicKey, nil), keys.ErrRSATooShort, "1024"},
		{"RSA 2047", spkiPEM(fakeRSA(2047)), keys.ErrRSATooShort, "2047"},

		{"RSA 4097 SPKI", spkiPEM(fakeRSA(4097)), keys.ErrUnsupportedKeyType, "at most 4096"},
		{"RSA 8192 JWK", jwkOf(fakeRSA(8192), nil), keys.ErrUnsupportedKeyType, "4096"},
		{"P-224 SPKI", spkiPEM(&f.p224.PublicKey), keys.ErrUnsupportedKeyType, "P-224"},
		{"P-521 SPKI", spkiPEM(&f.p521.PublicKey), keys.ErrUnsupportedKeyType, "P-521"},
		{"P-224 JWK", jwkOf(&f.p224.PublicKey, nil), keys.ErrUnsupportedKeyType, "P-224"},
		{"P-521 JWK", jwkOf(&f.p521.PublicKey, nil), keys.ErrUnsupportedKeyType, "P-521"},
		{"secp256k1 SPKI", pemOf("PUBLIC KEY", k1DER), keys.ErrUnsupportedKeyType, "secp256k1"},
		{"secp256k1 JWK", []byte(k1JWK), keys.ErrUnsupportedKeyType, "secp256k1"},
		{"X25519 SPKI", spkiPEM(f.x25519.PublicKey()), keys.ErrUnsupportedKeyType, "X25519"},
		{"X25519 JWK", jwkOf(f.x25519.PublicKey(), nil), keys.ErrUnsupportedKeyType, "X25519"},
		{"DSA SPKI", pemOf("PUBLIC KEY", dsaDER), keys.ErrUnsupportedKeyType, "DSA"},
		{"Ed448 SPKI", pemOf("PUBLIC KEY", ed448DER), keys.ErrUnsupportedKeyType, "Ed448"},
		{"oct JWK", []byte(`{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}`), keys.ErrUnsupportedKeyType, "symmetric"},
		{"unknown kty", []byte(`{"kty":"XYZ","x":"AQAB"}`), keys.ErrUnsupportedKeyType, "XYZ"},

		{"JWK use enc", rsaJWK(map[string]any{"use": "enc"}), keys.ErrUnsupportedUse, "enc"},
		{"JWK empty use", rsaJWK(map[string]any{"use": ""}), keys.ErrUnsupportedUse, ""},
		{"JWK key_ops encrypt", rsaJWK(map[string]any{"key_ops": []string{"encrypt"}}), keys.ErrUnsupportedUse, "verify"},

		{"JWK alg for another key type", rsaJWK(map[string]any{"alg": "ES256"}), keys.ErrAlgMismatch, "ES256"},
		{"JWK alg HS256", rsaJWK(map[string]any{"alg": "HS256"}), keys.ErrAlgMismatch, ""},

		{"JWK Set", []byte(`{"keys":[` + string(rsaJWK(nil)) + `]}`), keys.ErrUnparsable, "JWK Set"},
		{"JWK duplicate member", []byte(`{"kty":"RSA","kty":"RSA","n":"AQAB","e":"AQAB"}`), keys.ErrUnparsable, "twice"},
		{"JWK duplicate member by escape", []byte(`{"kty":"RSA","\u006bty":"oct"}`), keys.ErrUnparsable, "twice"},
		{"invalid JSON", []byte(`{"kty":"RSA",`), keys.ErrUnparsable, "JSON"},
		{"JSON array", []byte(`[1]`), keys.ErrUnparsable, ""},
		{"data after the JWK", append(rsaJWK(nil), "{}"...), keys.ErrUnparsable, "after the JWK"},
		{"JWK without kty", []byte(`{"n":"AQAB","e":"AQAB"}`), keys.ErrUnparsable, "kty"},
		{"JWK kty not a string", []byte(`{"kty":1}`), keys.ErrUnparsable, "kty"},
		{"JWK kty null", []byte(`{"kty":null}`), keys.ErrUnparsable, "kty"},
		{"JWK kid not a string", rsaJWK(map[string]any{"kid": 7}), keys.ErrUnparsable, "kid"},
		{"RSA JWK without n", []byte(`{"kty":"RSA","e":"AQAB"}`), keys.ErrUnparsable, "RSA"},
		{"RSA JWK with even exponent", []byte(strings.Replace(string(rsaJWK(nil)), `"e":"AQAB"`, `"e":"BA"`, 1)), keys.ErrUnparsable, "exponent"},
		{"EC JWK off the curve", must(json.Marshal(offCurve)), keys.ErrUnparsable, ""},
		{"EC JWK without crv", []byte(`{"kty":"EC","x":"AA","y":"AA"}`), keys.ErrUnparsable, "crv"},
		{"Ed25519 JWK of wrong length", []byte(`{"kty":"OKP","crv":"Ed25519","x":"AQAB"}`), keys.ErrUnparsable, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, err := keys.Parse(c.input)
			checkOnly(t, err, c.want)
			if k != (keys.Key{}) {
				t.Errorf("a failed Parse returned a non-zero Key %+v", k)
			}
			if c.msg != "" && !strings.Contains(err.Error(), c.msg) {
				t.Errorf("message %q does not mention %q", err, c.msg)
			}
		})
	}
}

func TestErrorsAsDomainErrorCarriesThePreciseMessage(t *testing.T) {
	f := loadFixtures()
	_, err := keys.Parse(spkiPEM(&f.rsa1024.PublicKey))
	var de *domain.Error
	if !errors.As(err, &de) {
		t.Fatalf("errors.As(%v, *domain.Error) = false", err)
	}
	if de.Code != keys.ErrRSATooShort.Code || de.Kind != domain.KindInvalid {
		t.Errorf("got code %s kind %d", de.Code, de.Kind)
	}
	if de.Message != "RSA key of 1024 bits; at least 2048 required" {
		t.Errorf("Message = %q", de.Message)
	}
	if keys.ErrRSATooShort.Message == de.Message {
		t.Error("the sentinel itself was modified")
	}
	wrapped := fmt.Errorf("upload: %w", err)
	if !errors.Is(wrapped, keys.ErrRSATooShort) || !errors.As(wrapped, &de) {
		t.Error("wrapping loses the sentinel")
	}
}

func TestCheckAlg(t *testing.T) {
	f := loadFixtures()
	all := []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
		"EdDSA", "Ed25519", "HS256", "none", "", "rs256", "RS256 "}
	cases := []struct {
		name string
		pub  crypto.PublicKey
		ok   []string
	}{
		{"RSA", &f.rsa2048.PublicKey, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}},
		{"P-256", &f.p256.PublicKey, []string{"ES256"}},
		{"P-384", &f.p384.PublicKey, []string{"ES384"}},
		{"Ed25519", f.ed.Public(), []string{"EdDSA"}},
	}
	for _, c := range cases {
		k, err := keys.FromPublic(c.pub)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(k.Algorithms(), c.ok) {
			t.Errorf("%s: Algorithms = %v, want %v", c.name, k.Algorithms(), c.ok)
		}
		k.Algorithms()[0] = "changed"
		if k.Algorithms()[0] != c.ok[0] {
			t.Errorf("%s: Algorithms shares its slice", c.name)
		}
		for _, alg := range all {
			err := k.CheckAlg(alg)
			if slices.Contains(c.ok, alg) {
				if err != nil {
					t.Errorf("%s: CheckAlg(%q) = %v", c.name, alg, err)
				}
				continue
			}
			if !errors.Is(err, keys.ErrAlgMismatch) {
				t.Errorf("%s: CheckAlg(%q) = %v, want ErrAlgMismatch", c.name, alg, err)
			}
		}
	}
	if err := (keys.Key{}).CheckAlg("RS256"); !errors.Is(err, keys.ErrAlgMismatch) {
		t.Errorf("zero Key: CheckAlg = %v", err)
	}
	k := must(keys.FromPublic(&f.p256.PublicKey))
	if err := k.CheckAlg("RS256"); err.Error() != `alg "RS256" does not suit an EC P-256 key; use ES256` {
		t.Errorf("message: %q", err)
	}
}

func TestJWKOutput(t *testing.T) {
	f := loadFixtures()
	for _, pub := range []crypto.PublicKey{&f.rsa2048.PublicKey, &f.p256.PublicKey, &f.p384.PublicKey, f.ed.Public()} {
		k := must(keys.FromPublic(pub))
		out, err := k.JWK("sig", k.DefaultAlg())
		if err != nil {
			t.Fatalf("JWK: %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatal(err)
		}
		if m["kid"] != k.KID() || m["use"] != "sig" || m["alg"] != k.DefaultAlg() || m["kty"] != k.Type() {
			t.Errorf("JWK %s lacks kid, use, alg or kty", out)
		}
		for _, priv := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := m[priv]; ok {
				t.Errorf("JWK %s has private member %s", out, priv)
			}
		}
		back, err := keys.Parse(out)
		if err != nil || back.KID() != k.KID() || back.DeclaredAlg() != k.DefaultAlg() {
			t.Errorf("JWK does not parse back to the key: %v", err)
		}
		noAlg := must(k.JWK("sig", ""))
		if bytes.Contains(noAlg, []byte(`"alg"`)) {
			t.Errorf("JWK(sig, \"\") = %s has an alg", noAlg)
		}
		if _, err := k.JWK("enc", k.DefaultAlg()); !errors.Is(err, keys.ErrUnsupportedUse) {
			t.Errorf("JWK(enc) = %v, want ErrUnsupportedUse", err)
		}
		if _, err := k.JWK("sig", "HS256"); !errors.Is(err, keys.ErrAlgMismatch) {
			t.Errorf("JWK(sig, HS256) = %v, want ErrAlgMismatch", err)
		}
	}
	if _, err := (keys.Key{}).JWK("sig", ""); err == nil {
		t.Error("JWK of the zero Key succeeded")
	}
}

func TestJWKKidIsIgnored(t *testing.T) {
	f := loadFixtures()
	a := must(keys.Parse(jwkOf(&f.p256.PublicKey, map[string]any{"kid": "chosen-by-client"})))
	b := must(keys.Parse(spkiPEM(&f.p256.PublicKey)))
	if a.KID() != b.KID() || a != b {
		t.Errorf("kid %s from a JWK naming its own kid, %s from PEM", a.KID(), b.KID())
	}
}

func TestPublicReturnsACopy(t *testing.T) {
	f := loadFixtures()
	k := must(keys.FromPublic(&f.rsa2048.PublicKey))
	k.Public().(*rsa.PublicKey).N.SetInt64(3)
	if !k.Public().(*rsa.PublicKey).Equal(&f.rsa2048.PublicKey) {
		t.Error("changing the result of Public changed the Key")
	}
	ed := must(keys.FromPublic(f.ed.Public()))
	ed.Public().(ed25519.PublicKey)[0] ^= 1
	if !ed.Public().(ed25519.PublicKey).Equal(f.ed.Public()) {
		t.Error("changing the result of Public changed the Ed25519 Key")
	}
}

func TestZeroKey(t *testing.T) {
	var k keys.Key
	if k.KID() != "" || k.Public() != nil || k.PEM() != "" || k.DefaultAlg() != "" || k.Algorithms() != nil || k.Equal(k) {
		t.Error("the zero Key is not empty")
	}
}

func TestFromPublicRefuses(t *testing.T) {
	f := loadFixtures()
	cases := []struct {
		name string
		pub  crypto.PublicKey
		want error
	}{
		{"RSA 1024", &f.rsa1024.PublicKey, keys.ErrRSATooShort},
		{"P-521", &f.p521.PublicKey, keys.ErrUnsupportedKeyType},
		{"X25519", f.x25519.PublicKey(), keys.ErrUnsupportedKeyType},
		{"DSA", &f.dsa.PublicKey, keys.ErrUnsupportedKeyType},
		{"private key", f.rsa2048, keys.ErrPrivateKey},
		{"nil", nil, keys.ErrUnsupportedKeyType},
		{"nil RSA", (*rsa.PublicKey)(nil), keys.ErrUnparsable},
		{"short Ed25519", ed25519.PublicKey{1, 2, 3}, keys.ErrUnparsable},
		//lint:ignore SA1019 an invalid point can only be built from raw coordinates
		{"EC point off the curve", &ecdsa.PublicKey{Curve: elliptic.P256(), X: big.NewInt(1), Y: big.NewInt(1)}, keys.ErrUnparsable},
		{"RSA exponent 1", &rsa.PublicKey{N: f.rsa2048.N, E: 1}, keys.ErrUnparsable},
		{"RSA even modulus", &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), 2047), E: 65537}, keys.ErrUnparsable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := keys.FromPublic(c.pub)
			checkOnly(t, err, c.want)
		})
	}
}
