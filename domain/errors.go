package domain

// Kind is the class of a domain error; the API maps each kind to one HTTP status.
type Kind uint8

// The kinds of domain error.
const (
	KindInvalid   Kind = iota + 1 // the request is malformed or breaks a rule about its own content (400)
	KindNotFound                  // the thing does not exist, or not for this caller (404)
	KindConflict                  // the request contradicts the current state (409)
	KindForbidden                 // the caller may not do this to this thing (403)
)

// Error is a domain rule that refused a change. Code is stable and machine-readable:
// clients switch on it, so never rename one. Compare with errors.Is against the
// package-level values; each value is its own cause.
type Error struct {
	Kind    Kind
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// NewError declares a domain error. Declare each once, as a package-level variable.
func NewError(kind Kind, code, message string) *Error {
	return &Error{Kind: kind, Code: code, Message: message}
}

// Errors shared by every aggregate.
var (
	ErrNotFound      = NewError(KindNotFound, "not_found", "not found")
	ErrAlreadyExists = NewError(KindConflict, "already_exists", "already exists")
	ErrDeleted       = NewError(KindNotFound, "deleted", "it was deleted")
	ErrForbidden     = NewError(KindForbidden, "forbidden", "not allowed for this caller")
)
