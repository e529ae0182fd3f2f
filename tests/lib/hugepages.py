# SPDX-License-Identifier: GPL-2.0
"""The host's pool of 2 MiB huge pages, for guests whose RAM is hugetlb.

    from lib import hugepages
    with hugepages.reserve(hugepages.pages_for(2 << 30) + 8) as hp:
        ... boot a guest with a 2 MiB hugetlb memory backend ...
        before = hp.free()

meminfo() -> {"HugePages_Total": n, "HugePages_Free": n, ...}
                                 the HugePages_* and Hugepagesize lines of
                                 the host's /proc/meminfo (pages; kB for the size)
free() -> int                    host HugePages_Free
pages_for(nbytes) -> int         2 MiB pages that hold nbytes
reserve(n, lock_timeout=1800) -> Reservation (a context manager)
    Takes the host-wide lock (LOCK_PATH, flock: HugePages_Free is global,
    so two tests reading it must never overlap, whichever process or lane
    runs them; the lock is held until exit), then raises
    /proc/sys/vm/nr_hugepages by n and checks that the kernel really found
    the pages (compacting memory once if it fell short).  On exit, even
    after a failure or an exception inside the block, nr_hugepages gets
    its old value back and the lock is released; a holder killed outright
    (SIGKILL) leaves its figures in the lock file, and the next reserve()
    gives its pages back first.  Close every QEMU that
    uses the pool before leaving the block: pages still mapped are freed
    by the kernel only when their last user goes (surplus until then).
    The pool must hold the guest's whole RAM and a little more: a guest
    that takes back memory its balloon gave away makes QEMU fault huge
    pages in again, and QEMU dies of SIGBUS when the pool is empty.
  .free() -> int                 host HugePages_Free
  .wait_free(ok, timeout, what) -> int
                                 polls HugePages_Free until ok(value) holds;
                                 returns the last value read (the caller
                                 asserts, so a miss shows the figure)
  .lowest_free_during(fn) -> (fn(), int)
                                 the lowest HugePages_Free seen (every 20 ms)
                                 while fn() ran
"""
import contextlib
import errno
import fcntl
import os
import threading
import time

NR_PATH = "/proc/sys/vm/nr_hugepages"
COMPACT_PATH = "/proc/sys/vm/compact_memory"
LOCK_PATH = "/run/lock/balloon-dkms-hugepages.lock"
PAGE = 2 << 20


class HugePagesError(RuntimeError):
    """The host could not give the huge pages asked for."""


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k.startswith("HugePages_") or k == "Hugepagesize":
                out[k] = int(v.split()[0])
    if out.get("Hugepagesize") != PAGE // 1024:
        raise HugePagesError("host default huge page size is %s kB, not 2048"
                             % out.get("Hugepagesize"))
    return out


def free():
    return meminfo()["HugePages_Free"]


def pages_for(nbytes):
    return -(-nbytes // PAGE)


def _read_nr():
    with open(NR_PATH) as f:
        return int(f.read())


def _write(path, value):
    with open(path, "w") as f:
        f.write("%d\n" % value)


@contextlib.contextmanager
def _host_lock(timeout):
    """The lock file, locked; its fd.  It also records a reservation in
    progress ("OLD NEW": nr_hugepages before and during it)."""
    os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > deadline:
                raise HugePagesError("%s still held by another test after %d s" %
                                     (LOCK_PATH, timeout))
            time.sleep(0.5)
        yield fd
    finally:
        os.close(fd)        # releases the lock


def _record(fd, text):
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def _undo_stale(fd):
    """A holder killed outright (SIGKILL) left its reservation recorded:
    give it back if nr_hugepages is still what that holder set."""
    words = os.pread(fd, 100, 0).split()
    if len(words) == 2 and all(w.isdigit() for w in words):
        old, new = int(words[0]), int(words[1])
        if _read_nr() == new:
            print("hugepages: a reservation left behind (nr_hugepages %d, %d before it): "
                  "giving it back" % (new, old))
            _write(NR_PATH, old)
    _record(fd, "")


class Reservation:
    def __init__(self, n, old):
        self.n, self.old = n, old

    @staticmethod
    def free():
        return free()

    @staticmethod
    def wait_free(ok, timeout, what=None):
        deadline = time.monotonic() + timeout
        while True:
            v = free()
            if ok(v) or time.monotonic() > deadline:
                return v
            time.sleep(0.2)

    @staticmethod
    def lowest_free_during(fn, every=0.02):
        low = [free()]
        stop = threading.Event()

        def sample():
            while not stop.wait(every):
                low[0] = min(low[0], free())

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        try:
            ret = fn()
        finally:
            stop.set()
            th.join()
        return ret, min(low[0], free())


@contextlib.contextmanager
def reserve(n, lock_timeout=1800):
    with _host_lock(lock_timeout) as fd:
        _undo_stale(fd)
        old = _read_nr()
        want = old + n
        _record(fd, "%d %d\n" % (old, want))
        try:
            for attempt in range(2):
                _write(NR_PATH, want)
                got = _read_nr()
                if got >= want:
                    break
                if attempt == 0:
                    _write(COMPACT_PATH, 1)     # fragmented: compact, try once more
            else:
                raise HugePagesError(
                    "asked the host for %d more 2 MiB huge pages (nr_hugepages %d -> %d), "
                    "it found only %d (not enough contiguous free memory)" %
                    (n, old, want, got - old))
            yield Reservation(n, old)
        finally:
            _write(NR_PATH, old)
            _record(fd, "")
