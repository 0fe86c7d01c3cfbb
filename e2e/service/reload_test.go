// SPDX-License-Identifier: GPL-2.0-or-later

//go:build testbed

package service_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/probe"
)

// reload is systemctl reload as an admin uses it, while the attached
// client stays and a login loop runs on the unix socket: the unix
// socket's module changes from pam (the system password) to password
// (another one). No login is refused or dropped, the supervisor and the
// attached client's relay stay, and logins switch to the new password
// once. Then a broken file: systemctl reload fails with the check's
// message and the running settings stay; a SIGHUP that skips the check
// (kill -HUP by hand) fails in the supervisor, which keeps them too and
// says so in the unit's status. Restoring the file and reloading brings
// PAM back.
func (b *bed) reload(t *testing.T) {
	const path = "/etc/xpra-proxy/xpra-proxy.toml"
	const newPassword = "Reload-Pass-93"
	withPassword := strings.Replace(config, `auth = ["pam"]`, `auth = ["password,value=`+newPassword+`"]`, 1)
	if withPassword == config {
		t.Fatal("the test's config has no auth = [\"pam\"] line to change")
	}
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	restored := false
	defer func() {
		if !restored {
			write(config)
			try("systemctl", "restart", "xpra-proxy.service")
		}
	}()
	reloads := func() int {
		return strings.Count(try("journalctl", "--no-pager", "-o", "cat", "-u", "xpra-proxy.service"), `msg="configuration reloaded"`)
	}
	login := func(password string) error {
		_, err := probe.Run(context.Background(), probe.Options{URL: "socket://" + testUser + ":" + password + "@" + unixSocket,
			Request: probe.Connect, Timeout: 60 * time.Second})
		return err
	}
	pid := supervisorPID(t)
	done0 := reloads()

	type round struct {
		with string
		err  error
	}
	var (
		mu     sync.Mutex
		rounds []round
	)
	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := round{}
			for _, pw := range []string{testPassword, newPassword} {
				err := login(pw)
				if err == nil {
					r.with = pw
					break
				}
				if !strings.HasPrefix(refusal(err), "authentication failed") {
					r.err = fmt.Errorf("password %s: %w", pw, err)
					break
				}
			}
			if r.with == "" && r.err == nil {
				r.err = errors.New("neither password logged in")
			}
			mu.Lock()
			rounds = append(rounds, r)
			mu.Unlock()
		}
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(rounds)
	}
	waitFor(t, 120*time.Second, "3 login rounds", func() bool { return count() >= 3 })

	write(withPassword)
	before := count()
	t0 := time.Now()
	sh(t, "systemctl", "reload", "xpra-proxy.service")
	took := time.Since(t0)
	waitFor(t, 30*time.Second, "the journal to say the reload is done", func() bool { return reloads() == done0+1 })
	applied := time.Since(t0)
	after := count()
	waitFor(t, 120*time.Second, "3 login rounds after the reload", func() bool { return count() >= after+3 })
	close(stop)
	<-loopDone

	mu.Lock()
	switched := -1
	for i, r := range rounds {
		if r.err != nil {
			t.Errorf("login round %d (of %d; the reload after round %d): %v", i, len(rounds), before, r.err)
			continue
		}
		if r.with == newPassword && switched < 0 {
			switched = i
		}
		if r.with == testPassword && switched >= 0 {
			t.Errorf("round %d logged in with PAM after round %d had the new password", i, switched)
		}
	}
	if switched < 0 {
		t.Errorf("no round logged in with the new password (%d rounds)", len(rounds))
	}
	t.Logf("systemctl reload returned in %v, the journal said done within %v; %d login rounds, the reload after round %d, the first with the new password: %d",
		took.Round(time.Millisecond), applied.Round(time.Millisecond), len(rounds), before, switched)
	mu.Unlock()
	b.sameService(t, pid, "the reload")

	// A broken file: ExecReload's check fails the reload, and says why.
	write(strings.Replace(withPassword, "tcp-auth", "tcp-auht", 1))
	out, err := tryErr("systemctl", "reload", "xpra-proxy.service")
	if err == nil {
		t.Errorf("systemctl reload of a broken file succeeded:\n%s", out)
	}
	if st := try("systemctl", "status", "--no-pager", "-n", "20", "xpra-proxy.service"); !strings.Contains(st, "tcp-auht") {
		t.Errorf("systemctl status does not show the check's message naming the key:\n%s", st)
	}
	if err := login(newPassword); err != nil {
		t.Errorf("the running password after a failed reload: %v", err)
	}
	b.sameService(t, pid, "the failed reload")

	// The same file, signalled by hand: the supervisor's own check.
	sh(t, "systemctl", "kill", "-s", "HUP", "--kill-who=main", "xpra-proxy.service")
	waitFor(t, 30*time.Second, "the journal to name the key of the failed reload", func() bool {
		for _, l := range strings.Split(journal("xpra-proxy.service"), "\n") {
			if strings.Contains(l, "reload failed") && strings.Contains(l, "tcp-auht") {
				return true
			}
		}
		return false
	})
	waitFor(t, 30*time.Second, "the status line to say the reload failed", func() bool {
		return strings.Contains(try("systemctl", "status", "--no-pager", "xpra-proxy.service"), "reload failed, running the previous configuration")
	})
	if err := login(newPassword); err != nil {
		t.Errorf("the running password after a failed SIGHUP: %v", err)
	}
	if err := login(testPassword); !strings.HasPrefix(refusal(err), "authentication failed") {
		t.Errorf("PAM after a failed SIGHUP: %v, want authentication failed", err)
	}
	b.sameService(t, pid, "the failed SIGHUP")

	// Back to PAM.
	write(config)
	restored = true
	sh(t, "systemctl", "reload", "xpra-proxy.service")
	waitFor(t, 30*time.Second, "the second reload to be done", func() bool { return reloads() == done0+2 })
	if err := login(testPassword); err != nil {
		t.Errorf("PAM after reloading the restored file: %v", err)
	}
	waitFor(t, 30*time.Second, "the status line to drop the failed reload", func() bool {
		return !strings.Contains(try("systemctl", "status", "--no-pager", "xpra-proxy.service"), "reload failed")
	})
	b.sameService(t, pid, "the last reload")
}

// sameService checks that the supervisor is the one of before and active,
// and that the attached client stayed.
func (b *bed) sameService(t *testing.T, pid int, after string) {
	t.Helper()
	if got := supervisorPID(t); got != pid {
		t.Errorf("the supervisor is %d after %s, was %d", got, after, pid)
	}
	if got := strings.TrimSpace(try("systemctl", "is-active", "xpra-proxy.service")); got != "active" {
		t.Errorf("xpra-proxy.service is %q after %s", got, after)
	}
	if !alive(b.relay) || b.attached.disconnected() {
		t.Errorf("the attached client's relay %d (alive: %v) or the client went with %s:\n%s", b.relay, alive(b.relay), after, b.attached.out)
	}
}
