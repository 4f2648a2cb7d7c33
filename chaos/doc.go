// Package chaos is tollgate's fault-injection run (issue 7, "Faults"): two
// or three real tollgate processes sharing one real redis-server (AOF,
// appendfsync always), the paysim engine, a webhook receiver and a load
// generator; faults are injected one at a time and, after each, the
// invariants are checked from Redis and from paysim's records.
//
// Everything lives in test files behind the "chaos" build tag, so that
// `go test ./...` does not start it:
//
//	go test -tags chaos -run TestChaos -v -timeout 40m ./chaos
//
// or `make chaos`. CI=true shortens the run to a few minutes.
package chaos
