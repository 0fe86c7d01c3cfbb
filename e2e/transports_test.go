// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
)

// testCert writes a self-signed certificate for 127.0.0.1 and its key
// (root-only, as an admin would keep it) and returns their paths.
func testCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xpra-proxy test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// webServer is the site --tcp-proxy forwards to: it names itself in every
// answer, so a test can tell it from our own HTTP server.
func webServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", "the-other-web-server")
		fmt.Fprintf(w, "the other web server saw %s %s\n", r.Method, r.URL.Path)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// attached is a real `xpra attach` running under Xvfb.
type attached struct {
	out  *proxylab.Buffer
	cmd  *exec.Cmd
	stop func()
}

// startAttach runs a real `xpra attach` under Xvfb until it says it is
// attached; stop it with a.stop (also done at the end of the test).
func startAttach(t *testing.T, url string, extra ...string) *attached {
	t.Helper()
	return startAttachWith(t, "xpra", []string{"PATH=" + cleanPath, "HOME=/root", "LANG=C.UTF-8", "XDG_RUNTIME_DIR=/run/user/0"}, url, extra...)
}

// startAttachWith is startAttach with a given client program and its
// environment (e.g. the xpra 6.x build's).
func startAttachWith(t *testing.T, bin string, env []string, url string, extra ...string) *attached {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	args := append([]string{"-n", strconv.Itoa(xpralab.FreeDisplay()), "-s", "-screen 0 1280x1024x24", bin, "attach", url,
		"--mdns=no", "--pulseaudio=no", "--notifications=no", "--opengl=no", "--speaker=off", "--microphone=off",
		"--webcam=no", "--printing=no", "--file-transfer=no", "--tray=no", "--system-tray=no", "--clipboard=no"}, extra...)
	cmd := exec.CommandContext(ctx, "xvfb-run", args...)
	cmd.Env = env
	out := &proxylab.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// xvfb-run starts Xvfb and the client: stop them all, as a group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	a := &attached{out: out, cmd: cmd}
	a.stop = sync.OnceFunc(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); cancel(); cmd.Wait() })
	t.Cleanup(a.stop)
	// Generous: a loaded machine can take long to start Xvfb and Python.
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(out.String(), "Attached to") && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "Attached to") {
		t.Fatalf("xpra attach %s:\n%s", url, out)
	}
	return a
}

// disconnected reports whether the client said it lost its server.
func (a *attached) disconnected() bool {
	s := a.out.String()
	return strings.Contains(s, "Disconnect") || strings.Contains(s, "connection lost") || strings.Contains(s, "server shutdown")
}

// attach attaches and checks the client stays attached for a few seconds.
func attach(t *testing.T, url string, extra ...string) {
	t.Helper()
	a := startAttach(t, url, extra...)
	defer a.stop()
	time.Sleep(3 * time.Second)
	if a.disconnected() {
		t.Fatalf("the attached client was disconnected:\n%s", a.out)
	}
}

// TestOnePort: plain xpra, TLS, WebSocket, WSS and HTTP on one TCP port of
// our proxy, with real xpra 3.1.3 clients; other traffic goes to
// --tcp-proxy.
func TestOnePort(t *testing.T) {
	xpralab.Require(t)
	testenv.Command(t, "xvfb-run")
	if _, err := os.Stat("/usr/share/xpra/www/index.html"); err != nil {
		testenv.Missing(t, "xpra's HTML5 client in /usr/share/xpra/www (Debian package xpra)")
	}
	srv := xpralab.StartAll(t, xpralab.Options{App: "xclock -update 1", Args: []string{"--session-name=one-port"}})[0]
	user := srv.User.Username
	cert, key := testCert(t, t.TempDir())
	web := webServer(t)
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--ssl-cert="+cert, "--ssl-key="+key, "--tcp-proxy="+web)
	creds := user + ":secret"
	noVerify := "--ssl-server-verify-mode=none"

	for _, scheme := range []string{"tcp", "ssl", "ws", "wss"} {
		t.Run("xpra info over "+scheme, func(t *testing.T) {
			url := fmt.Sprintf("%s://%s@%s/", scheme, creds, p.Addr())
			out := xpraClient(t, 40*time.Second, "info", url, noVerify)
			if !strings.Contains(out, "server.type=xpra-proxy") {
				t.Fatalf("xpra info %s:\n%s", url, out)
			}
			out = xpraClient(t, 40*time.Second, "info", fmt.Sprintf("%s://%s:wrong@%s/", scheme, user, p.Addr()), noVerify)
			if !strings.Contains(out, "authentication failed") {
				t.Fatalf("xpra info %s with a wrong password:\n%s", scheme, out)
			}
		})
	}
	for _, scheme := range []string{"ssl", "wss"} {
		t.Run("xpra attach over "+scheme, func(t *testing.T) {
			// The display named: other sessions of the test user may be up.
			attach(t, fmt.Sprintf("%s://%s@%s/%s", scheme, creds, p.Addr(), strings.TrimPrefix(srv.Display, ":")), noVerify)
		})
	}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, scheme := range []string{"http", "https"} {
		t.Run("HTML5 client over "+scheme, func(t *testing.T) {
			resp, err := client.Get(fmt.Sprintf("%s://%s/", scheme, p.Addr()))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), "<html") || resp.Header.Get("X-Served-By") != "" {
				t.Fatalf("GET /: %s %q", resp.Status, body[:min(len(body), 200)])
			}
			for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"} {
				if resp.Header.Get(h) == "" {
					t.Errorf("GET / lacks %s", h)
				}
			}
		})
	}
	t.Run("other traffic reaches tcp-proxy", func(t *testing.T) {
		// Not xpra, not TLS, no "HTTP/" on its first line: the reference
		// would refuse it; we pass it to the web server, whose own answer
		// comes back.
		c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "GET /plain\r\n\r\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 400") {
			t.Fatalf("answer from tcp-proxy: %q %v", line, err)
		}
	})
	t.Run("html off: a web server shares the port", func(t *testing.T) {
		q := proxylab.Start(t, "--tcp-auth=password,value=secret", "--html=off", "--tcp-proxy="+web)
		resp, err := client.Get(fmt.Sprintf("http://%s/some/page", q.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("X-Served-By") != "the-other-web-server" || !strings.Contains(string(body), "GET /some/page") {
			t.Fatalf("GET through tcp-proxy: %s %q", resp.Status, body)
		}
		// xpra still works on that port.
		if out := xpraClient(t, 40*time.Second, "info", fmt.Sprintf("tcp://%s@%s/", creds, q.Addr())); !strings.Contains(out, "server.type=xpra-proxy") {
			t.Fatalf("xpra info beside the web server:\n%s", out)
		}
	})
}
