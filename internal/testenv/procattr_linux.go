package testenv

import "syscall"

// childAttr makes a child process die with the test binary, so a test that
// times out (no cleanup runs) leaves no server behind.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
