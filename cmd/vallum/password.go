package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// readNewPassword reads a password for user: asked twice, without echo,
// when standard input is a terminal; else the first line of standard input.
// Never from the command line, where every user sees it in ps.
func readNewPassword(cmd *cobra.Command, user string) (string, error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && isTerminal(f) {
		pw, err := prompt(f, cmd.ErrOrStderr(), "password for "+user+": ")
		if err != nil {
			return "", err
		}
		again, err := prompt(f, cmd.ErrOrStderr(), "again: ")
		if err != nil {
			return "", err
		}
		if pw != again {
			return "", errors.New("the passwords differ")
		}
		return nonEmpty(pw)
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the password from standard input: %w", err)
	}
	return nonEmpty(strings.TrimRight(line, "\r\n"))
}

func nonEmpty(pw string) (string, error) {
	if pw == "" {
		return "", errors.New("empty password: give it on standard input (echo ... | vallum broker add-user NAME) or at the prompt")
	}
	return pw, nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// prompt reads one line from the terminal f with echo off.
func prompt(f *os.File, w io.Writer, msg string) (string, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", err
	}
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	noEcho.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
		return "", err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprint(w, msg)
	defer fmt.Fprintln(w)
	var b []byte
	one := make([]byte, 1)
	for { // byte by byte: a buffered reader would take the next line too
		n, err := f.Read(one)
		if n == 1 && one[0] != '\n' {
			b = append(b, one[0])
			continue
		}
		if n == 1 || errors.Is(err, io.EOF) {
			return strings.TrimRight(string(b), "\r"), nil
		}
		if err != nil {
			return "", err
		}
	}
}
