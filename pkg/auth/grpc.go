package auth

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Exempt reports whether a gRPC method needs no credential (health, reflection).
type Exempt func(fullMethod string) bool

func (r *Registry) authenticate(ctx context.Context) (context.Context, error) {
	// ValueFromIncomingContext, unlike FromIncomingContext, copies only the
	// one key's values: this runs on every call.
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) == 0 {
		return nil, status.Error(codes.Unauthenticated, `missing "authorization: Bearer <api key>" metadata`)
	}
	key, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok {
		return nil, status.Error(codes.Unauthenticated, `authorization metadata must be "Bearer <api key>"`)
	}
	// The key is taken exactly: a key with spaces around it is not the key.
	if key != strings.TrimSpace(key) {
		return nil, status.Error(codes.Unauthenticated, "API key with leading or trailing white space: send exactly \"Bearer <api key>\"")
	}
	tenant, ok := r.TenantForAPIKey(key)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "unknown API key")
	}
	return WithTenant(ctx, tenant), nil
}

// UnaryServerInterceptor authenticates every unary call not exempt and puts
// the tenant into its context.
func (r *Registry) UnaryServerInterceptor(exempt Exempt) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if exempt != nil && exempt(info.FullMethod) {
			return handler(ctx, req)
		}
		ctx, err := r.authenticate(ctx)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s authedStream) Context() context.Context { return s.ctx }

// StreamServerInterceptor is UnaryServerInterceptor for streams.
func (r *Registry) StreamServerInterceptor(exempt Exempt) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if exempt != nil && exempt(info.FullMethod) {
			return handler(srv, ss)
		}
		ctx, err := r.authenticate(ss.Context())
		if err != nil {
			return err
		}
		return handler(srv, authedStream{ServerStream: ss, ctx: ctx})
	}
}

// BearerCredentials are per-RPC credentials sending an API key, for clients
// such as lodestarctl and tests.
type BearerCredentials struct {
	Key string
	// Insecure allows sending the key over a connection without TLS (local runs).
	Insecure bool
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c BearerCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + c.Key}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (c BearerCredentials) RequireTransportSecurity() bool { return !c.Insecure }
