package client_test

import "syscall"

var stopSignal, contSignal = syscall.SIGSTOP, syscall.SIGCONT
