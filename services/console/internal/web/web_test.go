package web

import (
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	opsv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/ops/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

func TestFormat(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	late := timestamppb.New(time.Date(2026, 12, 6, 23, 30, 0, 0, time.UTC))
	for _, tc := range []struct{ got, want string }{
		{money(&accountv1.Money{CurrencyCode: "USD", Units: 2_319_120, Nanos: 1}), "$2.3M"},
		{money(&accountv1.Money{CurrencyCode: "EUR", Units: 120_000, Nanos: 500_000_000}), "€120K"},
		{money(nil), "-"},
		{number(27), "27"},
		{number(5.333333), "5.33"},
		{number(1_234_567), "1,234,567"},
		{dateIn(time.UTC, late), "6 Dec 2026"},
		{dateIn(paris, late), "7 Dec 2026"}, // the tenant's day, not UTC's
		{dateTimeIn(paris, late), "7 Dec 2026 00:30 CET"},
		{dateIn(paris, nil), "-"},
		{lastDayIn(time.UTC, timestamppb.New(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))), "31 Dec 2026"},
		{bandName(scoringv1.Band_BAND_INSUFFICIENT_DATA), "insufficient-data"},
		{stageName(accountv1.LifecycleStage_LIFECYCLE_STAGE_PRE_RENEWAL), "pre-renewal"},
		{tierName(accountv1.Tier_TIER_UNSPECIFIED), "-"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestSessions(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSessions(time.Hour, 2)
	s.now = func() time.Time { return now }
	a := s.create("t1", "k1", "")
	if got, ok := s.get(a.id); !ok || got.tenant != "t1" || got.csrf == "" || got.csrf == a.id {
		t.Fatalf("get: %+v %v", got, ok)
	}
	now = now.Add(time.Minute)
	b := s.create("t2", "k2", "")
	c := s.create("t3", "k3", "") // full: the oldest (a) makes room
	if _, ok := s.get(a.id); ok {
		t.Error("the oldest session survived a full store")
	}
	for _, x := range []*session{b, c} {
		if _, ok := s.get(x.id); !ok {
			t.Errorf("session of %s lost", x.tenant)
		}
	}
	now = now.Add(time.Hour)
	if _, ok := s.get(b.id); ok {
		t.Error("an ended session is still valid")
	}
	s.sweep()
	if len(s.m) != 0 {
		t.Errorf("%d sessions after the sweep, want 0", len(s.m))
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/alerts?mine=1":  "/alerts?mine=1",
		"":                "/",
		"//evil.example":  "/",
		"/\\evil.example": "/",
		"https://evil":    "/",
		"alerts":          "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header map[string]string
		want   bool
	}{
		{"no browser headers", nil, true},
		{"same origin", map[string]string{"Origin": "http://console.example", "Sec-Fetch-Site": "same-origin"}, true},
		{"other origin", map[string]string{"Origin": "https://evil.example"}, false},
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site"}, false},
		{"same-site subdomain", map[string]string{"Sec-Fetch-Site": "same-site"}, false},
	} {
		r := httptest.NewRequest("POST", "http://console.example/alerts/x/resolve", nil)
		for k, v := range tc.header {
			r.Header.Set(k, v)
		}
		if got := sameOrigin(r); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRankAlerts(t *testing.T) {
	usd := func(u int64) *accountv1.Money { return &accountv1.Money{CurrencyCode: "USD", Units: u} }
	at := func(h int) *timestamppb.Timestamp { return timestamppb.New(time.Unix(int64(h)*3600, 0)) }
	alerts := []*alertv1.Alert{
		{AlertId: "snoozed-critical", State: alertv1.AlertState_ALERT_STATE_SNOOZED, Severity: alertv1.Severity_SEVERITY_CRITICAL},
		{AlertId: "open-medium", State: alertv1.AlertState_ALERT_STATE_OPEN, Severity: alertv1.Severity_SEVERITY_MEDIUM},
		{AlertId: "open-high-small", State: alertv1.AlertState_ALERT_STATE_OPEN, Severity: alertv1.Severity_SEVERITY_HIGH, Arr: usd(10)},
		{AlertId: "acked-high", State: alertv1.AlertState_ALERT_STATE_ACKNOWLEDGED, Severity: alertv1.Severity_SEVERITY_HIGH},
		{AlertId: "open-high-big-new", State: alertv1.AlertState_ALERT_STATE_OPEN, Severity: alertv1.Severity_SEVERITY_HIGH, Arr: usd(99), CreateTime: at(2)},
		{AlertId: "open-high-big-old", State: alertv1.AlertState_ALERT_STATE_OPEN, Severity: alertv1.Severity_SEVERITY_HIGH, Arr: usd(99), CreateTime: at(1)},
	}
	rankAlerts(alerts)
	want := []string{"open-high-big-old", "open-high-big-new", "open-high-small", "open-medium", "acked-high", "snoozed-critical"}
	for i, a := range alerts {
		if a.GetAlertId() != want[i] {
			t.Fatalf("position %d: %s, want %s", i, a.GetAlertId(), want[i])
		}
	}
}

func TestDeploymentView(t *testing.T) {
	read := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(read.Add(d)) }
	lag := func(n uint64) *uint64 { return &n }
	d := deploymentView(&opsv1.GetOwnershipResponse{
		PartitionCount: 3, LeaseTtl: durationpb.New(4 * time.Second), ReadTime: timestamppb.New(read),
		TenantPartitions: []uint32{2},
		Services: []*opsv1.PartitionedService{{
			Name: "scoring", LagSource: opsv1.LagSource_LAG_SOURCE_OWNER,
			Replicas: []*opsv1.Replica{{Name: "r1", RenewTime: ts(-1234 * time.Millisecond), PartitionsOwned: 1}},
			Partitions: []*opsv1.Partition{
				{Partition: 0, Owner: "r1", Epoch: 1234, AcquireTime: ts(-90 * time.Second), RenewTime: ts(-time.Second), ExpireTime: ts(3 * time.Second), Lag: lag(1500)},
				{Partition: 1, Owner: "r2", Epoch: 7, RenewTime: ts(-5 * time.Second), ExpireTime: ts(-time.Second)},
				{Partition: 2, Lag: lag(2)},
			},
		}},
	})
	if d.TTL != "4s" || d.Mine != 1 || len(d.Services) != 1 {
		t.Fatalf("%+v", d)
	}
	s := d.Services[0]
	if len(s.Replicas) != 1 || s.Replicas[0] != (replicaView{Name: "r1", Owned: 1, Renewed: "1.2s ago"}) {
		t.Errorf("replicas: %+v", s.Replicas)
	}
	if s.Owned != 1 || s.Lag != "1,502" || s.MaxLag != "1,500" {
		t.Errorf("service: owned %d, lag %s, max %s; want 1, 1,502, 1,500", s.Owned, s.Lag, s.MaxLag)
	}
	for i, want := range []partitionView{
		{N: 0, Owner: "r1", Epoch: 1234, HeldFor: "1 minute", Lease: "held", Expires: "in 3s", Lag: "1,500"},
		{N: 1, Owner: "r2", Epoch: 7, HeldFor: "-", Lease: "expired", Expires: "-", Lag: "-"},
		{N: 2, HeldFor: "-", Lease: "unowned", Expires: "-", Lag: "2", Mine: true},
	} {
		if got := s.Partitions[i]; got != want {
			t.Errorf("partition %d: %+v, want %+v", i, got, want)
		}
	}
}
