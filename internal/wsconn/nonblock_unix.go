//go:build unix

package wsconn

import "syscall"

const canTryWrite = true

// tryWriteFD is one non-blocking write(2): a full socket buffer is no error,
// it just takes nothing.
func tryWriteFD(fd uintptr, p []byte) (int, error) {
	for {
		n, err := syscall.Write(int(fd), p)
		switch err {
		case nil:
			return n, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, nil
		}
		return 0, err
	}
}
