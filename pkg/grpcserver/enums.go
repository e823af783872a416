package grpcserver

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/lodestar-cs/lodestar/pkg/grpcerr"
)

// maxEnumViolations bounds the violations one answer lists.
const maxEnumViolations = 20

// unknownEnums lists the enum fields of a request holding a number their
// enum does not define: proto3 enums are open, so order_by=99 decodes
// fine, and a handler would otherwise treat it as a server failure or a
// default. Fields are named by their proto path (filters.band,
// participants[3].role).
func unknownEnums(m protoreflect.Message) []*errdetails.BadRequest_FieldViolation {
	var out []*errdetails.BadRequest_FieldViolation
	var walk func(m protoreflect.Message, path string)
	check := func(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) {
		switch fd.Kind() {
		case protoreflect.EnumKind:
			if fd.Enum().Values().ByNumber(v.Enum()) == nil && len(out) < maxEnumViolations {
				out = append(out, grpcerr.Violation(path, fmt.Sprintf("%d is not a %s", v.Enum(), fd.Enum().Name())))
			}
		case protoreflect.MessageKind, protoreflect.GroupKind:
			walk(v.Message(), path)
		}
	}
	walk = func(m protoreflect.Message, prefix string) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			path := strings.TrimPrefix(prefix+"."+string(fd.Name()), ".")
			switch {
			case fd.IsList():
				l := v.List()
				for i := range l.Len() {
					check(fd, l.Get(i), fmt.Sprintf("%s[%d]", path, i))
				}
			case fd.IsMap():
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					check(fd.MapValue(), mv, fmt.Sprintf("%s[%v]", path, k.Interface()))
					return true
				})
			default:
				check(fd, v, path)
			}
			return len(out) < maxEnumViolations
		})
	}
	walk(m, "")
	return out
}

func checkEnums(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	if vs := unknownEnums(m.ProtoReflect()); len(vs) > 0 {
		return grpcerr.Error(codes.InvalidArgument, "unknown enum value in request", vs...)
	}
	return nil
}

// enumsUnary answers InvalidArgument to a request with an undefined enum
// number, before the handler sees it.
func enumsUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := checkEnums(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// enumsStream checks every message a stream receives.
func enumsStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, enumCheckedStream{ss})
}

type enumCheckedStream struct{ grpc.ServerStream }

func (s enumCheckedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return checkEnums(m)
}
