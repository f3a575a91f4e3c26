// Package voucher is the token path: client-assertion validation, voucher signing,
// signing keys and JWKS, and the batched audit writer.
//
// # Flow
//
// A token request goes through these calls; the HTTP layer around them answers:
//
//	req, err := voucher.ParseTokenRequest(contentType, body) // form → TokenRequest, or *Error
//	a, err := verifier.Verify(ctx, req)                      // every check → Assertion
//	d, err := issuer.Prepare(a)                              // claims, signing key, AuditRecord
//	wait, err := audit.Submit(ctx, d.Audit, correlationID)   // the record's append starts
//	v, err := d.Sign()                                       // signed voucher, meanwhile
//	_, err = wait(ctx)                                       // answer only once it is durable
//
// (issuer.Issue is Prepare and Sign in one, for callers that write no audit record.)
//
// Errors are of three kinds, told apart with errors.As and errors.Is:
//   - *Error: a refusal. Answer 400 with the RFC 6749 §5.2 JSON {error: Code,
//     error_description: SafeDescription()}. The description names the failed check
//     precisely and never holds key material or anything about another client.
//   - ErrUnavailable: the read model (Entries) or the replay cache could not answer —
//     unreachable, not ready, rebuilding. Answer 503: never a voucher from partial data.
//   - ErrCorruptEntry, or a signing failure: answer 500.
//
// # Form
//
// ParseTokenRequest accepts application/x-www-form-urlencoded only, with
// grant_type=client_credentials, client_assertion_type=
// urn:ietf:params:oauth:client-assertion-type:jwt-bearer, client_assertion and an
// optional client_id. A recognised parameter sent twice is refused, a parameter sent
// empty counts as absent (RFC 6749 §3.2: an empty client_id is ignored), client_secret
// is refused (one authentication method), and unrecognised parameters are ignored, as
// RFC 6749 §3.2 requires.
//
// # Checks
//
// Verify runs these checks in this order and stops at the first failure; Report runs
// all of them (each once the checks it reads passed) and lists every outcome. Both run
// the same code. Codes: invalid_request for a malformed request or assertion,
// invalid_client when the assertion does not authenticate the client, unauthorized_client
// when the purpose is not the client's, invalid_grant when the purpose or e-service is not
// in force.
//
//	jws              compact JWS, JSON header and payload, no repeated member,     invalid_request
//	                 no crit, at most 16 KiB
//	alg              present; never none, never HMAC, a supported algorithm        invalid_request / invalid_client
//	kid              43 base64url characters (RFC 7638 thumbprint)                 invalid_request
//	iss, sub         present, well-formed ids                                      invalid_request
//	iss_sub          iss = sub                                                     invalid_client
//	client_id        sub = client_id, when client_id is sent                       invalid_client
//	aud              equal to, or an array containing, Config.Audience; the        invalid_request / invalid_client
//	                 description names a scheme or trailing slash too many or
//	                 too few ("assertion aud must be X, without the https://
//	                 prefix")
//	jti              present, a well-formed id                                     invalid_request
//	iat              a NumericDate, not after now + skew                           invalid_request / invalid_client
//	exp              a NumericDate, now before exp + skew                          invalid_request / invalid_client
//	nbf              when present: a NumericDate, not after now + skew             invalid_request / invalid_client
//	lifetime         0 < exp - iat <= Config.MaxLifetime (default 1h)              invalid_client
//	purpose_id       when present: a well-formed id                                invalid_request
//	digest           when present: exactly {alg: "SHA256", value: 64 hex}          invalid_request
//	key_registered   the read model holds kid on client sub (one lookup)           invalid_client
//	purpose_id_kind  purposeId sent by an e-service client, not by an API one      invalid_request
//	purpose_linked   the purpose is linked to the client                           unauthorized_client
//	key_use          the key's use is sig                                          invalid_client
//	key_alg          alg is the one the key was registered for, which suits        invalid_client
//	                 its type (RS256 RSA, ES256 P-256, ES384 P-384, EdDSA
//	                 Ed25519); the verifying algorithm comes from the key
//	signature        verifies with the registered key                              invalid_client
//	purpose_active   the purpose is active (not pending, suspended, archived)       invalid_grant
//	eservice_active  the e-service is active                                       invalid_grant
//	jti_unused       (client, jti) not used before; recorded until exp + skew      invalid_client
//
// Unknown header parameters and private claims are ignored, never refused. Skew
// (default 10s) applies to iat, exp and nbf alike.
//
// # Lookup
//
// The read model holds one entry per (client, kid, purpose) for e-service clients and
// per (client, kid) for API clients, and the client's kind is only known from an entry.
// Verify reads (sub, kid, purposeId) when a purposeId is sent and (sub, kid) otherwise:
// one round trip on the path that issues a voucher. Only a miss costs more: with a
// purposeId, one more read of (sub, kid) tells an API client that it must not send one;
// and when Entries also implements KeyProbe, a probe tells an unregistered key from an
// e-service client that sent no purposeId or a purpose not linked to it. Without a
// KeyProbe those misses share one description naming both possibilities.
//
// Parsed client public keys are cached by kid (a kid is its key's thumbprint) and
// compared with the entry's PEM on every use, so a revoked key is refused at once: the
// read model, not the cache, decides.
//
// # Replay
//
// A ReplayCache records each accepted (client, jti) until the assertion's exp + skew.
// The check runs last, after the signature verified (nobody can burn another client's
// jti) and after the purpose checks (a refused assertion can be sent again once the
// purpose is active). MemoryReplayCache serves one process; RedisReplayCache (SET NX
// PXAT) is shared by every replica. The cache fails closed: an error is ErrUnavailable.
//
// # Signing keys
//
// A Signer signs vouchers (JWS header {alg, kid, typ: "at+jwt"}) with its current key
// and publishes every key it holds in JWKS(), the content of /.well-known/jwks.json. Keys
// are RS256 (RSA, default 2048 bits), ES256 (P-256) or EdDSA (Ed25519); a kid is the
// RFC 7638 thumbprint of the public key. They come from operator-managed PEM files
// (SignerConfig.Files, the first signs) or from a directory the Signer manages:
//
//	<dir>/                 mode 0700, created at first start
//	    <kid>.pem          one private key per file: PKCS #8 "PRIVATE KEY", mode 0600;
//	                       every one is published in the JWKS
//	    current            the kid of the key that signs, one line; replaced
//	                       atomically (rename) by a rotation
//
// At first start the directory gets one key of SignerConfig.Algorithm. Rotate adds a
// new key and makes it current; the previous keys stay published, so vouchers they
// signed keep verifying, until Remove deletes them (once their vouchers have expired).
// Other processes sharing the directory follow after Reload. Files are written through
// a synced temporary file and linked into place, so a file is complete or absent, and
// concurrent first starts agree on one current key. Key files with group or other
// permission bits are refused. Nothing in this package logs, and no error holds key
// material.
//
// # Vouchers
//
// Issue builds iss (IssuerConfig.Issuer), sub = client_id = the client, aud (the
// e-service's audience; IssuerConfig.APIAudience for API clients), purposeId, tenant
// (API clients), a fresh UUID jti, iat = nbf, exp = iat + the e-service's voucher
// lifetime (IssuerConfig.APILifetime for API clients) and digest when the assertion had
// one, and returns the AuditRecord that must be appended before the voucher is sent.
package voucher
