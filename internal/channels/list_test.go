package channels

import "testing"

func TestHubList(t *testing.T) {
	h := NewHub(Config{}, nil)
	a, err := h.CreateFor("w1", 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.Create(0)
	if err != nil {
		t.Fatal(err)
	}
	list, n := h.List(10)
	if n != 2 || len(list) != 2 {
		t.Fatalf("list %+v, %d open", list, n)
	}
	// Most recent first; ids cut to 8 characters; no access key anywhere.
	if list[0].ID != b.Writer.ChannelID[:8] || list[1].ID != a.Writer.ChannelID[:8] || list[1].Owner != "w1" || list[0].Owner != "" {
		t.Fatalf("list %+v", list)
	}
	if list[0].Writer != "waiting" || list[0].Reader != "waiting" || list[0].Bytes != 0 {
		t.Fatalf("ends %+v", list[0])
	}
	if list, n := h.List(1); n != 2 || len(list) != 1 {
		t.Fatalf("limit 1: %+v, %d open", list, n)
	}
}
