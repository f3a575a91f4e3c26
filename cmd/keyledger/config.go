package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"
)

// envPrefix prefixes every environment variable Keyledger reads: the flag --data-dir is
// also KEYLEDGER_DATA_DIR. A flag given on the command line wins over the variable.
const envPrefix = "KEYLEDGER_"

// Config is the configuration every subcommand reads, from flags and KEYLEDGER_*
// variables.
type Config struct {
	// Addr is where the HTTP API listens. Default 127.0.0.1:8080 (loopback only);
	// binding to 0.0.0.0 exposes the API to the network.
	Addr string
	// DataDir holds the embedded event store and development keys. Default ./data.
	DataDir string
	// ESDBURL selects EventStoreDB (esdb:// or esdb+discover:// connection string)
	// instead of the embedded store. Default empty: the embedded store.
	ESDBURL string
	// RedisURL is the Redis holding the read models (redis://host:6379/0). Default
	// empty: in-process read models. When set, /readyz also checks Redis.
	RedisURL string
	// UserIssuer is the issuer of user tokens (the identity provider). Default empty:
	// development mode, where Keyledger trusts a signing key it creates in DataDir and
	// `keyledger token` mints tokens — never run a shared deployment that way.
	UserIssuer string
	// UserJWKSURL is where the issuer publishes its keys (https, or http on loopback).
	UserJWKSURL string
	// UserJWKSFile is a JWKS file holding the issuer's keys, instead of a URL.
	UserJWKSFile string
	// MaxClientKeys caps the keys of one client. Default 100.
	MaxClientKeys int
	// MaxKeychainKeys caps the keys of one producer keychain. Default 30.
	MaxKeychainKeys int
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string
	// LogFormat is json, text or auto (JSON unless standard error is a terminal).
	LogFormat string
	// ShutdownTimeout bounds how long in-flight requests may take to finish after
	// SIGTERM/SIGINT. Default 15s.
	ShutdownTimeout time.Duration

	// Issuer is Keyledger's issuer identifier: the iss of its vouchers and the base of
	// its metadata URLs. Default: http://<addr> (localhost for an unspecified host) —
	// set the public https URL in any shared deployment.
	Issuer string
	// AssertionAudience is what a client assertion's aud must be (or contain). Default:
	// the issuer, which is what OAuth 2 libraries using private_key_jwt put there.
	AssertionAudience string
	// APIAudience is the aud of the vouchers API clients present to Keyledger's own
	// API. Default: <issuer>/api.
	APIAudience string
	// APIVoucherLifetime is the lifetime of API clients' vouchers. Default 10m.
	APIVoucherLifetime time.Duration
	// AssertionMaxLifetime caps exp - iat of client assertions. Default 1h.
	AssertionMaxLifetime time.Duration
	// ClockSkew is tolerated on assertions' iat, exp and nbf. Default 10s.
	ClockSkew time.Duration
	// SigningAlg is the algorithm of generated voucher signing keys: RS256 (default),
	// ES256 or EdDSA.
	SigningAlg string
	// DebugAddr, when set, serves Go's profiler (/debug/pprof/) on its own listener.
	// Keep it on loopback: profiles reveal memory contents. Default empty: off.
	DebugAddr string
	// SigningKeyFiles are operator-managed PEM private keys (the first signs, all are
	// published). Default empty: keys generated into <data-dir>/signing-keys and rotated
	// with `keyledger signing-key rotate`.
	SigningKeyFiles []string
}

// signingKeyDir is the directory Keyledger manages its voucher signing keys in.
func (c *Config) signingKeyDir() string { return filepath.Join(c.DataDir, "signing-keys") }

// issuer returns the configured issuer, or the one derived from the listen address.
func (c *Config) issuer() string {
	if c.Issuer != "" {
		return strings.TrimSuffix(c.Issuer, "/")
	}
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return "http://localhost"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func (c *Config) assertionAudience() string {
	if c.AssertionAudience != "" {
		return c.AssertionAudience
	}
	return c.issuer()
}

func (c *Config) apiAudience() string {
	if c.APIAudience != "" {
		return c.APIAudience
	}
	return c.issuer() + "/api"
}

// bindFlags declares the shared flags on fs. Names map to variables by upper-casing and
// replacing '-' with '_'.
func (c *Config) bindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "HTTP listen address")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory of the embedded event store and development keys")
	fs.StringVar(&c.ESDBURL, "esdb-url", "", "EventStoreDB connection string (esdb://host:2113?tls=false); empty uses the embedded store")
	fs.StringVar(&c.RedisURL, "redis-url", "", "Redis URL for read models (redis://host:6379/0); empty uses in-process read models")
	fs.StringVar(&c.UserIssuer, "user-issuer", "", "issuer of user tokens; empty trusts a development key in the data dir")
	fs.StringVar(&c.UserJWKSURL, "user-jwks-url", "", "JWKS URL of the user token issuer")
	fs.StringVar(&c.UserJWKSFile, "user-jwks-file", "", "JWKS file of the user token issuer")
	fs.IntVar(&c.MaxClientKeys, "max-client-keys", 100, "maximum keys per client")
	fs.IntVar(&c.MaxKeychainKeys, "max-keychain-keys", 30, "maximum keys per producer keychain")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "auto", "log format: json, text, auto (JSON unless stderr is a terminal)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long in-flight requests may finish after a stop signal")
	fs.StringVar(&c.Issuer, "issuer", "", "Keyledger's issuer URL (iss of vouchers); default http://<addr>")
	fs.StringVar(&c.AssertionAudience, "assertion-audience", "", "the aud client assertions must carry; default the issuer")
	fs.StringVar(&c.APIAudience, "api-audience", "", "the aud of API clients' vouchers for Keyledger's API; default <issuer>/api")
	fs.DurationVar(&c.APIVoucherLifetime, "api-voucher-lifetime", 10*time.Minute, "lifetime of API clients' vouchers")
	fs.DurationVar(&c.AssertionMaxLifetime, "assertion-max-lifetime", time.Hour, "longest exp - iat of a client assertion")
	fs.DurationVar(&c.ClockSkew, "clock-skew", 10*time.Second, "clock skew tolerated on assertions' iat, exp and nbf")
	fs.StringVar(&c.SigningAlg, "signing-alg", "RS256", "algorithm of generated voucher signing keys: RS256, ES256 or EdDSA")
	fs.StringVar(&c.DebugAddr, "debug-addr", "", "serve /debug/pprof/ on this address (keep it on loopback); empty: off")
	fs.StringSliceVar(&c.SigningKeyFiles, "signing-key-files", nil, "PEM private keys signing vouchers (first signs); default keys generated in <data-dir>/signing-keys")
}

// envName is the variable that feeds a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its KEYLEDGER_* variable.
func applyEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		v := getenv(envName(f.Name))
		if v == "" {
			return
		}
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %v", envName(f.Name), v, err))
		}
	})
	return errors.Join(errs...)
}

// Validate checks the configuration before anything starts, naming every problem.
func (c *Config) Validate() error {
	var errs []error
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr %q: %v (want host:port, e.g. 127.0.0.1:8080)", c.Addr, err))
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		errs = append(errs, fmt.Errorf("addr %q: port %q is not a number from 0 to 65535", c.Addr, port))
	}
	if c.ESDBURL == "" {
		if strings.TrimSpace(c.DataDir) == "" {
			errs = append(errs, errors.New("data-dir is empty"))
		}
	} else {
		u, err := url.Parse(c.ESDBURL)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("esdb-url: %v", err))
		case u.Scheme != "esdb" && u.Scheme != "esdb+discover" && u.Scheme != "kurrentdb" && u.Scheme != "kurrentdb+discover":
			errs = append(errs, fmt.Errorf("esdb-url: scheme %q: want esdb:// or esdb+discover://", u.Scheme))
		case u.Host == "":
			errs = append(errs, errors.New("esdb-url: no host"))
		}
	}
	if c.RedisURL != "" {
		if _, err := redis.ParseURL(c.RedisURL); err != nil {
			errs = append(errs, fmt.Errorf("redis-url: %v", err))
		}
	}
	if c.UserIssuer != "" && (c.UserJWKSURL == "") == (c.UserJWKSFile == "") {
		errs = append(errs, errors.New("user-issuer is set: set exactly one of user-jwks-url and user-jwks-file"))
	}
	if c.UserIssuer == "" && (c.UserJWKSURL != "" || c.UserJWKSFile != "") {
		errs = append(errs, errors.New("user-jwks-url/user-jwks-file given without user-issuer"))
	}
	if c.MaxClientKeys < 1 || c.MaxClientKeys > 10000 {
		errs = append(errs, fmt.Errorf("max-client-keys %d: want 1 to 10000", c.MaxClientKeys))
	}
	if c.MaxKeychainKeys < 1 || c.MaxKeychainKeys > 10000 {
		errs = append(errs, fmt.Errorf("max-keychain-keys %d: want 1 to 10000", c.MaxKeychainKeys))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	switch c.LogFormat {
	case "json", "text", "auto":
	default:
		errs = append(errs, fmt.Errorf("log-format %q: want json, text or auto", c.LogFormat))
	}
	if c.Issuer != "" {
		if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, fmt.Errorf("issuer %q: want an http(s) URL without query or fragment (RFC 8414)", c.Issuer))
		}
	}
	switch c.SigningAlg {
	case "RS256", "ES256", "EdDSA":
	default:
		errs = append(errs, fmt.Errorf("signing-alg %q: want RS256, ES256 or EdDSA", c.SigningAlg))
	}
	if c.AssertionMaxLifetime <= 0 || c.AssertionMaxLifetime > 24*time.Hour {
		errs = append(errs, fmt.Errorf("assertion-max-lifetime %s: want more than 0 and at most 24h", c.AssertionMaxLifetime))
	}
	if c.ClockSkew < 0 || c.ClockSkew > 5*time.Minute {
		errs = append(errs, fmt.Errorf("clock-skew %s: want 0 to 5m", c.ClockSkew))
	}
	if c.APIVoucherLifetime < time.Minute || c.APIVoucherLifetime > 24*time.Hour {
		errs = append(errs, fmt.Errorf("api-voucher-lifetime %s: want 1m to 24h", c.APIVoucherLifetime))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown-timeout %s: must be positive", c.ShutdownTimeout))
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid configuration:\n  %w", joinIndented(errs))
	}
	return nil
}

// prepareDataDir creates the data directory and checks that it is writable, so a
// read-only or mistyped path fails at start-up rather than at the first append.
func (c *Config) prepareDataDir() error {
	if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
		return fmt.Errorf("data-dir %q: %w", c.DataDir, err)
	}
	probe, err := os.CreateTemp(c.DataDir, ".writable-*")
	if err != nil {
		return fmt.Errorf("data-dir %q is not writable: %w", c.DataDir, err)
	}
	name := probe.Name()
	_ = probe.Close()
	_ = os.Remove(name)
	abs, err := filepath.Abs(c.DataDir)
	if err == nil {
		c.DataDir = abs
	}
	return nil
}

// Redacted is the configuration as it may be shown: credentials in URLs are masked.
func (c Config) Redacted() Config {
	if u, err := url.Parse(c.ESDBURL); err == nil && u.User != nil {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
		c.ESDBURL = u.String()
	}
	if u, err := url.Parse(c.RedisURL); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			c.RedisURL = u.String()
		}
	}
	return c
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger builds the process logger: JSON when not on a terminal (or when asked).
func (c Config) newLogger(w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	useJSON := c.LogFormat == "json"
	if c.LogFormat == "auto" {
		f, ok := w.(*os.File)
		useJSON = !ok || !isatty.IsTerminal(f.Fd())
	}
	if useJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

type indented []error

func joinIndented(errs []error) error { return indented(errs) }

func (e indented) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "\n  ")
}

func (e indented) Unwrap() []error { return e }
