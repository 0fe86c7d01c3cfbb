// SPDX-License-Identifier: GPL-2.0-or-later

//go:build testbed

package service_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/pglab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/logind"
	"github.com/xpra-proxy/xpra-proxy/pgdir"
	"github.com/xpra-proxy/xpra-proxy/pgdir/pgstore"
)

// sessionHosts: two session hosts and two fronts, each an installed
// xpra-proxy supervisor started by hand on a loopback port of its own
// (run-dir, no control socket), the fronts sharing a throwaway PostgreSQL
// with the hosts. A real xpra attach through front A gets a session
// started on demand (logind) on the least-loaded host, sh1 (both empty:
// the first); sh1 records it live in the directory; xpra attach through
// front B finds it there and attaches to the same display; a second user
// through front A is placed on sh2, which has no user yet; when the
// sessions end, each host marks its row ended.
func (b *bed) sessionHosts(t *testing.T) {
	db := pglab.Start(t)
	dir := t.TempDir()
	secret := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := secret("key", "testbed-session-host-key-0123456789")
	uri := secret("uri", db.URI())
	pw := secret("password", "front-secret")
	// Users of their own: the hosts share this machine, where the test
	// user's earlier sessions would be found rather than started.
	const first, other = "xpsh1", "xpsh2"
	for _, u := range []string{first, other} {
		sh(t, "useradd", "-m", "-s", "/bin/bash", u)
		defer func() {
			if out, err := tryErr("userdel", "-r", "-f", u); err != nil {
				t.Logf("userdel %s: %v\n%s", u, err, out)
			}
		}()
	}

	type proc struct {
		name, addr string
		log        *proxylab.Buffer
	}
	start := func(name string, port int, cfg string) proc {
		t.Helper()
		file := filepath.Join(dir, name+".toml")
		cfg += fmt.Sprintf("bind-tcp = [\"127.0.0.1:%d\"]\nrun-dir = %q\ncontrol-socket = \"off\"\nproxy-name = %q\ndirectory-uri-file = %q\n",
			port, filepath.Join(dir, name+"-run"), name, uri)
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		p := proc{name: name, addr: fmt.Sprintf("127.0.0.1:%d", port), log: &proxylab.Buffer{}}
		cmd := exec.Command("/usr/bin/xpra-proxy", "--config="+file)
		cmd.Env = []string{"PATH=" + cleanPath}
		cmd.Stdout, cmd.Stderr = p.log, p.log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGINT)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Errorf("%s did not stop within 15 s of SIGINT", name)
			}
			if t.Failed() {
				t.Logf("%s's log:\n%s", name, p.log)
			}
		})
		waitFor(t, 15*time.Second, name+" listening", func() bool {
			return strings.Contains(p.log.String(), "msg=listening")
		})
		return p
	}
	host := func(name string, port int, displays string) proc {
		return start(name, port, config[strings.Index(config, "session-args"):]+
			fmt.Sprintf("tcp-auth = ['session-host,key-file=%s,from=\"127.0.0.0/8\"']\n", key)+
			"per-source-max-startups = 0\nper-source-rate = 0.0\nper-source-penalty = \"0s\"\nstart-session = \"auto\"\n"+
			fmt.Sprintf("session-displays = %q\n", displays))
	}
	front := func(name string, port int, hosts ...proc) proc {
		var entries []string
		for _, h := range hosts {
			entries = append(entries, fmt.Sprintf("%q", h.name+"=tcp://"+h.addr))
		}
		return start(name, port, fmt.Sprintf("tcp-auth = ['password,value-file=%s']\nper-source-penalty = \"0s\"\n", pw)+
			fmt.Sprintf("session-hosts = [%s]\nsession-host-key-file = %q\n", strings.Join(entries, ", "), key))
	}
	sh1 := host("sh1", 14611, "200-209")
	sh2 := host("sh2", 14612, "210-219")
	frontA := front("front-a", 14621, sh1, sh2)
	frontB := front("front-b", 14622, sh1, sh2)

	d, err := pgstore.Local(pgdir.Config{URI: db.URI(), Name: "testbed"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rowsOf := func(user string) []pgdir.SessionRow {
		all, err := d.Sessions(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var out []pgdir.SessionRow
		for _, r := range all {
			if r.Username == user {
				out = append(out, r)
			}
		}
		return out
	}
	liveOn := func(user, hostName string) pgdir.SessionRow {
		t.Helper()
		var row pgdir.SessionRow
		waitFor(t, 20*time.Second, user+"'s session recorded live on "+hostName, func() bool {
			rs := rowsOf(user)
			if len(rs) == 1 && rs[0].Host == hostName && rs[0].State == pgdir.StateLive && rs[0].Display != "" {
				row = rs[0]
				return true
			}
			return false
		})
		return row
	}
	logged := func(p proc, pattern, what string) {
		t.Helper()
		re := regexp.MustCompile(pattern)
		waitFor(t, 30*time.Second, p.name+": "+what, func() bool { return re.MatchString(p.log.String()) })
	}
	before := map[string]bool{}
	for _, s := range b.proxySessions(t) {
		before[s.ID] = true
	}
	newSessions := func() []logind.Session {
		var out []logind.Session
		for _, s := range b.proxySessions(t) {
			if !before[s.ID] {
				out = append(out, s)
			}
		}
		return out
	}
	defer func() {
		for _, s := range newSessions() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			if err := b.lc.Terminate(ctx, s.ID); err != nil {
				t.Errorf("terminating session %s: %v", s.ID, err)
			}
			cancel()
		}
	}()
	url := func(p proc, user string) string { return "tcp://" + user + ":front-secret@" + p.addr + "/" }

	// 1. Through front A: placed on sh1 (both empty), started there.
	c := startClient(t, url(frontA, first))
	logged(frontA, `msg="routed to a session host" .*user=`+first+` session_host=sh1 how=placed`, "the placement on sh1")
	logged(sh1, `msg="session started" .*user=`+first, "the session started on sh1")
	row := liveOn(first, "sh1")
	ss := newSessions()
	if len(ss) != 1 || ss[0].Display != row.Display || ss[0].User != first {
		t.Fatalf("logind's new proxy sessions %+v, want one of %s on %s", ss, first, row.Display)
	}
	t.Logf("%s's session %s on %s started through front A on sh1", first, ss[0].ID, row.Display)
	c.stop()

	// 2. Through front B: found in the directory, the same session.
	c = startClient(t, url(frontB, first))
	logged(frontB, `msg="routed to a session host" .*user=`+first+` session_host=sh1 how=found`, "the directory's answer")
	logged(sh1, `(?s)msg=relaying [^\n]*display=`+regexp.QuoteMeta(row.Display)+`.*msg=relaying [^\n]*display=`+regexp.QuoteMeta(row.Display),
		"a second relay to the same session")
	if n := len(newSessions()); n != 1 {
		t.Fatalf("%d new proxy sessions after attaching through front B, want the same one", n)
	}
	c.stop()

	// 3. Another user through front A: placed on sh2, which has no user.
	c = startClient(t, url(frontA, other))
	logged(frontA, `msg="routed to a session host" .*user=`+other+` session_host=sh2 how=placed`, "the second user's placement on sh2")
	row2 := liveOn(other, "sh2")
	t.Logf("%s's session on %s started through front A on sh2", other, row2.Display)
	c.stop()

	// 4. The sessions end: each host marks its row ended.
	for _, s := range newSessions() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := b.lc.Terminate(ctx, s.ID); err != nil {
			t.Errorf("terminating session %s: %v", s.ID, err)
		}
		cancel()
	}
	for _, u := range []string{first, other} {
		waitFor(t, 30*time.Second, u+"'s session recorded ended", func() bool {
			rs := rowsOf(u)
			return len(rs) == 1 && rs[0].State == pgdir.StateEnded
		})
	}
	// (sh2 does log the end of sh1's session: both watch this machine's
	// logind, which a real deployment does not share.)
	if regexp.MustCompile(`msg=authenticated .*user=` + first + ` `).MatchString(sh2.log.String()) {
		t.Errorf("sh2 authenticated %s, whose session is on sh1", first)
	}
}
