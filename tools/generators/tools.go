//go:build tools

// Package tools pins the code generators used by `make generate`. It is its own
// module, outside go.work, so generator dependencies never touch the service build.
package tools

import (
	_ "github.com/bufbuild/buf/cmd/buf"
	_ "google.golang.org/grpc/cmd/protoc-gen-go-grpc"
	_ "google.golang.org/protobuf/cmd/protoc-gen-go"
)
