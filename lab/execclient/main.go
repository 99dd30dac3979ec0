// Command labexec is the ForceCommand of every lab sshd: it hands the SSH command to the lab's fork server
// (lab/forkserver.py), which runs it in a fork of one warm simulator, and exits with that command's status.
//
//	labexec PYTHON MODULE [ARG...]
//
// sshd starts it for every command of every lab endpoint, so it is a small static binary (a Python client cost
// 12 ms of CPU per command; this one about 1 ms). It sends, over $GPUFLEET_LAB_DIR/run/exec.sock, its stdin,
// stdout and stderr (SCM_RIGHTS: the SSH channel's pipes) and one request, NUL-separated (no argument or
// environment entry can hold a NUL): MODULE, the working directory, its parent's pid (the sshd session), the
// argument count, the arguments, then the environment as KEY=VALUE; lab.forkserver.parse_request reads it. The
// server answers "+PID" once the command runs and "=STATUS" when it exits.
//
// When no fork server takes the command (none runs, or it refused before running anything), labexec becomes the
// simulator itself: exec PYTHON -I -m MODULE, the way every command ran before the fork server.
package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) < 3 {
		os.Stderr.WriteString("usage: labexec PYTHON MODULE [ARG...]\n")
		os.Exit(2)
	}
	python, module, args := os.Args[1], os.Args[2], os.Args[3:]
	if status, taken := viaServer(module, args); taken {
		os.Exit(status)
	}
	err := syscall.Exec(python, append([]string{python, "-I", "-m", module}, args...), os.Environ())
	os.Stderr.WriteString("labexec: cannot run " + python + ": " + err.Error() + "\n")
	os.Exit(255)
}

// request is what lab.forkserver.parse_request reads.
func request(module string, args []string) []byte {
	cwd, err := os.Getwd()
	if err != nil {
		cwd = "/"
	}
	fields := []string{module, cwd, strconv.Itoa(os.Getppid()), strconv.Itoa(len(args))}
	fields = append(append(fields, args...), os.Environ()...)
	body := []byte(strings.Join(fields, "\x00"))
	head := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	return append(head, body...)
}

// viaServer runs the command through the fork server: its exit status, and whether the server took it (false:
// nothing ran, the caller runs it itself).
func viaServer(module string, args []string) (int, bool) {
	path := filepath.Join(os.Getenv("GPUFLEET_LAB_DIR"), "run", "exec.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	defer syscall.Close(fd)
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		return 0, false
	}
	message := request(module, args)
	sent, err := syscall.SendmsgN(fd, message, syscall.UnixRights(0, 1, 2), nil, 0)
	for err == nil && sent < len(message) {
		var n int
		n, err = syscall.Write(fd, message[sent:])
		sent += n
	}
	if err != nil {
		return 0, false
	}
	lines := &lineReader{fd: fd}
	if started, ok := lines.next(); !ok || !strings.HasPrefix(started, "+") {
		return 0, false
	}
	status, ok := lines.next()
	if !ok || !strings.HasPrefix(status, "=") {
		return 255, true // the server went away mid-command: what a dropped connection gives
	}
	code, err := strconv.Atoi(status[1:])
	if err != nil {
		return 255, true
	}
	return code, true
}

type lineReader struct {
	fd      int
	pending []byte
}

func (r *lineReader) next() (string, bool) {
	for {
		if i := strings.IndexByte(string(r.pending), '\n'); i >= 0 {
			line := string(r.pending[:i])
			r.pending = r.pending[i+1:]
			return line, true
		}
		chunk := make([]byte, 64)
		n, err := syscall.Read(r.fd, chunk)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return "", false
		}
		r.pending = append(r.pending, chunk[:n]...)
	}
}
