// Command sluice runs, checks and benchmarks Sluice pipelines.
package main

import (
	"os"

	"github.com/sluice-edge/sluice/bench"
)

func main() {
	bench.ChildMain() // a child process of `sluice bench --scenario mqtt`
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}
