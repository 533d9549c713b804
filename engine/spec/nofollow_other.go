//go:build !unix

package spec

// NoFollow is 0 where the system has no O_NOFOLLOW (Windows): opening a
// path there follows a symbolic link as the last element. OpenRegular
// still refuses what is not a regular file.
const NoFollow = 0
