package churnalert_test

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/lodestar-cs/lodestar/pkg/config"
	"github.com/lodestar-cs/lodestar/services/churnalert"
)

func TestConfig(t *testing.T) {
	if err := churnalert.DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cfg := churnalert.DefaultConfig()
	if cfg.AccountURL != "" {
		t.Errorf("default -churn-alert.account-url %q: want empty (no link rather than a page that does not exist)", cfg.AccountURL)
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.RegisterFlags("churn-alert", fs)
	env := map[string]string{"LODESTAR_CHURN_ALERT_SMTP_PASSWORD": "from-env"}
	err := config.Parse(fs, []string{"-churn-alert.sweep-interval=2s", "-churn-alert.smtp-addr=mail.local:25",
		"-churn-alert.freshness=5m", "-churn-alert.account-url=/accounts/{account}"},
		func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SweepInterval != 2*time.Second || cfg.SMTPPassword != "from-env" || cfg.SMTPAddr != "mail.local:25" ||
		cfg.Freshness != 5*time.Minute || cfg.AccountURL != "/accounts/{account}" {
		t.Fatalf("flags not applied: %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	bad := churnalert.DefaultConfig()
	bad.Workers, bad.DeliveryAttempts, bad.SweepInterval, bad.StateCache = 0, 0, 0, -1
	bad.PagerDutyURL, bad.SMTPAddr, bad.SMTPFrom, bad.AccountURL, bad.Freshness = "nowhere", "no-port", "not an address", "ftp://x/{account}", 0
	err = bad.Validate()
	for _, want := range []string{"-churn-alert.workers", "-churn-alert.delivery-attempts", "-churn-alert.sweep-interval", "-churn-alert.state-cache", "-churn-alert.pagerduty-url", "-churn-alert.smtp-addr", "-churn-alert.smtp-from",
		"-churn-alert.account-url", "-churn-alert.freshness"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("no problem reported for %s: %v", want, err)
		}
	}
}
