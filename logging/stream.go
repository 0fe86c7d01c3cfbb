// SPDX-License-Identifier: GPL-2.0-or-later

package logging

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Priority is a syslog priority, as the journal's PRIORITY field has it.
type Priority int

// The priorities the handler uses (sd-daemon(3)).
const (
	PriErr     Priority = 3
	PriWarning Priority = 4
	PriNotice  Priority = 5
	PriInfo    Priority = 6
	PriDebug   Priority = 7
)

// JournalStreamEnv is systemd's variable naming the journal stream of a
// service's stderr (sd_journal_stream_fd(3)).
const JournalStreamEnv = "JOURNAL_STREAM"

// UnderJournal says whether this process's stderr is the journal's stream:
// JOURNAL_STREAM names its device and inode. A child handed another
// stderr with the variable is not.
func UnderJournal() bool {
	return isJournalStream(os.Getenv(JournalStreamEnv), 2)
}

func isJournalStream(env string, fd int) bool {
	dev, ino, ok := strings.Cut(env, ":")
	if !ok {
		return false
	}
	d, err1 := strconv.ParseUint(dev, 10, 64)
	i, err2 := strconv.ParseUint(ino, 10, 64)
	var st syscall.Stat_t
	if err1 != nil || err2 != nil || syscall.Fstat(fd, &st) != nil {
		return false
	}
	return uint64(st.Dev) == d && st.Ino == i
}
