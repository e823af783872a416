// Command churn-alert runs Lodestar's churn-alert service alone (microservice
// mode).
package main

import (
	"os"

	"github.com/lodestar-cs/lodestar/services/allinone"
	"github.com/lodestar-cs/lodestar/services/churnalert"
)

func main() { os.Exit(allinone.Main(os.Args[1:], churnalert.Target)) }
