package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process the driver started. Its stdout and stderr lines go
// to channels (stderr's last lines are also kept for error messages);
// they are drained for as long as it runs, so a chatty engine never
// blocks on its pipe.
type child struct {
	name   string
	cmd    *exec.Cmd
	stdout chan string
	stderr chan string
	done   chan struct{}
	mu     sync.Mutex
	tail   []string
	err    error
}

var (
	childrenMu sync.Mutex
	children   []*child
)

func startChild(name, dir string, env []string, bin string, args ...string) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	// A child dies with the driver, however the driver ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	so, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	se, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	c := &child{name: name, cmd: cmd, stdout: make(chan string, 1024), stderr: make(chan string, 1024), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	childrenMu.Lock()
	children = append(children, c)
	childrenMu.Unlock()
	var wg sync.WaitGroup
	pump := func(r io.Reader, ch chan string, keep bool) {
		defer wg.Done()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if keep {
				c.mu.Lock()
				c.tail = append(c.tail, line)
				if len(c.tail) > 20 {
					c.tail = c.tail[1:]
				}
				c.mu.Unlock()
			}
			select {
			case ch <- line:
			default: // nobody is waiting for lines this far back
			}
		}
	}
	wg.Add(2)
	go pump(so, c.stdout, false)
	go pump(se, c.stderr, true)
	go func() {
		wg.Wait()
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) stderrTail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.tail, "\n")
}

// waitLine waits for a line on ch that match accepts.
func (c *child) waitLine(ch chan string, timeout time.Duration, match func(string) bool) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line := <-ch:
			if match(line) {
				return line, nil
			}
		case <-c.done:
			// Lines may still be buffered.
			for {
				select {
				case line := <-ch:
					if match(line) {
						return line, nil
					}
				default:
					return "", fmt.Errorf("%s exited (%v):\n%s", c.name, c.err, c.stderrTail())
				}
			}
		case <-t.C:
			return "", fmt.Errorf("%s: no expected line within %v:\n%s", c.name, timeout, c.stderrTail())
		}
	}
}

// ready waits for the child's "READY <addr>" line.
func (c *child) ready() (string, error) {
	line, err := c.waitLine(c.stdout, 30*time.Second, func(s string) bool { return strings.HasPrefix(s, "READY") })
	return strings.TrimSpace(strings.TrimPrefix(line, "READY")), err
}

// result waits for the child to end and returns its RESULT.
func (c *child) result(timeout time.Duration) (result, error) {
	line, err := c.waitLine(c.stdout, timeout, func(s string) bool { return strings.HasPrefix(s, "RESULT ") })
	if err != nil {
		c.kill()
		return result{}, err
	}
	var r result
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "RESULT ")), &r); err != nil {
		return r, err
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.kill()
	}
	return r, nil
}

// results waits for the child to end and returns all its RESULTs.
func (c *child) results(timeout time.Duration) ([]result, error) {
	var rs []result
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line := <-c.stdout:
			if r, ok := strings.CutPrefix(line, "RESULT "); ok {
				var x result
				if err := json.Unmarshal([]byte(r), &x); err != nil {
					return nil, err
				}
				rs = append(rs, x)
			}
			continue
		case <-c.done:
		case <-t.C:
			c.kill()
			return nil, fmt.Errorf("%s: not done within %v:\n%s", c.name, timeout, c.stderrTail())
		}
		break
	}
	for { // lines still buffered
		select {
		case line := <-c.stdout:
			if r, ok := strings.CutPrefix(line, "RESULT "); ok {
				var x result
				if err := json.Unmarshal([]byte(r), &x); err != nil {
					return nil, err
				}
				rs = append(rs, x)
			}
			continue
		default:
		}
		break
	}
	if c.err != nil {
		return rs, fmt.Errorf("%s: %v:\n%s", c.name, c.err, c.stderrTail())
	}
	return rs, nil
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

func killChildren() {
	childrenMu.Lock()
	defer childrenMu.Unlock()
	for _, c := range children {
		select {
		case <-c.done:
		default:
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, c := range children {
		select {
		case <-c.done:
		case <-time.After(3 * time.Second):
			c.kill()
		}
	}
	children = nil
}

// procCPU is the CPU time (user + system) process pid has used so far,
// from /proc (0 where there is none).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name: utime is field 14, stime 15, in
	// clock ticks (100 a second on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// procSwitches is the number of context switches (voluntary: the thread
// blocked; involuntary: it was preempted) of all of pid's threads.
func procSwitches(pid int) int64 {
	dirs, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var n int64
	for _, d := range dirs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, d.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasSuffix(strings.SplitN(line, ":", 2)[0], "ctxt_switches") {
				v, _ := strconv.ParseInt(strings.TrimSpace(strings.SplitN(line, ":", 2)[1]), 10, 64)
				n += v
			}
		}
	}
	return n
}
