package voucher

import (
	"fmt"
	"mime"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Form parameter names and values of a token request (RFC 6749 §4.4, RFC 7521 §4.2).
const (
	ParamGrantType           = "grant_type"
	ParamClientAssertionType = "client_assertion_type"
	ParamClientAssertion     = "client_assertion"
	ParamClientID            = "client_id"
	ParamClientSecret        = "client_secret"

	GrantClientCredentials = "client_credentials"
	AssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	ContentTypeForm        = "application/x-www-form-urlencoded"
)

// Size limits of a token request.
const (
	// MaxRequestBytes is the largest token request body accepted (64 KiB). The HTTP
	// layer should stop reading there too (http.MaxBytesReader), so that a huge body is
	// never buffered.
	MaxRequestBytes = 64 << 10
	// MaxAssertionBytes is the longest client assertion accepted (16 KiB): an assertion
	// signed with a 4096-bit RSA key, with generous private claims, is under 2 KiB.
	MaxAssertionBytes = 16 << 10
	// maxIDBytes bounds identifiers taken from the caller (client_id, sub, iss, jti,
	// purposeId): they end up in audit records, Redis keys and logs.
	maxIDBytes = 256
)

// TokenRequest is a well-formed token request: what ParseTokenRequest extracts. Nothing
// in it is verified yet.
type TokenRequest struct {
	// ClientAssertion is the client_assertion parameter: a JWT, not yet checked.
	ClientAssertion string
	// ClientID is the client_id parameter, or "" when it was not sent (or sent empty,
	// which RFC 6749 §3.2 says counts as not sent). When set, the assertion's sub must
	// equal it.
	ClientID string
}

// ParseTokenRequest reads a token request: contentType is the request's Content-Type
// header and body its whole body. It accepts only application/x-www-form-urlencoded
// (charset, if given, UTF-8), with grant_type=client_credentials,
// client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer, a
// client_assertion, and optionally client_id. Errors are *Error with code
// invalid_request (unsupported_grant_type for a grant_type other than
// client_credentials) and a description naming the faulty parameter.
//
// A recognised parameter must not be sent twice (RFC 6749 §3.2); a parameter sent empty
// counts as not sent (also §3.2), so an empty required parameter is refused as empty and
// an empty client_id is ignored. client_secret is
// refused (one authentication method per request, RFC 6749 §2.3). Other parameters are
// ignored, as RFC 6749 §3.2 requires of unrecognised ones (scope, resource, audience…):
// refusing them would break standard client libraries, and none of them changes what
// voucher is issued.
func ParseTokenRequest(contentType string, body []byte) (TokenRequest, error) {
	if err := checkContentType(contentType); err != nil {
		return TokenRequest{}, err
	}
	if len(body) > MaxRequestBytes {
		return TokenRequest{}, refuse(CodeInvalidRequest, "request", fmt.Sprintf("the request body is larger than %d KiB", MaxRequestBytes>>10))
	}
	var (
		values = map[string]string{}
		counts = map[string]int{}
	)
	for pair := range strings.SplitSeq(string(body), "&") {
		if pair == "" {
			continue
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			return TokenRequest{}, refuse(CodeInvalidRequest, "request", "the body is not valid form encoding: a parameter name has a malformed percent-escape")
		}
		switch name {
		case ParamGrantType, ParamClientAssertionType, ParamClientAssertion, ParamClientID, ParamClientSecret:
		default:
			continue // unrecognised: ignored (RFC 6749 §3.2)
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return TokenRequest{}, refuse(CodeInvalidRequest, name, name+" is not valid form encoding: malformed percent-escape")
		}
		counts[name]++
		values[name] = value
	}
	for _, name := range []string{ParamGrantType, ParamClientAssertionType, ParamClientAssertion, ParamClientID, ParamClientSecret} {
		if counts[name] > 1 {
			return TokenRequest{}, refuse(CodeInvalidRequest, name, name+" is sent more than once; send each parameter once")
		}
	}
	missing := func(name, want string) error {
		if counts[name] == 0 {
			return refuse(CodeInvalidRequest, name, name+" is missing; send "+name+"="+want)
		}
		return refuse(CodeInvalidRequest, name, name+" is empty (a parameter without a value counts as missing); send "+name+"="+want)
	}
	switch g := values[ParamGrantType]; g {
	case GrantClientCredentials:
	case "":
		return TokenRequest{}, missing(ParamGrantType, GrantClientCredentials)
	default:
		return TokenRequest{}, refuse(CodeUnsupportedGrantType, ParamGrantType, "grant_type must be client_credentials, not "+show(g))
	}
	switch t := values[ParamClientAssertionType]; t {
	case AssertionTypeJWTBearer:
	case "":
		return TokenRequest{}, missing(ParamClientAssertionType, AssertionTypeJWTBearer)
	default:
		return TokenRequest{}, refuse(CodeInvalidRequest, ParamClientAssertionType, "client_assertion_type must be "+AssertionTypeJWTBearer+", not "+show(t))
	}
	req := TokenRequest{ClientAssertion: values[ParamClientAssertion], ClientID: values[ParamClientID]}
	switch {
	case req.ClientAssertion == "":
		return TokenRequest{}, missing(ParamClientAssertion, "<a JWT signed with the client's key>")
	case len(req.ClientAssertion) > MaxAssertionBytes:
		return TokenRequest{}, refuse(CodeInvalidRequest, ParamClientAssertion, fmt.Sprintf("client_assertion is longer than %d KiB", MaxAssertionBytes>>10))
	}
	if req.ClientID != "" {
		if msg := checkID(req.ClientID); msg != "" {
			return TokenRequest{}, refuse(CodeInvalidRequest, ParamClientID, "client_id "+msg)
		}
	}
	if values[ParamClientSecret] != "" {
		return TokenRequest{}, refuse(CodeInvalidRequest, ParamClientSecret, "client_secret is not accepted with client_assertion: use one client authentication method per request")
	}
	return req, nil
}

// checkContentType accepts application/x-www-form-urlencoded with no charset or UTF-8.
func checkContentType(contentType string) error {
	const check = "content_type"
	want := "; send the parameters as " + ContentTypeForm
	if strings.TrimSpace(contentType) == "" {
		return refuse(CodeInvalidRequest, check, "the request has no Content-Type"+want)
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return refuse(CodeInvalidRequest, check, "the Content-Type header is malformed"+want)
	}
	switch {
	case mt == ContentTypeForm:
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return refuse(CodeInvalidRequest, check, "JSON bodies are not accepted"+want)
	default:
		return refuse(CodeInvalidRequest, check, "Content-Type "+show(mt)+" is not accepted"+want)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
		return refuse(CodeInvalidRequest, check, "charset "+show(cs)+" is not accepted; send UTF-8")
	}
	return nil
}

// checkID returns "" when s may be an identifier (client id, purpose id, jti): at most
// maxIDBytes, valid UTF-8, no control characters, no white space. Otherwise it returns
// what is wrong, to follow the parameter's name.
func checkID(s string) string {
	if len(s) > maxIDBytes {
		return fmt.Sprintf("is longer than %d bytes", maxIDBytes)
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == 0x2028 || r == 0x2029 {
			return "holds white space or control characters"
		}
	}
	return ""
}

// show quotes caller input for a description: cut to 40 bytes, and characters that
// error_description may not hold ('"', '\', non-ASCII, controls) replaced by '?'.
func show(s string) string {
	const limit = 40
	cut := ""
	if len(s) > limit {
		s, cut = s[:limit], "..."
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b[i] = '?'
		}
	}
	return "'" + string(b) + cut + "'"
}
