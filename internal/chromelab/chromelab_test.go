// SPDX-License-Identifier: GPL-2.0-or-later

package chromelab

import (
	"bytes"
	"context"
	"fmt"
	"image/color"
	"image/png"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBrowser loads a page from a loopback server, reads it back with
// JavaScript, takes a screenshot and checks its pixels, then checks Close
// leaves no process of the browser's group behind.
func TestBrowser(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<html><body style="margin:0;background:#ff0000">
<div id="x" style="width:100px;height:50px;background:#0000ff"></div>
<script>console.log("page says", 42)</script></body></html>`)
	})}
	go srv.Serve(l)
	defer srv.Close()

	b := Start(t, Options{Width: 400, Height: 300})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.Navigate(ctx, "http://"+l.Addr().String()+"/"); err != nil {
		t.Fatal(err)
	}
	var size struct{ W, H int }
	for {
		err := b.Eval(ctx, `(() => { const e = document.getElementById("x");
			return e ? {W: e.offsetWidth, H: e.offsetHeight} : {W: 0, H: 0}; })()`, &size)
		if err != nil {
			t.Fatal(err)
		}
		if size.W > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the page never showed its div:\n%s", b.Log())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if size.W != 100 || size.H != 50 {
		t.Errorf("div is %dx%d, want 100x50", size.W, size.H)
	}
	if err := b.Eval(ctx, `no_such_function()`, nil); err == nil || !strings.Contains(err.Error(), "no_such_function") {
		t.Errorf("a throwing expression: %v", err)
	}
	data, err := b.Screenshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		x, y int
		want color.RGBA
	}{{10, 10, color.RGBA{0, 0, 255, 255}}, {150, 150, color.RGBA{255, 0, 0, 255}}} {
		if got := color.RGBAModel.Convert(img.At(c.x, c.y)); got != c.want {
			t.Errorf("pixel %d,%d is %v, want %v", c.x, c.y, got, c.want)
		}
	}
	if !strings.Contains(b.Log(), "console.log: page says 42") {
		t.Errorf("console output not logged:\n%s", b.Log())
	}

	pgid := b.cmd.Process.Pid
	b.Close()
	if err := syscall.Kill(-pgid, 0); err == nil {
		t.Errorf("processes of group %d still alive after Close", pgid)
	}
	if err := b.Eval(ctx, "1", nil); err == nil {
		t.Error("Eval after Close succeeded")
	}
	if _, err := os.Stat("/proc/" + fmt.Sprint(pgid)); err == nil {
		t.Errorf("chromium %d still exists after Close", pgid)
	}
}
