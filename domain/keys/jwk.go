package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// privateMembers are the JWK members that only private or symmetric keys have (RFC 7518
// section 6; "priv" is the ML-DSA private seed).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"}

// parseJWK reads one public JWK. data is trimmed and starts with '{'.
func parseJWK(data []byte) (Key, error) {
	members, err := jsonMembers(data)
	if err != nil {
		return Key{}, err
	}
	if _, ok := members["keys"]; ok {
		return Key{}, fail(ErrUnparsable, "the JSON is a JWK Set (it has \"keys\"); send one JWK")
	}
	kty, err := stringMember(members, "kty")
	if err != nil {
		return Key{}, err
	}
	if kty == "" {
		return Key{}, fail(ErrUnparsable, "the JWK has no \"kty\"")
	}
	// A symmetric key is refused for its type: it can never be a public key.
	if kty == "oct" {
		return Key{}, fail(ErrUnsupportedKeyType, "symmetric (\"oct\") keys are not supported; send a public key, and treat this secret as compromised")
	}
	for name := range members {
		if slices.Contains(privateMembers, strings.ToLower(name)) {
			return Key{}, fail(ErrPrivateKey, "the JWK has the private member %s; send only the public key, and treat this private key as compromised", quoteShort(name))
		}
	}
	if err := checkJWKType(kty, members); err != nil {
		return Key{}, err
	}
	use, err := stringMember(members, "use")
	if err != nil {
		return Key{}, err
	}
	if _, ok := members["use"]; ok && use != "sig" {
		return Key{}, fail(ErrUnsupportedUse, "the JWK's use is %s; only \"sig\" is supported", quoteShort(use))
	}
	if raw, ok := members["key_ops"]; ok {
		var ops []string
		if err := json.Unmarshal(raw, &ops); err != nil {
			return Key{}, fail(ErrUnparsable, "the JWK's \"key_ops\" is not an array of strings")
		}
		if !slices.Contains(ops, "verify") {
			return Key{}, fail(ErrUnsupportedUse, "the JWK's key_ops do not include \"verify\"")
		}
	}
	alg, err := stringMember(members, "alg")
	if err != nil {
		return Key{}, err
	}
	if _, err := stringMember(members, "kid"); err != nil {
		return Key{}, err
	}

	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(data); err != nil {
		if errors.Is(err, jose.ErrUnsupportedKeyType) && kty == TypeRSA {
			return Key{}, fail(ErrUnsupportedKeyType, "RSA key longer than %d bits; at most %d supported", MaxRSABits, MaxRSABits)
		}
		return Key{}, fail(ErrUnparsable, "invalid %s JWK: %s", kty, joseMessage(err))
	}
	if !jwk.IsPublic() {
		// Unreachable after the member check above; kept so that a change in go-jose can
		// never let a private key through.
		return Key{}, fail(ErrPrivateKey, "the JWK is a private key; send only the public key, and treat this private key as compromised")
	}
	k, err := newKey(jwk.Key)
	if err != nil {
		return Key{}, err
	}
	if alg != "" {
		if err := k.CheckAlg(alg); err != nil {
			return Key{}, err
		}
		k.declaredAlg = alg
	}
	return k, nil
}

// checkJWKType refuses key types and curves Keyledger does not accept, by name.
func checkJWKType(kty string, members map[string]json.RawMessage) error {
	crv, err := stringMember(members, "crv")
	if err != nil {
		return err
	}
	switch kty {
	case TypeRSA:
		return nil
	case TypeEC:
		if crv == CurveP256 || crv == CurveP384 {
			return nil
		}
		if crv == "" {
			return fail(ErrUnparsable, "the EC JWK has no \"crv\"")
		}
		return fail(ErrUnsupportedKeyType, "EC curve %s is not supported; use P-256 or P-384", quoteShort(crv))
	case TypeOKP:
		if crv == CurveEd25519 {
			return nil
		}
		if crv == "" {
			return fail(ErrUnparsable, "the OKP JWK has no \"crv\"")
		}
		return fail(ErrUnsupportedKeyType, "OKP curve %s is not supported; use Ed25519", quoteShort(crv))
	}
	return fail(ErrUnsupportedKeyType, "key type (kty) %s is not supported; use RSA, EC or OKP (Ed25519)", quoteShort(kty))
}

// jsonMembers splits a JSON object into its members, refusing anything but one object
// and refusing repeated member names (which parsers resolve differently, a classic way to
// smuggle a member past a check).
func jsonMembers(data []byte) (map[string]json.RawMessage, error) {
	invalid := func() error { return fail(ErrUnparsable, "the key is not valid JSON") }
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, invalid()
	}
	members := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, invalid()
		}
		name, ok := tok.(string)
		if !ok {
			return nil, invalid()
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, invalid()
		}
		if _, dup := members[name]; dup {
			return nil, fail(ErrUnparsable, "the JWK has the member %s twice", quoteShort(name))
		}
		members[name] = value
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, invalid()
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail(ErrUnparsable, "data after the JWK")
	}
	return members, nil
}

// stringMember returns member name as a string, "" when absent, and an error when it is
// present but not a string.
func stringMember(members map[string]json.RawMessage, name string) (string, error) {
	raw, ok := members[name]
	if !ok {
		return "", nil
	}
	var s string
	if bytes.Equal(raw, []byte("null")) || json.Unmarshal(raw, &s) != nil {
		return "", fail(ErrUnparsable, "the JWK's %q is not a string", name)
	}
	return s, nil
}
