// SPDX-License-Identifier: GPL-2.0-or-later

package target

import (
	"testing"

	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
)

func TestChooseDisplay(t *testing.T) {
	tests := []struct {
		name      string
		requested string
		available []string
		want      string
		err       string
	}{
		{"only one", "", []string{":100"}, ":100", ""},
		{"by number", "101", []string{":100", ":101"}, ":101", ""},
		{"by :number", ":100", []string{":100", ":101"}, ":100", ""},
		{"several, none asked", "", []string{":100", ":101"}, "", "please specify a display, more than one is available: :100, :101"},
		{"unknown", "102", []string{":100"}, "", "display ':102' not found"},
		{"none at all", "", nil, "", "no displays found"},
		{"proxy instances are not targets", "", []string{":proxy-123", ":100"}, ":100", ""},
		{"asking for a proxy instance", ":proxy-123", []string{":proxy-123", ":100"}, "", "invalid display"},
		{"remote URI target", "", []string{"tcp://127.0.0.1:14600/"}, "tcp://127.0.0.1:14600/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ChooseDisplay(tt.requested, tt.available)
			if tt.err != "" {
				te, ok := err.(*Error)
				if !ok || te.Detail != tt.err || te.Reason != packet.ReasonSessionNotFound {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
