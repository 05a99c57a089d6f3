package interop

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The official Python SDK 0.25's own test suite, from its sdist, against the
// built engine (issue 12, acceptance 2). interop/setup.sh installs both: the
// unpacked sdist in .py25-sdist and a venv with iii-sdk 0.25.0, pytest and
// pytest-asyncio in .venv-sdktests; SLUICE_PY25_SDIST and SLUICE_PY25_PYTHON
// point elsewhere (scripts/py25-sdk-tests.sh). Missing: fails under
// SLUICE_INTEROP=1, else skips.

// py25Excluded are the sdist's test files that do not run here, with why
// (also in docs/protocol.md#observe).
var py25Excluded = map[string]string{
	// Both read shared vectors from the upstream monorepo (sdk/fixtures/protocol/observe,
	// sdk/fixtures/filters) that the sdist does not ship; the upstream sources
	// available (iii-hq/iii up to v0.23.0-rc.4) predate them, so they cannot be vendored.
	"test_observe_protocol_fixtures.py": "needs sdk/fixtures/protocol/observe from the upstream repository, not in the sdist nor in the upstream sources available",
	"test_filter_conformance.py":        "needs sdk/fixtures/filters from the upstream repository, not in the sdist nor in the upstream sources available",
	// Runs in TestPython025HTTPFunctionsSuite (an engine that lets HTTP-invoked
	// functions reach 127.0.0.1 over http; it also checks none is skipped).
	"test_http_external_functions_integration.py": "runs in TestPython025HTTPFunctionsSuite",
	// Runs in TestPython025SDKRBACSuite against an engine with an RBAC listener.
	"test_rbac_workers.py": "runs in TestPython025SDKRBACSuite",
}

// py25Deselected are single SDK tests left out for time only: they never
// contact an engine (they replace the connect with a fake) and each spends
// 30 s in the SDK's own shutdown.
var py25Deselected = []string{
	"tests/test_init_api.py::test_register_worker_returns_iii_instance",
	"tests/test_init_api.py::test_connect_consumes_otel_from_init_options",
}

// py25Paths returns the sdist directory and the venv's python.
func py25Paths(t *testing.T) (dir, py string) {
	t.Helper()
	dir, py = os.Getenv("SLUICE_PY25_SDIST"), os.Getenv("SLUICE_PY25_PYTHON")
	if dir == "" {
		dir, _ = filepath.Abs(filepath.Join(".py25-sdist", "iii_sdk-0.25.0"))
	}
	if py == "" {
		py, _ = filepath.Abs(filepath.Join(".venv-sdktests", "bin", "python"))
	}
	if _, err := os.Stat(filepath.Join(dir, "tests")); err != nil {
		missingDependency(t, "the iii-sdk 0.25.0 sdist: "+err.Error())
	}
	if _, err := os.Stat(py); err != nil {
		missingDependency(t, "the SDK test venv: "+err.Error())
	}
	return dir, py
}

var py25FailedRE = regexp.MustCompile(`(?m)^(FAILED|ERROR) (\S+)`)

// py25Flaky are the SDK tests that may be run a second time when they fail,
// by id, with why: each times itself with a fixed sleep, not an awaited
// event, and fails when a loaded machine is slower than the sleep. Any other
// failure fails at once: a rerun that passes would hide an engine race (an
// observer left pending on b8b8b29 was one, see
// engine.TestObserveAnswerNotOvertakenByOwnerAck).
var py25Flaky = map[string]string{
	"tests/test_json_size.py::test_cancelled_sdk_invocation_waiting_for_fragmented_send_preserves_active_send": "" +
		"sleeps 0.1 s and 0.4 s against the SDK's own fake server (no engine) and expects its send state by then",
	"tests/test_trigger_type_lifecycle.py::test_provider_reconnect_rebinds_trigger": "" +
		"gives the engine a fixed 0.4 s (_wait) to see a provider's disconnect and send the reconnected one its trigger",
}

// py25Rerunnable splits the failed ids into those py25Flaky allows to be
// run again and the others.
func py25Rerunnable(ids []string) (rerun, other []string) {
	for _, id := range ids {
		if _, ok := py25Flaky[id]; ok {
			rerun = append(rerun, id)
		} else {
			other = append(other, id)
		}
	}
	return rerun, other
}

// py25Pytest runs pytest in the sdist with env added and fails the test
// once per failed or erroring SDK test, by name. A failure of a test in
// py25Flaky only is run once more on its own, and logged as flaky if it
// then passes.
func py25Pytest(t *testing.T, dir, py string, env []string, args ...string) {
	t.Helper()
	out, err := py25Run(t, dir, py, env, args...)
	if err == nil {
		t.Logf("%s", out[max(0, len(out)-300):])
		return
	}
	failed := py25FailedRE.FindAllStringSubmatch(string(out), -1)
	if len(failed) == 0 {
		t.Fatalf("the SDK's tests failed: %v\n%s", err, out[max(0, len(out)-8000):])
	}
	ids := make([]string, len(failed))
	for i, f := range failed {
		ids[i] = f[2]
	}
	rerun, other := py25Rerunnable(ids)
	if len(other) > 0 {
		for _, f := range failed {
			if _, ok := py25Flaky[f[2]]; !ok {
				t.Errorf("SDK test %s: %s", strings.ToLower(f[1]), f[2])
			}
		}
		t.Fatalf("the SDK's tests failed (not rerun: only py25Flaky are): %v\n%s", err, out[max(0, len(out)-8000):])
	}
	again, err2 := py25Run(t, dir, py, env, rerun...)
	if err2 == nil {
		t.Logf("flaky SDK tests (failed, then passed alone): %v\n%s", rerun, out[max(0, len(out)-8000):])
		return
	}
	for _, f := range py25FailedRE.FindAllStringSubmatch(string(again), -1) {
		t.Errorf("SDK test %s: %s", strings.ToLower(f[1]), f[2])
	}
	t.Fatalf("the SDK's tests failed twice: %v\n%s", err2, again[max(0, len(again)-8000):])
}

func py25Run(t *testing.T, dir, py string, env []string, args ...string) ([]byte, error) {
	t.Helper()
	ctx := ctxFor(t, 6*time.Minute)
	cmd := exec.CommandContext(ctx, py, append([]string{"-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider",
		"-rfE", "-W", "ignore::DeprecationWarning"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "OTEL_ENABLED=false"), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("pytest %d argument(s) took %v", len(args), time.Since(start).Round(time.Second))
	return out, err
}

// TestPython025SDKSuite runs the sdist's whole tests/ directory, except
// py25Excluded, against one engine.
func TestPython025SDKSuite(t *testing.T) {
	dir, py := py25Paths(t)
	files, err := filepath.Glob(filepath.Join(dir, "tests", "test_*.py"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files in the sdist: %v", err)
	}
	args := []string{"tests"}
	for name := range py25Excluded {
		if _, err := os.Stat(filepath.Join(dir, "tests", name)); err != nil {
			t.Errorf("excluded %s is not in the sdist (drop the exclusion): %v", name, err)
		}
		args = append(args, "--ignore="+filepath.Join("tests", name))
	}
	for _, id := range py25Deselected {
		args = append(args, "--deselect="+id)
	}
	// Its own data directory: the SDK's state and stream tests write, and
	// the default (./sluice-data) would outlive the run.
	e := startEngine(t, "127.0.0.1:0", "--data-dir", t.TempDir())
	py25Pytest(t, dir, py, []string{"III_URL=" + e.URL, "III_HTTP_URL=" + e.HTTPURL}, args...)
}

// TestPython025SDKRBACSuite runs the sdist's test_rbac_workers.py against an
// engine with the RBAC listener of the SDK suite's engine config
// (sdk/fixtures/config-test.yaml upstream: the iii-worker-manager on 49135):
// auth function, registration hooks, expose filters and the middleware.
// On b8b8b29: the engine refused the config ("field middleware_function_id
// not found"); without that key, test_should_return_auth_result_for_valid_token
// (no "_caller" from the middleware) and both test_infrastructure_logger_*
// (engine::log::info FORBIDDEN: not in the carve-out) failed.
func TestPython025SDKRBACSuite(t *testing.T) {
	dir, py := py25Paths(t)
	cfg := authzConfig(t, `
worker_listeners:
  - name: rbac
    addr: 127.0.0.1:0
    auth:
      rbac:
        auth_function_id: test::rbac-worker::auth
        middleware_function_id: test::rbac-worker::middleware
        on_function_registration_function_id: test::rbac-worker::on-function-reg
        on_trigger_registration_function_id: test::rbac-worker::on-trigger-reg
        on_trigger_type_registration_function_id: test::rbac-worker::on-trigger-type-reg
        expose_functions:
          - match("test::ew::public::*")
          - match("engine::functions::list")
          - metadata:
              ew_public: true
`)
	e := startEngine(t, "127.0.0.1:0", "--config", cfg, "--data-dir", "memory")
	m := authzListenerRE.FindStringSubmatch(authzLine(t, e, `msg="worker listener started" name=rbac`))
	if m == nil {
		t.Fatal("no URL in the rbac listener's log line")
	}
	py25Pytest(t, dir, py, []string{"III_URL=" + e.URL, "III_HTTP_URL=" + e.HTTPURL, "III_RBAC_WORKER_URL=" + m[1]},
		filepath.Join("tests", "test_rbac_workers.py"))
}

// TestPy25RerunOnlyKnownFlaky: only the SDK tests py25Flaky names (each of
// which exists in the sdist) are run again after a failure; any other
// failure, such as the routed-observe test the engine left pending on
// b8b8b29 (which the blanket rerun of 7d9d646 would have retried and, it
// passing alone, logged as flaky), fails the suite at once.
func TestPy25RerunOnlyKnownFlaky(t *testing.T) {
	dir, _ := py25Paths(t)
	for id, why := range py25Flaky {
		file, name, ok := strings.Cut(id, "::")
		if why == "" || !ok {
			t.Errorf("py25Flaky %s: needs a file::test id and a reason", id)
			continue
		}
		src, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || !regexp.MustCompile(`(?m)^(async )?def `+regexp.QuoteMeta(name)+`\(`).Match(src) {
			t.Errorf("py25Flaky %s is not a test of the sdist (drop it): %v", id, err)
		}
	}
	routed := "tests/test_observe_e2e_routed.py::test_dispose_stops_the_activations_and_max_fires_disposes_after_the_last_one"
	flaky := "tests/test_json_size.py::test_cancelled_sdk_invocation_waiting_for_fragmented_send_preserves_active_send"
	rerun, other := py25Rerunnable([]string{flaky, routed})
	if len(rerun) != 1 || rerun[0] != flaky || len(other) != 1 || other[0] != routed {
		t.Fatalf("rerun %v, other %v", rerun, other)
	}
}
