package wire

import (
	"bytes"
	"testing"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Skipping the encoder's scan of a Verified value is sound only if every
// raw value DecodeText vouches for in a valid UTF-8 frame is one the
// encoder would have accepted anyway (validRaw), and the output is then
// byte for byte what it is without Verified.
func FuzzDecodeTextRawValid(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"type":"invocationresult","invocation_id":"i","result":{"k":"\u00e9 é","n":[1e5,-0.5]}}`))
	f.Add([]byte(`{"type":"invokefunction","function_id":"f","data":{"a\"b":"\ud83d\ude00"},"metadata":[]}`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		if !utf8.Valid(frame) {
			return // DecodeText is for text frames only
		}
		var m Message
		rawValid, err := DecodeText(frame, &m)
		if err != nil || !rawValid {
			return
		}
		for name, v := range map[string]jsontext.Value{"data": m.Data, "metadata": m.Metadata, "result": m.Result} {
			if v != nil && !validRaw(v) {
				t.Fatalf("DecodeText vouched for %s %q, which the encoder rejects", name, v)
			}
		}
		plain, err1 := Encode(nil, &m)
		m.Verified = VerifiedData | VerifiedMetadata | VerifiedResult
		verified, err2 := Encode(nil, &m)
		if (err1 == nil) != (err2 == nil) || !bytes.Equal(plain, verified) {
			t.Fatalf("Verified changed the encoding of %q:\n%s (%v)\n%s (%v)", frame, plain, err1, verified, err2)
		}
	})
}

func TestDecodeTextReportsFastPath(t *testing.T) {
	var m Message
	if ok, err := DecodeText([]byte(`{"type":"invokefunction","invocation_id":"i","function_id":"f","data":{"a":1}}`), &m); !ok || err != nil {
		t.Fatalf("plain invoke: rawValid %v, err %v", ok, err)
	}
	if m.Verified != 0 {
		t.Fatalf("decoding set Verified: %v", m.Verified)
	}
	// An escaped key takes the reference decoder, which vouches for nothing.
	if ok, err := DecodeText([]byte(`{"type":"invokefunction","function_id":"f","d\u0061ta":{"a":1}}`), &m); ok || err != nil || string(m.Data) != `{"a":1}` {
		t.Fatalf("escaped key: rawValid %v, err %v, data %s", ok, err, m.Data)
	}
	if _, err := DecodeText([]byte(`{"type":`), &m); err == nil {
		t.Fatal("truncated frame decoded")
	}
}

// Verified is the sender's word: the fast encoder writes a Verified value
// as it is, and scans (and declines) an unverified invalid one as before.
func TestEncodeVerifiedSkipsScan(t *testing.T) {
	bad := jsontext.Value(`{"a":`)
	m := Message{Type: TypeInvocationResult, InvocationID: "i", Result: bad}
	if _, ok := encodeFast(nil, &m); ok {
		t.Fatal("fast encoder accepted an unverified invalid result")
	}
	m.Verified = VerifiedResult
	out, ok := encodeFast(nil, &m)
	if !ok || !bytes.Contains(out, bad) {
		t.Fatalf("verified result not written as is: %s, %v", out, ok)
	}
	m.Verified = VerifiedData // names another field: the result is scanned
	if _, ok := encodeFast(nil, &m); ok {
		t.Fatal("VerifiedData let an invalid result through")
	}
}

func TestAppendStringNonASCII(t *testing.T) {
	ok := true
	if got := string(appendString(nil, "é\"\n", &ok)); got != `"é\"\n"` || !ok {
		t.Fatalf("got %s, ok %v", got, ok)
	}
	appendString(nil, "a\xffb", &ok)
	if ok {
		t.Fatal("invalid UTF-8 accepted")
	}
}
