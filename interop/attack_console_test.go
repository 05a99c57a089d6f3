package interop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testhttp"
)

// consoleAttackReq sends one request to the built binary's console.
func consoleAttackReq(t *testing.T, method, url, body string, hdr map[string]string) (int, string) {
	t.Helper()
	res, b := testhttp.Do(t, method, url, body, hdr)
	return res.StatusCode, b
}

// TestAttackConsole attacks the console of the built binary the ways a web
// page or a stranger would: a DNS-rebinding page (foreign Host), a
// cross-origin fetch and a form post that would call state::set as the
// engine, and, with auth.tokens, requests without a token or with a wrong
// one (API, feed, call, login). Each is refused with a clear answer, the
// state is untouched, and the console keeps serving the legitimate client.
// On 25c1da9 there was no console (every /api path was 404); these are
// the guards the console needs because it can call any function.
func TestAttackConsole(t *testing.T) {
	ctx := ctxFor(t, 30*time.Second)
	const tok = "console-secret-token-0123456789"
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	must(t, os.WriteFile(cfg, []byte("auth:\n  tokens: ["+tok+"]\n"), 0o600))
	e := startEngine(t, "127.0.0.1:0", "--config", cfg, "--data-dir", "memory")
	line, err := e.stderr.wait(ctx, consoleRE.MatchString)
	if err != nil {
		t.Fatal(err)
	}
	u := consoleRE.FindStringSubmatch(line)[1]
	bearer := "Bearer " + tok
	set := `{"function_id":"state::set","payload":{"scope":"victim","key":"k","value":"pwned"}}`
	for _, a := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		says                     string
	}{
		{"no token: overview", "GET", "/api/overview", "", nil, 401, "missing or invalid token"},
		{"no token: live feed", "GET", "/api/live", "", nil, 401, "AUTH_ERROR"},
		{"no token: invocations", "GET", "/api/invocations", "", nil, 401, "AUTH_ERROR"},
		{"no token: call", "POST", "/api/call", set, map[string]string{"Content-Type": "application/json"}, 401, "AUTH_ERROR"},
		{"wrong token", "POST", "/api/call", set, map[string]string{"Content-Type": "application/json", "Authorization": "Bearer console-wrong-token-0123456789"}, 401, "AUTH_ERROR"},
		{"wrong login", "POST", "/api/login", `{"token":"guess"}`, map[string]string{"Content-Type": "application/json"}, 401, "wrong token"},
		{"DNS rebinding", "POST", "/api/call", set, map[string]string{"Content-Type": "application/json", "Authorization": bearer, "Host": "attacker.example:3113"}, 403, "loopback host"},
		{"cross-origin fetch", "POST", "/api/call", set, map[string]string{"Content-Type": "application/json", "Authorization": bearer, "Origin": "https://attacker.example"}, 403, "cross-origin"},
		{"form post", "POST", "/api/call", set, map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": bearer}, 415, "application/json"},
	} {
		status, body := consoleAttackReq(t, a.method, u+a.path, a.body, a.hdr)
		if status != a.status || !strings.Contains(body, a.says) {
			t.Errorf("%s: %d %s, want %d saying %q", a.name, status, body, a.status, a.says)
		}
	}
	// Nothing was written, and the legitimate client is served.
	status, body := consoleAttackReq(t, "POST", u+"/api/call", `{"function_id":"state::get","payload":{"scope":"victim","key":"k"}}`,
		map[string]string{"Content-Type": "application/json", "Authorization": bearer, "Origin": u})
	if status != 200 || body != "{\"result\":null}\n" {
		t.Fatalf("state::get after the attacks: %d %s", status, body)
	}
	if _, err := e.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, "console login refused") }); err != nil {
		t.Fatal("the wrong login was not logged")
	}
}
