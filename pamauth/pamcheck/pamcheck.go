// SPDX-License-Identifier: GPL-2.0-or-later

// Package pamcheck runs one PAM authentication: pam_authenticate, then
// pam_acct_mgmt, with a conversation that answers the first password
// prompt and nothing else. It links libpam (cgo) and so belongs in
// xpra-proxy-pam only: a single-purpose process that calls it once, from
// its locked main thread, and exits (STYLE.md §0.2).
package pamcheck

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/msteinert/pam/v2"

	"github.com/xpra-proxy/xpra-proxy/pamauth"
)

// Bounds on what PAM modules may say: each message as PAM_MAX_MSG_SIZE,
// and a handful of them.
const (
	maxMessage  = 512
	maxMessages = 16
)

// NologinFiles are where pam_nologin looks by default, in its order.
var NologinFiles = []string{"/var/run/nologin", "/etc/nologin"}

// conversation answers PAM's prompts for one request.
type conversation struct {
	password []byte
	answered bool     // the password went to the first echo-off prompt
	refused  string   // the prompt we could not answer
	messages []string // PAM_TEXT_INFO and PAM_ERROR_MSG, in order
}

// errMorePrompts ends the conversation (PAM_CONV_ERR).
var errMorePrompts = errors.New("a prompt other than the first password prompt")

func (c *conversation) RespondPAM(style pam.Style, msg string) (string, error) {
	switch style {
	case pam.PromptEchoOff:
		if !c.answered {
			c.answered = true
			return string(c.password), nil
		}
	case pam.TextInfo, pam.ErrorMsg:
		if len(c.messages) < maxMessages {
			c.messages = append(c.messages, pamauth.Clip(msg, maxMessage))
		}
		return "", nil
	}
	if c.refused == "" {
		c.refused = pamauth.Clip(msg, maxMessage)
		if c.refused == "" {
			c.refused = fmt.Sprintf("(an empty prompt of style %d)", style)
		}
	}
	return "", errMorePrompts
}

// Check authenticates r with PAM and returns the reply for the supervisor.
// Call it once per process, from the main thread.
func Check(r pamauth.Request) pamauth.Reply {
	if err := r.Check(); err != nil {
		return pamauth.Reply{Reason: pamauth.ReasonFailed, Log: err.Error()}
	}
	conv := &conversation{password: r.Password}
	tx, err := pam.Start(r.Service, r.Username, conv)
	if err != nil {
		return pamauth.Reply{Reason: pamauth.ReasonFailed, Log: "pam_start: " + err.Error()}
	}
	defer tx.End()
	if r.RHost != "" {
		if err := tx.SetItem(pam.Rhost, r.RHost); err != nil {
			return pamauth.Reply{Reason: pamauth.ReasonFailed, Log: "PAM_RHOST: " + err.Error()}
		}
	}
	if r.TTY != "" {
		if err := tx.SetItem(pam.Tty, r.TTY); err != nil {
			return pamauth.Reply{Reason: pamauth.ReasonFailed, Log: "PAM_TTY: " + err.Error()}
		}
	}
	// An empty password never reaches here (Request.Check), and
	// DisallowNullAuthtok keeps pam_unix's nullok from letting an account
	// without a password in.
	if err := tx.Authenticate(pam.DisallowNullAuthtok); err != nil {
		return failure(conv, "pam_authenticate", err, authReason)
	}
	if conv.refused != "" {
		// A module asked and was refused, yet the stack went on.
		return failure(conv, "pam_authenticate", errMorePrompts, authReason)
	}
	// What modules said while authenticating (a banner, a last-failure
	// notice) is no part of an account refusal.
	conv.messages = nil
	if err := tx.AcctMgmt(pam.DisallowNullAuthtok); err != nil {
		return failure(conv, "pam_acct_mgmt", err, accountReason)
	}
	// A module may have changed the name (case, aliases): the account is
	// the one PAM settled on.
	name, err := tx.GetItem(pam.User)
	if err != nil || name == "" {
		name = r.Username
	}
	u, err := user.Lookup(name)
	if err != nil {
		return pamauth.Reply{Reason: pamauth.ReasonFailed, Log: fmt.Sprintf("PAM accepted %q, but it has no passwd entry: %v", name, err)}
	}
	uid, err1 := strconv.ParseInt(u.Uid, 10, 64)
	gid, err2 := strconv.ParseInt(u.Gid, 10, 64)
	if err1 != nil || err2 != nil {
		return pamauth.Reply{Reason: pamauth.ReasonFailed, Log: fmt.Sprintf("passwd entry of %q: uid %q gid %q", name, u.Uid, u.Gid)}
	}
	return pamauth.Reply{OK: true, User: u.Username, UID: uid, GID: gid, Home: u.HomeDir}
}

// failure builds the reply for a failed step: the client's reason from
// the PAM error (and what modules said), the full story for the log.
func failure(conv *conversation, step string, err error, reason func(pam.Error) string) pamauth.Reply {
	log := step + ": " + err.Error()
	if len(conv.messages) > 0 {
		log += " (PAM said: " + strings.Join(conv.messages, " | ") + ")"
	}
	if conv.refused != "" {
		return pamauth.Reply{Reason: pamauth.ReasonMorePrompts + ": " + conv.refused, Log: log}
	}
	if msg, ok := nologinMessage(conv.messages); ok {
		return pamauth.Reply{Reason: withDetail(pamauth.ReasonNologin, msg), Log: log}
	}
	var perr pam.Error
	base := pamauth.ReasonFailed
	if errors.As(err, &perr) {
		base = reason(perr)
	}
	if base == pamauth.ReasonFailed {
		// Before the password is proven, say nothing more: what modules
		// print then may tell a guesser whether the account exists.
		return pamauth.Reply{Reason: base, Log: log}
	}
	return pamauth.Reply{Reason: withDetail(base, strings.Join(conv.messages, " ")), Log: log}
}

// authReason: whatever pam_authenticate returns (wrong password, unknown
// user, locked) is one reason to the client, so no answer tells a guesser
// whether an account exists.
func authReason(pam.Error) string { return pamauth.ReasonFailed }

// accountReason: pam_acct_mgmt runs only after the password was proven,
// so the owner may learn why the account is refused.
func accountReason(e pam.Error) string {
	switch e {
	case pam.ErrAcctExpired:
		return pamauth.ReasonExpired
	case pam.ErrNewAuthtokReqd:
		return pamauth.ReasonPasswordChange
	case pam.ErrAuthtokExpired, pam.ErrCredExpired:
		return pamauth.ReasonPasswordExpiry
	case pam.ErrUserUnknown:
		return pamauth.ReasonFailed
	}
	return pamauth.ReasonRefused
}

func withDetail(reason, detail string) string {
	if detail = strings.TrimSpace(detail); detail == "" {
		return reason
	}
	return reason + ": " + detail
}

// nologinMessage recognises pam_nologin: it shows the nologin file's
// contents as its message, so a message equal to one of those files is
// its refusal. (PAM returns the same error for it as for a wrong
// password; this is how the client can be told the difference.)
func nologinMessage(messages []string) (string, bool) {
	for _, path := range NologinFiles {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		want := pamauth.Clip(string(b), maxMessage)
		for _, m := range messages {
			if m == want {
				return m, true
			}
		}
		return "", false // pam_nologin reads only the first that exists
	}
	return "", false
}
