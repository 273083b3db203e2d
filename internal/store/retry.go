package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// transientCode reports whether a ClickHouse exception code is worth
// retrying: the server is overloaded, busy, shutting down or lost a
// connection, and the same INSERT may succeed later.
func transientCode(code int32) bool {
	switch code {
	case 3, // UNEXPECTED_END_OF_FILE
		32,  // ATTEMPT_TO_READ_AFTER_EOF
		159, // TIMEOUT_EXCEEDED
		202, // TOO_MANY_SIMULTANEOUS_QUERIES
		203, // NO_FREE_CONNECTION
		209, // SOCKET_TIMEOUT
		210, // NETWORK_ERROR
		236, // ABORTED
		241, // MEMORY_LIMIT_EXCEEDED
		242, // TABLE_IS_READ_ONLY
		252, // TOO_MANY_PARTS
		285, // TOO_FEW_LIVE_REPLICAS
		319, // UNKNOWN_STATUS_OF_INSERT
		394, // QUERY_WAS_CANCELLED
		425, // SYSTEM_ERROR
		745, // SERVER_OVERLOADED
		999: // KEEPER_EXCEPTION
		return true
	}
	return false
}

// Retryable reports whether err from an INSERT or query is transient: the
// connection failed or timed out, or the server refused for a reason that
// passes. Cancellation by the caller's context is not transient; nor are
// errors about the data or the schema.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		// 252 also reports an INSERT spanning more partitions (days of
		// ts) than max_partitions_per_insert_block: the same INSERT fails
		// again however often it is tried.
		if ex.Code == 252 && strings.Contains(ex.Message, "partitions for single INSERT block") {
			return false
		}
		return transientCode(ex.Code)
	}
	for _, target := range []error{
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE,
		syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
		io.EOF, io.ErrUnexpectedEOF, net.ErrClosed, os.ErrDeadlineExceeded,
		driver.ErrBadConn, clickhouse.ErrAcquireConnTimeout,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError // dial and DNS failures
	return errors.As(err, &oe)
}

// backoff is the wait before retry n (1-based): first, doubling, capped.
func backoff(n int, first, limit time.Duration) time.Duration {
	d := first
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}
