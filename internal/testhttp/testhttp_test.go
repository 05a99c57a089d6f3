package testhttp

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestDo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", r.Method+"|"+r.Host+"|"+r.Header.Get("X-Token")+"|"+string(b))
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "answer")
	}))
	defer srv.Close()
	res, body := Do(t, "POST", srv.URL+"/x", "in", map[string]string{"Host": "evil.example", "X-Token": "k"})
	if res.StatusCode != http.StatusTeapot || body != "answer" || res.Header.Get("X-Seen") != "POST|evil.example|k|in" {
		t.Fatalf("got %d %q %q", res.StatusCode, body, res.Header.Get("X-Seen"))
	}
	res, body = Do(t, "GET", srv.URL, "", nil)
	if res.Header.Get("X-Seen") != "GET|"+res.Request.URL.Host+"||" || body != "answer" {
		t.Fatalf("GET without body: %q %q", res.Header.Get("X-Seen"), body)
	}
}
