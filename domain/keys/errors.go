package keys

import (
	"fmt"

	"github.com/keyledger/keyledger/domain"
)

// Errors of key parsing and algorithm checks. Each is its own cause with its own stable
// code, so the API answers each with its own 400 code. Parse and CheckAlg never return
// these values bare: they return an error that matches one of them with errors.Is and
// whose Error() is a precise, user-safe description of what was wrong (it never quotes
// key material). errors.As with a *domain.Error target yields the sentinel's Kind and
// Code with that precise description as Message.
var (
	// ErrTooLarge: the input exceeds MaxInputSize; nothing of it was read.
	ErrTooLarge = domain.NewError(domain.KindInvalid, "key_too_large",
		"the key is larger than 16 KiB")
	// ErrUnparsable: the input is not one PEM public key nor one JWK: empty, garbage,
	// malformed PEM or DER, text before or after the PEM block, invalid JSON or JWK
	// members.
	ErrUnparsable = domain.NewError(domain.KindInvalid, "key_unparsable",
		"the key is neither a PEM public key nor a JWK")
	// ErrMultiplePEMBlocks: the input holds several PEM blocks; exactly one public key is
	// expected.
	ErrMultiplePEMBlocks = domain.NewError(domain.KindInvalid, "key_multiple_pem_blocks",
		"the key holds more than one PEM block")
	// ErrPrivateKey: the input is (or contains) a private key. The private key never
	// leaves the client; whoever sees this should treat that key as compromised.
	ErrPrivateKey = domain.NewError(domain.KindInvalid, "key_is_private",
		"a private key was sent; send only the public key")
	// ErrCertificate: the input is an X.509 certificate (or signing request), not a bare
	// public key.
	ErrCertificate = domain.NewError(domain.KindInvalid, "key_is_certificate",
		"an X.509 certificate was sent; send the bare public key")
	// ErrRSATooShort: an RSA modulus shorter than MinRSABits.
	ErrRSATooShort = domain.NewError(domain.KindInvalid, "key_rsa_too_short",
		"the RSA key is shorter than 2048 bits")
	// ErrUnsupportedKeyType: a well-formed key of a type Keyledger does not accept (DSA,
	// EC curves other than P-256 and P-384, X25519, X448, Ed448, symmetric keys, RSA over
	// MaxRSABits, unknown algorithms).
	ErrUnsupportedKeyType = domain.NewError(domain.KindInvalid, "key_type_unsupported",
		"unsupported key type; use RSA (2048–4096 bits), EC P-256 or P-384, or Ed25519")
	// ErrUnsupportedUse: a JWK whose "use" is not "sig" or whose "key_ops" do not allow
	// "verify". Its code is the one keyring.ErrUnsupportedUse has: same cause, same answer.
	ErrUnsupportedUse = domain.NewError(domain.KindInvalid, "unsupported_key_use",
		"key use must be \"sig\"")
	// ErrAlgMismatch: a JWS algorithm that does not suit the key (or is not one Keyledger
	// accepts at all, such as "none" or HMAC).
	ErrAlgMismatch = domain.NewError(domain.KindInvalid, "key_alg_mismatch",
		"the algorithm does not suit the key")
)

// keyError carries a precise message for one sentinel.
type keyError struct {
	sentinel *domain.Error
	msg      string
}

func (e *keyError) Error() string { return e.msg }

// Unwrap makes errors.Is(err, sentinel) true.
func (e *keyError) Unwrap() error { return e.sentinel }

// As gives a *domain.Error target the sentinel's Kind and Code with the precise message,
// so the API's generic domain-error mapping shows what was wrong.
func (e *keyError) As(target any) bool {
	p, ok := target.(**domain.Error)
	if !ok {
		return false
	}
	d := *e.sentinel
	d.Message = e.msg
	*p = &d
	return true
}

func fail(sentinel *domain.Error, format string, args ...any) error {
	return &keyError{sentinel: sentinel, msg: fmt.Sprintf(format, args...)}
}
