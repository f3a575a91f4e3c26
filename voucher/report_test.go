package voucher_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/keyledger/keyledger/voucher"
)

// outcomes maps each check of r to "passed", "failed", "skipped".
func outcomes(t *testing.T, r voucher.Report) map[string]voucher.CheckResult {
	t.Helper()
	names := make([]string, len(r.Checks))
	m := map[string]voucher.CheckResult{}
	for i, c := range r.Checks {
		names[i] = c.Name
		m[c.Name] = c
		if c.Description == "" {
			t.Errorf("check %s has no description", c.Name)
		}
		if (c.Outcome == voucher.Failed) != (c.Error != "") {
			t.Errorf("check %s: outcome %s with error %q", c.Name, c.Outcome, c.Error)
		}
	}
	if !slices.Equal(names, voucher.Checks()) {
		t.Fatalf("report checks %v, want %v", names, voucher.Checks())
	}
	return m
}

// TestReportValid: every check passes or is not applicable, and the jti is not burnt.
func TestReportValid(t *testing.T) {
	k := fixtures(t)
	v := newVerifier(t, world(t))
	a := mint(t, k.rsa, goodClaims(), nil)
	r, err := v.Report(context.Background(), esClient, a)
	if err != nil {
		t.Fatal(err)
	}
	m := outcomes(t, r)
	if !r.Valid {
		t.Fatalf("not valid: %+v", r.Checks)
	}
	for _, n := range []string{voucher.CheckNbf, voucher.CheckDigest} {
		if m[n].Outcome != voucher.Skipped {
			t.Errorf("%s: %+v, want skipped (absent)", n, m[n])
		}
	}
	if m[voucher.CheckSignature].Outcome != voucher.Passed || m[voucher.CheckJTIUnused].Outcome != voucher.Passed {
		t.Fatalf("%+v", r.Checks)
	}
	if _, err := v.Verify(context.Background(), request(a)); err != nil {
		t.Fatalf("Verify after a report: %v (the report must not record the jti)", err)
	}
	r, err = v.Report(context.Background(), esClient, a)
	if err != nil {
		t.Fatal(err)
	}
	if m := outcomes(t, r); r.Valid || m[voucher.CheckJTIUnused].Outcome != voucher.Failed {
		t.Fatalf("report of a used jti: %+v", m[voucher.CheckJTIUnused])
	}
}

// TestReportAllFailures: a report goes on past failures, running every check whose
// inputs are there, and says why the others did not run.
func TestReportAllFailures(t *testing.T) {
	k := fixtures(t)
	v := newVerifier(t, world(t))
	a := mint(t, k.rsa, goodClaims().with("aud", "https://"+audience, "iat", t0.Unix()-7200, "exp", t0.Unix()-60,
		"digest", map[string]any{"alg": "MD5"}), nil)
	r, err := v.Report(context.Background(), esClient, a)
	if err != nil {
		t.Fatal(err)
	}
	m := outcomes(t, r)
	if r.Valid {
		t.Fatal("valid")
	}
	want := map[string]voucher.Outcome{
		voucher.CheckAud: voucher.Failed, voucher.CheckExp: voucher.Failed, voucher.CheckLifetime: voucher.Failed,
		voucher.CheckDigest: voucher.Failed, voucher.CheckSignature: voucher.Passed, voucher.CheckKeyRegistered: voucher.Passed,
		voucher.CheckPurposeActive: voucher.Passed, voucher.CheckJTIUnused: voucher.Passed, voucher.CheckIssSub: voucher.Passed,
	}
	for n, o := range want {
		if m[n].Outcome != o {
			t.Errorf("%s: %+v, want %s", n, m[n], o)
		}
	}
	if !strings.Contains(m[voucher.CheckAud].Description, "without the https:// prefix") {
		t.Errorf("aud: %q", m[voucher.CheckAud].Description)
	}
}

// TestReportOtherClient: an assertion naming another client is reported without any
// lookup of that client.
func TestReportOtherClient(t *testing.T) {
	k := fixtures(t)
	f := world(t)
	v := newVerifier(t, f)
	r, err := v.Report(context.Background(), esClient, mint(t, k.rsaOther, goodClaims().with("iss", other, "sub", other), nil))
	if err != nil {
		t.Fatal(err)
	}
	m := outcomes(t, r)
	if m[voucher.CheckClientID].Outcome != voucher.Failed || m[voucher.CheckKeyRegistered].Outcome != voucher.Skipped ||
		m[voucher.CheckKeyRegistered].Description != "not run: check client_id did not pass" {
		t.Fatalf("%+v", r.Checks)
	}
	if n := f.calls.Load(); n != 0 {
		t.Fatalf("%d lookups for another client's assertion", n)
	}
	if _, err := v.Report(context.Background(), "", "x"); err == nil {
		t.Fatal("a report without a client id")
	}
}

// TestReportAPIClientWithPurpose: the lookup tells the API client it must not send a
// purposeId; the checks on the key it can no longer reach are skipped.
func TestReportAPIClientWithPurpose(t *testing.T) {
	k := fixtures(t)
	r, err := newVerifier(t, world(t)).Report(context.Background(), apiClient, mint(t, k.p256, apiClaims().with("purposeId", purposeA), nil))
	if err != nil {
		t.Fatal(err)
	}
	m := outcomes(t, r)
	if m[voucher.CheckKeyRegistered].Outcome != voucher.Passed || m[voucher.CheckPurposeForKind].Outcome != voucher.Failed ||
		m[voucher.CheckPurposeForKind].Error != voucher.CodeInvalidRequest || m[voucher.CheckSignature].Outcome != voucher.Skipped {
		t.Fatalf("%+v", r.Checks)
	}
}
