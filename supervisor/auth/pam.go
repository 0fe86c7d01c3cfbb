// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/xpra-proxy/xpra-proxy/pamauth"
)

// PlainPassword is a module that needs the password itself, not a proof
// that the client knows it: the client must answer with the xor digest,
// which only masks the password with the salts, so anyone who reads the
// connection can recover it. The supervisor asks CheckTransport before it
// sends the challenge, and puts the recovered password in Request.Plain.
type PlainPassword interface {
	Module
	// CheckTransport says whether the password may be asked for on this
	// connection; encrypted is true for TLS and WSS (and AES). A non-nil
	// error refuses the client, with the error's Refusal.Detail as reason.
	CheckTransport(confidential bool) error
}

// pamMaxTimeout caps the timeout option: a client's whole login has
// 120 s by default.
const pamMaxTimeout = 5 * time.Minute

// pamOptions are the options the pam module knows (dashes are already
// underscores). Anything else is refused: a typo in a security setting
// must not be ignored.
var pamOptions = []string{"service", "helper", "timeout", "allow_unencrypted_passwords", "check_account"}

// pamModule is xpra's "pam" module: the system's PAM stack checks the
// user's own password, in xpra-proxy-pam, never in the supervisor.
type pamModule struct {
	helper           pamauth.Helper
	service          string
	allowUnencrypted bool
}

func newPAM(spec Spec) (Module, error) {
	for k := range spec.Options {
		if !slices.Contains(pamOptions, k) {
			return nil, fmt.Errorf("auth: module pam: unknown option %q (known: service, helper, timeout, allow-unencrypted-passwords, check-account)", k)
		}
	}
	m := &pamModule{service: pamauth.DefaultService, helper: pamauth.Helper{Path: pamauth.FindProgram(), Timeout: pamauth.DefaultTimeout}}
	if v, ok := spec.Options["service"]; ok {
		if !pamauth.ValidService(v) {
			return nil, fmt.Errorf("auth: module pam: service %q is not a file name under /etc/pam.d", v)
		}
		m.service = v
	}
	if v, ok := spec.Options["helper"]; ok {
		m.helper.Path = v
	}
	if err := pamauth.CheckProgram(m.helper.Path); err != nil {
		return nil, fmt.Errorf("auth: module pam: %w (set helper=PATH)", err)
	}
	if v, ok := spec.Options["timeout"]; ok {
		d, err := parseTimeout(v)
		if err != nil {
			return nil, fmt.Errorf("auth: module pam: %w", err)
		}
		m.helper.Timeout = d
	}
	if v, ok := spec.Options["allow_unencrypted_passwords"]; ok {
		b, err := parseBool(v)
		if err != nil {
			return nil, fmt.Errorf("auth: module pam: allow-unencrypted-passwords: %w", err)
		}
		m.allowUnencrypted = b
	}
	if v, ok := spec.Options["check_account"]; ok {
		// xpra skips pam_acct_mgmt unless asked; we always run it, so
		// expired and locked-out accounts stay out.
		if b, err := parseBool(v); err != nil || !b {
			return nil, fmt.Errorf("auth: module pam: check-account=%s: the account check is always done and cannot be turned off", v)
		}
	}
	return m, nil
}

// parseTimeout reads "10s", "1m30s" or plain seconds ("10").
func parseTimeout(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.Atoi(v)
		if nerr != nil {
			return 0, fmt.Errorf("timeout %q: %w", v, err)
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 || d > pamMaxTimeout {
		return 0, fmt.Errorf("timeout %s: want more than 0 and at most %s", d, pamMaxTimeout)
	}
	return d, nil
}

// parseBool reads xpra's boolean spellings.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "yes", "true", "on":
		return true, nil
	case "0", "no", "false", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not yes or no", v)
}

func (m *pamModule) Name() string         { return "pam" }
func (m *pamModule) NeedsChallenge() bool { return true }

// CheckTransport refuses the xor digest on a connection anyone on the
// path can read (plain TCP or WebSocket), unless the admin allows it (as
// xpra's client does only with XPRA_ALLOW_UNENCRYPTED_PASSWORDS, or on a
// local connection). confidential is TLS or a unix socket.
func (m *pamModule) CheckTransport(confidential bool) error {
	if confidential || m.allowUnencrypted {
		return nil
	}
	return &Refusal{
		Detail: "this server checks system passwords, which it accepts only over an encrypted connection (TLS)",
		Log:    "pam: refusing to ask for a password on an unencrypted connection (set allow-unencrypted-passwords=yes on the pam module to allow it)",
	}
}

// Authenticate hands the password to the PAM helper; the account PAM
// accepts is the session's owner, with its passwd uid and gid, and its
// live sessions ("username matters").
func (m *pamModule) Authenticate(r Request) (*Session, error) {
	if r.Plain == nil {
		return nil, fmt.Errorf("%w: pam: the client did not answer with the xor digest", ErrDenied)
	}
	if r.Username == "" {
		return nil, fmt.Errorf("%w: pam: no username given", ErrDenied)
	}
	password := systemPassword(r.Plain)
	defer clear(password)
	rep, err := m.helper.Run(context.Background(), pamauth.Request{
		Service: m.service, Username: r.Username, Password: password, RHost: r.RemoteHost,
	})
	if errors.Is(err, pamauth.ErrTimeout) {
		return nil, &Refusal{Detail: pamauth.ReasonTimeout, Log: fmt.Sprintf("pam: user %q: %v", r.Username, err)}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: pam: user %q: %w", ErrDenied, r.Username, err)
	}
	if !rep.OK {
		ref := &Refusal{Log: fmt.Sprintf("pam: user %q: %s", r.Username, rep.Log)}
		// "authentication failed" is said already; anything more (account
		// expired, nologin, ...) comes as the detail.
		if rep.Reason != pamauth.ReasonFailed {
			ref.Detail = rep.Reason
		}
		return nil, ref
	}
	sess, err := UserSession(rep.User)
	if err != nil {
		return nil, fmt.Errorf("pam: user %q accepted as %q: %w", r.Username, rep.User, err)
	}
	// The supervisor's own passwd lookup must agree with the helper's.
	if int64(sess.UID) != rep.UID || int64(sess.GID) != rep.GID {
		return nil, fmt.Errorf("%w: pam: %q is uid %d gid %d for the helper but uid %d gid %d here", ErrDenied,
			rep.User, rep.UID, rep.GID, sess.UID, sess.GID)
	}
	return sess, nil
}

// systemPassword is the password as PAM compares it with the system's
// hashes, which are of UTF-8 text on any current system. xpra 3.1's
// clients encode the password they type as latin-1 (their strtobytes), so
// a password that is not valid UTF-8 is read as latin-1 and re-encoded;
// one that is valid UTF-8 goes as it came. The result is a copy.
func systemPassword(p []byte) []byte {
	if utf8.Valid(p) {
		return slices.Clone(p)
	}
	out := make([]byte, 0, 2*len(p))
	for _, b := range p {
		out = utf8.AppendRune(out, rune(b)) // latin-1 is the first 256 code points
	}
	return out
}
