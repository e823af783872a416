package grpcserver

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

func TestUnknownEnums(t *testing.T) {
	for _, tc := range []struct {
		req    proto.Message
		fields string
	}{
		{&scoringv1.ListHealthScoresRequest{OrderBy: scoringv1.ListHealthScoresOrder(99)}, "order_by"},
		{&scoringv1.ListHealthScoresRequest{Band: -1, OrderBy: 99}, "band,order_by"},
		{&alertv1.ListAlertsRequest{States: []alertv1.AlertState{1, 42, 2}}, "states[1]"},
		{&alertv1.CreateRuleRequest{Rule: &alertv1.Rule{RuleId: "r", Kind: 77}}, "rule.kind"},
		{&scoringv1.ListHealthScoresRequest{Band: scoringv1.Band_BAND_RED}, ""},
		{&alertv1.ListAlertsRequest{}, ""},
	} {
		err := checkEnums(tc.req)
		var got []string
		for _, v := range unknownEnums(tc.req.ProtoReflect()) {
			got = append(got, v.GetField())
		}
		if strings.Join(got, ",") != tc.fields {
			t.Errorf("%T %v: fields %v, want %s", tc.req, tc.req, got, tc.fields)
		}
		if want := map[bool]codes.Code{true: codes.OK, false: codes.InvalidArgument}[tc.fields == ""]; status.Code(err) != want {
			t.Errorf("%T: code %v, want %v", tc.req, status.Code(err), want)
		}
	}
}
