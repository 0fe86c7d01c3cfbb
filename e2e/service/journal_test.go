// SPDX-License-Identifier: GPL-2.0-or-later

//go:build testbed

package service_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/logind"
	"github.com/xpra-proxy/xpra-proxy/probe"
	"github.com/xpra-proxy/xpra-proxy/supervisor/audit"
)

// journalAudit: a scripted session as an admin would audit it. With
// penalties on, a wrong password over TLS, then a login from the same
// address during the penalty; the penalty over, a login over the unix
// socket; a session started on request, the real client attached to it
// for a few seconds, and the session terminated; and a stop on the
// control socket. The journal must show the earlier step's bad
// config at priority err, the failed login at warning, every line with
// its priority taken (no raw <N> prefix, no time= of a process that
// missed the journal) and without err=<nil> noise, and each audit record
// by its MESSAGE_ID, as JSON, with its fields, written by root in the
// service's unit.
func (b *bed) journalAudit(t *testing.T) {
	const path = "/etc/xpra-proxy/xpra-proxy.toml"
	withPenalty := strings.Replace(config, `per-source-penalty = "0s"`, `per-source-penalty = "8s"`, 1)
	if withPenalty == config {
		t.Fatal("the config has no per-source-penalty line to change")
	}
	if err := os.WriteFile(path, []byte(withPenalty), 0o640); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = os.WriteFile(path, []byte(config), 0o640)
		try("systemctl", "stop", "xpra-proxy-metrics.socket")
		try("systemctl", "restart", "xpra-proxy.service")
	}()
	since := fmt.Sprintf("--since=@%d", time.Now().Add(-time.Second).Unix())
	// The packaged metrics socket, as its comment tells an admin to start
	// it: the supervisor gets it at its next start, so the counters below
	// are this script's alone.
	sh(t, "systemctl", "stop", "xpra-proxy.service")
	sh(t, "systemctl", "start", "xpra-proxy-metrics.socket")
	sh(t, "systemctl", "start", "xpra-proxy.service")

	// A wrong password over TLS: a failed login and a penalty.
	tlsURL := "ssl://" + testUser + ":not-" + testPassword + "@" + tcpAddr + "/"
	if out := xpra(t, 60*time.Second, "info", tlsURL, "--ssl-server-verify-mode=none"); !strings.Contains(out, "authentication failed") {
		t.Fatalf("a wrong password over TLS:\n%s", out)
	}
	// The same address during the penalty is refused, whatever it knows.
	if _, err := probe.Run(context.Background(), probe.Options{URL: "tcp://" + tcpAddr + "/", Request: "version",
		Timeout: 5 * time.Second}); err == nil {
		t.Error("a connection during the penalty was served")
	}
	time.Sleep(9 * time.Second) // the penalty (8 s) is over

	// A login over the unix socket, through a relay to the user's session.
	if _, err := probe.Run(context.Background(), probe.Options{URL: "socket://" + testUser + ":" + testPassword + "@" + unixSocket,
		Request: probe.Connect, Timeout: 60 * time.Second}); err != nil {
		t.Fatalf("a login over the unix socket: %v", err)
	}

	// A session started on request, then ended by the admin.
	before := map[string]bool{}
	for _, s := range b.proxySessions(t) {
		before[s.ID] = true
	}
	cmd := exec.Command("xpra", "start", "ssl://"+testUser+":"+testPassword+"@"+tcpAddr+"/",
		"--attach=no", "--ssl-server-verify-mode=none")
	cmd.Env, cmd.Dir = clientEnv(), "/"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xpra start through the proxy: %v\n%s", err, out)
	}
	var started logind.Session
	for _, s := range b.proxySessions(t) {
		if !before[s.ID] {
			started = s
		}
	}
	if started.ID == "" {
		t.Fatalf("no new proxy session: %+v", b.proxySessions(t))
	}
	// The real client, attached for a few seconds (the session's xclock
	// draws, the client acknowledges): a relay with bytes each way.
	c := startClient(t, "ssl://"+testUser+":"+testPassword+"@"+tcpAddr+"/"+strings.TrimPrefix(started.Display, ":"),
		"--ssl-server-verify-mode=none")
	time.Sleep(3 * time.Second)
	c.stop()
	sh(t, "xpra-proxy", "terminate", started.ID)

	// The same script in Prometheus's eyes, scraped before the stop below
	// ends the supervisor (its counters live as long as it does).
	b.scriptMetrics(t)

	// A stop on the control socket: the supervisor exits (relays and
	// sessions stay; the sockets start it again).
	pid := supervisorPID(t)
	out := xpra(t, 60*time.Second, "stop", ":proxy", "--socket-dir=/run/xpra")
	waitFor(t, 20*time.Second, "the supervisor to stop", func() bool { return !alive(pid) })
	t.Logf("xpra stop :proxy:\n%s", out)

	type want struct {
		id     audit.MessageID
		fields map[string]string // "" matches any non-empty value
		check  func(map[string]string) error
	}
	positive := func(keys ...string) func(map[string]string) error {
		return func(e map[string]string) error {
			for _, k := range keys {
				if n, err := strconv.ParseFloat(e[k], 64); err != nil || n <= 0 {
					return fmt.Errorf("%s=%q, want a positive number", k, e[k])
				}
			}
			return nil
		}
	}
	root := func(m map[string]string) map[string]string {
		m["_UID"], m["_SYSTEMD_UNIT"], m["SYSLOG_IDENTIFIER"] = "0", "xpra-proxy.service", "xpra-proxy"
		return m
	}
	unixSrc := "unix:" + unixSocket
	wants := []want{
		{audit.LoginFailed, root(map[string]string{"PRIORITY": "4", "USER": testUser, "SOURCE": "127.0.0.1",
			"TRANSPORT": "ssl", "MODULE": "pam", "REASON": ""}), nil},
		{audit.Penalty, root(map[string]string{"PRIORITY": "4", "SOURCE": "127.0.0.1", "FAILURES": "1", "UNTIL": "",
			"PENALTY_SEC": ""}), positive("PENALTY_SEC")},
		{audit.LoginSucceeded, root(map[string]string{"PRIORITY": "6", "USER": testUser, "SOURCE": unixSrc,
			"TRANSPORT": "unix", "MODULE": "pam", "UID": strconv.Itoa(b.uid), "WORKER": ""}), nil},
		{audit.RelayStarted, root(map[string]string{"USER": testUser, "SOURCE": unixSrc, "TRANSPORT": "unix", "WORKER": ""}), nil},
		{audit.RelayEnded, root(map[string]string{"USER": testUser, "SOURCE": "127.0.0.1", "TRANSPORT": "ssl", "WORKER": "",
			"DISPLAY": started.Display, "REASON": "", "DURATION_SEC": ""}),
			positive("BYTES_FROM_CLIENT", "BYTES_FROM_SERVER", "DURATION_SEC")},
		{audit.SessionStarted, root(map[string]string{"USER": testUser, "DISPLAY": started.Display, "UNIT": "",
			"SESSION": started.ID}), nil},
		{audit.SessionEnded, root(map[string]string{"USER": testUser, "DISPLAY": started.Display, "SESSION": started.ID}),
			positive("DURATION_SEC")},
		{audit.ControlStop, root(map[string]string{"PRIORITY": "6"}), nil},
	}
	for _, w := range wants {
		var entries []map[string]string
		var why []string
		found := false
		// The relay's and the session's ends are written when the
		// supervisor reaps the worker and hears from logind.
		for deadline := time.Now().Add(20 * time.Second); !found && time.Now().Before(deadline); time.Sleep(time.Second) {
			entries, why = records(w.id, since), nil
			for _, e := range entries {
				if err := match(e, w.fields, w.check); err != nil {
					why = append(why, err.Error())
					continue
				}
				found = true
				t.Logf("MESSAGE_ID=%s (%d records): %s", w.id, len(entries), e["MESSAGE"])
			}
		}
		if !found {
			t.Errorf("journalctl MESSAGE_ID=%s -o json: no record with %v (%d records: %v)", w.id, w.fields, len(entries), why)
		}
	}

	// Priorities: the bad config of the earlier step at err, the failed
	// login at warning, and a successful one not.
	if errs := try("journalctl", "--no-pager", "-o", "cat", "-p", "err", "-u", "xpra-proxy.service"); !strings.Contains(errs, "tcp-auht") {
		t.Errorf("journalctl -p err does not show the bad config of the earlier step:\n%s", errs)
	}
	warnings := try("journalctl", "--no-pager", "-o", "cat", "-p", "warning", "-u", "xpra-proxy.service", since)
	if !strings.Contains(warnings, `msg="authentication failed"`) || !strings.Contains(warnings, "user="+testUser) {
		t.Errorf("journalctl -p warning does not show the failed login:\n%s", warnings)
	}
	if strings.Contains(warnings, "msg=authenticated") {
		t.Errorf("journalctl -p warning shows a successful login:\n%s", warnings)
	}
	// Every process's lines reached the journal with their priority, in
	// one format; nothing says nothing (err=<nil>, a reason ending in []).
	all := try("journalctl", "--no-pager", "-o", "cat", "-u", "xpra-proxy.service", since)
	raw := regexp.MustCompile(`(?m)^(<[0-7]>|time=)`)
	if m := raw.FindAllString(all, 5); m != nil {
		t.Errorf("lines with a raw priority prefix or their own time (%q):\n%s", m, all)
	}
	for _, leak := range []string{"=<nil>", ` []"`} {
		if strings.Contains(all, leak) {
			t.Errorf("the journal shows %q:\n%s", leak, all)
		}
	}
	if t.Failed() {
		t.Logf("journal of the step:\n%s", all)
	}
}

// records are the journal's entries with id since a time, their string
// fields (journalctl -o json gives binary ones as arrays).
func records(id audit.MessageID, since string) []map[string]string {
	out := try("journalctl", "--no-pager", "-o", "json", since, "MESSAGE_ID="+string(id))
	var entries []map[string]string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		s := map[string]string{}
		for k, v := range e {
			if str, ok := v.(string); ok {
				s[k] = str
			}
		}
		entries = append(entries, s)
	}
	return entries
}

// match checks an entry's fields ("" wants any non-empty value).
func match(e, fields map[string]string, check func(map[string]string) error) error {
	for k, v := range fields {
		if got, ok := e[k]; !ok || got == "" || (v != "" && got != v) {
			return fmt.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	if check != nil {
		return check(e)
	}
	return nil
}

// scriptMetrics scrapes xpra-proxy-metrics.socket after journalAudit's
// script: the scrape passes promtool, and shows what the script did
// since the supervisor's start: one failed PAM login over TLS and its
// penalty, the connection refused during it, the unix socket's login, the
// session started on request, and the bytes of the relays that ended.
func (b *bed) scriptMetrics(t *testing.T) {
	t.Helper()
	type want struct {
		series string // the series' name and labels, as client_golang writes them
		min    float64
		exact  bool
	}
	wants := []want{
		{`xpra_proxy_up`, 1, true},
		{`xpra_proxy_logins_total{module="pam",result="failed",transport="ssl"}`, 1, false},
		{`xpra_proxy_penalties_total`, 1, false},
		{`xpra_proxy_connections_total{result="refused-penalty",transport="tcp"}`, 1, false},
		{`xpra_proxy_logins_total{module="pam",result="ok",transport="unix"}`, 1, true},
		{`xpra_proxy_logins_total{module="pam",result="ok",transport="ssl"}`, 2, false}, // xpra start, then the attach
		{`xpra_proxy_sessions_started_total{result="ok"}`, 1, true},
		{`xpra_proxy_relayed_bytes_total{direction="from_client"}`, 1, false},
		{`xpra_proxy_relayed_bytes_total{direction="from_server"}`, 1, false},
		{`xpra_proxy_setup_duration_seconds_count`, 2, false},
	}
	var body string
	var why []string
	// The attached client's relay is reaped a moment after it left.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Second) {
		body, why = scrape(t, "http://127.0.0.1:9761/metrics"), nil
		for _, w := range wants {
			v, ok := sample(body, w.series)
			switch {
			case !ok:
				why = append(why, w.series+": absent")
			case w.exact && v != w.min, v < w.min:
				why = append(why, fmt.Sprintf("%s = %v, want %s%v", w.series, v, map[bool]string{true: "", false: ">= "}[w.exact], w.min))
			}
		}
		if len(why) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(why) > 0 {
		t.Errorf("the metrics do not show the script: %s\n%s", strings.Join(why, "; "), body)
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	// Served by the metrics process, as its own user, never by root.
	ps := try("ps", "-eo", "user:32=,args=")
	served := false
	for line := range strings.SplitSeq(ps, "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.Contains(f[1], "xpra-proxy-metrics") {
			served = true
			if f[0] != "xpra-proxy-control" {
				t.Errorf("xpra-proxy-metrics runs as %s, want xpra-proxy-control: %s", f[0], line)
			}
		}
	}
	if !served {
		t.Errorf("no xpra-proxy-metrics process:\n%s", ps)
	}
}

// scrape GETs a metrics page.
func scrape(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s %v\n%s", url, resp.Status, err, b)
	}
	return string(b)
}

// sample is a series' value in Prometheus's text format.
func sample(body, series string) (float64, bool) {
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}
