// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

// result is how the exchange ended, for the setup timeline's line.
func (x *exchange) result() string {
	switch {
	case x.accepted != 0:
		return "relayed"
	case x.verdict:
		return "denied: " + x.denied
	}
	return "closed"
}
