package keys

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"strings"
)

const pemBegin = "-----BEGIN "

// parsePEM reads exactly one PEM block holding a public key. data is trimmed and contains
// a BEGIN line.
func parsePEM(data []byte) (Key, error) {
	labels := pemLabels(data)
	for _, l := range labels {
		if strings.Contains(l, "PRIVATE KEY") {
			return Key{}, fail(ErrPrivateKey, "the PEM block %s is a private key; send only the public key, and treat this private key as compromised", quoteShort(l))
		}
	}
	if len(labels) > 1 {
		return Key{}, fail(ErrMultiplePEMBlocks, "found %d PEM blocks; exactly one public key is expected", len(labels))
	}
	if !bytes.HasPrefix(data, []byte(pemBegin)) {
		return Key{}, fail(ErrUnparsable, "text before the PEM block; send the PEM block alone")
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return Key{}, fail(ErrUnparsable, "malformed PEM block (check the BEGIN and END lines and the base64 between them)")
	}
	if len(trim(rest)) > 0 {
		return Key{}, fail(ErrUnparsable, "data after the PEM block; send the PEM block alone")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return parseSPKI(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return Key{}, diagnoseDER(block.Bytes, "malformed PKCS#1 RSA public key: "+strings.TrimPrefix(err.Error(), "x509: "))
		}
		return newKey(pub)
	case "CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE", "X.509 CERTIFICATE":
		return Key{}, fail(ErrCertificate, "the PEM block is an X.509 certificate; send its public key alone (\"openssl x509 -pubkey -noout\" prints it)")
	case "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST":
		return Key{}, fail(ErrCertificate, "the PEM block is a certificate signing request; send the bare public key")
	}
	return Key{}, fail(ErrUnparsable, "the PEM block is of type %s; a \"PUBLIC KEY\" or \"RSA PUBLIC KEY\" block is expected", quoteShort(block.Type))
}

// pemLabels returns the label of every BEGIN line in data, well-formed or not, so that a
// private key is recognised even in a block pem.Decode would skip.
func pemLabels(data []byte) []string {
	var labels []string
	for {
		i := bytes.Index(data, []byte(pemBegin))
		if i < 0 {
			return labels
		}
		data = data[i+len(pemBegin):]
		line := data
		if j := bytes.IndexAny(line, "\r\n"); j >= 0 {
			line = line[:j]
		}
		label, _, _ := bytes.Cut(line, []byte("-----"))
		labels = append(labels, string(label))
	}
}

// subjectPublicKeyInfo is the outer structure of a "PUBLIC KEY" block (RFC 5280).
type subjectPublicKeyInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

// Algorithm and curve identifiers, to accept only what Keyledger supports and to name
// precisely what it does not.
var (
	oidRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidEC      = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidP256    = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384    = asn1.ObjectIdentifier{1, 3, 132, 0, 34}

	algorithmNames = map[string]string{
		"1.2.840.10040.4.1":     "DSA",
		"1.2.840.113549.1.1.10": "RSASSA-PSS-restricted RSA (export it as plain rsaEncryption)",
		"1.2.840.113549.1.3.1":  "Diffie-Hellman",
		"1.2.840.10046.2.1":     "Diffie-Hellman (X9.42)",
		"1.3.101.110":           "X25519",
		"1.3.101.111":           "X448",
		"1.3.101.113":           "Ed448",
	}
	curveNames = map[string]string{
		"1.2.840.10045.3.1.1":   "P-192",
		"1.3.132.0.33":          "P-224",
		"1.3.132.0.35":          "P-521",
		"1.3.132.0.10":          "secp256k1",
		"1.3.36.3.3.2.8.1.1.7":  "brainpoolP256r1",
		"1.3.36.3.3.2.8.1.1.11": "brainpoolP384r1",
		"1.3.36.3.3.2.8.1.1.13": "brainpoolP512r1",
		"1.2.156.10197.1.301":   "SM2",
	}
)

// parseSPKI reads a DER SubjectPublicKeyInfo, refusing unsupported algorithms and curves
// by name before handing the rest to crypto/x509.
func parseSPKI(der []byte) (Key, error) {
	var info subjectPublicKeyInfo
	rest, err := asn1.Unmarshal(der, &info)
	if err != nil {
		return Key{}, diagnoseDER(der, "malformed public key: the PEM block is not a DER SubjectPublicKeyInfo")
	}
	if len(rest) > 0 {
		return Key{}, fail(ErrUnparsable, "malformed public key: data after the SubjectPublicKeyInfo")
	}
	alg := info.Algorithm.Algorithm
	switch {
	case alg.Equal(oidRSA), alg.Equal(oidEd25519):
	case alg.Equal(oidEC):
		params := info.Algorithm.Parameters
		if params.Class == asn1.ClassUniversal && params.Tag == asn1.TagSequence {
			return Key{}, fail(ErrUnsupportedKeyType, "EC key with explicit curve parameters; use a named curve, P-256 or P-384")
		}
		var curve asn1.ObjectIdentifier
		if rest, err := asn1.Unmarshal(params.FullBytes, &curve); err != nil || len(rest) > 0 {
			return Key{}, fail(ErrUnparsable, "malformed EC public key: no named curve")
		}
		if !curve.Equal(oidP256) && !curve.Equal(oidP384) {
			name, ok := curveNames[curve.String()]
			if !ok {
				name = "with identifier " + curve.String()
			}
			return Key{}, fail(ErrUnsupportedKeyType, "EC curve %s is not supported; use P-256 or P-384", name)
		}
	default:
		name, ok := algorithmNames[alg.String()]
		if !ok {
			name = "of algorithm " + alg.String()
		}
		return Key{}, fail(ErrUnsupportedKeyType, "%s keys are not supported; use RSA, EC P-256 or P-384, or Ed25519", name)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return Key{}, fail(ErrUnparsable, "malformed public key: %s", strings.TrimPrefix(err.Error(), "x509: "))
	}
	return newKey(pub)
}

// diagnoseDER explains DER that is not the public key its label promised: a private key
// or a certificate gets its own error, anything else ErrUnparsable with msg.
func diagnoseDER(der []byte, msg string) error {
	if _, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return fail(ErrPrivateKey, "the PEM block holds a PKCS#8 private key; send only the public key, and treat this private key as compromised")
	}
	if _, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return fail(ErrPrivateKey, "the PEM block holds a PKCS#1 RSA private key; send only the public key, and treat this private key as compromised")
	}
	if _, err := x509.ParseECPrivateKey(der); err == nil {
		return fail(ErrPrivateKey, "the PEM block holds an EC private key; send only the public key, and treat this private key as compromised")
	}
	if _, err := x509.ParseCertificate(der); err == nil {
		return fail(ErrCertificate, "the PEM block holds an X.509 certificate; send its public key alone (\"openssl x509 -pubkey -noout\" prints it)")
	}
	return fail(ErrUnparsable, "%s", msg)
}
