package engine

import (
	"encoding/binary"
	"errors"
	"sync"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/wire"
)

// The cluster call envelope (remoteRequest, remoteReply) travels in one of
// two encodings. JSON was the only one before codec 1 and is still read
// from any node and sent while some live node has not announced codec 1 in
// its heartbeat (a mixed-version cluster). The binary one avoids
// reflection and copies: at 128 calls in flight, encoding and decoding the
// JSON envelope took 6-9 % of each node's CPU.
//
// Binary layout: a first byte that no JSON text starts with (codecRequest,
// codecReply), then the fields in a fixed order, each a uvarint length and
// its bytes (numbers as a uvarint). A reader ignores bytes after the fields
// it knows: a later version may append fields.
//
//	request: 0x01 ns fn data meta tp bg caller min_timeout_ms
//	reply:   0x02 kind(0 result, 1 taken note)
//	         result: value hasErr(0|1) [code message stacktrace] tp bg
//	         note:   taken_by
//	calls:   0x03 (token request)...   codec 2: several requests in one message
//	answers: 0x04 (token reply)...     codec 2: several replies in one message
//
// In calls and answers each entry is two fields: the call's token (its
// reply subject is the caller's inbox prefix and the token) and a whole
// request or reply envelope as above; entries run to the end of the
// message.
//
// A node answers in the encoding of the request (old nodes only read and
// write JSON), and sends calls or answers in one message only to nodes
// that announced codec 2.
const (
	// clusterCodec is the codec this node announces in its heartbeat: 1
	// reads the binary envelope, 2 also the calls and answers batches.
	clusterCodec = 2
	codecBinary  = 1
	codecBatches = 2

	codecRequest = 0x01
	codecReply   = 0x02
	codecCalls   = 0x03
	codecAnswers = 0x04

	replyResult = 0
	replyNote   = 1
)

var errBadEnvelope = errors.New("cluster: truncated or malformed envelope")

func isBinaryEnvelope(b []byte) bool {
	return len(b) > 0 && (b[0] == codecRequest || b[0] == codecReply)
}

func appendField(b, f []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(f)))
	return append(b, f...)
}

func appendStringField(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func fieldsLen(n int) int { return n + binary.MaxVarintLen64 }

func (q *remoteRequest) binarySize() int {
	return 1 + fieldsLen(len(q.Namespace)) + fieldsLen(len(q.FunctionID)) + fieldsLen(len(q.Data)) + fieldsLen(len(q.Metadata)) +
		fieldsLen(len(q.Traceparent)) + fieldsLen(len(q.Baggage)) + fieldsLen(len(q.CallerWorkerID)) + binary.MaxVarintLen64
}

// appendBinary appends q's binary encoding to b.
func (q *remoteRequest) appendBinary(b []byte) []byte {
	b = append(b, codecRequest)
	b = appendStringField(b, q.Namespace)
	b = appendStringField(b, q.FunctionID)
	b = appendField(b, q.Data)
	b = appendField(b, q.Metadata)
	b = appendStringField(b, q.Traceparent)
	b = appendStringField(b, q.Baggage)
	b = appendStringField(b, q.CallerWorkerID)
	return binary.AppendUvarint(b, uint64(max(q.MinTimeoutMS, 0)))
}

func (r *remoteReply) binarySize() int {
	n := 2 + fieldsLen(len(r.TakenBy)) + fieldsLen(len(r.Value)) + 1 + fieldsLen(len(r.Traceparent)) + fieldsLen(len(r.Baggage))
	if r.Err != nil {
		n += fieldsLen(len(r.Err.Code)) + fieldsLen(len(r.Err.Message)) + fieldsLen(len(r.Err.Stacktrace))
	}
	return n
}

// appendBinary appends r's binary encoding to b: the note alone when
// TakenBy is set, as in JSON.
func (r *remoteReply) appendBinary(b []byte) []byte {
	b = append(b, codecReply)
	if r.TakenBy != "" {
		b = append(b, replyNote)
		return appendStringField(b, r.TakenBy)
	}
	b = append(b, replyResult)
	b = appendField(b, r.Value)
	if r.Err == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendStringField(b, r.Err.Code)
		b = appendStringField(b, r.Err.Message)
		b = appendStringField(b, r.Err.Stacktrace)
	}
	b = appendStringField(b, r.Traceparent)
	return appendStringField(b, r.Baggage)
}

// appendBatchEntry appends one entry of a calls or answers message:
// the call's token and its request or reply envelope.
func appendBatchEntry(b []byte, token string, env []byte) []byte {
	b = appendStringField(b, token)
	return appendField(b, env)
}

// batchEntries checks the framing of a calls or answers message (kind
// codecCalls or codecAnswers) and calls f with each entry, in order.
// Nothing is handed to f when the framing is broken: no entry can be told
// apart from a corrupted one then.
func batchEntries(b []byte, kind byte, f func(token, env []byte)) error {
	if len(b) == 0 || b[0] != kind {
		return errBadEnvelope
	}
	d := envelopeReader{b: b[1:]}
	n := 0
	for len(d.b) > 0 {
		if t := d.field(); len(t) == 0 && d.err == nil {
			d.err = errBadEnvelope
		}
		d.field()
		if d.err != nil {
			return d.err
		}
		n++
	}
	if n == 0 {
		return errBadEnvelope
	}
	d.b = b[1:]
	for len(d.b) > 0 {
		token := d.field()
		f(token, d.field())
	}
	return nil
}

// envelopeReader reads the fields of a binary envelope; the byte slices it
// returns alias the message (nats.go gives every message its own copy).
type envelopeReader struct {
	b   []byte
	err error
}

func (d *envelopeReader) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadEnvelope
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *envelopeReader) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errBadEnvelope
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// field returns the next field's bytes, nil when empty.
func (d *envelopeReader) field() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errBadEnvelope
		return nil
	}
	f := d.b[:n:n]
	d.b = d.b[n:]
	if n == 0 {
		return nil
	}
	return f
}

func (d *envelopeReader) string() string { return string(d.field()) }

// value is a JSON value field; it must be valid JSON, as the JSON
// envelope's decoder required.
func (d *envelopeReader) value() jsontext.Value {
	f := d.field()
	if f != nil && !wire.QuickValidJSON(f) && !jsontext.Value(f).IsValid(jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true)) {
		d.err = errBadEnvelope
		return nil
	}
	return jsontext.Value(f)
}

// decodeRequest reads a call from another node in either encoding.
func decodeRequest(b []byte, q *remoteRequest) error {
	if len(b) == 0 || b[0] != codecRequest {
		var j remoteRequest // q itself stays off the heap
		err := json.Unmarshal(b, &j, lenient)
		*q = j
		return err
	}
	d := envelopeReader{b: b[1:]}
	q.Namespace = internName(d.field())
	q.FunctionID = internName(d.field())
	q.Data = d.value()
	q.Metadata = d.value()
	q.Traceparent = d.string()
	q.Baggage = d.string()
	q.CallerWorkerID = d.string()
	ms := d.uvarint()
	if ms > 1<<53 {
		return errBadEnvelope
	}
	q.MinTimeoutMS = int64(ms)
	return d.err
}

// decodeReply reads an answer from another node in either encoding.
func decodeReply(b []byte, r *remoteReply) error {
	if len(b) == 0 || b[0] != codecReply {
		var j remoteReply // r itself stays off the heap
		err := json.Unmarshal(b, &j, lenient)
		*r = j
		return err
	}
	d := envelopeReader{b: b[1:]}
	switch d.byte() {
	case replyNote:
		r.TakenBy = d.string()
		if d.err == nil && r.TakenBy == "" {
			return errBadEnvelope
		}
		return d.err
	case replyResult:
	default:
		return errBadEnvelope
	}
	r.Value = d.value()
	switch d.byte() {
	case 0:
	case 1:
		r.Err = &wire.ErrorBody{Code: d.string(), Message: d.string(), Stacktrace: d.string()}
	default:
		return errBadEnvelope
	}
	r.Traceparent = d.string()
	r.Baggage = d.string()
	return d.err
}

// encodeRequest encodes q into a buffer of bufPool (binary) or a new one
// (JSON); putBuf gives it back once NATS has copied it.
func encodeRequest(q *remoteRequest, binaryCodec bool) ([]byte, error) {
	if !binaryCodec {
		return json.Marshal(*q) // a copy: q itself stays off the heap
	}
	return q.appendBinary(getBuf(q.binarySize())), nil
}

func encodeReply(r *remoteReply, binaryCodec bool) ([]byte, error) {
	if !binaryCodec {
		return json.Marshal(*r)
	}
	return r.appendBinary(getBuf(r.binarySize())), nil
}

// Encoding buffers: nats.go copies a message into its write buffer before
// Publish returns, so one buffer serves call after call. A buffered
// channel, not a sync.Pool: putting a slice in a Pool allocates.
var freeBufs = make(chan []byte, 256)

// maxPooledBuf keeps big payloads' buffers out of freeBufs.
const maxPooledBuf = 64 << 10

func getBuf(n int) []byte {
	if n <= maxPooledBuf {
		select {
		case b := <-freeBufs:
			if cap(b) >= n {
				return b[:0]
			}
		default:
		}
	}
	return make([]byte, 0, max(n, 512))
}

func putBuf(b []byte) {
	if cap(b) > maxPooledBuf {
		return
	}
	select {
	case freeBufs <- b[:0]:
	default:
	}
}

// Function ids and namespaces repeat call after call: a small table hands
// out one string each instead of an allocation per call.
var names struct {
	sync.RWMutex
	m map[string]string
}

const maxInternedNames = 4096

func internName(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	names.RLock()
	s, ok := names.m[string(b)]
	names.RUnlock()
	if ok {
		return s
	}
	s = string(b)
	names.Lock()
	if names.m == nil || len(names.m) >= maxInternedNames {
		names.m = make(map[string]string, 64)
	}
	names.m[s] = s
	names.Unlock()
	return s
}
