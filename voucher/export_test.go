package voucher

// SetKeyParseHook makes v call f each time it parses a client key's PEM (a key-cache
// miss).
func SetKeyParseHook(v *Verifier, f func()) { v.keys.parseHook = f }
