// SPDX-License-Identifier: GPL-2.0-or-later

//go:build crashtest

package crashhook

// Enabled reports whether this build has the hook.
const Enabled = true

// Preauth panics when the client's hello names PreauthUser.
func Preauth(username string) {
	if username == PreauthUser {
		panic("crashhook: injected pre-auth panic")
	}
}

// Relay panics when the client asks for RelayDisplay.
func Relay(display string) {
	if display == RelayDisplay {
		panic("crashhook: injected relay panic")
	}
}
