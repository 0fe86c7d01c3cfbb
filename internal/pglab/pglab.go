// SPDX-License-Identifier: GPL-2.0-or-later

// Package pglab starts a throwaway PostgreSQL cluster (Debian's
// postgresql package: initdb and postgres from /usr/lib/postgresql/N/bin)
// for one test: its own data directory, a loopback TCP port and a unix
// socket directory, one role with a password (scram-sha-256) and one
// database. The cluster runs as the system user postgres (initdb refuses
// root). Stop and Start let a test take the database away and bring it
// back on the same port, as an outage would.
package pglab

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Role, Password and Database are what every throwaway cluster holds.
const (
	Role     = "xpraproxy"
	Password = "Pg-pass-1"
	Database = "xpraproxy"
)

// Cluster is one running (or stopped) throwaway PostgreSQL.
type Cluster struct {
	Dir  string // the data directory
	Port int    // on 127.0.0.1
	bin  string
	cred *syscall.Credential
	cmd  *exec.Cmd
	log  *os.File
	t    testing.TB
}

// BinDir finds the newest installed PostgreSQL's bin directory, "" if none.
func BinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	sort.Slice(dirs, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(dirs[i]))))
		b, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(dirs[j]))))
		return a > b
	})
	if len(dirs) == 0 {
		return ""
	}
	return filepath.Dir(dirs[0])
}

// Require skips the test where PostgreSQL or root is missing, and fails
// it under CI=true, which installs both (.ci/install-deps.sh).
func Require(t testing.TB) {
	t.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "needs root (the cluster runs as the postgres user)"
	case BinDir() == "":
		why = "needs Debian's postgresql package (/usr/lib/postgresql/N/bin)"
	default:
		if _, err := user.Lookup("postgres"); err != nil {
			why = "needs the postgres system user (Debian's postgresql package)"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("pglab: %s, and CI installs it", why)
	}
	t.Skipf("pglab: %s", why)
}

// Start initialises and starts a cluster for t; it is stopped and removed
// when t ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	Require(t)
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	base, err := os.MkdirTemp("", "pglab-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	if err := os.Chown(base, uid, gid); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Dir: filepath.Join(base, "data"), bin: BinDir(), t: t,
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	pwfile := filepath.Join(base, "pw")
	if err := os.WriteFile(pwfile, []byte(Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chown(pwfile, uid, gid)
	// The superuser is the test's role itself, so the proxy's schema
	// creation runs as an owner would.
	c.run("initdb", "-D", c.Dir, "-U", Role, "--pwfile="+pwfile, "-A", "scram-sha-256", "-E", "UTF8", "--no-sync")
	_ = os.Remove(pwfile)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.Port = l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	conf := fmt.Sprintf("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nfsync = off\nfull_page_writes = off\nsynchronous_commit = off\nmax_connections = 200\n", c.Port, base)
	f, err := os.OpenFile(filepath.Join(c.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(conf)
	_ = f.Close()
	if c.log, err = os.Create(filepath.Join(base, "postgres.log")); err != nil {
		t.Fatal(err)
	}
	_ = c.log.Chown(uid, gid)
	c.Start()
	c.run("createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", Role, Database)
	t.Cleanup(c.Stop)
	return c
}

// run runs one of the cluster's programs as postgres, failing t on error.
func (c *Cluster) run(prog string, args ...string) {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(c.bin, prog), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PGPASSWORD=" + Password, "LANG=C.UTF-8"}
	cmd.Dir = "/"
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("pglab: %s: %v\n%s", prog, err, out)
	}
}

// Start starts the (stopped) cluster's server and waits until it accepts
// connections.
func (c *Cluster) Start() {
	c.t.Helper()
	if c.cmd != nil {
		return
	}
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), "-D", c.Dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = c.log, c.log
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("pglab: starting postgres: %v", err)
	}
	c.cmd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port), time.Second)
		if err == nil {
			_ = conn.Close()
			// Accepting TCP is not yet accepting logins: wait for the
			// log's "ready" line too.
			if b, _ := os.ReadFile(c.log.Name()); strings.Contains(string(b), "ready to accept connections") {
				return
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(c.log.Name())
			c.t.Fatalf("pglab: postgres not ready after 30 s:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server (fast shutdown: sessions are cut), as an outage
// would; the data stays for Start.
func (c *Cluster) Stop() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	c.cmd = nil
	// The next Start must not see the old run's "ready" line.
	_ = c.log.Truncate(0)
	_, _ = c.log.Seek(0, 0)
}

// URI is a connection URI for the test role and database over TCP.
func (c *Cluster) URI() string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(Role, Password), Host: fmt.Sprintf("127.0.0.1:%d", c.Port), Path: "/" + Database}
	u.RawQuery = "sslmode=disable"
	return u.String()
}

// Logs is what the server wrote since it last started.
func (c *Cluster) Logs() string {
	b, _ := os.ReadFile(c.log.Name())
	return string(b)
}
