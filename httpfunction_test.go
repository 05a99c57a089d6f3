package sluice_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sluice "github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/engine"
)

// startHTTPFunctionsEngine is startEngine with HTTP-invoked functions
// allowed to reach a loopback http:// test server.
func startHTTPFunctionsEngine(t *testing.T, secretEnvs ...string) *engine.Engine {
	t.Helper()
	return startEngine(t, func(cfg *engine.Config) {
		cfg.HTTPFunctions.BlockPrivateIPs, cfg.HTTPFunctions.RequireHTTPS = false, false
		cfg.HTTPFunctions.SecretEnvs = secretEnvs
	})
}

// A function registered with RegisterHTTP is executed by the engine as an
// HTTP request (method, headers, auth from the engine's environment, the
// payload as body) and its JSON answer is the caller's result; the
// registering worker never sees the invocation. Unregister removes it.
func TestRegisterHTTPFunction(t *testing.T) {
	t.Setenv("SLUICE_TEST_HTTPFN_TOKEN", "s3cret")
	type seen struct {
		method, path, auth, custom, fnPath string
		body                               string
	}
	got := make(chan seen, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("X-Custom"), r.Header.Get("x-iii-Function-Path"), string(b)}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"doubled":42}`)
	}))
	defer srv.Close()

	e := startHTTPFunctionsEngine(t, "SLUICE_TEST_HTTPFN_TOKEN")
	owner := connectEngine(t, e, "owner")
	caller := connectEngine(t, e, "caller")
	err := owner.RegisterHTTP("ext::double", sluice.HTTPInvocation{
		URL: srv.URL + "/double", Method: "put", Timeout: 2 * time.Second,
		Headers: map[string]string{"X-Custom": "yes"}, Auth: sluice.BearerAuth("SLUICE_TEST_HTTPFN_TOKEN"),
	}, sluice.WithFunctionDescription("doubles over HTTP"))
	if err != nil {
		t.Fatal(err)
	}
	roundTripAfter(t, owner)

	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	res, err := caller.Trigger(ctx, "ext::double", map[string]int{"n": 21})
	if err != nil {
		t.Fatalf("calling the HTTP-invoked function: %v", err)
	}
	var out struct{ Doubled int }
	if err := json.Unmarshal(res, &out); err != nil || out.Doubled != 42 {
		t.Fatalf("result %s (%v), want {\"doubled\":42}", res, err)
	}
	select {
	case s := <-got:
		if s.method != "PUT" || s.path != "/double" || s.auth != "Bearer s3cret" || s.custom != "yes" || s.fnPath != "ext::double" {
			t.Errorf("request %+v: want PUT /double, Bearer s3cret, X-Custom yes, x-iii-Function-Path ext::double", s)
		}
		if !strings.Contains(s.body, `"n":21`) {
			t.Errorf("request body %q does not carry the payload", s.body)
		}
	default:
		t.Fatal("the engine answered without calling the URL")
	}

	if err := owner.Unregister("ext::double"); err != nil {
		t.Fatal(err)
	}
	roundTripAfter(t, owner)
	_, err = caller.Trigger(ctx, "ext::double", map[string]int{"n": 1})
	var se *sluice.Error
	if !errors.As(err, &se) || se.Code != "function_not_found" {
		t.Fatalf("after Unregister: %v, want function_not_found", err)
	}
}

// roundTripAfter registers a throwaway echo on c and calls it through the
// engine: the engine handles one socket's messages in order, so whatever c
// sent before is in effect once it answers.
func roundTripAfter(t *testing.T, c *sluice.Client) {
	t.Helper()
	id := "rt::" + strings.ReplaceAll(t.Name(), "/", "_") + time.Now().Format("150405.000000000")
	if err := c.RegisterRaw(id, func(context.Context, *sluice.Invocation) (json.RawMessage, error) {
		return json.RawMessage(`{}`), nil
	}); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, id)
}

func TestRegisterHTTPFunctionRefusesBadInput(t *testing.T) {
	e := startHTTPFunctionsEngine(t)
	c := connectEngine(t, e, "owner")
	for name, tc := range map[string]struct {
		id  string
		inv sluice.HTTPInvocation
	}{
		"empty id":         {"", sluice.HTTPInvocation{URL: "http://127.0.0.1:1/"}},
		"no URL":           {"ext::a", sluice.HTTPInvocation{}},
		"negative timeout": {"ext::b", sluice.HTTPInvocation{URL: "http://127.0.0.1:1/", Timeout: -time.Second}},
		"sub-ms timeout":   {"ext::c", sluice.HTTPInvocation{URL: "http://127.0.0.1:1/", Timeout: time.Microsecond}},
		"unknown method":   {"ext::d", sluice.HTTPInvocation{URL: "http://127.0.0.1:1/", Method: "POTS"}},
		"unknown auth":     {"ext::e", sluice.HTTPInvocation{URL: "http://127.0.0.1:1/", Auth: &sluice.HTTPAuth{Type: "Bearer", TokenKey: "T"}}},
	} {
		if err := c.RegisterHTTP(tc.id, tc.inv); err == nil {
			t.Errorf("%s: RegisterHTTP accepted it", name)
		}
	}
	if err := c.RegisterHTTP("ext::ok", sluice.HTTPInvocation{URL: "http://127.0.0.1:1/"}); err != nil {
		t.Fatal(err)
	}
	if err := c.RegisterHTTP("ext::lower", sluice.HTTPInvocation{URL: "http://127.0.0.1:1/", Method: "put"}); err != nil {
		t.Fatalf("a lower-case method (the engine upper-cases it): %v", err)
	}
	if err := c.RegisterHTTP("ext::ok", sluice.HTTPInvocation{URL: "http://127.0.0.1:1/"}); err == nil {
		t.Error("a second registration of the same id was accepted")
	}
}

// The engine refuses an HTTP-invoked function its settings do not allow
// (here a secret variable not in http_functions.secret_envs): calls get
// function_not_found, and the client and engine keep serving.
func TestRegisterHTTPFunctionRefusedByEngine(t *testing.T) {
	t.Setenv("SLUICE_TEST_HTTPFN_UNLISTED", "x")
	e := startHTTPFunctionsEngine(t)
	owner := connectEngine(t, e, "owner")
	if err := owner.RegisterHTTP("ext::secret", sluice.HTTPInvocation{URL: "http://127.0.0.1:1/", Auth: sluice.HMACAuth("SLUICE_TEST_HTTPFN_UNLISTED")}); err != nil {
		t.Fatal(err)
	}
	roundTripAfter(t, owner)
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	_, err := owner.Trigger(ctx, "ext::secret", nil)
	var se *sluice.Error
	if !errors.As(err, &se) || se.Code != "function_not_found" {
		t.Fatalf("call: %v, want function_not_found", err)
	}
}
