package retail

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func day(m time.Month, d int) time.Time { return time.Date(2011, m, d, 0, 0, 0, 0, time.UTC) }

func readFixture(t *testing.T) *Data {
	t.Helper()
	f, err := os.Open("testdata/invoices.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRead(t *testing.T) {
	d := readFixture(t)
	if d.Rows != 11 || d.CancelledRows != 1 || d.NoCustomerRows != 1 {
		t.Errorf("rows %d, cancelled %d, no customer %d: want 11, 1, 1", d.Rows, d.CancelledRows, d.NoCustomerRows)
	}
	var got []string
	for _, inv := range d.Invoices {
		got = append(got, inv.No)
	}
	if want := "100 109 101 103 104 106 107 108"; strings.Join(got, " ") != want {
		t.Errorf("invoices in time order %v, want %s", got, want)
	}
	first := d.Invoices[0]
	want := Invoice{No: "100", Customer: "A", Country: "United Kingdom", Time: time.Date(2011, 1, 3, 9, 0, 0, 0, time.UTC), Lines: 2, Items: 15, Amount: 25}
	if first != want {
		t.Errorf("invoice 100 = %+v, want %+v", first, want)
	}
}

func TestReadErrors(t *testing.T) {
	const head = "InvoiceNo,InvoiceDate,CustomerID,Country,Quantity,UnitPrice\n"
	for _, tt := range []struct{ name, csv, want string }{
		{"empty", "", "read header"},
		{"wrong header", "a,b,c,d,e,f\n", "header"},
		{"bad date", head + "1,2011-01-01,A,UK,1,1\n", "line 2: InvoiceDate"},
		{"bad number", head + "1,1/1/2011 9:00,A,UK,x,1\n", "line 2: Quantity"},
		{"short row", head + "1,1/1/2011 9:00,A\n", "wrong number of fields"},
		{"two customers", head + "1,1/1/2011 9:00,A,UK,1,1\n1,1/1/2011 9:00,B,UK,1,1\n", "line 3: invoice 1 of customer B"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Read(strings.NewReader(tt.csv))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestCustomers(t *testing.T) {
	d := readFixture(t)
	s := Split{Last: day(1, 31), Horizon: 28} // outcomes: Feb 1 .. Feb 28
	got := s.Customers(d.Invoices)
	want := []Customer{
		{ID: "A", Invoices: 2, Last: time.Date(2011, 1, 20, 8, 0, 0, 0, time.UTC), Churned: false},
		{ID: "B", Invoices: 1, Last: time.Date(2011, 1, 10, 10, 0, 0, 0, time.UTC), Churned: false},
		{ID: "C", Invoices: 1, Last: time.Date(2011, 1, 31, 23, 59, 0, 0, time.UTC), Churned: true},
		// D's March invoice is after the outcome period.
		{ID: "D", Invoices: 1, Last: time.Date(2011, 1, 5, 7, 0, 0, 0, time.UTC), Churned: true},
	}
	if len(got) != len(want) {
		t.Fatalf("customers %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("customer %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	var days []int
	for _, c := range got {
		days = append(days, c.DaysSinceLast(s))
	}
	if want := []int{11, 21, 0, 26}; !slices.Equal(days, want) {
		t.Errorf("days since last %v, want %v", days, want)
	}
}

// TestBaselines checks the single-signal baselines on the fixture: churners C
// (0 days, 1 invoice) and D (26 days, 1 invoice) against A (11 days, 2
// invoices) and B (21 days, 1 invoice).
func TestBaselines(t *testing.T) {
	d := readFixture(t)
	b := Split{Last: day(1, 31), Horizon: 28}.Baselines(d.Invoices)
	// Days: D beats A and B, C loses to both: 2 of 4.
	// Invoices: C and D beat A and tie with B: 3 of 4.
	if b.DaysSinceLast != 0.5 || b.Invoices != 0.75 || b.N != 4 || b.Churned != 2 {
		t.Errorf("baselines %+v, want days 0.5, invoices 0.75, n 4, churned 2", b)
	}
}

// TestReadmeBaselines reproduces the figures of the data set's README when the
// data set is there: 3,371 customers with history, 43.0% churned, days since
// the last invoice 0.684, number of invoices 0.722.
func TestReadmeBaselines(t *testing.T) {
	f, err := os.Open("../../../../../shared/data/online-retail-invoices.csv")
	if err != nil {
		t.Skipf("the data set is not there: %v", err)
	}
	defer f.Close()
	d, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	b := FinalSplit.Baselines(d.Invoices)
	if err := b.CheckReadme(); err != nil {
		t.Error(err)
	}
}
