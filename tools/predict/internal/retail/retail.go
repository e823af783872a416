// Package retail reads the UCI "Online Retail" invoices (one row per invoice
// line: InvoiceNo, InvoiceDate, CustomerID, Country, Quantity, UnitPrice),
// groups the lines into invoices, and splits the customers' history from their
// outcome: who placed no invoice in the weeks after a split day churned.
package retail

import (
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lodestar-cs/lodestar/tools/predict/internal/roc"
)

// dateLayout is the InvoiceDate format, M/D/YYYY H:MM, taken as UTC.
const dateLayout = "1/2/2006 15:04"

// header is the expected first row.
var header = []string{"InvoiceNo", "InvoiceDate", "CustomerID", "Country", "Quantity", "UnitPrice"}

// Invoice is one purchase: the lines of one invoice number.
type Invoice struct {
	No       string
	Customer string
	Country  string
	// Time is the earliest of its lines' times (a long invoice's lines may
	// straddle a minute).
	Time time.Time
	// Lines is the number of invoice lines, Items the quantity over them.
	Lines  int
	Items  float64
	Amount float64
}

// Data is what Read found.
type Data struct {
	// Invoices are the purchases of known customers, in time order (invoice
	// number order at the same minute).
	Invoices []Invoice
	// Rows counts the data rows; CancelledRows those of cancellations
	// (invoice numbers starting with C), NoCustomerRows the other rows with an
	// empty customer id: both are left out. The file's "(blank)" customer
	// id (rows of unknown customers, adjustments) is kept as one customer, as
	// the data set's README counts it (3,371 customers with history).
	Rows, CancelledRows, NoCustomerRows int
}

// Read parses the CSV. A malformed row is an error naming its line, as is an
// invoice whose lines name different customers.
func Read(r io.Reader) (*Data, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(header)
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	if !slices.Equal(head, header) {
		return nil, fmt.Errorf("header %q: want %q", strings.Join(head, ","), strings.Join(header, ","))
	}
	d := &Data{}
	byNo := map[string]int{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err // csv errors name the line
		}
		d.Rows++
		line, _ := cr.FieldPos(0)
		no, customer := rec[0], rec[2]
		switch {
		case strings.HasPrefix(no, "C"):
			d.CancelledRows++
			continue
		case customer == "":
			d.NoCustomerRows++
			continue
		}
		t, err := time.ParseInLocation(dateLayout, rec[1], time.UTC)
		if err != nil {
			return nil, fmt.Errorf("line %d: InvoiceDate %q: want M/D/YYYY H:MM", line, rec[1])
		}
		qty, err1 := strconv.ParseFloat(rec[4], 64)
		price, err2 := strconv.ParseFloat(rec[5], 64)
		if err := errors.Join(err1, err2); err != nil || math.IsInf(qty, 0) || math.IsInf(price, 0) {
			return nil, fmt.Errorf("line %d: Quantity %q, UnitPrice %q: want numbers", line, rec[4], rec[5])
		}
		i, ok := byNo[no]
		if !ok {
			i = len(d.Invoices)
			byNo[no] = i
			d.Invoices = append(d.Invoices, Invoice{No: no, Customer: customer, Country: rec[3], Time: t})
		}
		inv := &d.Invoices[i]
		if inv.Customer != customer {
			return nil, fmt.Errorf("line %d: invoice %s of customer %s, earlier lines of customer %s", line, no, customer, inv.Customer)
		}
		if t.Before(inv.Time) {
			inv.Time = t
		}
		inv.Lines++
		inv.Items += qty
		inv.Amount += qty * price
	}
	slices.SortFunc(d.Invoices, func(a, b Invoice) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.No, b.No))
	})
	return d, nil
}

// Split divides time at a day: history up to and including Last, outcomes over
// the Horizon days after it.
type Split struct {
	// Last is the last day of history (UTC midnight).
	Last time.Time
	// Horizon is the number of days after Last in which a customer without an
	// invoice churned.
	Horizon int
}

// End is the end of history: midnight after Last.
func (s Split) End() time.Time { return s.Last.AddDate(0, 0, 1) }

// OutcomeEnd is the end of the outcome period.
func (s Split) OutcomeEnd() time.Time { return s.End().AddDate(0, 0, s.Horizon) }

// Customer is one customer with history at a split.
type Customer struct {
	ID string
	// Invoices is the number of invoices in history; Last the time of the last.
	Invoices int
	Last     time.Time
	// Churned is true when the customer placed no invoice in the outcome period.
	Churned bool
}

// DaysSinceLast is the number of whole days from the day of the last invoice to
// the split's last day: 0 for a customer who bought on it.
func (c Customer) DaysSinceLast(s Split) int {
	return int(s.Last.Sub(c.Last.Truncate(24*time.Hour)) / (24 * time.Hour))
}

// Customers returns the customers with an invoice before the split's end, by id,
// with their outcome. invoices must be in time order.
func (s Split) Customers(invoices []Invoice) []Customer {
	end, outcomeEnd := s.End(), s.OutcomeEnd()
	byID := map[string]*Customer{}
	for _, inv := range invoices {
		c := byID[inv.Customer]
		switch {
		case inv.Time.Before(end):
			if c == nil {
				c = &Customer{ID: inv.Customer, Churned: true}
				byID[inv.Customer] = c
			}
			c.Invoices++
			c.Last = inv.Time
		case c != nil && inv.Time.Before(outcomeEnd):
			c.Churned = false
		}
	}
	out := make([]Customer, 0, len(byID))
	for _, c := range byID {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Customer) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// The splits of the data set's README: history up to 2011-09-09, outcomes over
// the 91 days to the end of the data (2011-12-09); and the same three months
// earlier, whose outcomes are known by the final split's last day.
var (
	FinalSplit = Split{Last: time.Date(2011, 9, 9, 0, 0, 0, 0, time.UTC), Horizon: 91}
	EarlySplit = Split{Last: time.Date(2011, 6, 9, 0, 0, 0, 0, time.UTC), Horizon: 92}
)

// Baselines are the ROC AUCs of single signals ranking churners first.
type Baselines struct {
	// N is the number of customers with history, Churned of churners.
	N, Churned int
	// DaysSinceLast ranks by days since the last invoice, more first;
	// Invoices by the number of invoices, fewer first.
	DaysSinceLast, Invoices float64
}

// Baselines computes the single-signal baselines at the split.
func (s Split) Baselines(invoices []Invoice) Baselines {
	cs := s.Customers(invoices)
	days, fewer := make([]float64, len(cs)), make([]float64, len(cs))
	churned := make([]bool, len(cs))
	b := Baselines{N: len(cs)}
	for i, c := range cs {
		days[i], fewer[i], churned[i] = float64(c.DaysSinceLast(s)), -float64(c.Invoices), c.Churned
		if c.Churned {
			b.Churned++
		}
	}
	b.DaysSinceLast, b.Invoices = roc.AUC(days, churned), roc.AUC(fewer, churned)
	return b
}

// CheckReadme compares baselines at FinalSplit with the figures the data set's
// README states, to their rounding.
func (b Baselines) CheckReadme() error {
	var errs []error
	for _, c := range []struct {
		name      string
		got, want float64
		places    float64
	}{
		{"customers with history", float64(b.N), 3371, 0},
		{"churned share (%)", 100 * float64(b.Churned) / float64(b.N), 43.0, 1},
		{"AUC of days since the last invoice", b.DaysSinceLast, 0.684, 3},
		{"AUC of the number of invoices", b.Invoices, 0.722, 3},
	} {
		if math.Abs(c.got-c.want) > 0.5*math.Pow(10, -c.places) {
			errs = append(errs, fmt.Errorf("%s %.4f, the README says %g", c.name, c.got, c.want))
		}
	}
	return errors.Join(errs...)
}
