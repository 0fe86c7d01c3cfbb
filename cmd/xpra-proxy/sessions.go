// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/xpra-proxy/xpra-proxy/logind"
)

// sessionJSON is one line of `xpra-proxy sessions --json`.
type sessionJSON struct {
	ID         string    `json:"id"`
	User       string    `json:"user"`
	UID        uint32    `json:"uid"`
	Display    string    `json:"display"`
	Remote     bool      `json:"remote"`
	RemoteHost string    `json:"remote_host"`
	Class      string    `json:"class"`
	Type       string    `json:"type"`
	State      string    `json:"state"`
	Scope      string    `json:"scope"`
	Leader     uint32    `json:"leader"`
	Since      time.Time `json:"since"`
}

// sessions lists the logind sessions the proxy started (PAM service
// xpra-proxy), everyone's: xpra-proxy sessions [--json].
func sessions(args []string, stdout, stderr io.Writer) int {
	asJSON := false
	for _, a := range args {
		switch a {
		case "--json", "-json":
			asJSON = true
		default:
			fmt.Fprintln(stderr, "usage: xpra-proxy sessions [--json]")
			return 2
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := logind.Dial(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "xpra-proxy sessions:", err)
		return 1
	}
	defer c.Close()
	all, err := c.ListSessions(ctx, logind.AnyUser)
	if err != nil {
		fmt.Fprintln(stderr, "xpra-proxy sessions:", err)
		return 1
	}
	list := []sessionJSON{}
	for _, s := range all {
		if !s.IsProxy() {
			continue
		}
		list = append(list, sessionJSON{ID: s.ID, User: s.User, UID: s.UID, Display: s.Display, Remote: s.Remote,
			RemoteHost: s.RemoteHost, Class: s.Class, Type: s.Type, State: s.State, Scope: s.Scope, Leader: s.Leader, Since: s.Since})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Since.Before(list[j].Since) })
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(list); err != nil {
			fmt.Fprintln(stderr, "xpra-proxy sessions:", err)
			return 1
		}
		return 0
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tUSER\tDISPLAY\tFROM\tSTATE\tAGE\tSCOPE")
	for _, s := range list {
		from := s.RemoteHost
		if from == "" {
			from = "local"
		}
		age := "-"
		if !s.Since.IsZero() {
			age = time.Since(s.Since).Round(time.Second).String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.User, dash(s.Display), from, s.State, age, s.Scope)
	}
	w.Flush()
	fmt.Fprintf(stdout, "%d session%s\n", len(list), plural(len(list)))
	return 0
}

// terminate ends one session the proxy started, with everything in it:
// xpra-proxy terminate ID. Other sessions (a user's ssh login, a desktop)
// are refused, whoever asks.
func terminate(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || args[0] == "" || args[0][0] == '-' {
		fmt.Fprintln(stderr, "usage: xpra-proxy terminate SESSION-ID   (the ID column of xpra-proxy sessions)")
		return 2
	}
	id := args[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := logind.Dial(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "xpra-proxy terminate:", err)
		return 1
	}
	defer c.Close()
	s, err := c.Session(ctx, id)
	if errors.Is(err, logind.ErrNoSession) {
		fmt.Fprintf(stderr, "xpra-proxy terminate: no session %s\n", strconv.Quote(id))
		return 1
	}
	if err != nil {
		fmt.Fprintln(stderr, "xpra-proxy terminate:", err)
		return 1
	}
	if !s.IsProxy() {
		fmt.Fprintf(stderr, "xpra-proxy terminate: session %s of %s was not started by xpra-proxy (its PAM service is %q); use loginctl terminate-session\n",
			s.ID, s.User, s.Service)
		return 1
	}
	if err := c.Terminate(ctx, id); err != nil {
		fmt.Fprintln(stderr, "xpra-proxy terminate:", err)
		return 1
	}
	fmt.Fprintf(stdout, "session %s of %s (%s) terminated\n", s.ID, s.User, dash(s.Display))
	return 0
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
