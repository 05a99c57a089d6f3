package sluice

import "testing"

func TestPlainReceipt(t *testing.T) {
	for in, want := range map[string]string{
		`{"messageReceiptId":"0193-abc"}`: "0193-abc",
		`{"messageReceiptId":""}`:         "",
	} {
		if got, ok := plainReceipt([]byte(in)); !ok || got != want {
			t.Errorf("%s: %q %v", in, got, ok)
		}
	}
	for _, in := range []string{
		`{"messageReceiptId":"a\"b"}`, `{"messageReceiptId":"a\\u0041"}`, `{"messageReceiptId":"é"}`,
		`{ "messageReceiptId":"a"}`, `{"messageReceiptId":"a","x":1}`, `{"messageReceiptId":1}`, `null`, ``,
	} {
		if got, ok := plainReceipt([]byte(in)); ok {
			t.Errorf("%s: took %q, want the decoder's path", in, got)
		}
	}
}
