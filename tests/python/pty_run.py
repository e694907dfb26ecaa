"""Runs a command on a real pseudo-terminal and talks to it, for the tests.

    python3 pty_run.py [--expect TEXT --send TEXT]... [--eof] -- COMMAND ARGS...

The command's stdin, stdout and stderr are the terminal. Each --expect
waits until TEXT has appeared in what the command wrote to the terminal,
then its --send types TEXT (escapes such as \\n are understood). --eof,
after the last --send (or alone, after --expect), types Ctrl-D at the start
of a line: end of input. Everything the command wrote goes to stdout; the
exit status is the command's (128 + N if a signal N ended it). If the
command does not write an expected text, or does not end, within the
time limit (--timeout seconds, default 120), the command is killed and
this script exits 124 saying what it waited for.
"""

import argparse
import os
import pty
import select
import signal
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--expect", action="append", default=[])
    p.add_argument("--send", action="append", default=[])
    p.add_argument("--eof", action="store_true")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        p.error("no command")
    steps = []
    for i, text in enumerate(a.expect):
        send = a.send[i] if i < len(a.send) else None
        if send is not None:
            send = send.encode().decode("unicode_escape").encode()
        steps.append((text, send))
    if a.eof:
        if steps and steps[-1][1] is None:
            steps[-1] = (steps[-1][0], b"\x04")
        else:
            steps.append(("", b"\x04"))

    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        except OSError as e:
            os.write(2, f"cannot run {cmd[0]}: {e}\n".encode())
            os._exit(127)

    deadline = time.monotonic() + a.timeout
    seen = b""
    step = 0
    while True:
        while step < len(steps) and steps[step][0].encode() in seen:
            if steps[step][1] is not None:
                os.write(fd, steps[step][1])
            # Later expectations look only at what comes after this one.
            seen = seen[seen.find(steps[step][0].encode()) + len(steps[step][0]):]
            step += 1
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            waited = steps[step][0] if step < len(steps) else "the command to end"
            sys.stdout.buffer.write(seen)
            sys.stderr.write(f"pty_run: timed out waiting for {waited!r}\n")
            sys.exit(124)
        r, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not r:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the terminal's other side is closed
            chunk = b""
        if not chunk:
            break
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        seen += chunk
    _, status = os.waitpid(pid, 0)
    if step < len(steps):
        sys.stderr.write(f"pty_run: the command ended before writing {steps[step][0]!r}\n")
    if os.WIFSIGNALED(status):
        sys.exit(128 + os.WTERMSIG(status))
    sys.exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
