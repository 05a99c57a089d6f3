package invocation

import (
	"context"
	"testing"

	"github.com/sluicehq/sluice/internal/metrics"
	"github.com/sluicehq/sluice/internal/registry"
)

// answeringExecutor completes every invocation as it is delivered.
type answeringExecutor struct{ l *Local }

func (a *answeringExecutor) OwnerID() string { return "w" }
func (a *answeringExecutor) Deliver(req *Request) error {
	a.l.Pending().Complete(req.InvocationID, "w", Result{})
	return nil
}

// BenchmarkRouteWithMetrics measures what counting adds to routing one
// worker invocation (pending table, delivery, completion): compare the
// two sub-benchmarks.
func BenchmarkRouteWithMetrics(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			reg := registry.New()
			l := NewLocal(context.Background(), reg)
			if on {
				l.SetMetrics(metrics.New())
			}
			ex := &answeringExecutor{l}
			if _, _, err := reg.RegisterFunction(&registry.Function{ID: "f", Owner: ex}); err != nil {
				b.Fatal(err)
			}
			done := func(Result) {}
			b.ReportAllocs()
			for b.Loop() {
				l.Invoke(&Request{FunctionID: "f"}, done)
			}
		})
	}
}
