// SPDX-License-Identifier: GPL-2.0-or-later

// Command xpra-probe asks an xpra server (or proxy) a one-shot question:
// its version, its info tree or its id, authenticating with a password and
// AES when told to. It prints the reply as key=value lines.
//
//	xpra-probe [--password=P] [--encryption-keyfile=F] [--json] version|info|id|connect_test URL
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/xpra-proxy/xpra-proxy/probe"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/cipher"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xpra-probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	password := fs.String("password", "", "password (overrides the one in the URL)")
	passwordFile := fs.String("password-file", "", "read the password from this file")
	keyfile := fs.String("encryption-keyfile", "", "AES: the server's --tcp-encryption-keyfile")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	asJSON := fs.Bool("json", false, "print the reply as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: xpra-probe [flags] version|info|id|connect_test URL")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	o := probe.Options{Request: fs.Arg(0), URL: fs.Arg(1), Password: *password, Timeout: *timeout}
	if *passwordFile != "" {
		b, err := os.ReadFile(*passwordFile)
		if err != nil {
			log.Error("reading password file", "err", err)
			return 2
		}
		o.Password = string(trimEOL(b))
	}
	if *keyfile != "" {
		key, err := cipher.ReadKeyFile(*keyfile)
		if err != nil {
			log.Error("reading encryption key", "err", err)
			return 2
		}
		o.EncryptionKey = key
	}
	res, err := probe.Run(context.Background(), o)
	if err != nil {
		var de *conn.DisconnectError
		if errors.As(err, &de) {
			fmt.Fprintf(stderr, "server refused: %s\n", de.Reason)
			return 7
		}
		log.Error("probe failed", "err", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(toJSON(res.Reply)); err != nil {
			log.Error("writing JSON", "err", err)
			return 1
		}
		return 0
	}
	if o.Request == "version" {
		fmt.Fprintln(stdout, caps.New(res.Reply).Str("version", ""))
		return 0
	}
	for _, it := range caps.Flatten(res.Reply) {
		k, _ := value.AsString(it.Key)
		fmt.Fprintf(stdout, "%s=%s\n", k, show(it.Value))
	}
	return 0
}

func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// show renders a value the way `xpra info` prints one.
func show(v any) string {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case []any:
		s := "("
		for i, it := range x {
			if i > 0 {
				s += ", "
			}
			s += show(it)
		}
		return s + ")"
	case value.Dict:
		return fmt.Sprint(toJSON(x))
	}
	return fmt.Sprint(v)
}

// toJSON converts decoded values to what encoding/json prints sensibly.
func toJSON(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case []any:
		out := make([]any, len(x))
		for i, it := range x {
			out[i] = toJSON(it)
		}
		return out
	case value.Dict:
		out := make(map[string]any, len(x))
		for _, it := range x {
			k, ok := value.AsString(it.Key)
			if !ok {
				k = fmt.Sprint(it.Key)
			}
			out[k] = toJSON(it.Value)
		}
		return out
	}
	return v
}
