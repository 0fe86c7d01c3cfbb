// SPDX-License-Identifier: GPL-2.0-or-later

// Package logscan finds, in what our processes logged during a test, the
// signs of a crash or of a child that ended badly: Go's panic and fatal
// error output, a recovered panic, and the supervisor's lines for a relay,
// transport or pre-auth process that exited non-zero or died of a signal.
// The e2e helpers (internal/proxylab, internal/encodelab) fail every test
// whose logs hold one it did not declare, so a crash cannot pass unseen.
package logscan

import (
	"regexp"
	"strings"
)

// crash matches a line that is a crash wherever it appears: the lines of
// several processes share one log, so a panic's first line may follow
// another process's partial line.
var crash = regexp.MustCompile(`panic: |fatal error: |goroutine \d+ \[running\]:|` +
	`^\[signal SIG|unexpected signal during runtime execution|` +
	// control.Server recovers a panicking connection and logs this.
	`connection panicked`)

// ended lists the supervisor's lines for a child's end and the attribute
// holding its exit status, which must be absent (package logging drops
// nil values) or <nil> (a log written by hand, or by an older build).
var ended = []struct {
	msg, attr string
}{
	{`msg="relay worker ended"`, "status="},
	{`msg="transport process ended"`, "status="},
	{`msg="pre-auth process ended"`, "err="},
}

// badEnd matches the supervisor's own verdicts on a child that died:
// of a signal other than its SIGKILL (reap.go), by its sandbox, or
// before a verdict (a crash or out of memory in pre-auth).
var badEnd = regexp.MustCompile(`died of a signal|killed by its sandbox|pre-auth process died before a verdict`)

// killedByUs is how a pre-auth process the supervisor killed (its login
// time over, a stopping supervisor) ends: not a fault of the process.
const killedByUs = `err="signal: killed"`

// Bad returns the lines of log that show a crash or a bad end, in order,
// leaving out those that match one of the expected patterns.
func Bad(log string, expected ...*regexp.Regexp) []string {
	var bad []string
	for _, line := range strings.Split(log, "\n") {
		if !isBad(line) {
			continue
		}
		ok := false
		for _, re := range expected {
			if re.MatchString(line) {
				ok = true
				break
			}
		}
		if !ok {
			bad = append(bad, line)
		}
	}
	return bad
}

func isBad(line string) bool {
	if crash.MatchString(line) || badEnd.MatchString(line) {
		return true
	}
	for _, e := range ended {
		if !strings.Contains(line, e.msg) {
			continue
		}
		i := strings.Index(line, " "+e.attr)
		if i < 0 {
			// No status: the child exited 0 (a nil error is not
			// logged), or it was a relay adopted after a restart,
			// which the supervisor did not start.
			return false
		}
		v := line[i+1:]
		return !strings.HasPrefix(v, e.attr+"<nil>") && !strings.HasPrefix(v, killedByUs)
	}
	return false
}
