// Package agent is the edge agent's apply state machine and its state
// directory: it applies signed release bundles (engine/bundle) to a Runner
// completely or not at all, keeps versions monotonic per release name, and
// records every outcome.
//
// # State directory
//
// The agent keeps its state under <data dir>/agent:
//
//	releases/<name>/<version>/  an installed release: the bundle's files and
//	                            its MANIFEST.json; only complete directories
//	                            get here (unpacked into staging/, then renamed)
//	staging/                    unpacks in progress; emptied at every start
//	incoming/                   bundles being received by the local API;
//	                            emptied at every start
//	pending/                    bundles an offline import checked and staged,
//	                            <time>-<name>-v<version>.bundle, applied in
//	                            order at the next start
//	current.json                the running release (name, version, applied
//	                            time, dir) and the highest version applied of
//	                            every name; replaced atomically (temporary
//	                            file, fsync, rename, fsync of the directory)
//	                            and only once the new release runs
//	reports.jsonl               one JSON line per apply, appended and fsync'd:
//	                            {"time","bundle","version","outcome":
//	                            "applied"|"rejected","reason","location",
//	                            "steps","file"}; rotated to reports.jsonl.1
//	                            at Options.MaxReportBytes
//	api.token                   the local API's bearer token (mode 0600)
//	lock                        held (flock) by the process that has the
//	                            directory open
//
// # Apply
//
// Apply verifies the signature against the trusted keys and every file's
// digest (bundle.Verify), checks the targets against the edge's id and
// labels, requires a version strictly above the one applied of the same
// name (a rollback is a new, higher version), and checks the free space;
// only then does it unpack (bundle.Unpack verifies again while writing),
// rename the staging directory into releases/, dry-run it (Runner.Check),
// switch to it (Runner.Switch), record it in current.json and append the
// report. A crash at any step leaves, after the next Start, exactly one
// complete release running: current.json's, which only ever names a
// release that ran. Start removes staging files and releases that never
// ran, and appends the "applied" report a crash may have cut off.
package agent
