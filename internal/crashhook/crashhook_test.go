// SPDX-License-Identifier: GPL-2.0-or-later

package crashhook

import "testing"

// TestTrigger: in an ordinary build (as shipped) the trigger values
// do nothing; with -tags crashtest they panic.
func TestTrigger(t *testing.T) {
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"pre-auth", func() { Preauth(PreauthUser) }},
		{"relay", func() { Relay(RelayDisplay) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			panicked := func() (p bool) {
				defer func() { p = recover() != nil }()
				c.f()
				return false
			}()
			if panicked != Enabled {
				t.Fatalf("panicked=%v in a build with the hook enabled=%v", panicked, Enabled)
			}
		})
	}
	// Other values never panic.
	Preauth("lab")
	Relay(":100")
}
