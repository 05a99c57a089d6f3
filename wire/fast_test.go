package wire

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

var fastSeeds = []string{
	`{"type":"invokefunction","invocation_id":"i","function_id":"f","data":{"a":1,"b":[true,false,null,-1.5e3,"x\u00e9\n"]},"traceparent":"00-ab-cd-01","baggage":"k=v"}`,
	`{"type":"invokefunction","function_id":"f","data":null,"action":{"type":"void"}}`,
	`{"type":"invokefunction","function_id":"f","action":{"type":"enqueue","queue":"q"},"metadata":{"m":1}}`,
	`{"type":"invocationresult","invocation_id":"i","function_id":"f","result":[1,2,{"x":"y"}]}`,
	`{"type":"invocationresult","invocation_id":"i","error":{"code":"c","message":"m","stacktrace":"s"}}`,
	`{"type":"registertrigger","function_id":"f","config":{"api_path":"/x"},"id":"t","trigger_type":"http","message_type":"registertrigger"}`,
	`{"type":"reattach","previous_worker_id":"p","reattach_token":"t"}`,
	` { "type" : "ping" } `, `{}`, `[]`, `null`, `{"type":null}`, `{"type":"a","type":"b"}`,
	`{"type":"x","action":{"type":"void"},"action":{"queue":"q"}}`, `{"type":1}`, `{"type":"\u0041"}`,
	`{"type":"x","data":}`, `{"type":"x","data":01}`, `{"type":"x","data":"\x"}`, `{"type":"x"} x`,
	"{\"type\":\"\xff\"}", "{\"type\":\"x\",\"data\":\"\xff\"}", `{"id":"a","error":null,"action":null}`,
}

// messagesEqual compares two messages; raw values are compared in
// canonical form when canon is set (the encoders may format them
// differently), byte for byte otherwise.
func messagesEqual(t *testing.T, a, b *Message, canon bool) bool {
	t.Helper()
	norm := func(m *Message) Message {
		c := *m
		for _, v := range []*jsontext.Value{&c.Data, &c.Metadata, &c.Result, &c.RequestFormat, &c.ResponseFormat,
			&c.Invocation, &c.TriggerRequestFormat, &c.CallRequestFormat, &c.Config} {
			if *v != nil && canon {
				cv := jsontext.Value(bytes.Clone(*v))
				if err := cv.Canonicalize(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)); err != nil {
					t.Fatalf("canonicalize %q: %v", *v, err)
				}
				*v = cv
			}
		}
		return c
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// The fast decoder must agree with the reference decoder whenever it
// decides.
func FuzzDecodeFast(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var fast, ref Message
		ok := decodeFast(frame, &fast)
		refErr := json.Unmarshal(frame, &ref, decodeOpts)
		if !ok {
			return
		}
		if refErr != nil {
			t.Fatalf("fast decoder accepted %q, reference: %v", frame, refErr)
		}
		if !messagesEqual(t, &fast, &ref, false) {
			t.Fatalf("decoders disagree on %q:\nfast %+v\nref  %+v", frame, fast, ref)
		}
	})
}

// The fast encoder's output must be valid JSON that decodes to what the
// reference encoder's output decodes to.
func FuzzEncodeFast(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s), "x")
	}
	f.Add([]byte(`{"type":"t"}`), "a\"b\\c\x00\x1f\u2028<>&\xff")
	f.Fuzz(func(t *testing.T, frame []byte, s string) {
		var m Message
		if json.Unmarshal(frame, &m, decodeOpts) != nil {
			return
		}
		m.Description = s
		if m.Error != nil {
			m.Error.Message = s
		}
		fastOut, ok := encodeFast([]byte("prefix"), &m)
		if !ok {
			return
		}
		if !bytes.HasPrefix(fastOut, []byte("prefix")) {
			t.Fatal("dst prefix lost")
		}
		fastOut = fastOut[len("prefix"):]
		if !jsontext.Value(fastOut).IsValid() {
			t.Fatalf("invalid JSON from fast encoder: %q", fastOut)
		}
		refOut, err := json.Marshal(&m, encodeOpts)
		if err != nil {
			t.Fatalf("fast encoder accepted what the reference rejects (%v): %+v", err, m)
		}
		var a, b Message
		if err := json.Unmarshal(fastOut, &a, decodeOpts); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(refOut, &b, decodeOpts); err != nil {
			t.Fatal(err)
		}
		if !messagesEqual(t, &a, &b, true) {
			t.Fatalf("encoders disagree:\nfast %s\nref  %s", fastOut, refOut)
		}
	})
}

func TestFastPathTaken(t *testing.T) {
	for _, s := range fastSeeds[:8] {
		var m Message
		if !decodeFast([]byte(s), &m) {
			t.Errorf("fast decoder declined %s", s)
		}
		if _, ok := encodeFast(nil, &m); !ok {
			t.Errorf("fast encoder declined %+v", m)
		}
	}
}

func TestDecodeDoesNotRetainFrame(t *testing.T) {
	frame := []byte(`{"type":"invokefunction","invocation_id":"i","function_id":"f","data":{"a":1}}`)
	var m Message
	if err := Decode(frame, &m); err != nil {
		t.Fatal(err)
	}
	for i := range frame {
		frame[i] = 'x'
	}
	if m.FunctionID != "f" || string(m.Data) != `{"a":1}` || m.Type != TypeInvokeFunction {
		t.Fatalf("decoded message changed with the frame: %+v", m)
	}
}

func BenchmarkDecode(b *testing.B) {
	frame := []byte(fastSeeds[0])
	var m Message
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(frame, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeReference(b *testing.B) {
	frame := []byte(fastSeeds[0])
	var m Message
	b.ReportAllocs()
	for b.Loop() {
		m = Message{}
		if err := json.Unmarshal(frame, &m, decodeOpts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	var m Message
	if err := Decode([]byte(fastSeeds[0]), &m); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(buf[:0], &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeReference(b *testing.B) {
	var m Message
	if err := Decode([]byte(fastSeeds[0]), &m); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		w := bytes.NewBuffer(buf[:0])
		if err := json.MarshalWrite(w, &m, encodeOpts); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCallerID(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":1,"_caller_worker_id":"w1"}`:                             "w1",
		`{"_caller_worker_id":"w2","b":[1,{"_caller_worker_id":"x"}]}`: "w2",
		`{"b":{"_caller_worker_id":"nested"}}`:                         "",
		`{"\u005fcaller_worker_id":"esc"}`:                             "esc",
		`{"_caller_worker_id":"a\u0041"}`:                              "aA",
		`{"_caller_worker_id":1}`:                                      "",
		`[1]`:                                                          "",
		`"_caller_worker_id"`:                                          "",
		`{"a":1}`:                                                      "",
		`null`:                                                         "",
	} {
		if got := CallerID(jsontext.Value(in)); got != want {
			t.Errorf("CallerID(%s) = %q, want %q", in, got, want)
		}
	}
}

// refCallerID is the caller id by the reference decoder ("" if data does
// not decode).
func refCallerID(data []byte) string {
	var ref struct {
		ID string `json:"_caller_worker_id"`
	}
	if json.Unmarshal(data, &ref, decodeOpts) != nil {
		return ""
	}
	return ref.ID
}

func FuzzCallerID(f *testing.F) {
	f.Add([]byte(`{"a":1,"_caller_worker_id":"w1"}`))
	f.Add([]byte(`{"_caller_worker_id":"a","_caller_worker_id":"b"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := CallerID(data), refCallerID(data); got != want {
			t.Fatalf("CallerID(%q) = %q, reference %q", data, got, want)
		}
	})
}

func TestCallerIDValid(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":1,"_caller_worker_id":"w1"}`:                          "w1",
		`{"_caller_worker_id":"w0"}`:                                "w0",
		`{"a":"\\","_caller_worker_id":"w2"} `:                      "w2",
		`{"a":{"b":1},"_caller_worker_id":"w3"}`:                    "w3",
		`{"b":{"_caller_worker_id":"nested"}}`:                      "",
		`{"a":"\",\"_caller_worker_id\":\"in a string"}`:            "",
		`{"_caller_worker_id":"a","_caller_worker_id":"b"}`:         "b",
		`{"_caller_worker_id":"a\u0041"}`:                           "aA",
		`{"\u005fcaller_worker_id":"x","_caller_worker_id":"y"}`:    "y",
		`{"_caller_worker_id" : "spaced"}`:                          "spaced",
		`{"a":[{"_caller_worker_id":"deep"}],"b":"_caller_worker"}`: "",
		`{"a":1}`: "",
		`[1]`:     "",
	} {
		if got := CallerIDValid(jsontext.Value(in)); got != want {
			t.Errorf("CallerIDValid(%s) = %q, want %q", in, got, want)
		}
	}
}

// FuzzCallerIDValid: on valid JSON, the same answer as the reference.
func FuzzCallerIDValid(f *testing.F) {
	f.Add([]byte(`{"a":1,"_caller_worker_id":"w1"}`))
	f.Add([]byte(`{"a":"\\","_caller_worker_id":"w2"}`))
	f.Add([]byte(`{"a":"\",\"_caller_worker_id\":\"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !validRaw(data) {
			return
		}
		if got, want := CallerIDValid(data), refCallerID(data); got != want {
			t.Fatalf("CallerIDValid(%q) = %q, reference %q", data, got, want)
		}
	})
}

// String fields of small frames point into the decoder's copy of the
// frame, those of big ones into one copy of their own; either way they are
// unaffected by writes to the frame or to the raw values handed out.
func TestDecodeStringsStayPut(t *testing.T) {
	for _, size := range []int{10, aliasMax} {
		frame := []byte(`{"type":"invokefunction","invocation_id":"i-1","function_id":"fn::a","data":"` +
			strings.Repeat("d", size) + `","traceparent":"00-tp"}`)
		var m Message
		if err := Decode(frame, &m); err != nil {
			t.Fatal(err)
		}
		for i := range frame {
			frame[i] = 'X'
		}
		for i := range m.Data {
			m.Data[i] = 'Y'
		}
		if m.InvocationID != "i-1" || m.FunctionID != "fn::a" || m.Traceparent != "00-tp" {
			t.Fatalf("size %d: strings changed: %q %q %q", size, m.InvocationID, m.FunctionID, m.Traceparent)
		}
	}
}

// FuzzQuickValidJSON: what QuickValidJSON takes for JSON, jsontext does
// too (with invalid UTF-8 and duplicate names allowed, as the cluster
// envelope's reader allows them).
func FuzzQuickValidJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5e3,true,null,"x\u00e9"]}`, ` "s" `, `{"a":1,"a":2}`, "\"\xff\"", `[1,]`, `{"a" 1}`, `01`, `-`, `"\q"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if QuickValidJSON(b) && !jsontext.Value(b).IsValid(jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true)) {
			t.Fatalf("QuickValidJSON took %q for JSON", b)
		}
	})
}
