package voucher_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/keyledger/keyledger/voucher"
)

const formType = "application/x-www-form-urlencoded"

// goodForm is a valid token request body, changed by kv (value nil: leave out).
func goodForm(kv ...any) string {
	base := [][2]string{
		{"grant_type", "client_credentials"},
		{"client_assertion_type", voucher.AssertionTypeJWTBearer},
		{"client_assertion", "eyJ.eyJ.sig"},
	}
	out := []string{}
	changed := map[string]bool{}
	for i := 0; i < len(kv); i += 2 {
		changed[kv[i].(string)] = true
	}
	for _, p := range base {
		if !changed[p[0]] {
			out = append(out, url.QueryEscape(p[0])+"="+url.QueryEscape(p[1]))
		}
	}
	for i := 0; i < len(kv); i += 2 {
		if v, ok := kv[i+1].(string); ok {
			out = append(out, url.QueryEscape(kv[i].(string))+"="+url.QueryEscape(v))
		}
	}
	return strings.Join(out, "&")
}

func TestParseTokenRequestAccepts(t *testing.T) {
	cases := []struct {
		name, contentType, body string
		clientID                string
	}{
		{"minimal", formType, goodForm(), ""},
		{"client_id", formType, goodForm("client_id", "c-1"), "c-1"},
		{"empty client_id counts as absent", formType, goodForm("client_id", ""), ""},
		{"charset utf-8", formType + "; charset=UTF-8", goodForm(), ""},
		{"unknown parameters ignored, even repeated", formType, goodForm() + "&scope=a&scope=b&resource=x&audience=y", ""},
		{"empty pairs", formType, "&&" + goodForm() + "&", ""},
		{"plus and percent escapes", formType, "grant_type=client%5Fcredentials&client_assertion_type=" + url.QueryEscape(voucher.AssertionTypeJWTBearer) + "&client_assertion=eyJ.eyJ.sig&client_id=a%2Bb", "a+b"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := voucher.ParseTokenRequest(c.contentType, []byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if req.ClientAssertion != "eyJ.eyJ.sig" || req.ClientID != c.clientID {
				t.Fatalf("%+v", req)
			}
		})
	}
}

func TestParseTokenRequestRefuses(t *testing.T) {
	long := strings.Repeat("a", voucher.MaxAssertionBytes+1)
	cases := []struct {
		name, contentType, body string
		code, check, desc       string
	}{
		{"no content type", "", goodForm(), voucher.CodeInvalidRequest, "content_type", "has no Content-Type"},
		{"JSON", "application/json", `{"grant_type":"client_credentials"}`, voucher.CodeInvalidRequest, "content_type", "JSON bodies are not accepted"},
		{"multipart", "multipart/form-data; boundary=x", goodForm(), voucher.CodeInvalidRequest, "content_type", "'multipart/form-data' is not accepted"},
		{"malformed content type", "application/x-www-form-urlencoded; =", goodForm(), voucher.CodeInvalidRequest, "content_type", "malformed"},
		{"charset latin1", formType + "; charset=iso-8859-1", goodForm(), voucher.CodeInvalidRequest, "content_type", "charset"},
		{"body too large", formType, goodForm() + "&x=" + strings.Repeat("a", voucher.MaxRequestBytes), voucher.CodeInvalidRequest, "request", "larger than 64 KiB"},
		{"bad escape", formType, goodForm() + "&client_id=%zz", voucher.CodeInvalidRequest, "client_id", "percent-escape"},
		{"bad escape in a name", formType, goodForm() + "&%zz=1", voucher.CodeInvalidRequest, "request", "percent-escape"},
		{"no grant_type", formType, goodForm("grant_type", nil), voucher.CodeInvalidRequest, "grant_type", "grant_type is missing"},
		{"empty grant_type", formType, goodForm("grant_type", ""), voucher.CodeInvalidRequest, "grant_type", "grant_type is empty"},
		{"repeated grant_type", formType, goodForm() + "&grant_type=client_credentials", voucher.CodeInvalidRequest, "grant_type", "more than once"},
		{"wrong grant_type", formType, goodForm("grant_type", "password"), voucher.CodeUnsupportedGrantType, "grant_type", "grant_type must be client_credentials, not 'password'"},
		{"no client_assertion_type", formType, goodForm("client_assertion_type", nil), voucher.CodeInvalidRequest, "client_assertion_type", "missing"},
		{"wrong client_assertion_type", formType, goodForm("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"), voucher.CodeInvalidRequest, "client_assertion_type", "must be " + voucher.AssertionTypeJWTBearer},
		{"no client_assertion", formType, goodForm("client_assertion", nil), voucher.CodeInvalidRequest, "client_assertion", "client_assertion is missing"},
		{"empty client_assertion", formType, goodForm("client_assertion", ""), voucher.CodeInvalidRequest, "client_assertion", "client_assertion is empty"},
		{"repeated client_assertion", formType, goodForm() + "&client_assertion=x", voucher.CodeInvalidRequest, "client_assertion", "more than once"},
		{"client_assertion too long", formType, goodForm("client_assertion", long), voucher.CodeInvalidRequest, "client_assertion", "longer than 16 KiB"},
		{"repeated client_id", formType, goodForm() + "&client_id=a&client_id=a", voucher.CodeInvalidRequest, "client_id", "more than once"},
		{"client_id with a newline", formType, goodForm("client_id", "a\nb"), voucher.CodeInvalidRequest, "client_id", "white space or control"},
		{"client_secret too", formType, goodForm("client_secret", "s3cret"), voucher.CodeInvalidRequest, "client_secret", "one client authentication method"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := voucher.ParseTokenRequest(c.contentType, []byte(c.body))
			oe := oauthError(t, err)
			if oe.Code != c.code || oe.Check != c.check || !strings.Contains(oe.Description, c.desc) {
				t.Fatalf("got %s/%s %q, want %s/%s containing %q", oe.Code, oe.Check, oe.Description, c.code, c.check, c.desc)
			}
			if oe.SafeDescription() != oe.Description {
				t.Errorf("description %q has characters error_description may not hold", oe.Description)
			}
			if strings.Contains(oe.Description, "s3cret") {
				t.Errorf("description echoes the secret")
			}
		})
	}
}

// FuzzParseTokenRequest: the form parser never panics, refuses only with *Error and a
// known code, and what it accepts meets its contract.
func FuzzParseTokenRequest(f *testing.F) {
	f.Add(formType, goodForm())
	f.Add(formType, goodForm("client_id", "abc"))
	f.Add(formType+"; charset=utf-8", goodForm()+"&scope=x")
	f.Add("application/json", `{"grant_type":"client_credentials"}`)
	f.Add(formType, "grant_type=client_credentials&grant_type=x")
	f.Add(formType, "%")
	f.Add(formType, "a=%zz&b")
	f.Add("text/plain; charset=", "")
	f.Add(formType, goodForm("client_secret", "x"))
	f.Fuzz(func(t *testing.T, contentType, body string) {
		req, err := voucher.ParseTokenRequest(contentType, []byte(body))
		if err != nil {
			oe := oauthError(t, err)
			switch oe.Code {
			case voucher.CodeInvalidRequest, voucher.CodeUnsupportedGrantType:
			default:
				t.Fatalf("code %q", oe.Code)
			}
			if oe.Description == "" || oe.Check == "" {
				t.Fatalf("empty description or check: %+v", oe)
			}
			return
		}
		if req.ClientAssertion == "" || len(req.ClientAssertion) > voucher.MaxAssertionBytes {
			t.Fatalf("accepted assertion of %d bytes", len(req.ClientAssertion))
		}
	})
}
