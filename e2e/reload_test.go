// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/probe"
)

// TestReload is `systemctl reload` without systemd: SIGHUP to the real
// supervisor while a client stays attached through a relay and a login
// loop runs. The configuration file changes both the password and the
// module (password,value=one becomes the file module with "two"): no
// login of the loop is refused or dropped, the held connection and its
// relay stay, and once the reload is done new logins take "two" only.
// Then broken files: each reload fails, the log names the key or the
// file, and the running configuration stays ("two" still logs in).
func TestReload(t *testing.T) {
	xpralab.Require(t)
	testenv.Command(t, "xvfb-run")
	s := xpralab.Start(t, xpralab.Options{Args: []string{"--session-name=reload-lab"}})
	user := s.User.Username
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p+".new", []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".new", p); err != nil { // as an editor saves
			t.Fatal(err)
		}
		return p
	}
	// The loop fails logins on purpose around the switch: no penalties,
	// no rate limit for it.
	common := "per-source-penalty = \"0s\"\nper-source-rate = 0.0\n"
	conf := write("xpra-proxy.toml", common+"tcp-auth = [\"password,value=one\"]\n")
	pwfile := write("password", "two")
	p := proxylab.Start(t, "--config="+conf)

	login := func(password string) error {
		_, err := run(t, probe.Options{URL: p.URL(user+":"+password, s.Display), Request: probe.Connect})
		return err
	}
	_, held, err := probe.Open(context.Background(), probe.Options{URL: p.URL(user+":one", s.Display), Request: probe.Connect, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("the held connection: %v", err)
	}
	defer held.Close()
	heldRelay := findWorker(t, p.Pid(), "--relay").PID

	// The login loop: each round tries "one", then "two" when "one" is
	// refused as a wrong password. Anything but a login or that refusal
	// is a failure of the reload.
	type round struct {
		with string // the password that logged in; "" when neither did
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
			for _, pw := range []string{"one", "two"} {
				err := login(pw)
				if err == nil {
					r.with = pw
					break
				}
				if refusal(err) != "authentication failed" {
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
	waitRounds := func(n int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for count() < n {
			if time.Now().After(deadline) {
				t.Fatalf("the login loop made %d rounds in 60 s, want %d", count(), n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitRounds(3)

	// The new file: another module, another password, and a key only a
	// restart changes.
	write("xpra-proxy.toml", common+"tcp-auth = [\"file,filename="+pwfile+"\"]\npreauth-user = \"nobody\"\n")
	before := count()
	hup(t, p)
	waitLog(t, p, `msg="configuration reloaded"`, 1)
	waitRounds(count() + 3)
	close(stop)
	<-loopDone

	mu.Lock()
	switched := -1
	for i, r := range rounds {
		if r.err != nil {
			t.Errorf("login round %d (of %d, the reload after round %d): %v", i, len(rounds), before, r.err)
			continue
		}
		if r.with == "two" && switched < 0 {
			switched = i
		}
		if r.with == "one" && switched >= 0 {
			t.Errorf("round %d logged in with the old password after round %d had the new one", i, switched)
		}
	}
	if switched < 0 {
		t.Errorf("no round logged in with the new password (%d rounds)", len(rounds))
	}
	t.Logf("%d login rounds, %d before the SIGHUP, the first with the new password: %d", len(rounds), before, switched)
	mu.Unlock()
	if err := login("one"); refusal(err) != "authentication failed" {
		t.Errorf("the old password after the reload: %v, want authentication failed", err)
	}
	if err := login("two"); err != nil {
		t.Errorf("the new password after the reload: %v", err)
	}
	// The restart-only key is named, and its old value kept: pre-auth
	// processes still run as the dedicated user.
	waitLog(t, p, `need a restart.*keys=preauth-user`, 1)
	heldAlive(t, held, heldRelay)

	// Broken files: the reload fails naming the key or the file, and the
	// running configuration stays.
	for i, tc := range []struct {
		name, text string
		want       []string
	}{
		{"unknown key", common + "tcp-auth = [\"file,filename=" + pwfile + "\"]\ntcp-auht = [\"none\"]\n", []string{"tcp-auht", "unknown keys"}},
		{"missing file", common + "tcp-auth = [\"file,filename=" + filepath.Join(dir, "nope") + "\"]\n", []string{"tcp-auth", filepath.Join(dir, "nope")}},
		{"bad limit", "per-source-rate = 0.0\ntcp-auth = [\"none\"]\nper-source-penalty-max = \"1s\"\nper-source-penalty = \"5s\"\n", []string{"per-source-penalty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write("xpra-proxy.toml", tc.text)
			hup(t, p)
			line := waitLog(t, p, `level=ERROR msg="reload failed: the running configuration stays"`, i+1)
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("the error does not name %q:\n%s", w, line)
				}
			}
			if err := login("two"); err != nil {
				t.Errorf("the running password after a failed reload: %v", err)
			}
			if err := login("one"); refusal(err) != "authentication failed" {
				t.Errorf("the password of before: %v, want authentication failed", err)
			}
		})
	}
	if n := strings.Count(p.Logs(), `msg="configuration reloaded"`); n != 1 {
		t.Errorf("%d reloads logged as done, want 1", n)
	}
	heldAlive(t, held, heldRelay)
}

// hup sends the supervisor SIGHUP, as systemctl reload does.
func hup(t *testing.T, p *proxylab.Proxy) {
	t.Helper()
	if err := syscall.Kill(p.Pid(), syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP: %v", err)
	}
}

// waitLog waits until the proxy's log has n lines matching pattern and
// returns the nth.
func waitLog(t *testing.T, p *proxylab.Proxy, pattern string, n int) string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var hits []string
		for _, l := range strings.Split(p.Logs(), "\n") {
			if re.MatchString(l) {
				hits = append(hits, l)
			}
		}
		if len(hits) >= n {
			return hits[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d log lines match %q after 30 s, want %d", len(hits), pattern, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// heldAlive checks a held connection is untouched: its relay runs and
// the socket stays open (the server's pings, or nothing; no EOF).
func heldAlive(t *testing.T, held net.Conn, relay int) {
	t.Helper()
	if err := syscall.Kill(relay, 0); err != nil {
		t.Fatalf("the held connection's relay %d: %v", relay, err)
	}
	held.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64<<10)
	for {
		_, err := held.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return
		}
		if err != nil {
			t.Fatalf("the held connection: %v", err)
		}
	}
}
