package worker

import (
	"fmt"
	"strings"

	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
)

// TargetError is a refusal the client is shown, as a disconnect packet.
type TargetError struct {
	Reason string // one of packet.Reason*
	Detail string
}

func (e *TargetError) Error() string { return e.Reason + ": " + e.Detail }

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
		return "", &TargetError{packet.ReasonSessionNotFound, "no displays found"}
	}
	want := NormalizeDisplay(requested)
	if strings.HasPrefix(want, ":proxy-") {
		return "", &TargetError{packet.ReasonSessionNotFound, "invalid display"}
	}
	if want == "" {
		if len(usable) == 1 {
			return usable[0], nil
		}
		return "", &TargetError{packet.ReasonSessionNotFound,
			"please specify a display, more than one is available: " + strings.Join(usable, ", ")}
	}
	for _, d := range usable {
		if d == want || NormalizeDisplay(d) == want {
			return d, nil
		}
	}
	return "", &TargetError{packet.ReasonSessionNotFound, fmt.Sprintf("display '%s' not found", want)}
}
