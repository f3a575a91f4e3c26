package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/api"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/embedded"
)

func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func runCmd(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, envFrom(env), &out, &errb)
	return out.String(), errb.String(), err
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	out, _, err := runCmd(t, map[string]string{
		"KEYLEDGER_ADDR":      "127.0.0.1:9999",
		"KEYLEDGER_DATA_DIR":  dir,
		"KEYLEDGER_LOG_LEVEL": "debug",
		"KEYLEDGER_ESDB_URL":  "esdb://admin:changeit@127.0.0.1:2113?tls=false",
	}, "config", "--addr", "127.0.0.1:7777")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("config output %q: %v", out, err)
	}
	want := map[string]string{
		"addr":       "127.0.0.1:7777", // flag beats variable
		"data-dir":   dir,              // variable beats default
		"log-level":  "debug",
		"log-format": "auto", // default
		"store":      "eventstoredb",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if strings.Contains(out, "changeit") {
		t.Errorf("config printed the EventStoreDB password: %s", out)
	}
}

func TestInvalidConfigStopsStartUp(t *testing.T) {
	_, _, err := runCmd(t, map[string]string{
		"KEYLEDGER_LOG_LEVEL":        "loud",
		"KEYLEDGER_SHUTDOWN_TIMEOUT": "soon",
	}, "serve", "--addr", "nohost", "--esdb-url", "http://x", "--redis-url", "mysql://y")
	if err == nil {
		t.Fatal("serve started with invalid configuration")
	}
	// The variable that is not even parseable is reported on its own first.
	if !strings.Contains(err.Error(), "KEYLEDGER_SHUTDOWN_TIMEOUT") {
		t.Fatalf("error does not name the bad variable: %v", err)
	}
	_, _, err = runCmd(t, map[string]string{"KEYLEDGER_LOG_LEVEL": "loud"},
		"serve", "--addr", "nohost", "--esdb-url", "http://x", "--redis-url", "mysql://y")
	if err == nil {
		t.Fatal("serve started with invalid configuration")
	}
	for _, want := range []string{`addr "nohost"`, `esdb-url: scheme "http"`, "redis-url", `log-level "loud"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestDataDirNotWritable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	os.WriteFile(file, []byte("x"), 0o600)
	_, _, err := runCmd(t, map[string]string{"KEYLEDGER_DATA_DIR": filepath.Join(file, "sub")}, "check")
	if err == nil || !strings.Contains(err.Error(), "data-dir") {
		t.Fatalf("a data dir under a file: %v", err)
	}
}

// TestServeGracefulShutdown runs the server in-process on the embedded store, checks the
// probes and metrics, then stops it while a request is in flight: the request completes,
// and the store is closed cleanly (it reopens with its data).
func TestServeGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	// Put an event in the store so the reopen check has something to find.
	st, err := embedded.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(context.Background(), "probe-1", eventstore.NoStream,
		eventstore.EventData{Type: "probe.v1", Data: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	e := &env{stdout: io.Discard}
	var logs syncBuffer
	e.stderr = &logs
	e.cfg = Config{Addr: "127.0.0.1:0", DataDir: dir, LogLevel: "info", LogFormat: "json", ShutdownTimeout: 10 * time.Second}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	ready := make(chan string, 1)
	entered := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, e, serveHooks{ready: ready, server: func(s *api.Server) {
			s.Echo().GET("/slow", func(c echo.Context) error {
				close(entered)
				<-release
				return c.String(http.StatusOK, "finished")
			})
		}})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve ended before it was ready: %v", err)
	}
	base := "http://" + addr

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d %s", code, body)
	}
	// Ready once the read models are built (on an empty log, at once).
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := get("/readyz")
		if code == 200 && strings.Contains(body, `"eventstore":"ok"`) && strings.Contains(body, `"projections":"ok"`) {
			break
		}
		if code != 503 || time.Now().After(deadline) {
			t.Fatalf("readyz %d %s", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "keyledger_eventstore_appends_total") && !strings.Contains(body, "keyledger_eventstore_events_appended_total") {
		t.Fatalf("metrics %d lack the event store metrics:\n%s", code, body)
	}

	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			slow <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		slow <- string(b)
	}()
	<-entered
	stop() // as SIGTERM would
	// Shutdown must wait for the in-flight request rather than cut it.
	select {
	case err := <-done:
		t.Fatalf("serve returned (%v) while a request was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if got := <-slow; got != "finished" {
		t.Fatalf("in-flight request got %q", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if !strings.Contains(logs.String(), "event store closed") {
		t.Fatalf("store not reported closed:\n%s", logs.String())
	}
	// New connections are refused after shutdown.
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("server still accepts connections after shutdown")
	}
	st, err = embedded.Open(context.Background(), dir)
	if err != nil {
		t.Fatalf("reopen after shutdown: %v", err)
	}
	defer st.Close()
	if evs, err := st.ReadStream(context.Background(), "probe-1", eventstore.Forwards, 0, 10); err != nil || len(evs) != 1 {
		t.Fatalf("after shutdown the store holds %d events (%v)", len(evs), err)
	}
}

// TestBinarySIGTERM builds the real binary, starts it, and stops it with SIGTERM.
func TestBinarySIGTERM(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "KEYLEDGER_ADDR="+addr, "KEYLEDGER_DATA_DIR="+dir, "KEYLEDGER_LOG_FORMAT=json")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitUp(t, "http://"+addr+"/readyz")
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	cid := resp.Header.Get(api.HeaderCorrelationID)
	resp.Body.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	logs := stderr.String()
	for _, want := range []string{`"msg":"keyledger serving"`, `"correlation_id":"` + cid + `"`, `"msg":"event store closed"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	// The same binary's check subcommand reads the same configuration.
	out, err := exec.Command(bin, "check", "--data-dir", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "event store ok: embedded") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	// A corrupt data file is named in a clear error, and start-up stops.
	if err := os.WriteFile(filepath.Join(dir, "events.db"), bytes.Repeat([]byte("garbage!"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "events.db-wal"))
	os.Remove(filepath.Join(dir, "events.db-shm"))
	out, err = exec.Command(bin, "serve", "--data-dir", dir, "--addr", freeAddr(t)).CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || !strings.Contains(string(out), "events.db") || !strings.Contains(strings.ToLower(string(out)), "corrupt") {
		t.Fatalf("serve on a corrupt file: %v\n%s", err, out)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitUp(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within 30s", url)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCheckFindsDamagedPages damages pages in the middle of a data file: the check
// subcommand, which verifies every page, refuses it and names the file.
func TestCheckFindsDamagedPages(t *testing.T) {
	dir := t.TempDir()
	st, err := embedded.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 400)
	for i := range 20 {
		evs := make([]eventstore.EventData, 100)
		for j := range evs {
			evs[j] = eventstore.EventData{Type: "t.v1", Data: json.RawMessage(`{"pad":"` + pad + `"}`)}
		}
		if _, err := st.Append(context.Background(), "s-"+string(rune('a'+i)), eventstore.NoStream, evs...); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if out, _, err := runCmd(t, map[string]string{"KEYLEDGER_DATA_DIR": dir}, "check"); err != nil || !strings.Contains(out, "event store ok") {
		t.Fatalf("check of an intact store: %v %s", err, out)
	}
	path := filepath.Join(dir, "events.db")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5, 0x5A, 0x00, 0xFF}, 60*4096/4), 20*4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, _, err = runCmd(t, map[string]string{"KEYLEDGER_DATA_DIR": dir}, "check")
	if !errors.Is(err, eventstore.ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("check of a damaged store: %v, want ErrCorrupt naming %s", err, path)
	}
}

// TestUnreachableEventStoreDB: start-up against a node that is not there stops with an
// error naming the node and the cause.
func TestUnreachableEventStoreDB(t *testing.T) {
	addr := freeAddr(t) // nothing listens there any more
	_, _, err := runCmd(t, map[string]string{"KEYLEDGER_ESDB_URL": "esdb://" + addr + "?tls=false"}, "serve", "--addr", freeAddr(t))
	if !errors.Is(err, eventstore.ErrUnavailable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("serve with an unreachable EventStoreDB: %v, want ErrUnavailable naming %s", err, addr)
	}
}

func TestSigningKeyCommands(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"KEYLEDGER_DATA_DIR": dir, "KEYLEDGER_SIGNING_ALG": "ES256"}
	out, _, err := runCmd(t, vars, "signing-key", "list")
	if err != nil || strings.Count(out, "ES256") != 1 || !strings.Contains(out, "yes") {
		t.Fatalf("list at first use: %v\n%s", err, out)
	}
	first := strings.Fields(strings.Split(out, "\n")[1])[0]
	out, _, err = runCmd(t, vars, "signing-key", "rotate")
	if err != nil || strings.Count(out, "ES256") != 3 { // the message names the new key, then two rows
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	if _, _, err := runCmd(t, vars, "signing-key", "remove", "no-such-kid"); err == nil {
		t.Fatal("removing an unknown key succeeded")
	}
	out, _, err = runCmd(t, vars, "signing-key", "list")
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(rows) != 3 || strings.Fields(rows[2])[0] != first || !strings.HasSuffix(rows[1], "yes") {
		t.Fatalf("list after a rotation: %v\n%s", err, out)
	}
	// The server publishes both keys, the new one first, and describes itself (RFC 8414).
	e := &env{stdout: io.Discard, stderr: io.Discard}
	e.cfg = Config{Addr: "127.0.0.1:0", DataDir: dir, LogLevel: "error", LogFormat: "json", ShutdownTimeout: 5 * time.Second,
		SigningAlg: "ES256", AssertionMaxLifetime: time.Hour, ClockSkew: 10 * time.Second, APIVoucherLifetime: 10 * time.Minute}
	ctx, stop := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, e, serveHooks{ready: ready}) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	defer func() { stop(); <-done }()
	var jwks struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	getJSON(t, "http://"+addr+"/.well-known/jwks.json", &jwks)
	if len(jwks.Keys) != 2 || jwks.Keys[1].KID != first {
		t.Fatalf("JWKS %+v", jwks)
	}
	var meta map[string]any
	getJSON(t, "http://"+addr+"/.well-known/oauth-authorization-server", &meta)
	if meta["issuer"] != "http://"+addr || meta["token_endpoint"] != "http://"+addr+"/oauth2/token" {
		t.Fatalf("metadata %v", meta)
	}
	// With operator-managed files, rotation is the operator's.
	if _, _, err := runCmd(t, map[string]string{"KEYLEDGER_DATA_DIR": dir, "KEYLEDGER_SIGNING_KEY_FILES": filepath.Join(dir, "x.pem")},
		"signing-key", "rotate"); err == nil || !strings.Contains(err.Error(), "signing-key-files") {
		t.Fatalf("rotate with files: %v", err)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
