// Package natstest starts an embedded NATS server with JetStream for tests.
package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/natsnode"
)

// Start runs a standalone embedded server with JetStream in a temporary
// directory, stopped when the test ends.
func Start(t testing.TB) *natsnode.Node {
	t.Helper()
	return StartIn(t, t.TempDir())
}

// StartIn is Start with a given store directory (to restart on the same
// data). The caller may Close the node early; Close is idempotent.
func StartIn(t testing.TB, dir string) *natsnode.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := natsnode.Start(ctx, natsnode.Config{NodeName: "test", StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}
