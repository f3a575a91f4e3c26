package voucher_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keyledger/keyledger/voucher"
)

// FuzzParseAssertion runs the whole check pipeline — Verify and Report — over
// arbitrary assertions and client ids against the test read model: it never panics,
// refuses only with *Error (the read model never fails here) naming a known check and
// code, and a report lists every check.
func FuzzParseAssertion(f *testing.F) {
	k := fixtures(f)
	valid := mint(f, k.rsa, goodClaims(), nil)
	f.Add(valid, "")
	f.Add(valid, esClient)
	f.Add(mint(f, k.ed, goodClaims().with("digest", map[string]any{"alg": "SHA256", "value": strings.Repeat("a", 64)}), nil), esClient)
	f.Add(mint(f, k.p256, apiClaims(), nil), apiClient)
	f.Add(mint(f, k.p256, apiClaims().with("purposeId", purposeA), nil), "")
	f.Add(mint(f, k.p384, apiClaims().with("iss", p384Cli, "sub", p384Cli, "nbf", 1.5), nil), p384Cli)
	f.Add(mint(f, k.rsa, goodClaims(), header{"alg": "none"}), "")
	f.Add(mint(f, k.rsa, goodClaims(), header{"alg": "HS256"}), "")
	f.Add(mint(f, k.rsa, goodClaims().with("aud", []any{1, "x"}, "exp", "soon"), nil), "")
	f.Add(mint(f, k.rsa, goodClaims().with("digest", map[string]any{"alg": 1}), header{"crit": []string{"x"}}), "")
	f.Add("e30.e30.", "")
	f.Add("a.b.c.d.e", "x")
	f.Add(`eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIiwic3ViIjoiYiJ9.`, "")
	f.Add("", "")
	known := map[string]bool{}
	for _, c := range voucher.Checks() {
		known[c] = true
	}
	f.Fuzz(func(t *testing.T, assertion, clientID string) {
		v := newVerifier(t, withProbe(t, world(t)))
		_, err := v.Verify(context.Background(), voucher.TokenRequest{ClientAssertion: assertion, ClientID: clientID})
		if err != nil {
			var oe *voucher.Error
			if !errors.As(err, &oe) {
				t.Fatalf("error %v is not an *Error", err)
			}
			switch oe.Code {
			case voucher.CodeInvalidRequest, voucher.CodeInvalidClient, voucher.CodeInvalidGrant, voucher.CodeUnauthorizedClient:
			default:
				t.Fatalf("code %q", oe.Code)
			}
			if !known[oe.Check] || oe.Description == "" {
				t.Fatalf("check %q, description %q", oe.Check, oe.Description)
			}
		}
		if clientID == "" {
			return
		}
		r, err := v.Report(context.Background(), clientID, assertion)
		if err != nil {
			t.Fatalf("report: %v", err)
		}
		if len(r.Checks) != len(known) {
			t.Fatalf("report of %d checks", len(r.Checks))
		}
	})
}
