package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// errVoucherAlg is checkVoucher's failure for a voucher signed with another algorithm
// than the scenario's.
var errVoucherAlg = errors.New("the voucher is signed with another algorithm")

// errNoTokenEndpoint is the probe's failure when the server answers 404: the binary has no
// token endpoint (yet), and nothing it measures would mean anything.
var errNoTokenEndpoint = errors.New("404 from /oauth2/token: the server has no token endpoint")

// driver sends token requests to one server.
type driver struct {
	hc  *http.Client
	url string // the token endpoint
}

func newDriver(base string, conc int) *driver {
	tr := &http.Transport{
		MaxIdleConns:        2 * conc,
		MaxIdleConnsPerHost: 2 * conc,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &driver{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, url: base + "/oauth2/token"}
}

func (d *driver) close() { d.hc.CloseIdleConnections() }

// base is the server's base URL.
func (d *driver) base() string { return strings.TrimSuffix(d.url, "/oauth2/token") }

// post sends one token request and reads the whole answer into buf.
func (d *driver) post(ctx context.Context, body []byte, buf *bytes.Buffer) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", formContentType)
	req.Header.Set("Accept", "application/json")
	resp, err := d.hc.Do(req)
	if err != nil {
		return 0, err
	}
	buf.Reset()
	_, err = io.Copy(buf, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, err
}

// issued reports whether an answer is a voucher: 200 and an access_token member (the
// full answer is checked once per server by checkVoucher; every answer is not parsed,
// to leave the cores to the server).
func issued(status int, body []byte) bool {
	return status == http.StatusOK && bytes.Contains(body, []byte(`"access_token"`))
}

// errorKey is how an error answer is told from others: its status, and its RFC 6749
// error and description without the correlation id (different in every answer).
func errorKey(status int, body []byte, err error) string {
	if err != nil {
		return "transport: " + err.Error()
	}
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return fmt.Sprintf("%d %s: %s", status, e.Error, e.Description)
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return fmt.Sprintf("%d %s", status, s)
}

// errorSamples counts error answers by errorKey, keeping the first few distinct ones.
type errorSamples struct {
	mu     sync.Mutex
	order  []string
	counts map[string]int
}

const maxErrorSamples = 5

func (e *errorSamples) add(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.counts == nil {
		e.counts = map[string]int{}
	}
	if _, ok := e.counts[key]; !ok && len(e.order) >= maxErrorSamples {
		key = "(other errors)"
	}
	if _, ok := e.counts[key]; !ok {
		e.order = append(e.order, key)
	}
	e.counts[key]++
}

// String lists the samples, most frequent first: "  N × key" lines.
func (e *errorSamples) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	keys := slices.Clone(e.order)
	slices.SortStableFunc(keys, func(a, b string) int { return e.counts[b] - e.counts[a] })
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "  %d × %s\n", e.counts[k], k)
	}
	return sb.String()
}

// phase is what one stretch of load measured.
type phase struct {
	tokens, errors int
	elapsed        time.Duration
	latencies      []float64 // ms, unsorted
	exhausted      bool
}

func (p phase) rate() float64 {
	if p.elapsed <= 0 {
		return 0
	}
	return float64(p.tokens) / p.elapsed.Seconds()
}

// run drives the endpoint with conc workers for d: each sends its next pre-signed
// assertion on its own keep-alive connection (rawConn) as soon as its previous answer is
// read (closed loop). It stops early when the
// pool runs out. elapsed runs from the start until the last worker's last answer.
func (d *driver) run(ctx context.Context, p *pool, conc int, dur time.Duration, errs *errorSamples) phase {
	type tally struct {
		tokens, errors int
		lat            []float64
		exhausted      bool
	}
	tallies := make([]tally, conc)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for w := range tallies {
		wg.Go(func() {
			t := &tallies[w]
			t.lat = make([]float64, 0, 4096)
			var buf bytes.Buffer
			rc, err := newRawConn(d.url, 30*time.Second)
			if err != nil {
				t.errors++
				errs.add(errorKey(0, nil, err))
				return
			}
			defer rc.close()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				it, ok := p.take()
				if !ok {
					t.exhausted = true
					return
				}
				sent := time.Now()
				status, err := rc.post(it.body, &buf)
				t.lat = append(t.lat, float64(time.Since(sent).Nanoseconds())/1e6)
				if err == nil && issued(status, buf.Bytes()) {
					t.tokens++
					continue
				}
				if ctx.Err() != nil {
					return
				}
				t.errors++
				errs.add(errorKey(status, buf.Bytes(), err))
			}
		})
	}
	wg.Wait()
	ph := phase{elapsed: time.Since(start)}
	for _, t := range tallies {
		ph.tokens += t.tokens
		ph.errors += t.errors
		ph.latencies = append(ph.latencies, t.lat...)
		ph.exhausted = ph.exhausted || t.exhausted
	}
	return ph
}

// probe sends one token request and checks the whole answer: a 404 is a server without
// a token endpoint; any other non-200 answer is reported with its body; a 200 must be a
// voucher that checkVoucher accepts.
func (d *driver) probe(ctx context.Context, p *pool, want voucherExpectation) error {
	it, ok := p.take()
	if !ok {
		return errors.New("the assertion pool is empty")
	}
	var buf bytes.Buffer
	status, err := d.post(ctx, it.body, &buf)
	switch {
	case err != nil:
		return fmt.Errorf("POST %s: %w", d.url, err)
	case status == http.StatusNotFound:
		return errNoTokenEndpoint
	case status != http.StatusOK:
		return fmt.Errorf("the first token request answered %d: %s", status, strings.TrimSpace(buf.String()))
	}
	want.clientID = it.clientID
	return d.checkVoucher(ctx, buf.Bytes(), want)
}

// voucherExpectation is what a voucher of the scenario must be.
type voucherExpectation struct {
	alg, issuer, audience, purposeID, clientID string
	lifetime                                   int
}

// checkVoucher checks a 200 answer completely: {access_token, token_type: Bearer,
// expires_in}, a JWS of the scenario's algorithm with typ at+jwt whose signature verifies
// with the key of its kid in /.well-known/jwks.json, and the claims the request calls
// for.
func (d *driver) checkVoucher(ctx context.Context, body []byte, want voucherExpectation) error {
	var ans struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return fmt.Errorf("token answer %q: %w", body, err)
	}
	if ans.AccessToken == "" || !strings.EqualFold(ans.TokenType, "Bearer") || ans.ExpiresIn != int64(want.lifetime) {
		return fmt.Errorf("token answer %s: want an access_token, token_type Bearer and expires_in %d", body, want.lifetime)
	}
	if alg := headerAlg(ans.AccessToken); alg != want.alg {
		return fmt.Errorf("%w: %q, not %s (KEYLEDGER_SIGNING_ALG=%s not applied?)", errVoucherAlg, alg, want.alg, want.alg)
	}
	jws, err := jose.ParseSignedCompact(ans.AccessToken, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(want.alg)})
	if err != nil {
		return fmt.Errorf("the voucher is not a JWS signed %s: %w", want.alg, err)
	}
	h := jws.Signatures[0].Header
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, "at+jwt") {
		return fmt.Errorf("voucher header typ %q, want at+jwt", typ)
	}
	base := strings.TrimSuffix(d.url, "/oauth2/token")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/.well-known/jwks.json", nil)
	if err != nil {
		return err
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET /.well-known/jwks.json: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /.well-known/jwks.json: %d %v", resp.StatusCode, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return fmt.Errorf("/.well-known/jwks.json: %w", err)
	}
	ks := set.Key(h.KeyID)
	if len(ks) == 0 {
		return fmt.Errorf("the voucher's kid %q is not in /.well-known/jwks.json", h.KeyID)
	}
	payload, err := jws.Verify(ks[0].Key)
	if err != nil {
		return fmt.Errorf("the voucher's signature does not verify with the JWKS key %s: %w", h.KeyID, err)
	}
	var c struct {
		Iss       string `json:"iss"`
		Sub       string `json:"sub"`
		Aud       any    `json:"aud"`
		PurposeID string `json:"purposeId"`
		JTI       string `json:"jti"`
		Iat       int64  `json:"iat"`
		Exp       int64  `json:"exp"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return fmt.Errorf("voucher claims %s: %w", payload, err)
	}
	aud, _ := c.Aud.(string)
	if list, ok := c.Aud.([]any); ok && len(list) == 1 {
		aud, _ = list[0].(string)
	}
	if c.Iss != want.issuer || c.Sub != want.clientID || aud != want.audience || c.PurposeID != want.purposeID ||
		c.JTI == "" || c.Exp-c.Iat != int64(want.lifetime) {
		return fmt.Errorf("voucher claims %s: want iss %s, sub %s, aud %s, purposeId %s, a jti, exp = iat + %d",
			payload, want.issuer, want.clientID, want.audience, want.purposeID, want.lifetime)
	}
	return nil
}

// headerAlg is the alg of a compact JWS's header, or "" when it has none.
func headerAlg(token string) string {
	h, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return ""
	}
	var hd struct {
		Alg string `json:"alg"`
	}
	_ = json.Unmarshal(raw, &hd)
	return hd.Alg
}
