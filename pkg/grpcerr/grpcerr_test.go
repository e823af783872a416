package grpcerr

import (
	"context"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lodestar-cs/lodestar/pkg/auth"
)

func TestTenant(t *testing.T) {
	if _, err := Tenant(context.Background()); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no tenant: %v", err)
	}
	if tn, err := Tenant(auth.WithTenant(context.Background(), "acme")); err != nil || tn != "acme" {
		t.Fatalf("tenant = %q, %v", tn, err)
	}
}

func TestError(t *testing.T) {
	err := Error(codes.InvalidArgument, "bad", Violation("a", "x"), Violation("b.c", "y"))
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || st.Message() != "bad" || len(st.Details()) != 1 {
		t.Fatalf("status = %v", st)
	}
	br := st.Details()[0].(*errdetails.BadRequest)
	if len(br.GetFieldViolations()) != 2 || br.GetFieldViolations()[1].GetField() != "b.c" {
		t.Fatalf("violations = %v", br)
	}
	if st := status.Convert(Error(codes.NotFound, "gone")); len(st.Details()) != 0 || st.Code() != codes.NotFound {
		t.Fatalf("plain error = %v", st)
	}
}
