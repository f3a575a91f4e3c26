package keys_test

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/keyledger/keyledger/domain/keys"
)

// FuzzParse checks that Parse never panics, that every error matches exactly one
// sentinel, and that every accepted key round-trips through PEM and JWK to the same kid.
func FuzzParse(f *testing.F) {
	fx := loadFixtures()
	spki := spkiPEM(&fx.p256.PublicKey)
	f.Add(spki)
	f.Add(spkiPEM(&fx.rsa2048.PublicKey))
	f.Add(spkiPEM(fx.ed.Public()))
	f.Add([]byte(base64.StdEncoding.EncodeToString(spki)))
	f.Add(pemOf("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&fx.rsa2048.PublicKey)))
	f.Add(jwkOf(&fx.p384.PublicKey, map[string]any{"use": "sig", "alg": "ES384", "kid": "x"}))
	f.Add(jwkOf(&fx.rsa2048.PublicKey, nil))
	f.Add(pemOf("CERTIFICATE", fx.cert))
	f.Add([]byte(`{"kty":"oct","k":"AA"}`))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, input []byte) {
		k, err := keys.Parse(input)
		if err != nil {
			n := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 || err.Error() == "" {
				t.Fatalf("error %q matches %d sentinels", err, n)
			}
			return
		}
		if len(k.KID()) != 43 {
			t.Fatalf("kid %q", k.KID())
		}
		back, err := keys.Parse([]byte(k.PEM()))
		if err != nil || back.KID() != k.KID() {
			t.Fatalf("PEM round trip: %v", err)
		}
		jwk, err := k.JWK("sig", k.DefaultAlg())
		if err != nil {
			t.Fatalf("JWK: %v", err)
		}
		back, err = keys.Parse(jwk)
		if err != nil || back.KID() != k.KID() {
			t.Fatalf("JWK round trip: %v", err)
		}
	})
}
