package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/esdb/esdbtest"
	"github.com/keyledger/keyledger/internal/redistest"
	"github.com/keyledger/keyledger/projections/models"
)

func TestMain(m *testing.M) { redistest.Main(m, "keyledger binary tests") }

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binOut  []byte
)

// binary builds the keyledger binary once per test run.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keyledger-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "keyledger")
		binOut, binErr = exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	})
	if binErr != nil {
		t.Fatalf("build: %v\n%s", binErr, binOut)
	}
	return binPath
}

// process is one running `keyledger serve`.
type process struct {
	name string
	addr string
	cmd  *exec.Cmd
	logs *syncBuffer
}

func startServe(t *testing.T, name string, env ...string) *process {
	t.Helper()
	p := &process{name: name, addr: freeAddr(t), logs: &syncBuffer{}}
	p.cmd = exec.Command(binary(t), "serve")
	p.cmd.Env = append(append(os.Environ(), "KEYLEDGER_ADDR="+p.addr, "KEYLEDGER_LOG_FORMAT=json"), env...)
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		if t.Failed() {
			t.Logf("logs of %s:\n%s", p.name, p.logs.String())
		}
	})
	waitUp(t, "http://"+p.addr+"/readyz")
	return p
}

// projecting returns the read models this process projects now, from its metrics.
func (p *process) projecting(t *testing.T) map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "keyledger_projection_state{") || !strings.HasSuffix(line, " 1") {
			continue
		}
		if !strings.Contains(line, `state="projecting"`) {
			continue
		}
		i := strings.Index(line, `model="`)
		model := line[i+len(`model="`):]
		out[model[:strings.IndexByte(model, '"')]] = true
	}
	return out
}

// call sends a JSON request and returns the status and the Keyledger-Position.
func (p *process) call(t *testing.T, method, path, token, body string, header ...string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+p.addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Keyledger-Position"), string(b)
}

func mintToken(t *testing.T, dataDir string, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary(t), append([]string{"token", "--data-dir", dataDir}, args...)...).Output()
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	return string(bytes.TrimSpace(out))
}

// TestTwoProcessesOneProjectorAndFailover runs two real keyledger processes on one
// event store (EventStoreDB's gRPC API, served by the in-process fake) and one Redis:
// each read model is projected by exactly one of them; when the leader is killed
// (SIGKILL: no lease release), the other takes every model over and keeps the read
// models current.
func TestTwoProcessesOneProjectorAndFailover(t *testing.T) {
	opts := redistest.Options(t)
	srv, err := esdbtest.New()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dataDir := t.TempDir()
	env := []string{"KEYLEDGER_ESDB_URL=" + srv.URL(), "KEYLEDGER_REDIS_URL=redis://" + opts.Addr + "/" + strconv.Itoa(opts.DB), "KEYLEDGER_DATA_DIR=" + dataDir}
	a := startServe(t, "a", env...)
	b := startServe(t, "b", env...)
	all := runnerModels()

	var leader, follower *process
	deadline := time.Now().Add(60 * time.Second)
	for {
		pa, pb := a.projecting(t), b.projecting(t)
		for _, m := range all {
			if pa[m] && pb[m] {
				t.Fatalf("both processes project %s", m)
			}
		}
		if len(pa) == len(all) && len(pb) == 0 {
			leader, follower = a, b
			break
		}
		if len(pb) == len(all) && len(pa) == 0 {
			leader, follower = b, a
			break
		}
		// Each model has its own lease: the processes may split them. Then kill the one
		// that leads the voucher model.
		if len(pa)+len(pb) == len(all) {
			leader, follower = a, b
			if pb[models.VoucherModel] {
				leader, follower = b, a
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("models not all projected: a %v, b %v", pa, pb)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := leader.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = leader.cmd.Wait()

	// The follower takes every model over once the leases expire.
	deadline = time.Now().Add(60 * time.Second)
	for len(follower.projecting(t)) != len(all) {
		if time.Now().After(deadline) {
			t.Fatalf("follower projects only %v after the leader died", follower.projecting(t))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// And keeps the read models current: a client created through the follower is
	// projected (its checkpoint metric reaches the command's position).
	op := mintToken(t, dataDir, "--operator")
	if code, _, body := follower.call(t, http.MethodPost, "/v1/tenants", op, `{"id":"acme","name":"Acme","admin":{"id":"alice","name":"Alice"}}`); code != http.StatusCreated {
		t.Fatalf("create tenant: %d %s", code, body)
	}
	alice := mintToken(t, dataDir, "--tenant", "acme", "--user", "alice")
	code, posText, body := follower.call(t, http.MethodPost, "/v1/clients", alice, `{"kind":"api","name":"Billing job"}`)
	if code != http.StatusCreated {
		t.Fatalf("create client: %d %s", code, body)
	}
	pos, err := eventstore.ParsePosition(posText)
	if err != nil {
		t.Fatalf("position %q: %v", posText, err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for follower.checkpoint(t, models.VoucherModel) < float64(pos.Commit) {
		if time.Now().After(deadline) {
			t.Fatalf("voucher checkpoint %v never reached %s", follower.checkpoint(t, models.VoucherModel), pos)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runnerModels() []string {
	var out []string
	for _, d := range models.All() {
		out = append(out, d.Model)
	}
	return out
}

// checkpoint reads keyledger_projection_checkpoint{model} from the process's metrics.
func (p *process) checkpoint(t *testing.T, model string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	prefix := `keyledger_projection_checkpoint{model="` + model + `"} `
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return -1
}
