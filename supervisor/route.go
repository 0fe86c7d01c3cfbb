// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os/user"
	"strconv"

	"github.com/xpra-proxy/xpra-proxy/logind"
	"github.com/xpra-proxy/xpra-proxy/pgdir"
	"github.com/xpra-proxy/xpra-proxy/supervisor/auth"
)

// Session hosts (issue 16, packages placement and sessionhost). A front
// (session-hosts set) sends a login granted the user's own sessions to a
// session host, as a remote target with a per-login token, instead of to
// this machine's sessions; a session host records the sessions it starts
// and their end in the shared directory.

// route turns a granted "username matters" session into one relayed to
// the user's session host. The relay asks the host for the user's
// session, which finds or starts it there.
func (x *exchange) route(sess *auth.Session) (*auth.Session, error) {
	u, err := user.LookupId(strconv.Itoa(sess.UID))
	if err != nil {
		return nil, fmt.Errorf("uid %d not found: %w", sess.UID, err)
	}
	// The directory's calls are bounded (directory-timeout); a dead one
	// is not waited on again for directory-retry.
	rt := x.set.router.Route(context.Background(), u.Username)
	out := *sess
	out.Displays = []string{rt.Display}
	out.SessionOptions = maps.Clone(sess.SessionOptions)
	if out.SessionOptions == nil {
		out.SessionOptions = map[string]string{}
	}
	out.SessionOptions["password"] = rt.Password
	x.log.Info("routed to a session host", "user", u.Username, "session_host", rt.Host.Name, "how", rt.How)
	return &out, nil
}

// recordLive notes a session this proxy started in the shared directory
// (nil: none), off the caller's path: the start's reply does not wait on
// the database.
func recordLive(dir *pgdir.DB, log *slog.Logger, username, display string) {
	if dir == nil {
		return
	}
	go func() {
		if err := dir.SessionLive(context.Background(), username, display); err != nil {
			log.Warn("session directory: recording a started session", "user", username, "display", display, "err", err)
		}
	}()
}

// recordEnded notes the end of a session this proxy started.
func recordEnded(dir *pgdir.DB, log *slog.Logger, sess logind.Session) {
	if dir == nil || sess.Display == "" {
		return
	}
	if err := dir.SessionEnded(context.Background(), sess.User, sess.Display); err != nil {
		log.Warn("session directory: recording a session's end", "user", sess.User, "display", sess.Display, "err", err)
	}
}

// recordRunning ends this proxy's live rows whose session logind no longer
// lists: they ended while no supervisor watched (a restart, a crash).
func recordRunning(ctx context.Context, dir *pgdir.DB, log *slog.Logger, list []logind.Session) {
	if dir == nil {
		return
	}
	var running []pgdir.SessionRow
	for _, sess := range list {
		if sess.IsProxy() {
			running = append(running, pgdir.SessionRow{Username: sess.User, Display: sess.Display})
		}
	}
	if err := dir.SessionsRunning(ctx, running); err != nil {
		log.Warn("session directory: ending sessions gone while unwatched", "err", err)
	}
}
