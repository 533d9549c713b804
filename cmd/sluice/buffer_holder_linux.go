package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// bufferHolder returns the process that holds the buffer in dir open for
// writing (its exclusive flock on the directory), read from /proc/locks:
// nothing is locked to find out, so a starting engine never finds the
// lock taken. Without /proc/locks it is the running process <dir>.lock
// names.
func bufferHolder(dir string) (int, bool) {
	fi, err := os.Stat(dir)
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return pidHolder(dir)
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return pidHolder(dir)
	}
	defer f.Close()
	dev := uint64(st.Dev)
	major := (dev>>8)&0xfff | (dev>>32)&^uint64(0xfff)
	minor := dev&0xff | (dev>>12)&^uint64(0xff)
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, st.Ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "1: FLOCK  ADVISORY  WRITE 14572 fe:00:9987988 0 EOF"; a
		// waiter's line has "->" after the number.
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[1] != "FLOCK" || fs[3] != "WRITE" || fs[5] != want {
			continue
		}
		pid, err := strconv.Atoi(fs[4])
		return pid, err == nil
	}
	return 0, false
}
