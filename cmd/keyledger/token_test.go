package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/api/auth"
)

// devVerifier is what `serve` builds in development mode on dir.
func devVerifier(t *testing.T, dir string) *auth.Verifier {
	t.Helper()
	v, err := auth.New(t.Context(), auth.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	out, _, err := runCmd(t, nil, "token", "--tenant", "t1", "--user", "u1", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, ok := strings.CutSuffix(out, "\n")
	if !ok || strings.ContainsAny(tok, " \n\t") || strings.Count(tok, ".") != 2 {
		t.Fatalf("stdout %q is not one token and a newline", out)
	}
	fi, err := os.Stat(filepath.Join(dir, auth.DevelopmentKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("development key mode %04o, want 0600", fi.Mode().Perm())
	}
	p, err := devVerifier(t, dir).Verify(t.Context(), "Bearer "+tok)
	if err != nil {
		t.Fatal(err)
	}
	if want := (auth.Principal{Subject: "u1", Tenant: "t1"}); p != want {
		t.Fatalf("principal %+v, want %+v", p, want)
	}
	// A second token from the same data dir verifies with the same key; another data
	// dir's verifier refuses it.
	out2, _, err := runCmd(t, map[string]string{"KEYLEDGER_DATA_DIR": dir}, "token", "--operator", "--ttl", "5m")
	if err != nil {
		t.Fatal(err)
	}
	p, err = devVerifier(t, dir).Verify(t.Context(), strings.TrimSpace(out2))
	if err != nil {
		t.Fatal(err)
	}
	if want := (auth.Principal{Subject: "operator", Operator: true}); p != want {
		t.Fatalf("principal %+v, want %+v", p, want)
	}
	if _, err := devVerifier(t, t.TempDir()).Verify(t.Context(), tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("another data dir accepted the token: %v", err)
	}
}

func TestTokenCommandLifetime(t *testing.T) {
	dir := t.TempDir()
	out, _, err := runCmd(t, nil, "token", "--tenant", "t1", "--user", "u1", "--ttl", "2m", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	// Verified three minutes later (by an injected clock), the two-minute token has expired.
	later := func() time.Time { return time.Now().Add(3 * time.Minute) }
	v, err := auth.New(t.Context(), auth.Config{DataDir: dir, Now: later})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), strings.TrimSpace(out)); !errors.Is(err, auth.ErrExpired) {
		t.Fatalf("err = %v, want ErrExpired", err)
	}
}

func TestTokenCommandRefuses(t *testing.T) {
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json")
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"issuer configured by variable", map[string]string{"KEYLEDGER_USER_ISSUER": "https://idp.example.com/", "KEYLEDGER_USER_JWKS_FILE": jwks},
			[]string{"--tenant", "t1", "--user", "u1"}, "KEYLEDGER_USER_ISSUER"},
		{"issuer configured by flag", nil,
			[]string{"--tenant", "t1", "--user", "u1", "--user-issuer", "https://idp.example.com/", "--user-jwks-file", jwks}, "identity provider"},
		{"no tenant", nil, []string{"--user", "u1"}, "--tenant and --user"},
		{"no user", nil, []string{"--tenant", "t1"}, "--tenant and --user"},
		{"operator with a tenant", nil, []string{"--operator", "--tenant", "t1"}, "drop --tenant"},
		{"zero ttl", nil, []string{"--tenant", "t1", "--user", "u1", "--ttl", "0s"}, "--ttl"},
		{"huge ttl", nil, []string{"--tenant", "t1", "--user", "u1", "--ttl", "9000h"}, "--ttl"},
		{"arguments", nil, []string{"--tenant", "t1", "--user", "u1", "extra"}, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"token", "--data-dir", dir}, tc.args...)
			out, _, err := runCmd(t, tc.env, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
			if out != "" {
				t.Fatalf("printed %q despite the error", out)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, auth.DevelopmentKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused token command created a development key: %v", err)
	}
}
