// Package voucher is the token path: client-assertion validation, voucher signing,
// signing keys and JWKS, and the batched audit writer.
package voucher
