//go:build !linux

package testenv

import "syscall"

// childAttr is nil where a child cannot be told to die with its parent.
func childAttr() *syscall.SysProcAttr { return nil }
