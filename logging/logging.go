// SPDX-License-Identifier: GPL-2.0-or-later

// Package logging is the one slog handler of every xpra-proxy process:
// the supervisor, the pre-auth, control, relay and PAM children, the
// session leader and the encoder. One format everywhere (slog's text
// format: level=WARN msg="..." key=value), and, when stderr is systemd's
// journal stream, the journal's priorities:
//
//   - off the journal, each line starts with time=..., as slog writes it;
//   - under the journal (JOURNAL_STREAM names stderr's device and inode,
//     as sd_journal_stream_fd(3) describes), each line starts with an
//     sd-daemon prefix such as <4> (sd-daemon(3)), which journald turns
//     into the entry's PRIORITY, and the time is left to the journal.
//
// Prefixes work through the inherited stderr of sandboxed children: no
// socket, no system call beyond write(2), and no library of systemd's.
//
// A record carrying a MessageIDKey attribute is an audit record. A
// handler given Options.Send (only the root supervisor's: package
// supervisor/audit) hands those to it with every attribute as a journal
// field; everywhere else, or when Send fails, the record is a line like
// any other.
//
// Attributes whose value is nil (err=<nil>) are dropped: "no error" is
// said by leaving the key out.
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
)

// Options configure a Handler.
type Options struct {
	Level slog.Leveler // nil: Info
	// Journal: w is the journal's stream: <N> prefixes, no time.
	Journal bool
	// Send, when set, takes the audit records (those with a MessageIDKey
	// attribute) instead of w: msg is the line without its prefix, fields
	// the attributes as journal fields (MESSAGE_ID among them). The line
	// is written to w only if Send fails.
	Send SendFunc
}

// SendFunc sends one audit record to the journal (supervisor/audit).
type SendFunc func(msg string, p Priority, fields map[string]string) error

// MessageIDKey is the attribute key of an audit record's id; its journal
// field is MESSAGE_ID.
const MessageIDKey = "message_id"

const messageIDField = "MESSAGE_ID"

// Handler is an slog.Handler writing slog's text format, one line per
// record, with the journal's priority prefix when Options.Journal.
type Handler struct {
	out    *output
	text   slog.Handler // slog's text handler, writing into out.buf
	opts   Options
	attrs  []field // attributes added by WithAttrs, for native fields
	prefix string  // field name prefix of the current groups ("G_")
}

type field struct{ name, value string }

// output is shared by a handler and those derived from it (With...): one
// line is formatted and written at a time.
type output struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// sink is where the text handler writes: the line under construction.
type sink struct{ o *output }

func (s sink) Write(p []byte) (int, error) {
	s.o.buf = append(s.o.buf, p...)
	return len(p), nil
}

// NewHandler returns a Handler writing to w.
func NewHandler(w io.Writer, o Options) *Handler {
	out := &output{w: w}
	return &Handler{out: out, opts: o, text: slog.NewTextHandler(sink{out}, &slog.HandlerOptions{
		Level:       o.Level,
		ReplaceAttr: replacer(o.Journal),
	})}
}

// replacer drops nil values and, under the journal, the time.
func replacer(underJournal bool) func([]string, slog.Attr) slog.Attr {
	return func(groups []string, a slog.Attr) slog.Attr {
		if underJournal && a.Key == slog.TimeKey && len(groups) == 0 {
			return slog.Attr{}
		}
		if isNil(a.Value) {
			return slog.Attr{}
		}
		return a
	}
}

// isNil: an attribute that says nothing (err=<nil>).
func isNil(v slog.Value) bool {
	return v.Kind() == slog.KindAny && v.Any() == nil
}

// PriorityOf is the journal's priority of a level: debug 7, info 6, levels
// between info and warn (slog.LevelInfo+2, say) notice 5, warn 4, error
// and above 3.
func PriorityOf(l slog.Level) Priority {
	switch {
	case l >= slog.LevelError:
		return PriErr
	case l >= slog.LevelWarn:
		return PriWarning
	case l > slog.LevelInfo:
		return PriNotice
	case l == slog.LevelInfo:
		return PriInfo
	}
	return PriDebug
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.text.Enabled(ctx, l) }

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.text = h.text.WithAttrs(as)
	h2.attrs = append([]field(nil), h.attrs...)
	for _, a := range as {
		h2.attrs = appendFields(h2.attrs, h.prefix, a)
	}
	return &h2
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.text = h.text.WithGroup(name)
	h2.prefix = h.prefix + name + "_"
	return &h2
}

// Handle implements slog.Handler: one line, or one audit record sent.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	p := PriorityOf(r.Level)
	o := h.out
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = o.buf[:0]
	if h.opts.Journal {
		o.buf = append(o.buf, '<', byte('0'+p), '>')
	}
	start := len(o.buf)
	if err := h.text.Handle(ctx, r); err != nil {
		return err
	}
	if h.opts.Send != nil {
		if fields := h.fields(r); fields != nil {
			line := strings.TrimSuffix(string(o.buf[start:]), "\n")
			if h.opts.Send(line, p, fields) == nil {
				return nil
			}
			// The journal refused it (full, gone): the line still goes out.
		}
	}
	_, err := o.w.Write(o.buf)
	return err
}

// fields are the journal fields of an audit record (nil: r has no
// MessageIDKey): MESSAGE_ID and every attribute, its name upper-cased
// (user → USER, a group's g.key → G_KEY).
func (h *Handler) fields(r slog.Record) map[string]string {
	fs := append([]field(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		fs = appendFields(fs, h.prefix, a)
		return true
	})
	id := ""
	for _, f := range fs {
		if f.name == messageIDField {
			id = f.value
		}
	}
	if id == "" {
		return nil
	}
	vars := map[string]string{}
	for _, f := range fs {
		switch f.name {
		case "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER":
			continue // the journal's own; an attribute must not forge them
		}
		vars[f.name] = f.value
	}
	return vars
}

// appendFields flattens a into journal fields.
func appendFields(fs []field, prefix string, a slog.Attr) []field {
	a.Value = a.Value.Resolve()
	if isNil(a.Value) {
		return fs
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "_"
		}
		for _, g := range a.Value.Group() {
			fs = appendFields(fs, p, g)
		}
		return fs
	}
	switch a.Key {
	case "":
		return fs
	case MessageIDKey: // in whatever group the logger is
		return append(fs, field{messageIDField, a.Value.String()})
	}
	return append(fs, field{fieldName(prefix + a.Key), a.Value.String()})
}

// fieldName turns an attribute key into a journal field name: upper case
// letters, digits and underscores, not starting with an underscore (those
// are journald's trusted fields) or a digit.
func fieldName(key string) string {
	b := make([]byte, 0, len(key))
	for _, c := range []byte(strings.ToUpper(key)) {
		if (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') {
			b = append(b, c)
		} else {
			b = append(b, '_')
		}
	}
	if len(b) == 0 || b[0] == '_' || (b[0] >= '0' && b[0] <= '9') {
		b = append([]byte("X_"), b...)
	}
	return string(b)
}

// New is a process's logger on stderr: journal priorities when stderr is
// the journal's stream, the time otherwise.
func New(level slog.Leveler) *slog.Logger {
	return slog.New(NewStderrHandler(level, nil))
}

// NewStderrHandler is New's handler; send: see Options.Send (used only
// under the journal).
func NewStderrHandler(level slog.Leveler, send SendFunc) *Handler {
	j := UnderJournal()
	if !j {
		send = nil
	}
	return NewHandler(os.Stderr, Options{Level: level, Journal: j, Send: send})
}
