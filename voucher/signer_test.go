package voucher_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/keyledger/keyledger/voucher"
)

// verifyWithJWKS verifies token as a resource server would: with the key the JWKS
// publishes under the token's kid, for the alg the JWKS names. It returns the claims
// and the header.
func verifyWithJWKS(t *testing.T, jwks []byte, token string) (jwt.MapClaims, map[string]any) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	var algs []string
	for _, k := range set.Keys {
		algs = append(algs, k.Algorithm)
	}
	claims := jwt.MapClaims{}
	tok, err := jwt.NewParser(jwt.WithValidMethods(algs), jwt.WithoutClaimsValidation()).ParseWithClaims(token, claims, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		ks := set.Key(kid)
		if len(ks) != 1 {
			t.Fatalf("JWKS has %d keys with kid %q", len(ks), kid)
		}
		if ks[0].Algorithm != tok.Method.Alg() || ks[0].Use != "sig" {
			t.Fatalf("JWK %s: alg %s use %s, token alg %s", kid, ks[0].Algorithm, ks[0].Use, tok.Method.Alg())
		}
		return ks[0].Key, nil
	})
	if err != nil {
		t.Fatalf("verify with JWKS: %v", err)
	}
	return claims, tok.Header
}

func TestSignerGeneratesPerAlgorithm(t *testing.T) {
	for _, alg := range []string{voucher.AlgRS256, voucher.AlgES256, voucher.AlgEdDSA} {
		t.Run(alg, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "signing-keys")
			s, err := voucher.OpenSigner(voucher.SignerConfig{Dir: dir, Algorithm: alg})
			if err != nil {
				t.Fatal(err)
			}
			cur := s.Current()
			if cur.Alg != alg || len(cur.KID) != 43 || !cur.Current {
				t.Fatalf("current %+v", cur)
			}
			// The layout: <kid>.pem (0600) and current, in a 0700 directory.
			fi, err := os.Stat(filepath.Join(dir, cur.KID+".pem"))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file: %v, %v", fi, err)
			}
			if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
				t.Fatalf("directory: %v, %v", di, err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, voucher.CurrentKeyFile)); err != nil || strings.TrimSpace(string(b)) != cur.KID {
				t.Fatalf("current file %q, %v", b, err)
			}
			token, kid, err := s.Sign(map[string]any{"sub": "x"})
			if err != nil || kid != cur.KID {
				t.Fatal(kid, err)
			}
			claims, hdr := verifyWithJWKS(t, s.JWKS(), token)
			if claims["sub"] != "x" || hdr["typ"] != "at+jwt" || hdr["kid"] != cur.KID || hdr["alg"] != alg {
				t.Fatalf("header %v claims %v", hdr, claims)
			}
			// The same key on reopening.
			again, err := voucher.OpenSigner(voucher.SignerConfig{Dir: dir, Algorithm: alg})
			if err != nil || again.Current() != cur {
				t.Fatalf("reopen: %+v, %v", again.Current(), err)
			}
		})
	}
}

// TestJWKSHoldsNoPrivateMembers: the JWKS publishes public keys only, with kid, alg
// and use.
func TestJWKSHoldsNoPrivateMembers(t *testing.T) {
	s, err := voucher.OpenSigner(voucher.SignerConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rotate(); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(s.JWKS(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 2 {
		t.Fatalf("%d keys", len(doc.Keys))
	}
	for _, k := range doc.Keys {
		for _, m := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[m]; ok {
				t.Fatalf("JWK has private member %s", m)
			}
		}
		if k["use"] != "sig" || k["alg"] != "RS256" || k["kid"] == "" || k["kty"] != "RSA" {
			t.Fatalf("JWK %v", k)
		}
	}
	if doc.Keys[0]["kid"] != s.Current().KID {
		t.Fatal("the current key is not first")
	}
}

// TestRotate: a rotation signs with a new key, keeps publishing the old one until it
// is removed, and another process sharing the directory follows after Reload.
func TestRotate(t *testing.T) {
	dir := t.TempDir()
	s, err := voucher.OpenSigner(voucher.SignerConfig{Dir: dir, Algorithm: voucher.AlgES256})
	if err != nil {
		t.Fatal(err)
	}
	replica, err := voucher.OpenSigner(voucher.SignerConfig{Dir: dir, Algorithm: voucher.AlgES256})
	if err != nil {
		t.Fatal(err)
	}
	old := s.Current()
	oldToken, _, err := s.Sign(map[string]any{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	// Rotate to another algorithm: the setting applies to new keys.
	rot, err := voucher.OpenSigner(voucher.SignerConfig{Dir: dir, Algorithm: voucher.AlgEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	if rot.Current() != old {
		t.Fatalf("changing the algorithm alone changed the current key")
	}
	cur, err := rot.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if cur.KID == old.KID || cur.Alg != voucher.AlgEdDSA {
		t.Fatalf("rotated to %+v", cur)
	}
	if err := replica.Reload(); err != nil {
		t.Fatal(err)
	}
	if replica.Current() != cur {
		t.Fatalf("replica signs with %+v after reload", replica.Current())
	}
	newToken, kid, err := replica.Sign(map[string]any{"n": 2})
	if err != nil || kid != cur.KID {
		t.Fatal(kid, err)
	}
	ks := replica.Keys()
	if len(ks) != 2 || ks[0] != cur || ks[1].KID != old.KID || ks[1].Current {
		t.Fatalf("keys %+v", ks)
	}
	// Overlap: both the old and the new vouchers verify with the published set.
	verifyWithJWKS(t, replica.JWKS(), oldToken)
	verifyWithJWKS(t, replica.JWKS(), newToken)

	if err := replica.Remove(cur.KID); err == nil {
		t.Fatal("removed the current key")
	}
	if err := replica.Remove(old.KID); err != nil {
		t.Fatal(err)
	}
	if err := replica.Remove(old.KID); err == nil {
		t.Fatal("removed a key twice")
	}
	if len(replica.Keys()) != 1 || strings.Contains(string(replica.JWKS()), old.KID) {
		t.Fatalf("old key still published: %s", replica.JWKS())
	}
	if err := s.Reload(); err != nil || len(s.Keys()) != 1 {
		t.Fatalf("reload after removal: %v, %+v", err, s.Keys())
	}
}

// TestConcurrentFirstStart: processes starting together on an empty directory agree
// on one current key.
func TestConcurrentFirstStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	var wg sync.WaitGroup
	kids := make([]string, 8)
	errs := make([]error, 8)
	for i := range kids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := voucher.OpenSigner(voucher.SignerConfig{Dir: dir, Algorithm: voucher.AlgEdDSA})
			if err != nil {
				errs[i] = err
				return
			}
			kids[i] = s.Current().KID
		}()
	}
	wg.Wait()
	for i := range kids {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if kids[i] != kids[0] {
			t.Fatalf("current keys %v", kids)
		}
	}
	s, err := voucher.OpenSigner(voucher.SignerConfig{Dir: dir})
	if err != nil || s.Current().KID != kids[0] {
		t.Fatal(err)
	}
}

func writePEM(t *testing.T, path, typ string, der []byte, extra ...*pem.Block) {
	t.Helper()
	var b []byte
	for _, e := range extra {
		b = append(b, pem.EncodeToMemory(e)...)
	}
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})...)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSignerFiles: keys the operator provides as PEM files, in each usual encoding.
func TestSignerFiles(t *testing.T) {
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	writePEM(t, filepath.Join(dir, "ec.pem"), "EC PRIVATE KEY", sec1, &pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}})
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	writePEM(t, filepath.Join(dir, "rsa.pem"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	p8, _ := x509.MarshalPKCS8PrivateKey(ed)
	writePEM(t, filepath.Join(dir, "ed.pem"), "PRIVATE KEY", p8)

	s, err := voucher.OpenSigner(voucher.SignerConfig{Files: []string{filepath.Join(dir, "rsa.pem"), filepath.Join(dir, "ec.pem"), filepath.Join(dir, "ed.pem")}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Current().Alg != voucher.AlgRS256 || len(s.Keys()) != 3 {
		t.Fatalf("%+v", s.Keys())
	}
	token, _, err := s.Sign(map[string]any{"a": 1})
	if err != nil {
		t.Fatal(err)
	}
	verifyWithJWKS(t, s.JWKS(), token)
	if _, err := s.Rotate(); err == nil {
		t.Fatal("rotated file keys")
	}
	// The operator rotates by changing the files and reloading.
	writePEM(t, filepath.Join(dir, "rsa.pem"), "PRIVATE KEY", p8)
	if err := s.Reload(); err == nil {
		t.Fatal("two files holding one key were accepted")
	}
	if s.Current().Alg != voucher.AlgRS256 {
		t.Fatal("a failed reload changed the keys")
	}
}

func TestSignerRefuses(t *testing.T) {
	dir := t.TempDir()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(p384)
	writePEM(t, filepath.Join(dir, "p384.pem"), "PRIVATE KEY", der)
	pubDER, _ := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	writePEM(t, filepath.Join(dir, "public.pem"), "PUBLIC KEY", pubDER)
	cases := map[string]voucher.SignerConfig{
		"no source":         {},
		"two sources":       {Dir: dir, Files: []string{"x"}},
		"unknown algorithm": {Dir: t.TempDir(), Algorithm: "HS256"},
		"odd RSA size":      {Dir: t.TempDir(), RSABits: 1024},
		"P-384 key file":    {Files: []string{filepath.Join(dir, "p384.pem")}},
		"public key file":   {Files: []string{filepath.Join(dir, "public.pem")}},
		"missing file":      {Files: []string{filepath.Join(dir, "none.pem")}},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := voucher.OpenSigner(cfg); err == nil {
				t.Fatal("no error")
			}
		})
	}
	t.Run("readable by others", func(t *testing.T) {
		d := t.TempDir()
		s, err := voucher.OpenSigner(voucher.SignerConfig{Dir: d, Algorithm: voucher.AlgEdDSA})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(d, s.Current().KID+".pem"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = voucher.OpenSigner(voucher.SignerConfig{Dir: d})
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("misnamed key file", func(t *testing.T) {
		d := t.TempDir()
		s, err := voucher.OpenSigner(voucher.SignerConfig{Dir: d, Algorithm: voucher.AlgEdDSA})
		if err != nil {
			t.Fatal(err)
		}
		kid := s.Current().KID
		if err := os.Rename(filepath.Join(d, kid+".pem"), filepath.Join(d, "other.pem")); err != nil {
			t.Fatal(err)
		}
		if _, err := voucher.OpenSigner(voucher.SignerConfig{Dir: d}); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("errors hold no key material", func(t *testing.T) {
		d := t.TempDir()
		writePEM(t, filepath.Join(d, "bad.pem"), "PRIVATE KEY", []byte("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"))
		_, err := voucher.OpenSigner(voucher.SignerConfig{Files: []string{filepath.Join(d, "bad.pem")}})
		if err == nil || strings.Contains(err.Error(), "MIIE") {
			t.Fatalf("got %v", err)
		}
	})
}
