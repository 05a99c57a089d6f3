package httptrigger

import (
	"net/http/httptest"
	"testing"
)

// TestRecorderStatus: the request log records the status the client got:
// the first WriteHeader, or 200 when the body (or a flush) went first.
func TestRecorderStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(r *recorder)
		want int
	}{
		{"header", func(r *recorder) { r.WriteHeader(404) }, 404},
		{"first header wins", func(r *recorder) { r.WriteHeader(201); r.WriteHeader(500) }, 201},
		{"body first", func(r *recorder) { _, _ = r.Write([]byte("x")) }, 200},
		{"header then body", func(r *recorder) { r.WriteHeader(502); _, _ = r.Write([]byte("x")) }, 502},
		{"flush first", func(r *recorder) { _ = r.FlushError() }, 200},
		{"header then flush", func(r *recorder) { r.WriteHeader(206); _ = r.FlushError() }, 206},
	} {
		w := httptest.NewRecorder()
		r := &recorder{ResponseWriter: w}
		tc.do(r)
		if r.status != tc.want || w.Code != tc.want {
			t.Errorf("%s: logged %d, client got %d, want %d", tc.name, r.status, w.Code, tc.want)
		}
	}
	w := httptest.NewRecorder()
	r := &recorder{ResponseWriter: w}
	_, _ = r.Write([]byte("abc"))
	_, _ = r.Write([]byte("de"))
	if r.bytes != 5 {
		t.Errorf("logged %d bytes, want 5", r.bytes)
	}
}
