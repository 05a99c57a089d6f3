package channels

import (
	"syscall"
	"unsafe"
)

const haveRawVec = true

// rawVec is one writev(2) of a frame's header and payload that never waits
// for room on the socket (syscall.RawConn.Write's callback returns true
// whatever happened): n is what the socket took, 0 if it was full.
type rawVec struct {
	iov [2]syscall.Iovec
	cnt int
	n   int
	err error
}

func (v *rawVec) set(hdr, data []byte) {
	v.iov[0].Base = &hdr[0]
	v.iov[0].SetLen(len(hdr))
	v.cnt, v.n, v.err = 1, 0, nil
	if len(data) > 0 {
		v.iov[1].Base = &data[0]
		v.iov[1].SetLen(len(data))
		v.cnt = 2
	}
}

// clear drops the pointers into the frame.
func (v *rawVec) clear() { v.iov = [2]syscall.Iovec{} }

func (v *rawVec) write(fd uintptr) bool {
	for {
		n, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&v.iov[0])), uintptr(v.cnt))
		switch e {
		case 0:
			v.n = int(n)
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			v.n = 0
		default:
			v.err = e
		}
		return true
	}
}
