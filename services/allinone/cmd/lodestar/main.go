// Command lodestar runs Lodestar: every service in one process by default
// (-target=all), or the services named by -target.
package main

import (
	"os"

	"github.com/lodestar-cs/lodestar/services/allinone"
)

func main() { os.Exit(allinone.Main(os.Args[1:], "")) }
