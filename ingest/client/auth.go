package client

import (
	"context"
	"unicode/utf8"

	"google.golang.org/grpc/credentials"

	"github.com/ndr-go/ndr/ingest"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// BearerToken returns per-RPC credentials that send token as
// "authorization: Bearer <token>" with every call, for servers that require
// per-sensor tokens (grpc.WithPerRPCCredentials). With requireTLS, gRPC
// refuses to send it over a connection without transport security; pass
// false only for a loopback target, where nobody can read it on the way.
func BearerToken(token string, requireTLS bool) credentials.PerRPCCredentials {
	return bearerToken{md: map[string]string{"authorization": "Bearer " + token}, tls: requireTLS}
}

type bearerToken struct {
	md  map[string]string
	tls bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return b.md, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return b.tls }

// dropUnencodable removes from b the records protobuf cannot encode (a
// string field that is not valid UTF-8) and reports each to onReject as a
// rejection at its position in the batch as read. Sent as is, such a record
// would fail its whole batch, on every resend; the file readers never
// yield one, but other Sources may.
func dropUnencodable(b *ingest.Batch, seq uint64, label string, onReject func(string, uint64, *ndrv1.Rejection)) (dropped int) {
	kept := b.Conns[:0]
	for i := range b.Conns {
		c := &b.Conns[i]
		field := ""
		switch {
		case !utf8.ValidString(c.UID):
			field = "uid"
		case !utf8.ValidString(c.Service):
			field = "service"
		case !utf8.ValidString(c.History):
			field = "history"
		case !utf8.ValidString(c.Sensor):
			field = "sensor_id"
		}
		if field == "" {
			kept = append(kept, *c)
			continue
		}
		dropped++
		if onReject != nil {
			onReject(label, seq, &ndrv1.Rejection{Index: uint32(i), Field: field, Reason: field + ": invalid UTF-8; not sent (protobuf strings must be UTF-8)"})
		}
	}
	clear(b.Conns[len(kept):])
	b.Conns = kept
	return dropped
}
