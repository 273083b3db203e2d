package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/ndr-go/ndr/ingest/wire"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// inBatch is what the ingest service receives: an EventBatch decoded by
// wire.Frame straight into ingest.Conn values, instead of a generated
// message per event (that decode was a quarter of serve's CPU).
type inBatch struct {
	wire.Frame
	buf mem.Buffer // the encoding the Frame aliases, from gRPC's pool
}

// release returns the encoding to gRPC's pool. The Frame's conns and
// strings do not alias it; its Event bytes do.
func (b *inBatch) release() {
	if b.buf != nil {
		b.buf.Free()
		b.buf = nil
	}
}

// fromMessage fills b from a generated message, for callers of the
// generated interface (Push and Stream called directly).
func (b *inBatch) fromMessage(msg *ndrv1.EventBatch) error {
	raw, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	b.release()
	return b.Unmarshal(raw)
}

// codec is gRPC's proto codec, except that it decodes an inBatch with
// wire.Frame, which accepts and refuses what proto.Unmarshal does
// (wire.FuzzFrame). Every other message (health, reflection, acks) goes
// through the proto codec.
type codec struct{ proto encoding.CodecV2 }

func newCodec() codec { return codec{proto: encoding.GetCodecV2("proto")} }

func (c codec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*inBatch)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	b.release()
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	if err := b.Unmarshal(buf.ReadOnlyData()); err != nil {
		buf.Free()
		return err
	}
	b.buf = buf
	return nil
}

func (codec) Name() string { return "proto" }

// ingestServiceDesc is ndrv1.IngestService_ServiceDesc with handlers that
// receive inBatch instead of ndrv1.EventBatch. Same service, methods and
// wire contract.
var ingestServiceDesc = grpc.ServiceDesc{
	ServiceName: ndrv1.IngestService_ServiceDesc.ServiceName,
	HandlerType: (*ndrv1.IngestServiceServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Push", Handler: pushHandler}},
	Streams: []grpc.StreamDesc{{
		StreamName: "Stream", Handler: streamHandler, ServerStreams: true, ClientStreams: true,
	}},
	Metadata: ndrv1.IngestService_ServiceDesc.Metadata,
}

func pushHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(inBatch)
	if err := dec(in); err != nil {
		return nil, err
	}
	s := srv.(*Server)
	if interceptor == nil {
		return s.push(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: ndrv1.IngestService_Push_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.push(ctx, req.(*inBatch))
	})
}

func streamHandler(srv any, stream grpc.ServerStream) error {
	strs := wire.NewStrings() // this stream's: its recv loop is one goroutine
	return srv.(*Server).stream(stream.Context(), func(b *inBatch) error {
		b.UseStrings(strs)
		return stream.RecvMsg(b)
	}, func(a *ndrv1.BatchAck) error { return stream.SendMsg(a) })
}
