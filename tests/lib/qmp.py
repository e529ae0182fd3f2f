# SPDX-License-Identifier: GPL-2.0
"""QMP client and serial guest shell (Python 3 stdlib only).

QMP(path, timeout=30, connect_timeout=30, alive=None)
    Connects to a QEMU ``-qmp unix:PATH,server=on,wait=off`` socket, reads the
    greeting and negotiates capabilities.
    .greeting                       the greeting dict ({"QMP": {...}})
    .cmd(name, args=None, **kw)     run a command, return its "return" value;
                                    raises QMPError(name, error) on an error reply
    .events                         collections.deque of events not consumed yet
    .wait_event(name, timeout, match=None, check=None)
                                    the first queued or arriving event called
                                    `name` (and for which match(ev) is true);
                                    removes it from .events; TimeoutError otherwise.
                                    check() is called while waiting (e.g. to fail
                                    fast on a guest crash)
    .drain_events(name=None)        pop and return queued events (all or one kind)
    .close()

GuestShell(path, timeout=120, connect_timeout=30, alive=None)
    Host end of the command loop that tests/guest/shell.sh serves on the
    guest's second serial port (``-serial unix:PATH,server=on,wait=off``).
    .run(cmd, timeout=None, check=None) -> (rc, output)
            runs `cmd` with /bin/sh in a subshell of the guest (stdin /dev/null,
            stderr merged into stdout) and returns its exit status and exact
            output.  Raises GuestTimeout (a TimeoutError) with the command and
            the output so far when the guest does not answer in time; a later
            run() stays in sync because every reply is framed by a fresh token.
    .wait_ready(timeout)            ping until the guest answers
    .close()

Framing: the host sends one line ``<token> <base64(cmd)>``; the guest answers
``\\n__VMH_BEGIN_<token>__\\n<output>\\n__VMH_END_<token>_<rc>__\\n``.  Anything
outside a frame of the expected token (boot noise, the tail of an earlier
command that timed out) is discarded.

`alive` is an optional callable returning False once the QEMU process is gone
(connect attempts then stop at once instead of waiting for the timeout).
`check` is an optional callable that raises to abort a wait early.

CLI (for poking a running VM by hand):
    python3 qmp.py SOCK COMMAND ['{"json": "args"}']
    python3 qmp.py SOCK --events SECONDS
"""
import base64
import collections
import json
import os
import re
import socket
import sys
import time


class QMPError(Exception):
    """A QMP command returned an error reply."""

    def __init__(self, name, error):
        self.name = name
        self.error = error
        desc = error.get("desc", error) if isinstance(error, dict) else error
        super().__init__("QMP %s: %s" % (name, desc))


class GuestTimeout(TimeoutError):
    """The guest shell did not answer in time."""


def _connect_unix(path, connect_timeout, alive):
    deadline = time.monotonic() + connect_timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError) as e:
            sock.close()
            if alive is not None and not alive():
                raise ConnectionError("QEMU exited before %s accepted a "
                                      "connection" % path) from e
            if time.monotonic() > deadline:
                raise TimeoutError("no listener on %s after %.0f s" %
                                   (path, connect_timeout)) from e
            time.sleep(0.05)


class QMP:
    def __init__(self, path, timeout=30.0, connect_timeout=30.0, alive=None):
        self.path = path
        self.timeout = timeout
        self.sock = _connect_unix(path, connect_timeout, alive)
        self.buf = b""
        self.seq = 0
        self.events = collections.deque()
        self.greeting = self._read_msg(time.monotonic() + timeout)
        if "QMP" not in self.greeting:
            raise ConnectionError("not a QMP greeting on %s: %r" %
                                  (path, self.greeting))
        self.cmd("qmp_capabilities")

    def _read_msg(self, deadline):
        """One JSON message, or socket.timeout once `deadline` passes."""
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("QMP read timed out")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("QMP socket %s closed (QEMU gone?)" %
                                      self.path)
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, args=None, timeout=None, **kwargs):
        args = dict(args or {}, **kwargs)
        self.seq += 1
        # the id pairs reply and request even after an earlier timeout
        msg = {"execute": name, "id": self.seq}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                resp = self._read_msg(deadline)
            except socket.timeout:
                raise TimeoutError("QMP %s: no reply in %.0f s" %
                                   (name, timeout or self.timeout)) from None
            if "event" in resp:
                self.events.append(resp)
            elif resp.get("id") != self.seq:
                continue        # the late reply to a command that timed out
            elif "error" in resp:
                raise QMPError(name, resp["error"])
            elif "return" in resp:
                return resp["return"]

    def _take(self, name, match):
        for ev in list(self.events):
            if ev.get("event") == name and (match is None or match(ev)):
                self.events.remove(ev)
                return ev
        return None

    def wait_event(self, name, timeout, match=None, check=None):
        deadline = time.monotonic() + timeout
        while True:
            ev = self._take(name, match)
            if ev is not None:
                return ev
            if check is not None:
                check()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("QMP event %s not seen in %.1f s" %
                                   (name, timeout))
            try:
                msg = self._read_msg(time.monotonic() + min(left, 0.5))
            except socket.timeout:
                continue
            if "event" in msg:
                self.events.append(msg)

    def poll_events(self, seconds=0.0):
        """Read whatever events arrive within `seconds` into .events."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                msg = self._read_msg(max(deadline, time.monotonic() + 0.001))
            except socket.timeout:
                return
            if "event" in msg:
                self.events.append(msg)

    def drain_events(self, name=None):
        out = [e for e in self.events if name is None or e.get("event") == name]
        for e in out:
            self.events.remove(e)
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"


class GuestShell:
    def __init__(self, path, timeout=120.0, connect_timeout=30.0, alive=None):
        self.path = path
        self.timeout = timeout
        self.sock = _connect_unix(path, connect_timeout, alive)
        self.buf = b""
        self.seq = 0
        self.salt = "".join(_TOKEN_CHARS[b % 36] for b in os.urandom(6))

    def _token(self):
        self.seq += 1
        return "%s%d" % (self.salt, self.seq)

    def run(self, command, timeout=None, check=None):
        timeout = timeout or self.timeout
        tok = self._token()
        b64 = base64.b64encode(command.encode()).decode()
        begin = ("__VMH_BEGIN_%s__\n" % tok).encode()
        end_rx = re.compile(rb"\n__VMH_END_" + tok.encode() + rb"_(\d+)__\n")
        self.sock.sendall(("%s %s\n" % (tok, b64)).encode())
        t0 = time.monotonic()
        deadline = t0 + timeout
        started = False
        while True:
            if not started:
                i = self.buf.find(begin)
                if i >= 0:
                    self.buf = self.buf[i + len(begin):]
                    started = True
                else:
                    # keep a tail that could be the start of the marker
                    self.buf = self.buf[-len(begin):]
            if started:
                m = end_rx.search(self.buf)
                if m:
                    out = self.buf[:m.start()].decode(errors="replace")
                    self.buf = self.buf[m.end():]
                    return int(m.group(1)), out
            if check is not None:
                check()
            left = deadline - time.monotonic()
            if left <= 0:
                partial = self.buf.decode(errors="replace") if started else ""
                raise GuestTimeout(
                    "guest shell: no answer to %r after %.1f s (%s; output "
                    "so far: %r)" % (command, time.monotonic() - t0,
                                     "command started" if started
                                     else "command not started",
                                     partial[-2000:]))
            self.sock.settimeout(min(left, 0.5))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise ConnectionError("guest shell socket %s closed while "
                                      "running %r (QEMU gone?)" %
                                      (self.path, command))
            self.buf += data

    def wait_ready(self, timeout=60.0, check=None):
        """Ping until the shell answers; returns seconds waited."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            try:
                rc, out = self.run("echo vmh-pong",
                                   timeout=min(5.0, max(0.5, deadline - time.monotonic())),
                                   check=check)
                if rc == 0 and out.strip() == "vmh-pong":
                    return time.monotonic() - t0
            except GuestTimeout:
                pass
            if time.monotonic() > deadline:
                raise GuestTimeout("guest shell on %s not answering after "
                                   "%.0f s" % (self.path, timeout))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    q = QMP(argv[1])
    if argv[2] == "--events":
        q.poll_events(float(argv[3]))
        for e in q.drain_events():
            print(json.dumps(e))
        return 0
    args = json.loads(argv[3]) if len(argv) > 3 else None
    print(json.dumps(q.cmd(argv[2], args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
