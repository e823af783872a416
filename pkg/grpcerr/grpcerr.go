// Package grpcerr builds the gRPC status errors Lodestar's services answer
// with: machine-readable details on every bad request, and the caller's
// tenant or Unauthenticated.
package grpcerr

import (
	"context"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/lodestar-cs/lodestar/pkg/auth"
)

// Tenant returns the tenant the auth interceptor authenticated, or an
// Unauthenticated error when there is none (a server without the
// interceptor must not serve anyone).
func Tenant(ctx context.Context) (string, error) {
	t, ok := auth.TenantFrom(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no authenticated tenant: send authorization: Bearer <api key>")
	}
	return t, nil
}

// Violation names one invalid field of a request.
func Violation(field, description string) *errdetails.BadRequest_FieldViolation {
	return &errdetails.BadRequest_FieldViolation{Field: field, Description: description}
}

// Error returns a status error with msg and, when given, a BadRequest
// detail listing the violations.
func Error(code codes.Code, msg string, violations ...*errdetails.BadRequest_FieldViolation) error {
	if len(violations) == 0 {
		return status.Error(code, msg)
	}
	return WithDetails(code, msg, &errdetails.BadRequest{FieldViolations: violations})
}

// WithDetails returns a status error carrying details.
func WithDetails(code codes.Code, msg string, details ...protoadapt.MessageV1) error {
	st := status.New(code, msg)
	if withDetails, err := st.WithDetails(details...); err == nil {
		st = withDetails
	}
	return st.Err()
}
