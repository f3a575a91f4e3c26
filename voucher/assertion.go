package voucher

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// b64 decodes JWS segments: base64url without padding, refusing non-zero trailing bits
// so that each segment has exactly one encoding.
var b64 = base64.RawURLEncoding.Strict()

// jws is a client assertion split into its parts and decoded, nothing verified.
type jws struct {
	signingInput string // header.payload, as sent: what the signature covers
	signature    []byte
	header       map[string]json.RawMessage
	claims       map[string]json.RawMessage
}

// decodeJWS splits a compact JWS and decodes its header and payload as JSON objects.
// It returns a description of the first problem, or "".
func decodeJWS(s string) (*jws, string) {
	if len(s) > MaxAssertionBytes {
		return nil, "the assertion is longer than " + strconv.Itoa(MaxAssertionBytes>>10) + " KiB"
	}
	h, rest, ok1 := strings.Cut(s, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		if strings.Count(s, ".") == 4 {
			return nil, "the assertion is an encrypted JWT (JWE); send a signed JWT (JWS compact serialization)"
		}
		return nil, "the assertion is not a JWT in JWS compact serialization (header.payload.signature)"
	}
	hb, err := b64.DecodeString(h)
	if err != nil || len(hb) == 0 {
		return nil, "the assertion header is not base64url (without padding)"
	}
	pb, err := b64.DecodeString(p)
	if err != nil || len(pb) == 0 {
		return nil, "the assertion payload is not base64url (without padding)"
	}
	sb, err := b64.DecodeString(sig)
	if err != nil {
		return nil, "the assertion signature is not base64url (without padding)"
	}
	header, msg := objectMembers(hb)
	if msg != "" {
		return nil, "the assertion header " + msg
	}
	claims, msg := objectMembers(pb)
	if msg != "" {
		return nil, "the assertion payload " + msg
	}
	return &jws{signingInput: s[:len(h)+1+len(p)], signature: sb, header: header, claims: claims}, ""
}

// objectMembers splits one JSON object into its members (raw values, sharing data).
// It refuses anything else, and refuses a member name given twice: parsers resolve
// duplicates differently (first or last wins), a classic way to smuggle a claim past
// one of them. It refuses invalid UTF-8, which parsers also read differently.
// encoding/json validates; the walk below only finds the members' bounds
// in text known to be valid, which is several times faster than json.Decoder's tokens.
func objectMembers(data []byte) (map[string]json.RawMessage, string) {
	const notObject = "is not a JSON object"
	if !json.Valid(data) {
		return nil, notObject
	}
	if !utf8.Valid(data) { // RFC 8259 §8.1; encoding/json would turn bad bytes into U+FFFD
		return nil, "is not valid UTF-8"
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return nil, notObject
	}
	members := make(map[string]json.RawMessage, 12)
	i = skipSpace(data, i+1)
	if data[i] == '}' {
		return members, ""
	}
	for {
		end := stringEnd(data, i)
		name, ok := unquote(data[i:end])
		if !ok {
			return nil, notObject
		}
		i = skipSpace(data, skipSpace(data, end)+1) // past ':'
		start := i
		i = valueEnd(data, i)
		if _, dup := members[name]; dup {
			return nil, "has the member " + show(name) + " twice"
		}
		members[name] = data[start:i:i]
		i = skipSpace(data, i)
		if data[i] == '}' {
			return members, ""
		}
		i = skipSpace(data, i+1) // past ','
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the string starting at data[i] ('"').
func stringEnd(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// valueEnd returns the index after the JSON value starting at data[i].
func valueEnd(data []byte, i int) int {
	switch data[i] {
	case '"':
		return stringEnd(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				i = stringEnd(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(data) && data[i] != ',' && data[i] != '}' && data[i] != ']' &&
		data[i] != ' ' && data[i] != '\t' && data[i] != '\n' && data[i] != '\r' {
		i++
	}
	return i
}

// unquote decodes a JSON string literal, without encoding/json when it has no escape.
func unquote(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	if !bytes.ContainsRune(raw, '\\') {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// isNull reports whether a member's raw value is JSON null.
func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// stringMember reads an optional string member: present is false when the member is
// absent or null; ok is false when it is present but not a string.
func stringMember(m map[string]json.RawMessage, name string) (value string, present, ok bool) {
	raw, found := m[name]
	if !found || isNull(raw) {
		return "", false, true
	}
	value, ok = unquote(raw)
	return value, true, ok
}

// maxNumericDate is 9999-12-31T23:59:59Z: a NumericDate beyond it is not a date anyone
// means.
const maxNumericDate = 253402300799

// numericDate reads a NumericDate (RFC 7519 §2): a JSON number of seconds since the
// epoch, possibly fractional, from 0 to the year 9999.
func numericDate(raw json.RawMessage) (time.Time, bool) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return time.Time{}, false // a string, an object, true…: JSON numbers only
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}

// audience reads aud: one string, or an array of strings (RFC 7519 §4.1.3). ok is false
// when aud is present but neither; an empty array reads as present with no values.
func audience(m map[string]json.RawMessage) (values []string, present, ok bool) {
	raw, found := m["aud"]
	if !found || isNull(raw) {
		return nil, false, true
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, true, false
		}
		return []string{s}, true, true
	case '[':
		if json.Unmarshal(raw, &values) != nil {
			return nil, true, false
		}
		return values, true, true
	}
	return nil, true, false
}

// Digest is the optional digest claim of a client assertion (PDND): the SHA-256 of a
// document the voucher is bound to, copied into the voucher unchanged.
type Digest struct {
	// Alg is always "SHA256".
	Alg string `json:"alg"`
	// Value is 64 hexadecimal digits.
	Value string `json:"value"`
}

// parseDigest reads the digest claim strictly: an object with exactly the members alg
// ("SHA256") and value (64 hex digits). It returns a description of the problem, or "".
func parseDigest(raw json.RawMessage) (*Digest, string) {
	const form = `an object {alg: SHA256, value: 64 hex digits}`
	m, msg := objectMembers(raw)
	if msg != "" {
		return nil, "digest must be " + form
	}
	for name := range m {
		if name != "alg" && name != "value" {
			return nil, "digest has the unknown member " + show(name) + "; it must be " + form
		}
	}
	alg, present, ok := stringMember(m, "alg")
	if !present || !ok {
		return nil, "digest.alg must be the string SHA256"
	}
	if alg != "SHA256" {
		return nil, "digest.alg must be SHA256, not " + show(alg)
	}
	value, present, ok := stringMember(m, "value")
	if !present || !ok {
		return nil, "digest.value must be a string of 64 hex digits"
	}
	if len(value) != 64 || strings.IndexFunc(value, func(r rune) bool {
		return (r < '0' || r > '9') && (r < 'a' || r > 'f') && (r < 'A' || r > 'F')
	}) >= 0 {
		return nil, "digest.value must be 64 hex digits (a SHA-256 hash)"
	}
	return &Digest{Alg: alg, Value: value}, ""
}

// isKID reports whether s has the form of an RFC 7638 SHA-256 thumbprint: 43 base64url
// characters.
func isKID(s string) bool {
	if len(s) != 43 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	_, err := b64.DecodeString(s)
	return err == nil
}
