package voucher

import (
	"errors"
	"net/http"
)

// RFC 6749 §5.2 error codes used by the token path. Clients switch on them: never
// rename one.
const (
	// CodeInvalidRequest: the request or the assertion is malformed — a parameter is
	// missing, repeated or of the wrong form, or a claim is absent or of the wrong type.
	CodeInvalidRequest = "invalid_request"
	// CodeInvalidClient: client authentication failed — the assertion is well-formed but
	// does not prove that the caller is the client it names (wrong aud, expired, wrong
	// signature, unknown key, replayed jti…). RFC 7521 §4.2.1 and RFC 7523 §3.2 prescribe
	// this code for invalid client assertions.
	CodeInvalidClient = "invalid_client"
	// CodeInvalidGrant: the client authenticated and is linked to the purpose, but the
	// purpose or its e-service is not in force now (pending, suspended, archived): the
	// grant exists but is not valid at the moment.
	CodeInvalidGrant = "invalid_grant"
	// CodeUnauthorizedClient: the client authenticated but has no right to what it asks
	// for: the purpose is not linked to it.
	CodeUnauthorizedClient = "unauthorized_client"
	// CodeUnsupportedGrantType: grant_type is present but is not client_credentials.
	CodeUnsupportedGrantType = "unsupported_grant_type"
)

// Error is a refusal the client must see: an RFC 6749 §5.2 error. Its Description names
// the failed check precisely in words safe to show anyone who can send the request: it
// never holds key material, and it names nothing the caller did not send except the
// configured assertion audience and the state of the caller's own purpose (the latter
// only after the assertion's signature verified). Obtain it with errors.As; never
// compare with ==.
type Error struct {
	// Code is the RFC 6749 error code (one of the Code constants): the "error" member.
	Code string
	// Check is the name of the check that failed: a form parameter ("grant_type", …) or
	// one of the assertion checks (see Checks).
	Check string
	// Description is the "error_description" member: printable ASCII-safe text (RFC
	// 6749 §5.2 restricts it to %x20-21 / %x23-5B / %x5D-7E; see SafeDescription).
	Description string

	// wellFormed marks a failure on a claim's value, not its form (an expired exp):
	// Report still runs the checks that read the claim.
	wellFormed bool
}

func (e *Error) Error() string { return "voucher: " + e.Code + ": " + e.Description }

// Status is the HTTP status of the error response: 400 for every code. RFC 6749 §5.2
// demands 401 for invalid_client only when the client authenticated through the
// Authorization header, which the token endpoint does not accept.
func (e *Error) Status() int { return http.StatusBadRequest }

// SafeDescription is Description restricted to the characters RFC 6749 §5.2 allows in
// error_description (printable ASCII without '"' and '\'): others become '?'. The
// descriptions this package writes already conform except where they quote caller
// input; use this when writing the JSON body.
func (e *Error) SafeDescription() string {
	b := []byte(e.Description)
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b[i] = '?'
		}
	}
	return string(b)
}

func refuse(code, check, description string) *Error {
	return &Error{Code: code, Check: check, Description: description}
}

// Server-side failures. They are never *Error: the caller did nothing wrong and must be
// answered with a 5xx, never with a voucher.
var (
	// ErrUnavailable wraps failures of the read model (Entries) or the replay cache:
	// store unreachable, read model not ready or rebuilding, replay cache full. The
	// answer is unknown, not "no": the HTTP layer answers 503 with Retry-After.
	ErrUnavailable = errors.New("voucher: store unavailable")
	// ErrCorruptEntry means the read model returned an entry that contradicts itself or
	// the request (a PEM whose thumbprint is not the kid, an entry for another client, a
	// missing audience or lifetime): a projection bug. Answer 500, and alert.
	ErrCorruptEntry = errors.New("voucher: corrupt voucher entry")
)
