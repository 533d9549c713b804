// Package ops holds the operations on a buffer directory behind
// `sluice buffer status|inspect|repair`, `sluice export` and `sluice
// replay`: a backlog summary with drain rate, a file-by-file inspection,
// repair (the recovery Open performs, reported), export of a backlog slice
// to plain Parquet files, and replay of exported files to a publisher with
// the rows' stable message IDs.
//
// Status and Inspect only read, so they are safe while an engine runs the
// buffer. Repair and Export open the buffer as the engine does (which
// truncates torn tails and quarantines damage) and must not run while an
// engine has it open.
package ops
