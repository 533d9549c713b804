//go:build unix

package spec

import "syscall"

// NoFollow is the open flag that refuses a symbolic link as the last
// element of the path (O_NOFOLLOW), for OpenRegular and os.OpenFile.
const NoFollow = syscall.O_NOFOLLOW
