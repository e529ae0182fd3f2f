# SPDX-License-Identifier: GPL-2.0
"""Host lifecycles for a ballooned guest (tests/test_lifecycles.py).

Everything here is seen from the host: QMP, QEMU's trace, QEMU's process.

lifecycle_config(workdir, hints=False) -> dict
        a GuestPool config for one guest that can live through all of them:
        a qcow2 drive with no guest device (if=none: savevm/loadvm need one
        writable snapshot-capable drive, the guest never sees it), S3 on
        q35 (ICH9-LPC.disable_s3=0, mem_sleep_default=deep); hints=True
        adds free page hints (free-page-hint=on, with an iothread)
watch(vm)                    vm (booted elsewhere) fails on FAIL_PATTERNS too:
                             vm.FAIL_PATTERNS and a BUG() ("kernel BUG at")
hmp(vm, line, timeout=300) -> str
        an HMP command through QMP human-monitor-command; its text output
        (HMP reports errors as text: the caller decides what is one)

FrameLedger(vm)
        QEMU's own account of the frames the guest put into the balloon.
        start() turns on QEMU's trace of the balloon queues (virtio_queue_notify,
        virtqueue_pop, virtio_balloon_handle_output, to qemu.log); feed()
        reads what QEMU logged since, and follows each frame: a frame on
        the inflate queue enters .held, one on the deflate queue leaves it.
        A frame inflated while held or deflated while not held is an error
        (.errors).  .inflated/.deflated count frames.  move_to(vm) carries
        .held to another QEMU (the destination of a migration) and reads
        that one's log from its start on; snapshot()/restore(copy) keep and
        bring back .held around savevm/loadvm.
        stop() turns the trace off.

IncomingVM(*args, **kw)
        a vm.VM started with `-incoming unix:<rundir>/migrate.sock`
        (.incoming_path): it waits for the state instead of booting.
        attach() after the migration: waits for the run state "running"
        and connects the guest shell (the one the source served) to this
        QEMU; its console.log gets the guest's console from then on.
trace_on(vm)                 QEMU's trace of the balloon queues on (FrameLedger's)
migrate(vm, name, timeout=300, before=None, bandwidth=1 GiB/s)
        -> (IncomingVM, query-migrate of the source at completion)
        starts the destination with vm's own command line plus -incoming
        (a unix socket in its run directory), calls before(dest), migrates
        over QMP (migrate uri=unix:...) and waits (bounded) for
        query-migrate "completed"; the source ends paused ("postmigrate"),
        the caller closes it.  The destination is attached.
suspend_s3(vm) / SuspendedGuest
        with suspend_s3(vm) as s: the guest writes "mem" to /sys/power/state
        (a thread waits on that command, which returns once the guest is
        back); inside the block QEMU's run state is "suspended" (QMP SUSPEND
        seen); s.wake() sends QMP system_wakeup and waits for WAKEUP and for
        the guest's command to return 0 (leaving the block wakes a guest
        not woken yet).  Before each suspend the guest gets back the ICH9
        LPC's power management registers of its first one (QEMU's wakeup
        resets them and no firmware restores them: without this only the
        first S3 of a boot reaches QEMU).
compress_trace(vm)           gzip a closed VM's qemu.log (the trace is large)
"""
import os
import re
import subprocess
import threading
import time

from . import vm as vmlib
from .qmp import GuestShell

MiB = vmlib.MiB

# vm.FAIL_PATTERNS misses a BUG() ("kernel BUG at lib/list_debug.c:62!",
# seen on a migration destination): our guests watch for it too.
FAIL_PATTERNS = tuple(vmlib.FAIL_PATTERNS) + (r"kernel BUG at", r"list_(add|del) corruption",
                                              r"invalid opcode: \d+ \[#")

TRACE_EVENTS = ("virtio_queue_notify", "virtqueue_pop", "virtio_balloon_handle_output")
_NOTIFY = re.compile(r"virtio_queue_notify .*\bn (\d+) vq (0x[0-9a-f]+)")
_POP = re.compile(r"virtqueue_pop vq (0x[0-9a-f]+)")
_FRAME = re.compile(r"virtio_balloon_handle_output .*gpa: (0x[0-9a-f]+)")


def lifecycle_config(workdir, hints=False):
    disk = os.path.join(workdir, "snapshots.qcow2")
    if os.path.exists(disk):
        os.unlink(disk)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "64M"],
                   check=True, stdin=subprocess.DEVNULL)
    cfg = {
        "balloon_opts": None,
        "extra_args": ["-drive", "if=none,id=lcsnap,format=qcow2,file=" + disk,
                       "-global", "ICH9-LPC.disable_s3=0"],
        "append": "mem_sleep_default=deep",
    }
    if hints:
        cfg["balloon_opts"] = "free-page-hint=on,iothread=lciot"
        cfg["extra_args"] += ["-object", "iothread,id=lciot"]
    return cfg


def watch(vm):
    """vm fails at its next wait on FAIL_PATTERNS (a VM GuestPool booted)."""
    vm.fail_rx = re.compile("|".join(FAIL_PATTERNS))
    vm._con_off, vm._con_tail = 0, ""       # from the start of the console


def hmp(vm, line, timeout=300):
    vm.check()
    return vm.qmp.cmd("human-monitor-command", {"command-line": line}, timeout=timeout)


def compress_trace(vm):
    """gzip the qemu.log of a closed VM: the frame trace is tens of MB."""
    if vm.closed_at is not None and os.path.exists(vm.qemu_log):
        subprocess.run(["gzip", "-f", vm.qemu_log], stdin=subprocess.DEVNULL)


def trace_on(vm):
    """QEMU logs the balloon queues' traffic (the "log" trace backend
    prints only with the trace log item on)."""
    hmp(vm, "log " + ",".join("trace:" + e for e in TRACE_EVENTS), timeout=30)


class FrameLedger:
    def __init__(self, vm):
        self.vm = vm
        self.held = set()
        self.errors = []
        self.inflated = self.deflated = 0
        self._off = 0
        self._vqs = {}          # vq pointer -> queue index, per QEMU
        self._cur = None
        self._partial = ""

    def start(self):
        self._off = os.path.getsize(self.vm.qemu_log)
        trace_on(self.vm)

    def stop(self):
        if not self.vm.alive():
            return
        try:
            hmp(self.vm, "log none", timeout=30)
            for e in TRACE_EVENTS:
                self.vm.qmp.cmd("trace-event-set-state", {"name": e, "enable": False})
        except Exception:
            pass

    def feed(self):
        with open(self.vm.qemu_log, "rb") as f:
            f.seek(self._off)
            data = f.read()
        self._off += len(data)
        text = self._partial + data.decode(errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()     # a line QEMU is still writing
        for line in lines:
            m = _FRAME.search(line)
            if m:
                self._frame(int(m.group(1), 16), line)
                continue
            m = _POP.search(line)
            if m:
                self._cur = m.group(1)
                continue
            m = _NOTIFY.search(line)
            if m:
                self._vqs[m.group(2)] = int(m.group(1))

    def _frame(self, gpa, line):
        q = self._vqs.get(self._cur)
        if q == 0:
            self.inflated += 1
            if gpa in self.held:
                self._error("frame %#x inflated while already in the balloon" % gpa)
            self.held.add(gpa)
        elif q == 1:
            self.deflated += 1
            if gpa not in self.held:
                self._error("frame %#x deflated but not in the balloon" % gpa)
            self.held.discard(gpa)
        else:
            self._error("frame %#x on queue %r (vq %s): %r" % (gpa, q, self._cur, line))

    def _error(self, msg):
        if len(self.errors) < 20:
            self.errors.append(msg)

    def held_bytes(self):
        self.feed()
        return len(self.held) * 4096

    def counts(self):
        self.feed()
        return self.inflated, self.deflated

    def snapshot(self):
        self.feed()
        return set(self.held)

    def restore(self, held):
        """The guest went back to a saved state: whatever QEMU logged until
        now belongs to the abandoned one."""
        self.feed()
        self.held = set(held)

    def move_to(self, vm):
        """Follow the guest onto another QEMU whose trace is on already."""
        self.feed()
        self.stop()
        self.vm = vm
        self._off = 0
        self._vqs, self._cur, self._partial = {}, None, ""

    def assert_clean(self, what):
        self.feed()
        assert not self.errors, "%s: QEMU's trace of the balloon frames:\n%s" % (
            what, "\n".join(self.errors))


class IncomingVM(vmlib.VM):
    """Started with `-incoming unix:<rundir>/migrate.sock`."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.incoming_path = os.path.join(self.rundir, "migrate.sock")

    def qemu_argv(self):
        return super().qemu_argv() + ["-incoming", "unix:" + self.incoming_path]

    def wait_boot(self):
        raise vmlib.VMError("%s waits for a migration, it does not boot" % self.name)

    def wait_running(self, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            st = self.cmd("query-status")
            if st.get("status") == "running":
                return
            assert time.monotonic() < deadline, "%s: run state %r after %.0f s" % (
                self.name, st, timeout)
            self.qmp.poll_events(0.2)

    def attach(self):
        """The guest runs here now: its shell (started on the source, the
        same serial port) answers on this QEMU's socket."""
        self.wait_running()
        self._shell = GuestShell(self.shell_path, timeout=self.shell_timeout,
                                 connect_timeout=30, alive=self.alive)
        try:
            self._shell.wait_ready(timeout=60, check=self.check)
        except TimeoutError as e:
            report = self.hang_report()
            raise TimeoutError("%s: the guest shell does not answer after the migration: "
                               "%s\n%s%s" % (self.name, e, report, self._context(100))) from None
        self._ready = True


def migrate(src, name, timeout=300, before=None, bandwidth=1 << 30):
    """Live-migrate src to a fresh QEMU with the same command line plus
    -incoming.  before(dest) runs on the destination before the migration
    starts.  Returns (dest, query-migrate of the source at completion)."""
    dest = IncomingVM(
        src.kernel, src.initrd, src.append, name=name, mem_mb=src.mem_mb, smp=src.smp,
        machine=src.machine, cpu=src.cpu, balloon=src.balloon_enabled,
        balloon_id=src.balloon_id, balloon_opts=src.balloon_opts,
        balloon_device=src.balloon_device, extra_args=list(src.extra_args),
        qemu_binary=src.qemu_binary, arch=src.arch, fail_patterns=FAIL_PATTERNS,
        shell_timeout=src.shell_timeout)
    try:
        dest.start()
        deadline = time.monotonic() + 30
        while not os.path.exists(dest.incoming_path):
            assert time.monotonic() < deadline, "%s: no %s" % (dest.name, dest.incoming_path)
            dest.check()
            time.sleep(0.05)
        if before:
            before(dest)
        src.cmd("migrate-set-parameters", **{"max-bandwidth": bandwidth})
        src.cmd("migrate", uri="unix:" + dest.incoming_path)
        deadline = time.monotonic() + timeout
        while True:
            st = src.cmd("query-migrate")
            if st.get("status") in ("completed", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, "migration not done in %.0f s: %r" % (
                timeout, st)
            dest.check()
            src.qmp.poll_events(0.2)
        assert st["status"] == "completed", st
        assert src.cmd("query-status")["status"] == "postmigrate"
        dest.attach()
        return dest, st
    except BaseException:
        dest.close()
        raise


LPC_CONFIG = "/sys/bus/pci/devices/0000:00:1f.0/config"    # ICH9 LPC (q35)
LPC_SAVED = "/run/lifecycle-lpc-pm"


class SuspendedGuest:
    def __init__(self, vm, timeout):
        self.vm, self.timeout = vm, timeout
        self.result = None
        self.woken = False
        self._thread = None

    def _run(self):
        try:
            # no check=: the test's thread owns the console scan and QMP
            self.result = self.vm._shell.run("echo mem > /sys/power/state",
                                             timeout=self.timeout)
        except BaseException as e:          # noqa: B902 - handed to wake()
            self.result = e

    def __enter__(self):
        vm = self.vm
        # QEMU's wakeup resets the machine, the ICH9 LPC's PMBASE (0x40) and
        # ACPI_CNTL (0x44) with it, and neither SeaBIOS' S3 resume nor Linux
        # (only the standard header is restored) set them again: a second
        # "echo mem" then writes PM1a_CNT to nowhere and the guest believes
        # it slept.  Restore them as firmware would: the values of the first
        # suspend, kept in the guest (they follow it through a migration).
        vm.sh("c=%s; [ ! -e $c ] || { [ -e %s ] || dd if=$c of=%s bs=1 skip=64 count=8; "
              "dd if=%s of=$c bs=1 seek=64 conv=notrunc; } 2>/dev/null" % (
                  LPC_CONFIG, LPC_SAVED, LPC_SAVED, LPC_SAVED))
        vm.qmp.drain_events("SUSPEND")
        vm.qmp.drain_events("WAKEUP")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                vm.qmp.wait_event("SUSPEND", 0.5, check=vm.check)
                break
            except TimeoutError:
                pass
            if not self._thread.is_alive():
                vm.qmp.poll_events(0.5)
                raise AssertionError("the guest did not stay suspended: echo mem > "
                                     "/sys/power/state -> %r before system_wakeup; QMP "
                                     "events: %r" % (self.result, vm.qmp.drain_events()))
            assert time.monotonic() < deadline, "no QMP SUSPEND in %.0f s" % self.timeout
        st = vm.cmd("query-status")["status"]
        assert st == "suspended", "run state %r after SUSPEND" % st
        return self

    def wake(self):
        vm = self.vm
        self.woken = True
        vm.cmd("system_wakeup")
        vm.qmp.wait_event("WAKEUP", self.timeout, check=vm.check)
        self._thread.join(self.timeout)
        assert not self._thread.is_alive(), \
            "echo mem > /sys/power/state has not returned %.0f s after WAKEUP" % self.timeout
        if isinstance(self.result, BaseException):
            raise self.result
        rc, out = self.result
        assert rc == 0, "echo mem > /sys/power/state -> rc %d: %s" % (rc, out)
        vm.check()

    def __exit__(self, *exc):
        if not self.woken and self.vm.alive():
            try:
                self.vm.cmd("system_wakeup")
            except Exception:
                pass
            if self._thread:
                self._thread.join(self.timeout)
        return False


def suspend_s3(vm, timeout=120):
    return SuspendedGuest(vm, timeout)
