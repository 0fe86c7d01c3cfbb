// SPDX-License-Identifier: GPL-2.0-or-later

// Package packaging holds no Go code: these tests check the systemd units,
// the .deb and the .rpm that ship xpra-proxy, with the real tools
// (systemd-analyze, dpkg-buildpackage, lintian, rpmbuild, rpmlint).
package packaging

import (
	"bufio"
	"debug/elf"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// root is the repository, seen from this package's directory.
const root = ".."

// maxExposure is the goal for the supervisor's `systemd-analyze security`
// score (issue 5; Debian's own xpra.service scores 9.0).
const maxExposure = 4.0

var units = []string{"xpra-proxy.service", "xpra-proxy.socket", "xpra-proxy-unix.socket", "xpra-proxy-metrics.socket"}

// encodeUnits ship in the encoder's own package.
var encodeUnits = []string{"xpra-proxy-encode.service"}

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestUnitsVerify loads the units into systemd's own checker, with
// ExecStart= pointing at freshly built programs and man pointing at our
// pages (verify runs `man` for each Documentation= entry).
func TestUnitsVerify(t *testing.T) {
	analyze := testenv.Command(t, "systemd-analyze")
	testenv.Command(t, "man")
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin", "xpra-proxy")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	run(t, root, goBin, "build", "-o", bin, "./cmd/xpra-proxy")
	encBin := filepath.Join(tmp, "bin", "xpra-proxy-encode")
	run(t, root, goBin, "build", "-o", encBin, "./cmd/xpra-proxy-encode")
	unitDir := filepath.Join(tmp, "units")
	if err := os.Mkdir(unitDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, u := range append(slices.Clone(units), encodeUnits...) {
		b, err := os.ReadFile(filepath.Join("systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "/usr/bin/xpra-proxy ", bin+" ")
		s = strings.ReplaceAll(s, "/usr/libexec/xpra-proxy/xpra-proxy-encode ", encBin+" ")
		p := filepath.Join(unitDir, u)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	for _, page := range []string{"xpra-proxy.8", "xpra-probe.1"} {
		dir := filepath.Join(tmp, "man", "man"+page[len(page)-1:])
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join("man", page))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, page), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(analyze, append([]string{"verify"}, paths...)...)
	cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(tmp, "man"))
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestServiceExposure holds the services' sandboxes to their scores.
func TestServiceExposure(t *testing.T) {
	analyze := testenv.Command(t, "systemd-analyze")
	for _, tc := range []struct {
		unit string
		max  float64
	}{
		{"xpra-proxy.service", maxExposure},
		// Unprivileged, no network, only GPU device nodes.
		{"xpra-proxy-encode.service", 1.5},
	} {
		t.Run(tc.unit, func(t *testing.T) {
			out := run(t, ".", analyze, "security", "--offline=yes", "--no-pager", filepath.Join("systemd", tc.unit))
			m := regexp.MustCompile(`Overall exposure level for ` + regexp.QuoteMeta(tc.unit) + `: ([0-9.]+)`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no overall exposure level in:\n%s", out)
			}
			score, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("systemd-analyze security: %s %.1f", tc.unit, score)
			if score > tc.max {
				t.Errorf("exposure %.1f > %.1f:\n%s", score, tc.max, out)
			}
		})
	}
}

// unitSettings reads KEY=VALUE lines per section ("Section.Key"), keeping
// every value of repeated keys.
func unitSettings(t *testing.T, name string) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join("systemd", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	set := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not KEY=VALUE: %q", name, line)
			}
			set[section+"."+k] = append(set[section+"."+k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return set
}

// TestUnitDesign pins the settings the service's promises rest on; each
// row says what breaks without it.
func TestUnitDesign(t *testing.T) {
	tests := []struct {
		unit, key, want, why string
	}{
		{"xpra-proxy.service", "Service.Type", "notify", "systemctl start/restart must wait for READY=1"},
		{"xpra-proxy.service", "Service.NotifyAccess", "main", "no worker may report for the supervisor"},
		{"xpra-proxy.service", "Service.KillMode", "process", "a restart would kill every attached client's relay"},
		{"xpra-proxy.service", "Service.OOMPolicy", "continue", "one relay killed by the OOM killer would stop the service"},
		{"xpra-proxy.service", "Service.MemoryMax", "80%", "relays share the cgroup: a tight limit would OOM-kill working users' relays"},
		{"xpra-proxy.service", "Service.TasksMax", "16384", "systemd's default (4915 with pid_max 32768) stops relays' threads beyond ~250 TLS clients"},
		{"xpra-proxy.service", "Service.ExecStart", "/usr/bin/xpra-proxy --config=/etc/xpra-proxy/xpra-proxy.toml", "the packaged paths"},
		{"xpra-proxy.service", "Service.NoNewPrivileges", "yes", "workers must not gain privileges through set-id programs"},
		{"xpra-proxy.service", "Service.ReadOnlyPaths", "/run -/home -/root", "systemd 252 leaves /run writable under ProtectSystem=strict with ProtectKernelTunables="},
		{"xpra-proxy.service", "Service.ReadWritePaths", "-/run/user -/run/xpra", "control sockets go to the user's socket directory"},
		{"xpra-proxy.socket", "Socket.ListenStream", "14500", "xpra's proxy port"},
		{"xpra-proxy.socket", "Socket.FileDescriptorName", "tcp", "the supervisor picks tcp-auth by this name"},
		{"xpra-proxy.socket", "Socket.Accept", "no", "one supervisor accepts every connection"},
		{"xpra-proxy.socket", "Socket.DeferAcceptSec", "10s", "an idle connection must get no pre-auth process (first-packet-timeout)"},
		{"xpra-proxy-unix.socket", "Socket.ListenStream", "/run/xpra-proxy/socket", "the documented local socket"},
		{"xpra-proxy-unix.socket", "Socket.FileDescriptorName", "unix", "the supervisor picks auth (unix) by this name"},
		{"xpra-proxy-unix.socket", "Socket.SocketMode", "0666", "any local user may connect; auth decides"},
		{"xpra-proxy-unix.socket", "Socket.Service", "xpra-proxy.service", "its connections go to the same supervisor"},
		{"xpra-proxy-metrics.socket", "Socket.FileDescriptorName", "metrics", "the supervisor hands the socket of this name to the metrics process"},
		{"xpra-proxy-metrics.socket", "Socket.ListenStream", "127.0.0.1:9761", "metrics are plain HTTP without authentication: loopback by default"},
		{"xpra-proxy-metrics.socket", "Socket.Service", "xpra-proxy.service", "the supervisor holds the counters"},
		{"xpra-proxy-encode.service", "Service.User", "xpra-proxy-encode", "the supervisor's default encoder-user, which relays check by SO_PEERCRED"},
		{"xpra-proxy-encode.service", "Service.RuntimeDirectory", "xpra-proxy-encode", "the socket's directory, owned by that user"},
		{"xpra-proxy-encode.service", "Install.WantedBy", "multi-user.target", "installing the encoder package runs it"},
	}
	settings := map[string]map[string][]string{}
	for _, u := range append(slices.Clone(units), encodeUnits...) {
		settings[u] = unitSettings(t, u)
	}
	for _, tt := range tests {
		t.Run(tt.unit+"/"+tt.key, func(t *testing.T) {
			if got := settings[tt.unit][tt.key]; !slices.Equal(got, []string{tt.want}) {
				t.Errorf("%s: %s = %q, want %q (%s)", tt.unit, tt.key, got, tt.want, tt.why)
			}
		})
	}
	// systemctl reload as sshd.service: a broken file fails the reload
	// with the check's message before the supervisor is signalled.
	reload := []string{"/usr/bin/xpra-proxy --check-config --config=/etc/xpra-proxy/xpra-proxy.toml", "/bin/kill -HUP $MAINPID"}
	if got := settings["xpra-proxy.service"]["Service.ExecReload"]; !slices.Equal(got, reload) {
		t.Errorf("xpra-proxy.service: ExecReload = %q, want %q (the check, then the signal)", got, reload)
	}
	// The service has no [Install]: the sockets start it, and enabling it
	// would start the supervisor at boot for nothing.
	for k := range settings["xpra-proxy.service"] {
		if strings.HasPrefix(k, "Install.") {
			t.Errorf("xpra-proxy.service has %s: the sockets start it", k)
		}
	}
}

// TestVersionsAgree: the .deb, the .rpm and the proxy report one version.
func TestVersionsAgree(t *testing.T) {
	changelog, err := os.ReadFile(filepath.Join(root, "debian", "changelog"))
	if err != nil {
		t.Fatal(err)
	}
	deb := regexp.MustCompile(`^xpra-proxy \(([^)]+)\)`).FindSubmatch(changelog)
	spec, err := os.ReadFile(filepath.Join(root, "rpm", "xpra-proxy.spec"))
	if err != nil {
		t.Fatal(err)
	}
	rpm := regexp.MustCompile(`(?m)^Version:\s*(\S+)`).FindSubmatch(spec)
	if deb == nil || rpm == nil {
		t.Fatalf("version not found: debian/changelog %q, spec %q", deb, rpm)
	}
	proxy := constString(t, filepath.Join(root, "version"), "Proxy")
	if string(deb[1]) != proxy || string(rpm[1]) != proxy {
		t.Errorf("debian/changelog %s, rpm spec %s, version.Proxy %s", deb[1], rpm[1], proxy)
	}
}

// constString finds a package-level string constant in dir's Go files by
// parsing them (no type checking, so the test does not depend on the
// package building).
func constString(t *testing.T, dir, name string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if n.Name == name && i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							v, err := strconv.Unquote(lit.Value)
							if err != nil {
								t.Fatal(err)
							}
							return v
						}
					}
				}
			}
		}
	}
	t.Fatalf("no string constant %s in %s", name, dir)
	return ""
}

// programs lists cmd/: each becomes a binary in /usr/bin (the two people
// run) or in /usr/libexec/xpra-proxy (the ones the supervisor execs,
// where it looks for them); the encoder, there too, is in a package of its
// own, xpra-proxy-encode, with the codec libraries it links.
type programs struct{ bin, libexec, encode []string }

func listPrograms(t *testing.T) programs {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	var p programs
	for _, e := range entries {
		switch {
		case !e.IsDir():
		case e.Name() == "xpra-proxy" || e.Name() == "xpra-probe":
			p.bin = append(p.bin, e.Name())
		case e.Name() == "xpra-proxy-encode":
			p.encode = append(p.encode, e.Name())
		default:
			p.libexec = append(p.libexec, e.Name())
		}
	}
	if len(p.bin) != 2 || !slices.Contains(p.libexec, "xpra-proxy-worker") {
		t.Fatalf("cmd/ has %+v", p)
	}
	return p
}

// TestPackages builds the .deb and the .rpm as scripts/build-packages.sh
// does, then checks them with lintian / rpmlint and reads back their
// contents and maintainer scripts.
func TestPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two packages (a few minutes)")
	}
	for _, c := range []string{"dpkg-buildpackage", "dh", "dpkg-deb", "lintian", "rpmbuild", "rpm", "rpm2cpio", "cpio"} {
		testenv.Command(t, c)
	}
	out := t.TempDir()
	run(t, root, "bash", "scripts/build-packages.sh", out)
	progs := listPrograms(t)
	t.Run("deb", func(t *testing.T) { checkDeb(t, out, progs) })
	t.Run("rpm", func(t *testing.T) { checkRPM(t, out, progs) })
}

func one(t *testing.T, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) != 1 {
		t.Fatalf("%s: %v %v", pattern, m, err)
	}
	return m[0]
}

// modes parses `dpkg-deb -c` / `rpm -qlvp` listings: path -> mode string.
func modes(listing string, pathField int, strip string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		if len(f) <= pathField {
			continue
		}
		p := strings.TrimSuffix(strings.TrimPrefix(f[pathField], strip), "/")
		m["/"+strings.TrimPrefix(p, "/")] = f[0]
	}
	return m
}

func wantFiles(t *testing.T, got map[string]string, want map[string]string) {
	t.Helper()
	for p, mode := range want {
		g, ok := got[p]
		switch {
		case !ok:
			t.Errorf("missing %s", p)
		case mode != "" && g != mode:
			t.Errorf("%s: mode %s, want %s", p, g, mode)
		}
	}
}

func checkDeb(t *testing.T, out string, progs programs) {
	deb := one(t, filepath.Join(out, "xpra-proxy_*_*.deb"))
	want := map[string]string{
		"/etc/xpra-proxy":                                  "drwxr-x---",
		"/etc/xpra-proxy/xpra-proxy.toml":                  "-rw-r-----",
		"/etc/pam.d/xpra-proxy":                            "-rw-r--r--",
		"/lib/systemd/system/xpra-proxy.service":           "-rw-r--r--",
		"/lib/systemd/system/xpra-proxy.socket":            "-rw-r--r--",
		"/lib/systemd/system/xpra-proxy-unix.socket":       "-rw-r--r--",
		"/usr/lib/sysusers.d/xpra-proxy.conf":              "-rw-r--r--",
		"/usr/lib/tmpfiles.d/xpra-proxy.conf":              "-rw-r--r--",
		"/usr/share/man/man8/xpra-proxy.8.gz":              "",
		"/usr/share/man/man1/xpra-probe.1.gz":              "",
		"/usr/share/doc/xpra-proxy/copyright":              "",
		"/usr/share/doc/xpra-proxy/README.packaging.md.gz": "",
		"/usr/share/doc/xpra-proxy/README.Debian":          "",
	}
	for _, b := range progs.bin {
		want["/usr/bin/"+b] = "-rwxr-xr-x"
	}
	for _, b := range progs.libexec {
		want["/usr/libexec/xpra-proxy/"+b] = "-rwxr-xr-x"
	}
	wantFiles(t, modes(run(t, ".", "dpkg-deb", "-c", deb), 5, "."), want)
	// The note that auth must be configured (issue 15), beside debhelper's part.
	if postinst := run(t, ".", "dpkg-deb", "-I", deb, "postinst"); !strings.Contains(postinst, "no authentication is configured") ||
		!strings.Contains(postinst, "systemd-sysusers") {
		t.Errorf("xpra-proxy postinst lacks the auth note or debhelper's part:\n%s", postinst)
	}
	xd := t.TempDir()
	run(t, ".", "dpkg-deb", "-x", deb, xd)
	withoutLibc(t, filepath.Join(xd, "usr/libexec/xpra-proxy"))
	codecs := regexp.MustCompile(`libx264|libturbojpeg|libyuv`)
	if deps := run(t, ".", "dpkg-deb", "-f", deb, "Depends"); codecs.MatchString(deps) {
		t.Errorf("xpra-proxy depends on codec libraries: %s", deps)
	}
	if len(progs.encode) > 0 {
		enc := one(t, filepath.Join(out, "xpra-proxy-encode_*_*.deb"))
		want := map[string]string{
			"/lib/systemd/system/xpra-proxy-encode.service": "-rw-r--r--",
			"/usr/lib/sysusers.d/xpra-proxy-encode.conf":    "-rw-r--r--",
		}
		for _, b := range progs.encode {
			want["/usr/libexec/xpra-proxy/"+b] = "-rwxr-xr-x"
		}
		wantFiles(t, modes(run(t, ".", "dpkg-deb", "-c", enc), 5, "."), want)
		postinst := run(t, ".", "dpkg-deb", "-I", enc, "postinst")
		for _, s := range []string{"systemd-sysusers", "enable 'xpra-proxy-encode.service'"} {
			if !strings.Contains(postinst, s) {
				t.Errorf("xpra-proxy-encode postinst lacks %q:\n%s", s, postinst)
			}
		}
		x := t.TempDir()
		run(t, ".", "dpkg-deb", "-x", enc, x)
		for _, u := range encodeUnits {
			sameFile(t, filepath.Join("systemd", u), filepath.Join(x, "lib/systemd/system", u))
		}
		startsHere(t, filepath.Join(x, "usr/libexec/xpra-proxy/xpra-proxy-encode"))
	}

	conffiles := run(t, ".", "dpkg-deb", "-I", deb, "conffiles")
	for _, c := range []string{"/etc/xpra-proxy/xpra-proxy.toml", "/etc/pam.d/xpra-proxy"} {
		if !strings.Contains(conffiles, c+"\n") {
			t.Errorf("%s is not a conffile:\n%s", c, conffiles)
		}
	}
	// The upgrade path: the sockets are never stopped (a stopped socket
	// refuses connections), the supervisor is try-restarted, never stopped
	// before the upgrade.
	postinst := run(t, ".", "dpkg-deb", "-I", deb, "postinst")
	for _, s := range []string{"try-restart 'xpra-proxy.service'", "systemd-sysusers", "systemd-tmpfiles", "enable 'xpra-proxy.socket'", "enable 'xpra-proxy-unix.socket'"} {
		if !strings.Contains(postinst, s) {
			t.Errorf("postinst lacks %q", s)
		}
	}
	if strings.Contains(postinst, "enable 'xpra-proxy.service'") {
		t.Error("postinst enables the service itself")
	}
	// Metrics are off by default: the socket is installed, enabled again
	// only where the admin had enabled it, never started by the package.
	if !strings.Contains(postinst, "was-enabled 'xpra-proxy-metrics.socket'") || strings.Contains(postinst, "start 'xpra-proxy-metrics.socket'") {
		t.Errorf("postinst enables xpra-proxy-metrics.socket where the admin did not, or starts it:\n%s", postinst)
	}
	if preinst, err := exec.Command("dpkg-deb", "-I", deb, "preinst").CombinedOutput(); err == nil && strings.Contains(string(preinst), "stop") {
		t.Errorf("preinst stops something before an upgrade:\n%s", preinst)
	}
	prerm := run(t, ".", "dpkg-deb", "-I", deb, "prerm")
	if !strings.Contains(prerm, "stop 'xpra-proxy-unix.socket' 'xpra-proxy.socket'") || !strings.Contains(prerm, "stop xpra-proxy.service") ||
		!strings.Contains(prerm, "stop xpra-proxy-metrics.socket") {
		t.Errorf("prerm does not stop the sockets and the service on removal:\n%s", prerm)
	}

	// The packaged units are ours, unchanged.
	x := t.TempDir()
	run(t, ".", "dpkg-deb", "-x", deb, x)
	for _, u := range units {
		sameFile(t, filepath.Join("systemd", u), filepath.Join(x, "lib/systemd/system", u))
	}
	sameFile(t, filepath.Join(root, "etc", "xpra-proxy.toml"), filepath.Join(x, "etc/xpra-proxy/xpra-proxy.toml"))
	sameFile(t, filepath.Join("pam.d", "debian", "xpra-proxy"), filepath.Join(x, "etc/pam.d/xpra-proxy"))

	changes := one(t, filepath.Join(out, "xpra-proxy_*.changes"))
	cmd := exec.Command("lintian", "--pedantic", "--display-info", changes)
	report, err := cmd.CombinedOutput()
	t.Logf("lintian:\n%s", report)
	for _, line := range strings.Split(string(report), "\n") {
		if strings.HasPrefix(line, "E: ") {
			t.Errorf("lintian error: %s", line)
		}
	}
	if err != nil && !strings.Contains(string(report), "E: ") {
		t.Errorf("lintian: %v", err)
	}
}

func checkRPM(t *testing.T, out string, progs programs) {
	rpm := one(t, filepath.Join(out, "xpra-proxy-[0-9]*.rpm"))
	want := map[string]string{
		"/etc/xpra-proxy":                                "drwxr-x---",
		"/etc/xpra-proxy/xpra-proxy.toml":                "-rw-r-----",
		"/etc/pam.d/xpra-proxy":                          "-rw-r--r--",
		"/usr/lib/systemd/system/xpra-proxy.service":     "-rw-r--r--",
		"/usr/lib/systemd/system/xpra-proxy.socket":      "-rw-r--r--",
		"/usr/lib/systemd/system/xpra-proxy-unix.socket": "-rw-r--r--",
		"/usr/lib/sysusers.d/xpra-proxy.conf":            "-rw-r--r--",
		"/usr/lib/tmpfiles.d/xpra-proxy.conf":            "-rw-r--r--",
	}
	for _, b := range progs.bin {
		want["/usr/bin/"+b] = "-rwxr-xr-x"
	}
	for _, b := range progs.libexec {
		want["/usr/libexec/xpra-proxy/"+b] = "-rwxr-xr-x"
	}
	got := modes(run(t, ".", "rpm", "-qlvp", rpm), 8, "")
	wantFiles(t, got, want)
	if len(progs.encode) > 0 {
		for _, b := range progs.encode {
			if _, ok := got["/usr/libexec/xpra-proxy/"+b]; ok {
				t.Errorf("%s is in the main rpm", b)
			}
		}
		enc := one(t, filepath.Join(out, "xpra-proxy-encode-[0-9]*.rpm"))
		want := map[string]string{
			"/usr/lib/systemd/system/xpra-proxy-encode.service": "-rw-r--r--",
			"/usr/lib/sysusers.d/xpra-proxy-encode.conf":        "-rw-r--r--",
		}
		for _, b := range progs.encode {
			want["/usr/libexec/xpra-proxy/"+b] = "-rwxr-xr-x"
		}
		wantFiles(t, modes(run(t, ".", "rpm", "-qlvp", enc), 8, ""), want)
		scripts := run(t, ".", "rpm", "-qp", "--scripts", enc)
		for _, s := range []string{"systemd-sysusers", "xpra-proxy-encode.service"} {
			if !strings.Contains(scripts, s) {
				t.Errorf("xpra-proxy-encode scriptlets lack %q:\n%s", s, scripts)
			}
		}
		x := t.TempDir()
		run(t, x, "sh", "-c", `rpm2cpio "$1" | cpio -idm --quiet`, "sh", enc)
		for _, u := range encodeUnits {
			sameFile(t, filepath.Join("systemd", u), filepath.Join(x, "usr/lib/systemd/system", u))
		}
		startsHere(t, filepath.Join(x, "usr/libexec/xpra-proxy/xpra-proxy-encode"))
	}
	config := run(t, ".", "rpm", "-qp", "--configfiles", rpm)
	for _, c := range []string{"/etc/xpra-proxy/xpra-proxy.toml", "/etc/pam.d/xpra-proxy"} {
		if !strings.Contains(config, c+"\n") {
			t.Errorf("%s is not %%config:\n%s", c, config)
		}
	}
	scripts := run(t, ".", "rpm", "-qp", "--scripts", rpm)
	for _, s := range []string{"try-restart xpra-proxy.service", "systemd-sysusers", "systemd-tmpfiles"} {
		if !strings.Contains(scripts, s) {
			t.Errorf("scriptlets lack %q:\n%s", s, scripts)
		}
	}
	// The packaged units and PAM stack are ours, unchanged.
	x := t.TempDir()
	run(t, x, "sh", "-c", `rpm2cpio "$1" | cpio -idm --quiet`, "sh", rpm)
	withoutLibc(t, filepath.Join(x, "usr/libexec/xpra-proxy"))
	for _, u := range units {
		sameFile(t, filepath.Join("systemd", u), filepath.Join(x, "usr/lib/systemd/system", u))
	}
	sameFile(t, filepath.Join("pam.d", "rpm", "xpra-proxy"), filepath.Join(x, "etc/pam.d/xpra-proxy"))

	// rpmlint is required (under CI, which installs it, its absence
	// fails); every error it reports fails, and its exit status must be
	// 0. What is deliberate is filtered, with its reason, in the
	// project's rpmlintrc, not here.
	rpmlint := testenv.Command(t, "rpmlint")
	rpms, err := filepath.Glob(filepath.Join(out, "*.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-r", filepath.Join(root, "rpm", "xpra-proxy.rpmlintrc")}, rpms...)
	report, err := exec.Command(rpmlint, append(args, filepath.Join(root, "rpm", "xpra-proxy.spec"))...).CombinedOutput()
	t.Logf("rpmlint:\n%s", report)
	for _, line := range strings.Split(string(report), "\n") {
		if strings.Contains(line, ": E: ") {
			t.Errorf("rpmlint error: %s", line)
		}
	}
	if err != nil {
		t.Errorf("rpmlint: %v (its report is above)", err)
	}
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(x) != string(y) {
		t.Errorf("%s differs from %s", b, a)
	}
}

// startsHere runs a packaged program's -h on this machine, which has no
// NVIDIA driver: the dynamic loader must accept it (go-nvml's symbols
// need lazy binding; the loader fails with status 127 otherwise).
func startsHere(t *testing.T, prog string) {
	t.Helper()
	out, err := exec.Command(prog, "-h").CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 2) {
		t.Errorf("%s -h: %v\n%s", prog, err, out)
	}
}

// withoutLibc: the workers exec'd per connection are built without cgo
// (debian/rules, the spec), so no relay maps libc (BENCHMARKS.md, issue 3).
func withoutLibc(t *testing.T, dir string) {
	t.Helper()
	for _, prog := range []string{"xpra-proxy-worker", "xpra-proxy-preauth", "xpra-proxy-control", "xpra-proxy-ldap", "xpra-proxy-directory"} {
		f, err := elf.Open(filepath.Join(dir, prog))
		if err != nil {
			t.Fatal(err)
		}
		libs, err := f.ImportedLibraries()
		f.Close()
		if err != nil || len(libs) > 0 {
			t.Errorf("%s links %v (%v): build it with CGO_ENABLED=0", prog, libs, err)
		}
	}
}
