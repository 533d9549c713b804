// Command sluice runs, checks and benchmarks Sluice pipelines.
package main

import "os"

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}
