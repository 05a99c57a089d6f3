// Package testhttp holds HTTP helpers shared by tests of several packages.
package testhttp

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Do sends one request and returns the response with its body read and
// closed. body "" sends none; hdr sets headers, "Host" the request's host
// (as a browser page on another name would send it). Transport errors
// fail the test.
func Do(t testing.TB, method, url, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}
