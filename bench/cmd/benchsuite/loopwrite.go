package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// loopwrite: the floor of a stream fan-out on this machine, the CPU one
// small loopback TCP write costs its writer. -conns sockets to a child
// process that reads them all (woken per write, as stream clients are) or
// reads none (no wake-up); -rounds writes of -size bytes to every socket,
// a pause between rounds for the reader to drain. Reported per write: this
// process's CPU (user + system) and the wall time of the writes.
func cmdLoopWrite(args []string) {
	fs := flag.NewFlagSet("loopwrite", flag.ExitOnError)
	conns := fs.Int("conns", 1000, "sockets")
	rounds := fs.Int("rounds", 30, "writes per socket")
	size := fs.Int("size", 150, "bytes per write (a stream change is ~150)")
	peer := fs.String("peer", "", "internal: the reading child's address and mode (read|noread)")
	_ = fs.Parse(args)
	if *peer != "" {
		loopPeer(*peer, fs.Arg(0) == "read", *conns)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	self, _ := os.Executable()
	for _, mode := range []string{"read", "noread"} {
		cmd := exec.Command(self, "loopwrite", "-conns", fmt.Sprint(*conns), "-peer", ln.Addr().String(), mode)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			log.Fatal(err)
		}
		var cs []net.Conn
		for range *conns {
			c, err := ln.Accept()
			if err != nil {
				log.Fatal(err)
			}
			cs = append(cs, c)
		}
		msg := make([]byte, *size)
		const pause = 5 * time.Millisecond
		time.Sleep(200 * time.Millisecond)
		cpu0, wall := ownCPU(), time.Duration(0)
		for range *rounds {
			t0 := time.Now()
			for _, c := range cs {
				if _, err := c.Write(msg); err != nil {
					log.Fatal(err)
				}
			}
			wall += time.Since(t0)
			time.Sleep(pause)
		}
		n := float64(*rounds * *conns)
		fmt.Printf("loopwrite %-6s %d B to %d sockets: %.2f µs CPU per write, %.2f µs wall per write\n",
			mode, *size, *conns, float64((ownCPU()-cpu0).Nanoseconds())/1e3/n, float64(wall.Nanoseconds())/1e3/n)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		for _, c := range cs {
			c.Close()
		}
	}
}

func loopPeer(addr string, read bool, conns int) {
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			log.Fatal(err)
		}
		if read {
			go func() {
				b := make([]byte, 4096)
				for {
					if _, err := c.Read(b); err != nil {
						return
					}
				}
			}()
		}
	}
	select {}
}

func ownCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
