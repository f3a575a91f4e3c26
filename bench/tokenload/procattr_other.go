//go:build !linux

package main

import "syscall"

// procAttr puts a subprocess in its own process group: the terminal's ^C reaches only
// this program, which stops its servers in order.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
