// Package sluice is the Go SDK for the Sluice engine (and any engine that
// speaks the iii worker protocol): connect a worker, register functions and
// triggers, call functions in any language, and stream bytes between
// functions through channels that are plain io.Reader and io.WriteCloser
// values.
package sluice
