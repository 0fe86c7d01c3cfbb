// SPDX-License-Identifier: GPL-2.0-or-later

// Package target chooses the session a relayed connection goes to, as the
// connection's user in its relay worker: among the user's live sessions
// or the module's list (PROXY.md §2.7), or a new one the supervisor
// starts on request (ondemand.go).
package target

import (
	"fmt"
	"strings"

	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
)

// Error is a refusal the client is shown, as a disconnect packet.
type Error struct {
	Reason string // one of packet.Reason*
	Detail string
}

func (e *Error) Error() string { return e.Reason + ": " + e.Detail }

// NormalizeDisplay turns what a client put in its hello (from the URL path)
// into the form sessions are listed by: "100" and ":100" name the same
// session; anything else (a URI) is kept as it is.
func NormalizeDisplay(d string) string {
	d = strings.TrimSpace(d)
	if d == "" || strings.HasPrefix(d, ":") {
		return d
	}
	for _, c := range d {
		if (c < '0' || c > '9') && c != '.' {
			return d
		}
	}
	return ":" + d
}

// ChooseDisplay picks the target among the displays the user may reach,
// with the reference's rules and messages (PROXY.md §2.7), except that
// proxy instances (":proxy-*") are never targets.
func ChooseDisplay(requested string, available []string) (string, error) {
	var usable []string
	for _, d := range available {
		if !strings.HasPrefix(d, ":proxy-") {
			usable = append(usable, d)
		}
	}
	if len(usable) == 0 {
		return "", &Error{packet.ReasonSessionNotFound, "no displays found"}
	}
	want := NormalizeDisplay(requested)
	if strings.HasPrefix(want, ":proxy-") {
		return "", &Error{packet.ReasonSessionNotFound, "invalid display"}
	}
	if want == "" {
		if len(usable) == 1 {
			return usable[0], nil
		}
		return "", &Error{packet.ReasonSessionNotFound,
			"please specify a display, more than one is available: " + strings.Join(usable, ", ")}
	}
	for _, d := range usable {
		if d == want || NormalizeDisplay(d) == want {
			return d, nil
		}
	}
	return "", &Error{packet.ReasonSessionNotFound, fmt.Sprintf("display '%s' not found", want)}
}
