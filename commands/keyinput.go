package commands

import (
	"github.com/keyledger/keyledger/domain/keyring"
	"github.com/keyledger/keyledger/domain/keys"
)

// KeyInput is a key upload as the caller sends it.
type KeyInput struct {
	Name string
	Key  []byte // PEM (optionally base64-encoded) or a JSON JWK
	Use  string // "sig"
	Alg  string // optional; defaults to the key's usual algorithm
}

func parseKeys(in []KeyInput) ([]keyring.NewKey, error) {
	out := make([]keyring.NewKey, 0, len(in))
	for _, k := range in {
		nk, err := parseKey(k)
		if err != nil {
			return nil, err
		}
		out = append(out, nk)
	}
	return out, nil
}

// parseKey parses and checks an uploaded public key: its type and size, that it is not
// private or a certificate, and that the algorithm (given, declared in a JWK, or the
// key's usual one) suits it. The kid is the RFC 7638 thumbprint.
func parseKey(in KeyInput) (keyring.NewKey, error) {
	k, err := keys.Parse(in.Key)
	if err != nil {
		return keyring.NewKey{}, err
	}
	use := in.Use
	if use == "" {
		use = "sig"
	}
	alg := in.Alg
	if alg == "" {
		alg = k.DeclaredAlg()
	}
	if alg == "" {
		alg = k.DefaultAlg()
	}
	if err := k.CheckAlg(alg); err != nil {
		return keyring.NewKey{}, err
	}
	return keyring.NewKey{KID: k.KID(), Name: in.Name, Use: use, Alg: alg, KeyType: k.Type(), PEM: k.PEM()}, nil
}
