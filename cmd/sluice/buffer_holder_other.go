//go:build !linux

package main

// bufferHolder returns the running process <dir>.lock names: the last to
// open the buffer in dir for writing.
func bufferHolder(dir string) (int, bool) { return pidHolder(dir) }
