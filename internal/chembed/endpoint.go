package chembed

import (
	"fmt"
	"net"
	"strconv"
)

// DefaultDatabase is the database named by the DSNs chembed prints.
const DefaultDatabase = "ndr"

// Endpoint is where a running server answers, on 127.0.0.1.
type Endpoint struct {
	TCPPort  int // native protocol
	HTTPPort int
}

// TCPAddr is the native protocol address, host:port.
func (e Endpoint) TCPAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(e.TCPPort)) }

// HTTPAddr is the HTTP interface address, host:port.
func (e Endpoint) HTTPAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(e.HTTPPort)) }

// DSN is the store's DSN for database db on this server (native protocol;
// the default user has no password).
func (e Endpoint) DSN(db string) string { return fmt.Sprintf("clickhouse://%s/%s", e.TCPAddr(), db) }

// freePorts returns n distinct free TCP ports on loopback. Another process
// may take one before the server binds it; Start retries when that happens.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick free port: %w", err)
		}
		// Keep it open until all are picked so they differ.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
