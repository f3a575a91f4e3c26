package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keyledger/keyledger/eventstore/embedded"
)

// buildServer builds ./cmd/keyledger of the module at root into dir.
func buildServer(ctx context.Context, goBin, root, dir string) (string, error) {
	bin := filepath.Join(dir, "keyledger")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./cmd/keyledger")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/keyledger: %v\n%s", err, out.String())
	}
	return bin, nil
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(ctx context.Context, goBin string) (string, error) {
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the keyledger module: run from the repository (go run ./bench/tokenload)")
	}
	return filepath.Dir(mod), nil
}

// freePort returns a loopback port nothing listens on at the time of the call.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portFree reports whether port can be listened on now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// process is a subprocess this program started, with its output in a log file.
type process struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error // Wait's, once exited is closed
}

func startProcess(name, bin string, args, env []string, logPath string) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.exited)
	}()
	return p, nil
}

// stop sends SIGTERM and waits up to grace for the process to exit, then kills it.
func (p *process) stop(grace time.Duration) error {
	if p == nil {
		return nil
	}
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within %s after SIGTERM; killed", p.name, grace)
	}
}

// logTail is the end of the process's log, to explain a failure.
func (p *process) logTail(n int) string {
	data, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startRedis starts a throwaway redis-server on a free loopback port without
// persistence, and waits until it answers PING.
func startRedis(ctx context.Context, bin, dir string) (*process, string, error) {
	var lastErr error
	for range 3 { // the free port may be taken between probing and listening
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		p, err := startProcess("redis-server", bin, []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir}, os.Environ(), filepath.Join(dir, "redis.log"))
		if err != nil {
			return nil, "", err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if err := waitRedis(ctx, addr, p); err != nil {
			_ = p.stop(5 * time.Second)
			lastErr = err
			continue
		}
		return p, "redis://" + addr + "/0", nil
	}
	return nil, "", lastErr
}

// waitRedis sends PING in the inline protocol until +PONG comes back.
func waitRedis(ctx context.Context, addr string, p *process) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("redis-server exited: %v\n%s", p.err, p.logTail(10))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 16)
			n, _ := c.Read(buf)
			_ = c.Close()
			if strings.HasPrefix(string(buf[:n]), "+PONG") {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %s did not answer PING within 10s", addr)
}

// serverConfig is the environment of one `keyledger serve`.
type serverConfig struct {
	bin      string
	port     int
	dataDir  string
	redisURL string // empty: in-process read models
	issuer   string // KEYLEDGER_ISSUER and KEYLEDGER_ASSERTION_AUDIENCE
	alg      string // KEYLEDGER_SIGNING_ALG; empty leaves the server's default
	logPath  string
	// debugAddr is KEYLEDGER_DEBUG_ADDR (pprof) when a profile is asked for; empty
	// passes this process's KEYLEDGER_DEBUG_ADDR through.
	debugAddr string
}

// serverEnv is the subprocess environment: this process's, without any KEYLEDGER_
// variable (a developer's KEYLEDGER_ESDB_URL must not redirect the benchmark), plus
// the scenario's configuration.
func serverEnv(c serverConfig) []string {
	env := append(cleanEnv(),
		"KEYLEDGER_ADDR=127.0.0.1:"+strconv.Itoa(c.port),
		"KEYLEDGER_DATA_DIR="+c.dataDir,
		"KEYLEDGER_ISSUER="+c.issuer,
		"KEYLEDGER_ASSERTION_AUDIENCE="+c.issuer,
		"KEYLEDGER_LOG_LEVEL=warn",
	)
	if c.redisURL != "" {
		env = append(env, "KEYLEDGER_REDIS_URL="+c.redisURL)
	}
	if c.alg != "" {
		env = append(env, "KEYLEDGER_SIGNING_ALG="+c.alg)
	}
	// The one variable passed through: profile a scenario's server with
	// KEYLEDGER_DEBUG_ADDR=127.0.0.1:6060 go run ./bench/tokenload …
	if v := cmp.Or(c.debugAddr, os.Getenv("KEYLEDGER_DEBUG_ADDR")); v != "" {
		env = append(env, "KEYLEDGER_DEBUG_ADDR="+v)
	}
	return env
}

// cleanEnv is this process's environment without any KEYLEDGER_ variable.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYLEDGER_") {
			env = append(env, kv)
		}
	}
	return env
}

// server is a running `keyledger serve`.
type server struct {
	*process
	base string // http://127.0.0.1:port
	cfg  serverConfig
}

// startServer starts `keyledger serve` and waits until GET /readyz answers 200, the
// process exits, or readyTimeout passes. It returns how long readiness took.
func startServer(ctx context.Context, c serverConfig, readyTimeout time.Duration) (*server, time.Duration, error) {
	start := time.Now()
	p, err := startProcess("keyledger serve", c.bin, []string{"serve"}, serverEnv(c), c.logPath)
	if err != nil {
		return nil, 0, err
	}
	s := &server{process: p, base: "http://127.0.0.1:" + strconv.Itoa(c.port), cfg: c}
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	deadline := start.Add(readyTimeout)
	last := "no answer yet"
	var failingSince time.Time
	for {
		select {
		case <-p.exited:
			return nil, 0, fmt.Errorf("keyledger serve exited before it was ready (%v); its log %s ends with:\n%s", p.err, p.log, p.logTail(20))
		case <-ctx.Done():
			_ = s.stop(15 * time.Second)
			return nil, 0, ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			_ = s.stop(15 * time.Second)
			return nil, 0, fmt.Errorf("keyledger serve not ready after %s (last /readyz: %s); log: %s", readyTimeout, last, p.log)
		}
		resp, err := hc.Get(s.base + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, time.Since(start), nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
			// A halted projection (an event it cannot apply) never recovers; a failed
			// one retries, and is given a minute.
			switch {
			case strings.Contains(last, ") halted at "):
				_ = s.stop(15 * time.Second)
				return nil, 0, fmt.Errorf("keyledger serve will not get ready: /readyz %s", last)
			case strings.Contains(last, ") failed at "):
				if failingSince.IsZero() {
					failingSince = time.Now()
				} else if time.Since(failingSince) > time.Minute {
					_ = s.stop(15 * time.Second)
					return nil, 0, fmt.Errorf("keyledger serve not ready, a read model failing for a minute: /readyz %s", last)
				}
			default:
				failingSince = time.Time{}
			}
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// copyStore copies the embedded event store's files (events.db and, after an unclean
// stop, its WAL) from the data directory src into dst — and nothing else: the signing
// keys a server generated into src must not decide the algorithm of a server on dst.
func copyStore(src, dst string) error {
	if err := os.MkdirAll(dst, 0o750); err != nil {
		return err
	}
	for _, name := range []string{embedded.FileName, embedded.FileName + "-wal"} {
		if err := copyFile(filepath.Join(src, name), filepath.Join(dst, name)); err != nil {
			if errors.Is(err, os.ErrNotExist) && name != embedded.FileName {
				continue
			}
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
