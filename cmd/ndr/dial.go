package main

import (
	"flag"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// dialFlags are the flags of a client of ndr serve (send, loadgen): where
// it is, TLS or mTLS, and the sensor's bearer token.
type dialFlags struct {
	addr, caFile, certFile, keyFile, tokenFile string
	useTLS                                     bool
}

func (f *dialFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "127.0.0.1:50051", "address of ndr serve")
	fs.BoolVar(&f.useTLS, "tls", false, "connect with TLS")
	fs.StringVar(&f.caFile, "ca", "", "CA bundle that signs the server's certificate (implies --tls)")
	fs.StringVar(&f.certFile, "cert", "", "client certificate for mTLS (implies --tls)")
	fs.StringVar(&f.keyFile, "key", "", "client key for mTLS")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding this sensor's bearer token (default: env NDR_TOKEN); needs --tls unless --addr is loopback")
}

// options returns the dial options and whether a token is sent (the
// server then records the token's sensor, unless --sensor says otherwise).
func (f *dialFlags) options(env *environment) ([]grpc.DialOption, bool, error) {
	tlsOn := f.useTLS || f.caFile != "" || f.certFile != ""
	tokenOpts, withToken, err := tokenCredentials(env, f.tokenFile, f.addr, tlsOn)
	if err != nil {
		return nil, false, err
	}
	creds := insecure.NewCredentials()
	if tlsOn {
		tc, err := clientTLS(f.caFile, f.certFile, f.keyFile)
		if err != nil {
			return nil, false, err
		}
		creds = credentials.NewTLS(tc)
	}
	return append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, tokenOpts...), withToken, nil
}

// dial connects to f.addr with opts and extra.
func (f *dialFlags) dial(opts []grpc.DialOption, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(f.addr, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", f.addr, err)
	}
	return conn, nil
}
