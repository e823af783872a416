// Command scoring runs Lodestar's scoring service alone (microservice mode).
package main

import (
	"os"

	"github.com/lodestar-cs/lodestar/services/allinone"
)

func main() { os.Exit(allinone.Main(os.Args[1:], allinone.TargetScoring)) }
