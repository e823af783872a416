package web

import (
	"context"
	"encoding/json"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/humanize"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

const maxPage = 1000 // the services' largest page

func (srv *Server) signInPage(w http.ResponseWriter, r *http.Request) {
	srv.render(w, r, http.StatusOK, "signin.html", "Sign in", "", signInData{Next: safeNext(r.URL.Query().Get("next"))})
}

type signInData struct {
	Next, Error, CSM string
}

func (srv *Server) signIn(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		srv.fail(w, r, http.StatusForbidden, "cross-site request refused")
		return
	}
	key := r.PostFormValue("api_key")
	csm := strings.TrimSpace(r.PostFormValue("csm"))
	next := safeNext(r.PostFormValue("next"))
	tenant, ok := srv.tenantForAPIKey(key)
	if !ok {
		srv.render(w, r, http.StatusUnauthorized, "signin.html", "Sign in", "", signInData{Next: next, CSM: csm, Error: "Unknown API key: paste the tenant's API key (the one gRPC clients send), not the write key."})
		return
	}
	sess := srv.sessions.create(tenant, key, csm)
	srv.setCookie(w, r, sess.id, int(srv.sessions.ttl.Seconds()))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (srv *Server) signOut(w http.ResponseWriter, r *http.Request) {
	srv.sessions.delete(sessionFrom(r.Context()).id)
	srv.setCookie(w, r, "", -1)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// filters are the portfolio's and the renewals page's filters.
type filters struct {
	Owner, Segment, Tier, Stage, Band string
	Mine                              bool
}

func parseFilters(r *http.Request) filters {
	q := r.URL.Query()
	f := filters{Owner: q.Get("owner"), Segment: q.Get("segment"), Tier: q.Get("tier"), Stage: q.Get("stage"), Band: q.Get("band"), Mine: q.Get("mine") == "1"}
	if f.Mine {
		f.Owner = sessionFrom(r.Context()).csm
	}
	return f
}

func (f filters) any() bool {
	return f.Owner != "" || f.Segment != "" || f.Tier != "" || f.Stage != "" || f.Band != ""
}

func enumValue(names map[string]int32, prefix, v string) int32 {
	return names[prefix+strings.ReplaceAll(strings.ToUpper(v), "-", "_")]
}

func (f filters) tier() accountv1.Tier {
	return accountv1.Tier(enumValue(accountv1.Tier_value, "TIER_", f.Tier))
}
func (f filters) stage() accountv1.LifecycleStage {
	return accountv1.LifecycleStage(enumValue(accountv1.LifecycleStage_value, "LIFECYCLE_STAGE_", f.Stage))
}
func (f filters) band() scoringv1.Band {
	return scoringv1.Band(enumValue(scoringv1.Band_value, "BAND_", f.Band))
}

func (f filters) scores(order scoringv1.ListHealthScoresOrder, size int32) *scoringv1.ListHealthScoresRequest {
	return &scoringv1.ListHealthScoresRequest{PageSize: size, OwnerCsmId: f.Owner, Segment: f.Segment, Tier: f.tier(), LifecycleStage: f.stage(), Band: f.band(), OrderBy: order}
}

type portfolioData struct {
	F         filters
	Counts    *scoringv1.BandCounts
	Filtered  bool // Counts are of the filtered accounts, not the tenant's
	Worst     []*scoringv1.HealthScore
	Drops     []*scoringv1.HealthScore
	AtRisk    []string // ARR of the red accounts, one entry per currency
	AtRiskN   int
	Tiers     []string
	Stages    []string
	ScoredAny bool
}

func (srv *Server) portfolio(w http.ResponseWriter, r *http.Request) {
	ctx := rpc(r)
	f := parseFilters(r)
	d := portfolioData{F: f, Tiers: []string{"benchmark", "growth", "standard"}, Stages: []string{"onboarding", "adoption", "pre-renewal", "renewed", "churned"}}
	worst, err := srv.scoring.ListHealthScores(ctx, f.scores(scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_SCORE_ASCENDING, 20))
	if err != nil {
		srv.failRPC(w, r, "list scores", err)
		return
	}
	d.Worst, d.Counts = worst.GetScores(), worst.GetBandCounts()
	d.ScoredAny = d.Counts.GetRed()+d.Counts.GetYellow()+d.Counts.GetGreen() > 0 || len(d.Worst) > 0
	drops, err := srv.scoring.ListHealthScores(ctx, f.scores(scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_DROP, 10))
	if err != nil {
		srv.failRPC(w, r, "list drops", err)
		return
	}
	for _, s := range drops.GetScores() {
		if s.GetDrop_7D() < 0 { // drops are negative
			d.Drops = append(d.Drops, s)
		}
	}
	// Band counts from the service are the tenant's; a filtered view counts
	// its own accounts. ARR at risk is the ARR of the red ones either way.
	counted := &scoringv1.BandCounts{}
	atRisk := map[string]float64{}
	req := f.scores(scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_SCORE_ASCENDING, maxPage)
	if !f.any() {
		req.Band = scoringv1.Band_BAND_RED
	}
	for {
		page, err := srv.scoring.ListHealthScores(ctx, req)
		if err != nil {
			srv.failRPC(w, r, "list scores", err)
			return
		}
		for _, s := range page.GetScores() {
			switch s.GetBand() {
			case scoringv1.Band_BAND_RED:
				counted.Red++
				d.AtRiskN++
				atRisk[s.GetArr().GetCurrencyCode()] += moneyValue(s.GetArr())
			case scoringv1.Band_BAND_YELLOW:
				counted.Yellow++
			case scoringv1.Band_BAND_GREEN:
				counted.Green++
			}
		}
		if req.PageToken = page.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if f.any() {
		d.Counts, d.Filtered = counted, true
	}
	for _, c := range slices.Sorted(maps.Keys(atRisk)) {
		d.AtRisk = append(d.AtRisk, humanize.MoneyCompact(atRisk[c], c))
	}
	srv.render(w, r, http.StatusOK, "portfolio.html", "Portfolio", "portfolio", d)
}

type accountData struct {
	ID         string
	Score      *scoringv1.HealthScore
	Account    *accountv1.Account
	Forecast   *forecastv1.AccountForecast
	NoForecast string
	Changes    []*scoringv1.HealthScore // the last changes, newest first
	Open, Past []*alertv1.Alert
	Chart      template.JS
	Points     int
	// Activity is the account's recent activity; NoActivity says why there
	// is none.
	Activity     *scoringv1.GetAccountActivityResponse
	ActivityData template.JS // the events-per-day chart's data
	NoActivity   string
}

// activityDays is how much activity the account page shows: the scoring
// engine's longest window.
const activityDays = 90

// activityData is the events-per-day chart's data for uPlot: days in unix
// seconds and core events.
type activityData struct {
	T []int64 `json:"t"`
	N []int64 `json:"n"`
}

// chartData is the score chart's data for uPlot: times in unix seconds and
// scores, with markers for scorecard versions and alerts.
type chartData struct {
	T        []int64   `json:"t"`
	S        []float64 `json:"s"`
	Versions []marker  `json:"versions"`
	Alerts   []marker  `json:"alerts"`
}

type marker struct {
	T     int64  `json:"t"`
	Label string `json:"label"`
}

func (srv *Server) account(w http.ResponseWriter, r *http.Request) {
	ctx := rpc(r)
	id := r.PathValue("account")
	d := accountData{ID: id}
	sc, err := srv.scoring.GetHealthScore(ctx, &scoringv1.GetHealthScoreRequest{AccountId: id})
	if err != nil && status.Code(err) != codes.NotFound {
		srv.failRPC(w, r, "get score", err)
		return
	}
	d.Score = sc.GetScore()
	acc, err := srv.accounts.GetAccount(ctx, &accountv1.GetAccountRequest{AccountId: id})
	if err != nil && status.Code(err) != codes.NotFound {
		srv.failRPC(w, r, "get account", err)
		return
	}
	d.Account = acc.GetAccount()
	if d.Score == nil && d.Account == nil {
		srv.fail(w, r, http.StatusNotFound, "no account "+id+": it has neither a score nor a CRM record")
		return
	}
	fc, err := srv.forecast.GetAccountForecast(ctx, &forecastv1.GetAccountForecastRequest{AccountId: id})
	switch {
	case err == nil:
		d.Forecast = fc.GetForecast()
	case status.Code(err) == codes.NotFound || status.Code(err) == codes.FailedPrecondition:
		d.NoForecast = status.Convert(err).Message()
	default:
		srv.failRPC(w, r, "get forecast", err)
		return
	}
	var history []*scoringv1.HealthScore
	hreq := &scoringv1.GetScoreHistoryRequest{AccountId: id, PageSize: maxPage}
	for {
		h, err := srv.scoring.GetScoreHistory(ctx, hreq)
		if err != nil {
			if status.Code(err) == codes.NotFound {
				break
			}
			srv.failRPC(w, r, "get score history", err)
			return
		}
		history = append(history, h.GetScores()...)
		if hreq.PageToken = h.GetNextPageToken(); hreq.PageToken == "" {
			break
		}
	}
	slices.SortFunc(history, func(a, b *scoringv1.HealthScore) int {
		return a.GetScoreTime().AsTime().Compare(b.GetScoreTime().AsTime())
	})
	alerts, _, err := srv.listAlerts(r, &alertv1.ListAlertsRequest{AccountId: id}, maxInbox)
	if err != nil {
		srv.failRPC(w, r, "list alerts", err)
		return
	}
	for _, a := range alerts {
		if a.GetState() == alertv1.AlertState_ALERT_STATE_RESOLVED {
			d.Past = append(d.Past, a)
		} else {
			d.Open = append(d.Open, a)
		}
	}
	cd := chartData{T: []int64{}, S: []float64{}, Versions: []marker{}, Alerts: []marker{}}
	var version int32
	for _, h := range history {
		t := h.GetScoreTime().GetSeconds()
		cd.T = append(cd.T, t)
		cd.S = append(cd.S, h.GetScore())
		if h.GetScorecardVersion() != version {
			if version != 0 || h.GetScorecardChanged() {
				cd.Versions = append(cd.Versions, marker{T: t, Label: "scorecard v" + itoa(h.GetScorecardVersion())})
			}
			version = h.GetScorecardVersion()
		}
	}
	for _, a := range alerts {
		// Scores are in event time: the alert sits at the score it fired on.
		at := a.GetScoreTime()
		if at == nil {
			at = a.GetCreateTime()
		}
		cd.Alerts = append(cd.Alerts, marker{T: at.GetSeconds(), Label: ruleKindName(a.GetRuleKind()) + " (" + severityName(a.GetSeverity()) + ")"})
	}
	js, _ := json.Marshal(cd) // plain data: cannot fail
	d.Chart, d.Points = template.JS(js), len(history)
	for i := len(history) - 1; i >= 0 && len(d.Changes) < 10; i-- {
		if history[i].GetSummary() != "" {
			d.Changes = append(d.Changes, history[i])
		}
	}
	if err := srv.activity(ctx, &d); err != nil {
		srv.failRPC(w, r, "get account activity", err)
		return
	}
	name := id
	if d.Account.GetName() != "" {
		name = d.Account.GetName()
	} else if d.Score.GetAccountName() != "" {
		name = d.Score.GetAccountName()
	}
	srv.render(w, r, http.StatusOK, "account.html", name, "portfolio", d)
}

// activity fills the account's activity. The engine that holds it may be
// out of reach (loading, or another replica's partition): the page then
// says so rather than failing as a whole.
func (srv *Server) activity(ctx context.Context, d *accountData) error {
	act, err := srv.scoring.GetAccountActivity(ctx, &scoringv1.GetAccountActivityRequest{AccountId: d.ID, Days: activityDays})
	switch status.Code(err) {
	case codes.OK:
	case codes.NotFound:
		d.NoActivity = "no event recorded for this account"
		return nil
	case codes.Unavailable:
		d.NoActivity = status.Convert(err).Message()
		return nil
	default:
		return err
	}
	ad := activityData{T: []int64{}, N: []int64{}}
	for _, day := range act.GetDays() {
		ad.T = append(ad.T, day.GetDay().GetSeconds())
		ad.N = append(ad.N, day.GetCoreEvents())
	}
	js, _ := json.Marshal(ad) // plain data: cannot fail
	d.Activity, d.ActivityData = act, template.JS(js)
	return nil
}

func itoa(v int32) string { return strconv.Itoa(int(v)) }

// listAlerts reads the pages of a ListAlerts answer (newest first), at
// most max alerts; more reports whether there were more.
func (srv *Server) listAlerts(r *http.Request, req *alertv1.ListAlertsRequest, max int) (out []*alertv1.Alert, more bool, err error) {
	ctx := rpc(r)
	req.PageSize = maxPage
	for {
		resp, err := srv.alerts.ListAlerts(ctx, req)
		if err != nil {
			return nil, false, err
		}
		out = append(out, resp.GetAlerts()...)
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			return out, false, nil
		}
		if len(out) >= max {
			return out, true, nil
		}
	}
}

// maxInbox bounds the alerts the inbox reads and ranks: ListAlerts pages
// newest first and scans the tenant's alerts at every page, so a tenant
// with 100,000 accounts in the red cannot be read whole for every view.
const maxInbox = maxPage

// rankAlerts puts the alerts to act on first: open before acknowledged
// before snoozed, then by severity, ARR and age.
func rankAlerts(alerts []*alertv1.Alert) {
	stateRank := map[alertv1.AlertState]int{alertv1.AlertState_ALERT_STATE_OPEN: 0, alertv1.AlertState_ALERT_STATE_ACKNOWLEDGED: 1, alertv1.AlertState_ALERT_STATE_SNOOZED: 2}
	slices.SortStableFunc(alerts, func(a, b *alertv1.Alert) int {
		if d := stateRank[a.GetState()] - stateRank[b.GetState()]; d != 0 {
			return d
		}
		if d := int(b.GetSeverity()) - int(a.GetSeverity()); d != 0 {
			return d
		}
		if av, bv := moneyValue(a.GetArr()), moneyValue(b.GetArr()); av != bv {
			if av > bv {
				return -1
			}
			return 1
		}
		return a.GetCreateTime().AsTime().Compare(b.GetCreateTime().AsTime())
	})
}

type alertsData struct {
	Alerts     []*alertv1.Alert // the most pressing, as many as shown
	Total      int
	Capped     bool // Total is the newest maxInbox: there are more
	More       int  // the page size that shows more, 0 when all show
	Mine       bool
	Error      string
	SnoozeDef  string // the snooze form's default end, in the tenant's zone
	ErrAlertID string
}

// inboxPage is how many alerts the inbox shows at first, and adds at each
// "more": a CSM acts on the top of the list.
const inboxPage = 50

var openStates = []alertv1.AlertState{alertv1.AlertState_ALERT_STATE_OPEN, alertv1.AlertState_ALERT_STATE_ACKNOWLEDGED, alertv1.AlertState_ALERT_STATE_SNOOZED}

func (srv *Server) alertsData(r *http.Request) (alertsData, error) {
	sess := sessionFrom(r.Context())
	d := alertsData{Mine: r.URL.Query().Get("mine") == "1" && sess.csm != ""}
	req := &alertv1.ListAlertsRequest{States: openStates}
	if d.Mine {
		req.AssigneeId = sess.csm
	}
	alerts, more, err := srv.listAlerts(r, req, maxInbox)
	if err != nil {
		return d, err
	}
	d.Capped = more
	rankAlerts(alerts)
	d.Total = len(alerts)
	n := inboxPage
	if v, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil && v > 0 {
		n = v
	}
	if len(alerts) > n {
		alerts, d.More = alerts[:n], n+inboxPage
	}
	d.Alerts = alerts
	d.SnoozeDef = time.Now().In(srv.location(sess.tenant)).Add(24 * time.Hour).Format("2006-01-02T15:04")
	return d, nil
}

func (srv *Server) alertsPage(w http.ResponseWriter, r *http.Request) {
	d, err := srv.alertsData(r)
	if err != nil {
		srv.failRPC(w, r, "list alerts", err)
		return
	}
	srv.render(w, r, http.StatusOK, "alerts.html", "Alerts", "alerts", d)
}

// alertAction acknowledges, snoozes or resolves an alert, then answers the
// refreshed inbox (htmx) or sends the browser back to it.
func (srv *Server) alertAction(w http.ResponseWriter, r *http.Request) {
	ctx := rpc(r)
	sess := sessionFrom(r.Context())
	id, action := r.PathValue("alert"), r.PathValue("action")
	actor := sess.csm
	if actor == "" {
		actor = "console"
	}
	note := r.PostFormValue("note")
	var err error
	switch action {
	case "acknowledge":
		_, err = srv.alerts.AcknowledgeAlert(ctx, &alertv1.AcknowledgeAlertRequest{AlertId: id, Actor: actor, Note: note})
	case "resolve":
		_, err = srv.alerts.ResolveAlert(ctx, &alertv1.ResolveAlertRequest{AlertId: id, Actor: actor, Note: note})
	case "snooze":
		until, perr := time.ParseInLocation("2006-01-02T15:04", r.PostFormValue("until"), srv.location(sess.tenant))
		if perr != nil {
			err = status.Error(codes.InvalidArgument, "snooze until: want a date and time")
			break
		}
		_, err = srv.alerts.SnoozeAlert(ctx, &alertv1.SnoozeAlertRequest{AlertId: id, SnoozeEndTime: timestamppb.New(until), Reason: r.PostFormValue("reason"), Actor: actor})
	default:
		srv.fail(w, r, http.StatusNotFound, "unknown alert action "+action+": want acknowledge, snooze or resolve")
		return
	}
	if err != nil && r.Header.Get("HX-Request") == "" {
		srv.failRPC(w, r, action, err)
		return
	}
	if r.Header.Get("HX-Request") == "" {
		http.Redirect(w, r, "/alerts", http.StatusSeeOther)
		return
	}
	d, lerr := srv.alertsData(r)
	if lerr != nil {
		srv.failRPC(w, r, "list alerts", lerr)
		return
	}
	code := http.StatusOK
	if err != nil {
		// The problem is shown in place, beside the alert; htmx swaps
		// only 2xx answers in by default, so the status stays 200.
		d.Error, d.ErrAlertID = action+": "+status.Convert(err).Message(), id
	}
	srv.render(w, r, code, "alerts.html", "Alerts", "alerts", d)
}

// alertStream relays WatchAlerts as server-sent events: each event names
// the alert that changed, and the page refreshes its inbox.
func (srv *Server) alertStream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// The stream outlives the server's write timeout.
	_ = rc.SetWriteDeadline(time.Time{})
	stream, err := srv.alerts.WatchAlerts(rpc(r), &alertv1.WatchAlertsRequest{})
	if err == nil {
		// Churn-alert sends the headers once it watches: the page shows the
		// stream live only then, so no change made after is missed.
		_, err = stream.Header()
	}
	if err != nil {
		srv.failRPC(w, r, "watch alerts", err)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(": watching\n\n"))
	if err := rc.Flush(); err != nil {
		return
	}
	events := make(chan *alertv1.WatchAlertsResponse)
	go func() {
		defer close(events)
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case events <- ev:
			case <-r.Context().Done():
				return
			}
		}
	}()
	ping := time.NewTicker(25 * time.Second)
	defer ping.Stop()
	for {
		var msg string
		select {
		case <-r.Context().Done():
			return
		case <-srv.stopping:
			return
		case <-ping.C:
			msg = ": ping\n\n"
		case ev, ok := <-events:
			if !ok {
				return
			}
			b, _ := json.Marshal(map[string]string{"alert_id": ev.GetEvent().GetAlert().GetAlertId(), "type": ev.GetEvent().GetType().String()})
			msg = "event: alert\ndata: " + string(b) + "\n\n"
		}
		if _, err := w.Write([]byte(msg)); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

type renewalsData struct {
	F          filters
	Tiers      []string
	Renewals   []*forecastv1.AccountForecast
	Total      int32
	Portfolio  *forecastv1.GetPortfolioForecastResponse
	Slices     map[string][]*forecastv1.PortfolioSlice
	Dimensions []string
	Realised   *forecastv1.GetRetentionMetricsResponse
}

func (srv *Server) renewals(w http.ResponseWriter, r *http.Request) {
	ctx := rpc(r)
	f := parseFilters(r)
	d := renewalsData{F: f, Tiers: []string{"benchmark", "growth", "standard"}, Slices: map[string][]*forecastv1.PortfolioSlice{}, Dimensions: []string{"owner", "tier", "segment"}}
	now := time.Now()
	ren, err := srv.forecast.ListRenewals(ctx, &forecastv1.ListRenewalsRequest{
		StartTime: timestamppb.New(now), EndTime: timestamppb.New(now.AddDate(0, 6, 0)),
		OwnerCsmId: f.Owner, Segment: f.Segment, Tier: f.tier(),
		OrderBy: forecastv1.ListRenewalsOrder_LIST_RENEWALS_ORDER_RISK, PageSize: 50,
	})
	if err != nil {
		srv.failRPC(w, r, "list renewals", err)
		return
	}
	d.Renewals, d.Total = ren.GetRenewals(), ren.GetTotalSize()
	pf, err := srv.forecast.GetPortfolioForecast(ctx, &forecastv1.GetPortfolioForecastRequest{Unit: forecastv1.PeriodUnit_PERIOD_UNIT_QUARTER})
	if err != nil {
		srv.failRPC(w, r, "portfolio forecast", err)
		return
	}
	d.Portfolio = pf
	for _, s := range pf.GetBreakdown() {
		dim := enumName(s.GetDimension().String(), "DIMENSION_")
		d.Slices[dim] = append(d.Slices[dim], s)
	}
	re, err := srv.forecast.GetRetentionMetrics(ctx, &forecastv1.GetRetentionMetricsRequest{
		Unit: forecastv1.PeriodUnit_PERIOD_UNIT_QUARTER, StartTime: timestamppb.New(now.AddDate(-1, 0, 0)), EndTime: timestamppb.New(now),
	})
	if err != nil {
		srv.failRPC(w, r, "retention metrics", err)
		return
	}
	d.Realised = re
	srv.render(w, r, http.StatusOK, "renewals.html", "Renewals and forecast", "renewals", d)
}

type scorecardData struct {
	Active     *scoringv1.Scorecard
	YAML       string
	Problems   []*scoringv1.ScorecardProblem
	Message    string
	Evaluation *forecastv1.EvaluateScorecardResponse
}

func (srv *Server) scorecardPage(w http.ResponseWriter, r *http.Request) {
	active, err := srv.scoring.GetScorecard(rpc(r), &scoringv1.GetScorecardRequest{})
	if err != nil {
		srv.failRPC(w, r, "get scorecard", err)
		return
	}
	y, err := marshalScorecard(active.GetScorecard())
	if err != nil {
		srv.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	srv.render(w, r, http.StatusOK, "scorecard.html", "Scorecard", "scorecard", scorecardData{Active: active.GetScorecard(), YAML: y})
}

// scorecardPost validates, backtests or activates the edited scorecard;
// problems are shown beside the editor, which keeps the text as typed.
func (srv *Server) scorecardPost(w http.ResponseWriter, r *http.Request) {
	ctx := rpc(r)
	active, err := srv.scoring.GetScorecard(ctx, &scoringv1.GetScorecardRequest{})
	if err != nil {
		srv.failRPC(w, r, "get scorecard", err)
		return
	}
	d := scorecardData{Active: active.GetScorecard(), YAML: r.PostFormValue("yaml")}
	code := http.StatusOK
	defer func() { srv.render(w, r, code, "scorecard.html", "Scorecard", "scorecard", d) }()
	candidate, err := parseScorecard(d.YAML)
	if err != nil {
		code = http.StatusBadRequest
		d.Problems = []*scoringv1.ScorecardProblem{{Field: "yaml", Description: err.Error()}}
		return
	}
	v, err := srv.scoring.ValidateScorecard(ctx, &scoringv1.ValidateScorecardRequest{Scorecard: candidate})
	if err != nil {
		code = http.StatusBadGateway
		d.Message = "validate: " + status.Convert(err).Message()
		return
	}
	if !v.GetValid() {
		code = http.StatusBadRequest
		d.Problems = v.GetProblems()
		return
	}
	switch r.PostFormValue("action") {
	case "backtest":
		ev, err := srv.forecast.EvaluateScorecard(ctx, &forecastv1.EvaluateScorecardRequest{Candidate: candidate})
		if err != nil {
			code = http.StatusBadRequest
			d.Message = "backtest: " + status.Convert(err).Message()
			return
		}
		d.Evaluation = ev
		d.Message = "Backtest of the candidate against the active scorecard over the recorded renewals."
	case "activate":
		up, err := srv.scoring.UpdateScorecard(ctx, &scoringv1.UpdateScorecardRequest{Scorecard: candidate})
		if err != nil {
			code = http.StatusBadRequest
			d.Message = "activate: " + status.Convert(err).Message()
			if st := status.Convert(err); st.Code() == codes.InvalidArgument {
				d.Problems = problemsOf(st)
			}
			return
		}
		d.Active = up.GetScorecard()
		d.Message = "Activated as version " + itoa(up.GetScorecard().GetVersion()) + ": scores are recomputed under it from now on."
		if y, err := marshalScorecard(up.GetScorecard()); err == nil {
			d.YAML = y
		}
	default:
		d.Message = "Valid: no problems found."
	}
}
