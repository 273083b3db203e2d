// Package api is the edge of the read side: the gRPC DetectionService
// (proto/ndr/v1/detection.proto) that a SOC console or a SOAR uses to list
// stored detections and to follow new ones live.
//
// List reads the store through internal/hunt. Watch is fed in process by
// a Broadcaster, a scoring.Sink that `ndr serve` registers beside the
// store's detection writer: every detection event is offered to every
// watcher as it is handed to storage. Each watcher has a bounded buffer;
// one that falls behind is dropped (ResourceExhausted) rather than
// slowing the pipeline, which never waits for a watcher.
//
// Generated proto types stop here and in cmd: the core packages know
// nothing of them. Errors map to gRPC codes in one place (grpcError).
package api

import "errors"

// Errors that end a watch.
var (
	// ErrSlowWatcher: the watcher's buffer filled; it was dropped.
	ErrSlowWatcher = errors.New("api: watcher fell behind and was dropped")
	// ErrClosed: the broadcaster is shut down (the server is stopping).
	ErrClosed = errors.New("api: detection broadcaster closed")
	// ErrTooManyWatchers: the broadcaster already has its maximum of watchers.
	ErrTooManyWatchers = errors.New("api: too many watchers")
	// ErrNoStore: List was called on a service without a store.
	ErrNoStore = errors.New("api: no detection store")
)
