package main

import "syscall"

// procAttr puts a subprocess in its own process group (the terminal's ^C reaches only
// this program, which stops its servers in order) and has the kernel send it SIGTERM if
// this program dies first, so that no server or redis-server outlives a killed run.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
