// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/probe"
)

// TestAccountPolicy: whichever module grants a login, the proxy never
// runs a relay as root, a system account (daemon, nobody), its own
// pre-auth user, an uid below min-uid or a member of a denied group, and
// tells the client exactly what a wrong password gets (nothing that says
// the account exists). An ordinary user gets through.
func TestAccountPolicy(t *testing.T) {
	xpralab.Require(t)
	u, uid, gid := xpralab.TestUser(t)
	proxylab.EnsurePreauthUser(t)
	pre, err := user.Lookup(proxylab.PreauthUser)
	if err != nil {
		t.Fatal(err)
	}
	group, err := user.LookupGroupId(strconv.Itoa(gid))
	if err != nil {
		t.Fatal(err)
	}
	bin := proxylab.Build(t)
	dir := t.TempDir()
	const secret = "policy-secret"

	// Rows naming uids (multifile, sqlite): the system accounts by
	// number, and the test user with a gid it is not a member of.
	type row struct {
		name     string
		uid, gid string
	}
	rows := []row{
		{"root", "0", "0"}, {"daemon", "1", "1"}, {"nobody", "65534", "65534"},
		{proxylab.PreauthUser, pre.Uid, pre.Gid}, {u.Username, strconv.Itoa(uid), strconv.Itoa(gid)},
		{"shadowgid", strconv.Itoa(uid), "42"},
	}
	multi := filepath.Join(dir, "multifile")
	var lines []string
	for _, r := range rows {
		lines = append(lines, fmt.Sprintf("%s|%s|%s|%s|", r.name, secret, r.uid, r.gid))
	}
	if err := os.WriteFile(multi, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "users.sdb")
	admin := func(args ...string) {
		out, err := exec.Command(filepath.Join(bin, "xpra-proxy"), append([]string{"auth", "sqlite", db}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("xpra-proxy auth sqlite %v: %v\n%s", args, err, out)
		}
	}
	admin("create")
	for _, r := range rows {
		admin("add", r.name, secret, r.uid, r.gid, "", "", "")
	}
	pwfile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwfile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	modules := []struct {
		name string
		spec string
		env  []string
		rows bool // names accounts by uid (else: the client's name in passwd)
	}{
		{"password", "password,value=" + secret, nil, false},
		{"allow", "allow", nil, false},
		{"env", "env,name=XPRA_POLICY_TEST", []string{"XPRA_POLICY_TEST=" + secret}, false},
		{"file", "file,filename=" + pwfile, nil, false},
		{"multifile", "multifile,filename=" + multi, nil, true},
		{"sqlite", "sqlite,filename=" + db, nil, true},
	}
	login := func(p *proxylab.Proxy, name, password string) string {
		_, err := probe.Run(context.Background(), probe.Options{URL: p.URL("", ""), Username: name,
			Password: password, Request: probe.Connect, Timeout: 20 * time.Second})
		if err == nil {
			return "" // connected to a session
		}
		if r := refusal(err); r != "" {
			return r
		}
		return "error: " + err.Error()
	}
	for _, m := range modules {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			p := proxylab.StartEnv(t, m.env, "--tcp-auth="+m.spec, "--per-source-penalty=0")
			wrong := "authentication failed"
			if m.name != "allow" { // allow takes any password
				if got := login(p, u.Username, "not-"+secret); got != wrong {
					t.Fatalf("wrong password: %q, want %q", got, wrong)
				}
			}
			if got := login(p, u.Username, secret); got == wrong || strings.HasPrefix(got, "error:") {
				t.Fatalf("the ordinary user %s: %q, want a session or %q", u.Username, got, "session not found error ...")
			}
			refused := []string{"root", "daemon", "nobody", proxylab.PreauthUser}
			if m.rows {
				refused = append(refused, "shadowgid")
			}
			for _, name := range refused {
				if got := login(p, name, secret); got != wrong {
					t.Errorf("%s: %q, want %q as for a wrong password", name, got, wrong)
				}
			}
			// The same user, now below min-uid, then in a denied group.
			for _, extra := range []string{fmt.Sprintf("--min-uid=%d", uid+1), "--deny-groups=" + group.Name} {
				q := proxylab.StartEnv(t, m.env, "--tcp-auth="+m.spec, "--per-source-penalty=0", extra)
				if got := login(q, u.Username, secret); got != wrong {
					t.Errorf("%s with %s: %q, want %q", u.Username, extra, got, wrong)
				}
				if !strings.Contains(q.Logs(), "account refused by policy") {
					t.Errorf("%s: the log does not say the policy refused:\n%s", extra, q.Logs())
				}
			}
			if t.Failed() {
				t.Logf("proxy log:\n%s", p.Logs())
			}
		})
	}
}

// TestUsernameRefusedBeforeLookup: names no account can have are refused
// before the challenge (so before any module or NSS sees them), with the
// wrong-password message; "alice\x00junk" must not become alice.
func TestUsernameRefusedBeforeLookup(t *testing.T) {
	xpralab.Require(t)
	u, _, _ := xpralab.TestUser(t)
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--per-source-penalty=0")
	for _, name := range []string{
		u.Username + "\x00junk",
		u.Username + "\n",
		"x\nlevel=ERROR msg=forged",
		strings.Repeat("a", 10000),
		"\xff\xfe" + u.Username,
	} {
		_, err := probe.Run(context.Background(), probe.Options{URL: p.URL("", ""), Username: name,
			Password: "secret", Request: probe.Connect, Timeout: 20 * time.Second})
		if got := refusal(err); got != "authentication failed" {
			t.Errorf("username %.40q: %q (%v), want %q", name, got, err, "authentication failed")
		}
	}
	// This line is logged only where the AuthBegin arrives, before the
	// challenge and before any module sees the name.
	logs := p.Logs()
	if n := strings.Count(logs, "account refused by policy: username"); n != 5 {
		t.Errorf("%d refusals of a username logged, want 5:\n%s", n, logs)
	}
	if strings.Contains(logs, "\nlevel=ERROR msg=forged") {
		t.Errorf("a username forged a log line:\n%s", logs)
	}
}

// TestAuthFilesAtRest: an auth file others can read or a user owns stops
// start-up with the file named; a secret on the command line is warned
// about; value-file keeps it out of ps.
func TestAuthFilesAtRest(t *testing.T) {
	xpralab.Require(t)
	u, uid, gid := xpralab.TestUser(t)
	bin := proxylab.Build(t)
	proxylab.EnsurePreauthUser(t)
	dir := t.TempDir()
	line := fmt.Sprintf("%s|pw|%d|%d|\n", u.Username, uid, gid)
	open := filepath.Join(dir, "open.txt")
	owned := filepath.Join(dir, "owned.txt")
	for _, f := range []string{open, owned} {
		if err := os.WriteFile(f, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(owned, uid, gid); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, says string }{{open, "mode 0644"}, {owned, fmt.Sprintf("owned by uid %d", uid)}} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "xpra-proxy"), "--bind-tcp=127.0.0.1:0",
			"--tcp-auth=multifile,filename="+tc.file, "--control-socket=off")
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), tc.file) || !strings.Contains(string(out), tc.says) {
			t.Errorf("start with %s: %v\n%s\nwant a refusal naming the file and %q", tc.file, err, out, tc.says)
		}
	}
	p := proxylab.Start(t, "--tcp-auth=password,value=on-argv")
	if !strings.Contains(p.Logs(), "auth secret is on the command line") {
		t.Errorf("no warning for a secret on the command line:\n%s", p.Logs())
	}
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	q := proxylab.Start(t, "--tcp-auth=password,value-file="+pw, "--per-source-penalty=0")
	if strings.Contains(q.Logs(), "auth secret is on the command line") {
		t.Errorf("value-file warned as a secret on the command line:\n%s", q.Logs())
	}
	_, err := probe.Run(context.Background(), probe.Options{URL: q.URL(u.Username+":from-file", ""), Request: probe.Connect, Timeout: 20 * time.Second})
	if r := refusal(err); r == "authentication failed" || (err != nil && r == "") {
		t.Errorf("value-file password: %v", err)
	}
}

// TestMaxRelaysPerUser: one user's live connections stop at
// max-relays-per-user with a reason the client can show, and a closed
// one frees its place.
func TestMaxRelaysPerUser(t *testing.T) {
	xpralab.Require(t)
	s := xpralab.Start(t, xpralab.Options{})
	const max = 3
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--per-source-penalty=0", fmt.Sprintf("--max-relays-per-user=%d", max))
	url := p.URL(s.User.Username+":secret", s.Display)
	open := func() (net.Conn, error) {
		_, nc, err := probe.Open(context.Background(), probe.Options{URL: url, Request: probe.Connect, Timeout: 30 * time.Second})
		return nc, err
	}
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for i := range max {
		nc, err := open()
		if err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, max, err)
		}
		held = append(held, nc)
	}
	_, err := open()
	want := fmt.Sprintf("too many connections %s has %d connections through the proxy, the most allowed (max-relays-per-user)", s.User.Username, max)
	if got := refusal(err); got != want {
		t.Fatalf("connection %d: %q (%v), want %q", max+1, got, err, want)
	}
	// One closes: its relay ends, and its place is free again.
	held[0].Close()
	held = held[1:]
	deadline := time.Now().Add(20 * time.Second)
	for {
		nc, err := open()
		if err == nil {
			held = append(held, nc)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no place after one closed: %v\n%s", err, p.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
