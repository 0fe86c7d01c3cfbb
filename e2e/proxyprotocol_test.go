// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/haproxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/pglab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/supervisor/connlist"
)

// TestProxyProtocolHAProxy: Debian's real HAProxy, with send-proxy-v2, in
// front of two of our proxies that trust it (proxy-protocol-from =
// 127.0.0.1, HAProxy's address toward them). Real xpra 3.1.3 clients come
// from two client hosts, 127.0.0.7 and 127.0.0.8: xpra's client cannot
// choose its source address and loopback always picks 127.0.0.1, so each
// host is a small forwarder that dials HAProxy from its own address (a
// NAT gateway, as HAProxy sees it). What it shows:
//   - xpra version and xpra attach through HAProxy work, on both proxies;
//   - each proxy's logs, audit records and xpra-proxy list name the
//     client's address (127.0.0.7/8), HAProxy's (127.0.0.1) only as via;
//   - the two proxies share a throwaway PostgreSQL directory: a wrong
//     password from 127.0.0.8, which went through one proxy only, gets
//     127.0.0.8 penalised on both (the other hears it from the
//     directory), while 127.0.0.7 logs in on both;
//   - a PROXY header from a peer outside the list, a malformed header
//     from HAProxy's address, and a trusted peer whose header does not
//     come within proxy-protocol-timeout are refused and logged.
func TestProxyProtocolHAProxy(t *testing.T) {
	xpralab.Require(t)
	pglab.Require(t)
	testenv.Command(t, "xvfb-run")
	haproxy := testenv.Command(t, "haproxy")
	uri := directoryURIFile(t, pglab.Start(t))
	// Two sessions of one user: one client each (a second client of a
	// session would take it over from the first).
	servers := xpralab.StartAll(t, xpralab.Options{App: "xclock -update 1", Args: []string{"--session-name=pp-a"}},
		xpralab.Options{App: "xclock -update 1", Args: []string{"--session-name=pp-b"}})
	srv := servers[0]
	user := srv.User.Username
	args := []string{"--tcp-auth=password,value=secret", "--proxy-protocol-from=127.0.0.1/32", "--proxy-protocol-timeout=2s",
		"--per-source-penalty=60s", "--per-source-penalty-max=60s", "--directory-uri-file=" + uri}
	names := []string{"pp-proxy-a", "pp-proxy-b"}
	var proxies []*proxylab.Proxy
	for _, name := range names {
		p := proxylab.Start(t, append(args, "--proxy-name="+name)...)
		waitLogged(t, p, `msg="penalties loaded from the shared directory"`, name+" listening to the directory")
		proxies = append(proxies, p)
	}
	// Probed from 127.0.0.9: HAProxy passes the probe on to a proxy too,
	// and the test looks for 127.0.0.1 in the proxies' logs as a source.
	front := fmt.Sprintf("127.0.0.1:%d", xpralab.FreePort(t))
	haproxylab.Start(t, haproxy, front, net.IPv4(127, 0, 0, 9), proxies[0].Addr(), proxies[1].Addr())
	host7, host8 := clientHost(t, "127.0.0.7", front), clientHost(t, "127.0.0.8", front)
	url := func(host, userinfo, display string) string {
		if userinfo != "" {
			userinfo += "@"
		}
		return fmt.Sprintf("tcp://%s%s/%s", userinfo, host, strings.TrimPrefix(display, ":"))
	}
	// Round robin: two connections in a row reach both proxies.
	t.Run("xpra version through HAProxy, on both proxies", func(t *testing.T) {
		for range 2 {
			if out := xpraClient(t, 60*time.Second, "version", url(host7, "", "")); !strings.Contains(out, "3.1.3") {
				t.Fatalf("xpra version through HAProxy:\n%s", out)
			}
		}
		for i, p := range proxies {
			waitLogged(t, p, `msg="PROXY protocol header taken" peer=127\.0\.0\.7:\d+ via=127\.0\.0\.1:\d+`, fmt.Sprintf("proxy %d took 127.0.0.7's header", i))
		}
	})
	t.Run("xpra attach through HAProxy: logs and list show the client", func(t *testing.T) {
		var listed []connlist.Conn
		for _, s := range servers { // round robin: one relay on each proxy
			a := startAttach(t, url(host7, user+":secret", s.Display))
			defer a.stop()
		}
		var per [2]int // relays listed by each proxy
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			listed, per = listed[:0], [2]int{}
			for i, p := range proxies {
				for _, c := range listConns(t, p) {
					for _, s := range servers {
						if strings.HasSuffix(c.Target, "-"+strings.TrimPrefix(s.Display, ":")) {
							listed = append(listed, c)
							per[i]++
						}
					}
				}
			}
			if len(listed) >= 2 {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if per != [2]int{1, 1} {
			t.Fatalf("xpra-proxy list of both proxies: %+v (%v), want one relay each", listed, per)
		}
		for _, c := range listed {
			if !strings.HasPrefix(c.Source, "127.0.0.7:") || c.User != user || c.Transport != "tcp" {
				t.Errorf("xpra-proxy list: %+v, want the source 127.0.0.7 (not HAProxy's 127.0.0.1)", c)
			}
		}
		for i, p := range proxies {
			waitLogged(t, p, `msg=authenticated .*user=`+regexp.QuoteMeta(user)+` source=127\.0\.0\.7 `, fmt.Sprintf("proxy %d's login record names 127.0.0.7", i))
			if m := regexp.MustCompile(`(?m)^.*(source|peer)=127\.0\.0\.1\b.*$`).FindString(p.Logs()); m != "" {
				t.Errorf("proxy %d logged HAProxy's address as a source or peer:\n%s", i, m)
			}
		}
	})
	t.Run("wrong password through one proxy penalises that client's address on both", func(t *testing.T) {
		out := xpraClient(t, 60*time.Second, "info", url(host8, user+":wrong", ""))
		if !strings.Contains(out, "authentication failed") {
			t.Fatalf("xpra info with a wrong password through HAProxy:\n%s", out)
		}
		strict := -1 // the proxy it went to
		for deadline := time.Now().Add(20 * time.Second); strict < 0 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			for i, p := range proxies {
				if regexp.MustCompile(`msg="source penalized" .*source=127\.0\.0\.8 `).MatchString(p.Logs()) {
					strict = i
				}
			}
		}
		if strict < 0 {
			t.Fatal("no proxy penalised 127.0.0.8")
		}
		other := proxies[1-strict]
		// The failure went through one proxy only: the other never
		// judged a login from 127.0.0.8, and hears the penalty.
		if regexp.MustCompile(`msg="(authentication (failed|refused)|login refused|source penalized)" .*source=127\.0\.0\.8\b`).MatchString(other.Logs()) {
			t.Fatalf("the wrong password reached both proxies: the check would prove nothing:\n%s", other.Logs())
		}
		waitLogged(t, other, `msg="source penalized by another proxy" .*source=127\.0\.0\.8/32 proxy=`+names[strict]+` `, "the other proxy hearing the penalty")
		// Round robin: the next two connections from 127.0.0.8 with the
		// right password reach both proxies; both refuse and say why.
		for range 2 {
			if out := xpraClient(t, 60*time.Second, "info", url(host8, user+":secret", "")); !strings.Contains(out, "too many failed logins from your address") {
				t.Fatalf("127.0.0.8 after its penalty through one proxy:\n%s", out)
			}
		}
		for i, p := range proxies {
			waitLogged(t, p, `msg="connection refused" peer=127\.0\.0\.8:\d+ via=127\.0\.0\.1:\d+ .*penalty until`, fmt.Sprintf("proxy %d's refusal of 127.0.0.8", i))
		}
		// Another client address is untouched, on both proxies.
		for range 2 {
			if out := xpraClient(t, 60*time.Second, "info", url(host7, user+":secret", "")); !strings.Contains(out, "server.type=xpra-proxy") {
				t.Fatalf("127.0.0.7 while 127.0.0.8 is penalised:\n%s", out)
			}
		}
		for _, p := range proxies {
			if regexp.MustCompile(`msg="source penalized( by another proxy)?" .*source=127\.0\.0\.(1|7)[/ ]`).MatchString(p.Logs()) {
				t.Errorf("HAProxy's or 127.0.0.7's address was penalised:\n%s", p.Logs())
			}
		}
	})
	direct := proxies[0]
	t.Run("PROXY header from an untrusted peer", func(t *testing.T) {
		for _, hdr := range []string{"PROXY TCP4 203.0.113.9 127.0.0.1 5000 14500\r\n", v2Header(203, 0, 113, 9)} {
			// From 127.0.0.7, which is not in proxy-protocol-from.
			if got := sendRaw(t, "127.0.0.7", direct.Addr(), hdr+"P"); got != "" {
				t.Errorf("an untrusted PROXY header got %q, want a bare close", got)
			}
		}
		waitLogged(t, direct, `msg="PROXY protocol header from a peer not in proxy-protocol-from: refused" .*peer=127\.0\.0\.7:`, "the untrusted header's refusal")
		if strings.Contains(direct.Logs(), "203.0.113.9") {
			t.Errorf("the untrusted header's address reached the logs:\n%s", direct.Logs())
		}
	})
	t.Run("malformed header from the trusted peer", func(t *testing.T) {
		if got := sendRaw(t, "127.0.0.1", direct.Addr(), "PROXY TCP4 203.0.113.999 127.0.0.1 5000 14500\r\nP"); got != "" {
			t.Errorf("a malformed header got %q, want a bare close", got)
		}
		waitLogged(t, direct, `msg="PROXY protocol header from a trusted peer refused" .*malformed PROXY header`, "the malformed header's refusal")
	})
	t.Run("trusted peer without a header in time", func(t *testing.T) {
		start := time.Now()
		// One byte, then silence: TCP_DEFER_ACCEPT hands it over at once.
		if got := sendRaw(t, "127.0.0.1", direct.Addr(), "P"); got != "" {
			t.Errorf("a missing header got %q, want a bare close", got)
		}
		if took := time.Since(start); took < 2*time.Second || took > 15*time.Second {
			t.Errorf("closed after %v, want proxy-protocol-timeout (2s)", took)
		}
		waitLogged(t, direct, `msg="PROXY protocol header from a trusted peer refused" .*no PROXY protocol header within proxy-protocol-timeout \(2s\)`, "the missing header's refusal")
	})
}

// clientHost stands for a client machine at addr: it listens on a free
// loopback port and forwards each connection to dst from addr, so that
// HAProxy sees addr as the client. Returns the listening address.
func clientHost(t *testing.T, addr, dst string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}, Timeout: 10 * time.Second}
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer in.Close()
				out, err := d.Dial("tcp", dst)
				if err != nil {
					t.Logf("client host %s: %v", addr, err)
					return
				}
				defer out.Close()
				done := make(chan struct{})
				go func() {
					_, _ = io.Copy(out, in)
					_ = out.(*net.TCPConn).CloseWrite()
					close(done)
				}()
				_, _ = io.Copy(in, out)
				_ = in.(*net.TCPConn).CloseWrite()
				<-done
			})
		}
	})
	return l.Addr().String()
}

// v2Header is a PROXY v2 header for a TCP4 client a.b.c.d:5000 → 127.0.0.1:14500.
func v2Header(a, b, c, d byte) string {
	return "\r\n\r\n\x00\r\nQUIT\n" + "\x21\x11\x00\x0c" + string([]byte{a, b, c, d, 127, 0, 0, 1, 0x13, 0x88, 0x38, 0xa4})
}

// sendRaw connects to dst from the address from, sends what, and returns
// what comes back until the proxy closes the connection.
func sendRaw(t *testing.T, from, dst, what string) string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, what); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the proxy did not close the connection within 30 s (got %q)", got)
	}
	return string(got)
}

// waitLogged waits up to 20 s for a line of p's log to match pattern.
func waitLogged(t *testing.T, p *proxylab.Proxy, pattern, what string) {
	t.Helper()
	re := regexp.MustCompile(pattern)
	for deadline := time.Now().Add(20 * time.Second); !re.MatchString(p.Logs()); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not logged within 20 s: %s (/%s/)\n%s", what, pattern, p.Logs())
		}
	}
}
