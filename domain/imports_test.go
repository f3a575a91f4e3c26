package domain_test

import (
	"os/exec"
	"strings"
	"testing"
)

// forbiddenDeps are infrastructure modules that domain code must not reach, directly or
// through any dependency.
var forbiddenDeps = []string{
	"github.com/ThreeDotsLabs/watermill",
	"github.com/EventStore/EventStore-Client-Go",
	"github.com/labstack/echo",
	"github.com/redis/go-redis",
	"modernc.org/sqlite",
	"github.com/mattn/go-sqlite3",
	"github.com/lib/pq",
	"github.com/jackc/pgx",
	"google.golang.org/grpc",
	"github.com/prometheus/client_golang",
	"github.com/keyledger/keyledger/eventstore",
	"github.com/keyledger/keyledger/commands",
	"github.com/keyledger/keyledger/projections",
	"github.com/keyledger/keyledger/voucher",
	"github.com/keyledger/keyledger/api",
}

// forbiddenDirect are standard-library packages that do I/O; domain packages must not
// import them themselves (the standard library may use them internally).
var forbiddenDirect = map[string]bool{
	"net": true, "net/http": true, "database/sql": true, "os": true, "os/exec": true,
	"io/fs": true, "syscall": true, "crypto/rand": true, "math/rand": true, "math/rand/v2": true,
}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, out)
	}
	return strings.Fields(string(out))
}

func TestDomainImportsNoInfrastructure(t *testing.T) {
	for _, dep := range goList(t, "-deps", "-f", "{{.ImportPath}}", "./...") {
		for _, bad := range forbiddenDeps {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("domain/ depends on infrastructure package %s", dep)
			}
		}
	}
	for _, line := range goList(t, "-f", `{{range .Imports}}{{$.ImportPath}}={{.}} {{end}}`, "./...") {
		pkg, imp, _ := strings.Cut(line, "=")
		if forbiddenDirect[imp] {
			t.Errorf("%s imports %s: domain code does no I/O and has no clock or random source of its own", pkg, imp)
		}
	}
}
