package sim

import (
	"fmt"
	"strings"
)

// The vocabulary of the simulated product and its customers.
var (
	namePrefixes = []string{
		"Northwind", "Bluepeak", "Ironbridge", "Silverline", "Redwood", "Brightwater", "Stonegate",
		"Clearview", "Oakridge", "Summit", "Harbor", "Pinecrest", "Goldleaf", "Riverbend", "Highland",
		"Maplewood", "Crescent", "Evergreen", "Falcon", "Granite", "Lakeside", "Meridian", "Nimbus",
		"Orchard", "Pioneer", "Quarry", "Sterling", "Tidewater", "Vantage", "Willow",
	}
	// nameSuffixes pairs a company-name suffix with its industry.
	nameSuffixes = [][2]string{
		{"Logistics", "logistics"}, {"Health", "healthcare"}, {"Foods", "food"}, {"Labs", "software"},
		{"Capital", "finance"}, {"Realty", "real estate"}, {"Motors", "automotive"}, {"Energy", "energy"},
		{"Media", "media"}, {"Retail", "retail"}, {"Systems", "software"}, {"Insurance", "insurance"},
		{"Partners", "consulting"}, {"Hotels", "hospitality"}, {"Freight", "logistics"}, {"Clinics", "healthcare"},
		{"Bank", "finance"}, {"Studios", "media"}, {"Outfitters", "retail"}, {"Engineering", "manufacturing"},
	}
	firstNames = []string{
		"Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kira", "Luca",
		"Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Yara", "Zoe",
	}
	lastNames = []string{
		"Andersen", "Brown", "Costa", "Dubois", "Eriksson", "Fischer", "Garcia", "Hughes", "Ito", "Jansen",
		"Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Patel", "Rossi", "Schmidt", "Tanaka", "Weber",
	}
	// Roles by stakeholder level; the default scorecard maps the S and A
	// roles and most B roles, and the unmapped ones leave a user's level
	// unknown unless the stakeholder_level trait says it.
	rolesS = []string{"CEO", "Founder", "CFO", "CTO", "COO", "VP Sales", "VP Engineering"}
	rolesA = []string{"Director", "Head of Operations"}
	rolesB = []string{"Manager", "Analyst", "Analyst", "Account Executive", "Engineer", "Accountant", "Support Agent"}
	// coreEvents are the product's north-star actions, as the default
	// scorecard names them.
	coreEvents = []string{"Report Created", "Opportunity Created", "Invoice Sent", "Workflow Run"}
	// features are the non-core actions; breadth of use, a small measure.
	features = []string{
		"Dashboard Viewed", "Filter Applied", "Export Downloaded", "Comment Added", "Search Performed",
		"Integration Synced", "Template Used", "Notification Settings Changed",
	}
	pages = []string{"Home", "Dashboard", "Reports", "Pipeline", "Invoices", "Workflows", "Settings"}
	// milestones are the first-value milestones of the default scorecard,
	// in the order onboarding accounts reach them.
	milestones = [...]string{"Account Configured", "Teammate Invited", "First Report Created"}
	csms       = []CSM{
		{ID: "csm-01", Name: "Alex Morgan"}, {ID: "csm-02", Name: "Priya Raman"}, {ID: "csm-03", Name: "Tom Becker"},
		{ID: "csm-04", Name: "Lena Ortiz"}, {ID: "csm-05", Name: "Sam Okoye"}, {ID: "csm-06", Name: "Mia Laurent"},
	}
	// utcOffsets are the accounts' time zones, weighted towards the Americas
	// and Europe; the spread keeps some accounts at work at any hour.
	utcOffsets = []int{-8, -7, -6, -5, -5, -4, -3, 0, 1, 1, 2, 3, 5, 8, 9, 10}
	// workdayWeights is the share of a working day's sessions that start in
	// each local hour; it sums to 1.
	workdayWeights = [24]float64{
		0.002, 0.001, 0.001, 0.001, 0.001, 0.002, 0.008, 0.030,
		0.080, 0.105, 0.110, 0.100, 0.070, 0.100, 0.100, 0.095,
		0.075, 0.050, 0.025, 0.015, 0.012, 0.008, 0.005, 0.004,
	}
)

// weekendFactor scales activity on Saturdays and Sundays.
const weekendFactor = 0.08

// namer hands out distinct company names: prefix x suffix pairs in a random
// order, numbered once the pairs run out.
type namer struct {
	order []int
}

func newNamer(seed uint64) namer {
	return namer{order: newRand(seed, tagNames).Perm(len(namePrefixes) * len(nameSuffixes))}
}

// name returns account i's name and industry.
func (n namer) name(i int) [2]string {
	k := n.order[i%len(n.order)]
	suffix := nameSuffixes[k%len(nameSuffixes)]
	name := namePrefixes[k/len(nameSuffixes)] + " " + suffix[0]
	if round := i / len(n.order); round > 0 {
		name = fmt.Sprintf("%s %d", name, round+1)
	}
	return [2]string{name, suffix[1]}
}

// domainOf turns a company name into its e-mail domain.
func domainOf(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, " ", "")) + ".example"
}
