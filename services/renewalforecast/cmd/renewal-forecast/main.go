// Command renewal-forecast runs Lodestar's renewal forecast service alone
// (microservice mode).
package main

import (
	"os"

	"github.com/lodestar-cs/lodestar/services/allinone"
)

func main() { os.Exit(allinone.Main(os.Args[1:], allinone.TargetRenewalForecast)) }
