//go:build race

package observe

// raceEnabled: the race detector makes sync.Pool drop items, so scratch is
// sometimes allocated.
const raceEnabled = true
