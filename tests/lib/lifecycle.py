# SPDX-License-Identifier: GPL-2.0
"""Host lifecycles for a ballooned guest (tests/test_lifecycles.py).

Everything here is seen from the host: QMP, QEMU's trace, QEMU's process.

lifecycle_config(workdir, hints=False) -> dict
        a GuestPool config for one guest that can live through all of them:
        a qcow2 drive with no guest device (if=none: savevm/loadvm need one
        writable snapshot-capable drive, the guest never sees it), a 1 GiB
        qcow2 swap disk for hibernation (virtio-blk, the guest's SWAP_DEV;
        qcow2 too, or savevm refuses), S3 on
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

IncomingVM(*args, incoming_dir=None, **kw)
        a vm.VM started with `-incoming unix:<incoming_dir>/migrate.sock`
        (.incoming_path; incoming_dir defaults to its run directory): it
        waits for the state instead of booting.
        attach() after the migration: waits for the run state "running"
        and connects the guest shell (the one the source served) to this
        QEMU; its console.log gets the guest's console from then on.
trace_on(vm)                 QEMU's trace of the balloon queues on (FrameLedger's)
migrate(vm, name, timeout=300, before=None, bandwidth=1 GiB/s)
        -> (IncomingVM, query-migrate of the source at completion)
        starts the destination with vm's own command line plus -incoming
        (a unix socket in vm's run directory; a chrooted QEMU's, qemu_root=,
        gets the same root, vm's binds and vm's run directory bound in, so
        both QEMUs reach the socket), calls before(dest), migrates
        over QMP (migrate uri=unix:...) and waits (bounded) for
        query-migrate "completed"; the source ends paused ("postmigrate"),
        the caller closes it.  The destination is attached.
hibernate(vm, timeout=300) -> str
        S4 to SWAP_DEV: the guest runs mkswap and swapon on it, writes its
        MAJ:MIN to /sys/power/resume, "shutdown" to /sys/power/disk and
        "disk" to /sys/power/state (then the exit status of that to S4_RC);
        QEMU must exit by itself with status 0 within the timeout, the
        console without a fail pattern.  vm is closed; returns the kernel's
        lines on the image's size
resume(vm, name, timeout=300, before=None) -> ResumedVM
        a fresh QEMU with vm's command line plus vmh.resume=SWAP_DEV
        (tests/guest/init restores the image first thing); before(new) runs
        once its QMP answers, before the guest is back (trace_on, a target);
        then the shell the hibernated guest served answers on the new QEMU
suspend_s3(vm) / SuspendedGuest
        with suspend_s3(vm) as s: the guest writes "mem" to /sys/power/state
        (a thread waits on that command, which returns once the guest is
        back); inside the block QEMU's run state is "suspended" (QMP SUSPEND
        seen; s.asleep() -> still so); s.wake() sends QMP system_wakeup and waits for WAKEUP and for
        the guest's command to return 0 (leaving the block wakes a guest
        not woken yet).  Before each suspend the guest gets back the ICH9
        LPC's power management registers of its first one (QEMU's wakeup
        resets them and no firmware restores them: without this only the
        first S3 of a boot reaches QEMU).
suspend_s2idle(vm, timeout=300) / S2idleGuest
        with suspend_s2idle(vm) as s: the guest writes "freeze" to
        /sys/power/state (a thread waits on that command) with its PS/2
        keyboard as a wakeup source (serio0 power/wakeup); QEMU's run state
        stays "running" (s2idle is the guest's own idle loop), so the block
        is entered once QEMU sees the balloon device reset by the driver's
        freeze (QMP x-query-virtio-status: no DRIVER_OK) and the guest's
        command still under way.  s.asleep() -> the balloon still frozen
        and the command not back.  s.wake(): QMP send-key (a shift key)
        and the command returns 0, the balloon is DRIVER_OK again, the
        guest counts one more successful suspend
        (/sys/power/suspend_stats/success) and logged one more
        "PM: suspend entry (s2idle)" and "PM: suspend exit".  The guest's
        RTC alarm cannot wake s2idle here: rtc_cmos arms the ACPI RTC
        event (not IRQ 8) and QEMU sets RTC_STS only on a wakeup from S3.
        A guest that is not back when the block is left is closed (its
        pool boots a new one).
virtio_status(vm) -> [str]   the balloon device's virtio status bits as QEMU
                             has them (x-query-virtio-status "statuses")
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


SWAP_DEV = "/dev/vda"                # the guest's only virtio disk: the swap disk
S4_RC = "/run/lifecycle-s4-rc"      # exit status of echo disk > /sys/power/state


def _qcow2(workdir, name, size):
    path = os.path.join(workdir, name)
    if os.path.exists(path):
        os.unlink(path)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, size],
                   check=True, stdin=subprocess.DEVNULL)
    return path


def lifecycle_config(workdir, hints=False):
    disk = _qcow2(workdir, "snapshots.qcow2", "64M")
    swap = _qcow2(workdir, "swap.qcow2", "1G")
    cfg = {
        "balloon_opts": None,
        "extra_args": ["-drive", "if=none,id=lcsnap,format=qcow2,file=" + disk,
                       "-drive", "if=none,id=lcswap,format=qcow2,file=" + swap,
                       "-device", "virtio-blk-pci,drive=lcswap",
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
    """Started with `-incoming unix:<incoming_dir>/migrate.sock`."""

    def __init__(self, *args, incoming_dir=None, **kw):
        super().__init__(*args, **kw)
        self.incoming_path = os.path.join(incoming_dir or self.rundir, "migrate.sock")

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
        _attach_shell(self, 60, "after the migration")


def _attach_shell(vm, timeout, what):
    """The shell a guest served on another QEMU answers on vm's socket."""
    vm._shell = GuestShell(vm.shell_path, timeout=vm.shell_timeout,
                           connect_timeout=30, alive=vm.alive)
    try:
        vm._shell.wait_ready(timeout=timeout, check=vm.check)
    except TimeoutError as e:
        report = vm.hang_report()
        raise TimeoutError("%s: the guest shell does not answer %s: %s\n%s%s" % (
            vm.name, what, e, report, vm._context(100))) from None
    vm._ready = True


def _same_vm(cls, src, name, append, binds=(), **kw):
    """A cls with src's command line (and QEMU root), `append` for its own."""
    return cls(
        src.kernel, src.initrd, append, name=name, mem_mb=src.mem_mb, smp=src.smp,
        machine=src.machine, cpu=src.cpu, balloon=src.balloon_enabled,
        balloon_id=src.balloon_id, balloon_opts=src.balloon_opts,
        balloon_device=src.balloon_device, extra_args=list(src.extra_args),
        qemu_binary=src.qemu_binary, qemu_root=src.qemu_root,
        binds=list(src.binds) + list(binds), arch=src.arch, fail_patterns=FAIL_PATTERNS,
        shell_timeout=src.shell_timeout, **kw)


def migrate(src, name, timeout=300, before=None, bandwidth=1 << 30):
    """Live-migrate src to a fresh QEMU with the same command line plus
    -incoming.  before(dest) runs on the destination before the migration
    starts.  Returns (dest, query-migrate of the source at completion)."""
    # in src's run directory, which src's QEMU sees whether chrooted or not
    dest = _same_vm(IncomingVM, src, name, src.append, binds=[src.rundir],
                    incoming_dir=src.rundir)
    if os.path.exists(dest.incoming_path):
        os.unlink(dest.incoming_path)       # an earlier migration's, failed
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


# 6.1 "Need to copy N pages", 7.2 "Allocated N pages for snapshot", both
# "Compressing and saving image data (N pages)"
_IMAGE_LINES = re.compile(r"^.*PM: .*(\d+ pages|Image size).*$", re.M)


def hibernate(vm, timeout=300):
    """S4 to SWAP_DEV, powered off: QEMU exits (-no-reboot).  Returns the
    kernel's lines on the image's size."""
    dev = SWAP_DEV[len("/dev/"):]
    _lpc_pm_back(vm)
    vm.sh("mkswap %s >/dev/null && swapon %s && cat /sys/class/block/%s/dev "
          ">/sys/power/resume && echo shutdown >/sys/power/disk" % (SWAP_DEV, SWAP_DEV, dev))
    result = []

    def run():
        # returns in the resumed guest, on the next QEMU: not here
        try:
            result.append(vm._shell.run("echo disk >/sys/power/state; echo $? >" + S4_RC,
                                        timeout=timeout))
        except BaseException as e:          # noqa: B902 - the QEMU went away
            result.append(e)

    threading.Thread(target=run, daemon=True).start()
    deadline = time.monotonic() + timeout
    while vm.alive():
        vm._scan_console()
        assert not vm._failure and "reboot: System halted" not in vm.console_text(), \
            "%s: %s, QEMU still runs\n%s" % (vm.name, vm._failure or "halted, not powered off",
                                            vm._context(60))
        assert time.monotonic() < deadline, \
            "QEMU still runs %.0f s after echo disk >/sys/power/state (%r)\n%s" % (
                timeout, result, vm._context(60))
        time.sleep(0.2)
    vm._scan_console()
    rc = vm.proc.returncode
    assert not vm._failure, "%s: %s\n%s" % (vm.name, vm._failure, vm._context(60))
    assert rc == 0, "QEMU exited with %d after echo disk\n%s" % (rc, vm._context(60))
    text = vm.console_text()
    assert "reboot: Power down" in text, \
        "QEMU exited, the guest did not power down\n%s" % vm._context(60)
    vm.close()
    return "\n".join(m.group(0).strip() for m in _IMAGE_LINES.finditer(text))


class ResumedVM(vmlib.VM):
    """Boots with vmh.resume=SWAP_DEV: the guest is the one that hibernated."""

    def wait_boot(self):
        self.wait_console(r"VMH-RESUME ", self.boot_timeout, what="the resume step")
        _attach_shell(self, self.boot_timeout, "after the resume")
        self.boot_seconds = time.monotonic() - self.started_at
        return self.boot_seconds


def resume(vm, name, timeout=300, before=None):
    new = _same_vm(ResumedVM, vm, name, (vm.append + " vmh.resume=" + SWAP_DEV).strip())
    new.boot_timeout = timeout
    try:
        new.start()
        if before:
            before(new)
        new.wait_boot()
        return new
    except BaseException:
        new.close()
        raise


LPC_CONFIG = "/sys/bus/pci/devices/0000:00:1f.0/config"    # ICH9 LPC (q35)
LPC_SAVED = "/run/lifecycle-lpc-pm"


def _lpc_pm_back(vm):
    """QEMU's wakeup from S3 resets the machine, the ICH9 LPC's PMBASE
    (0x40) and ACPI_CNTL (0x44) with it, and neither SeaBIOS' S3 resume nor
    Linux (only the standard header is restored) set them again: a second
    "echo mem" then writes PM1a_CNT to nowhere and the guest believes it
    slept, and an ACPI power-off (S5, after hibernation) halts instead.
    Restore them as firmware would: the values first seen here, kept in
    the guest (they follow it through a migration)."""
    vm.sh("c=%s; [ ! -e $c ] || { [ -e %s ] || dd if=$c of=%s bs=1 skip=64 count=8; "
          "dd if=%s of=$c bs=1 seek=64 conv=notrunc; } 2>/dev/null" % (
              LPC_CONFIG, LPC_SAVED, LPC_SAVED, LPC_SAVED))


class _Sleep:
    """The guest's command to sleep, run in a thread: it returns once the
    guest is back."""
    STATE = None            # what the guest writes to /sys/power/state

    def __init__(self, vm, timeout):
        self.vm, self.timeout = vm, timeout
        self.result = None
        self.woken = False
        self._thread = None

    def _run(self):
        try:
            # no check=: the test's thread owns the console scan and QMP
            self.result = self.vm._shell.run("echo %s > /sys/power/state" % self.STATE,
                                             timeout=self.timeout)
        except BaseException as e:          # noqa: B902 - handed to wake()
            self.result = e

    def _start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _returned(self, after):
        """The command returns 0 within the timeout after `after`."""
        self._thread.join(self.timeout)
        assert not self._thread.is_alive(), \
            "echo %s > /sys/power/state has not returned %.0f s after %s" % (
                self.STATE, self.timeout, after)
        if isinstance(self.result, BaseException):
            raise self.result
        rc, out = self.result
        assert rc == 0, "echo %s > /sys/power/state -> rc %d: %s" % (self.STATE, rc, out)
        self.vm.check()


class SuspendedGuest(_Sleep):
    STATE = "mem"

    def __enter__(self):
        vm = self.vm
        _lpc_pm_back(vm)
        vm.qmp.drain_events("SUSPEND")
        vm.qmp.drain_events("WAKEUP")
        self._start()
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

    def asleep(self):
        return self.vm.cmd("query-status")["status"] == "suspended"

    def wake(self):
        vm = self.vm
        self.woken = True
        vm.cmd("system_wakeup")
        vm.qmp.wait_event("WAKEUP", self.timeout, check=vm.check)
        self._returned("WAKEUP")

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


def virtio_status(vm):
    st = vm.cmd("x-query-virtio-status",
                path="/machine/peripheral/%s/virtio-backend" % vm.balloon_id)
    return st["status"]["statuses"]


def _driver_ok(vm):
    return any("DRIVER_OK" in s for s in virtio_status(vm))


S2IDLE_STATS = "/sys/power/suspend_stats/success"
KBD_WAKEUP = "/sys/devices/platform/i8042/serio0/power/wakeup"


class S2idleGuest(_Sleep):
    STATE = "freeze"

    def _successes(self):
        return int(self.vm.sh("cat " + S2IDLE_STATS))

    def _pm_lines(self):
        """(suspend entries to s2idle, suspend exits) the kernel logged."""
        out = self.vm.sh("dmesg | grep -c 'PM: suspend entry (s2idle)'; "
                         "dmesg | grep -c 'PM: suspend exit'; true")
        return tuple(int(w) for w in out.split())

    def __enter__(self):
        vm = self.vm
        assert "freeze" in vm.sh("cat /sys/power/state").split(), \
            "the guest offers no s2idle (freeze) in /sys/power/state"
        assert _driver_ok(vm), "the balloon is not DRIVER_OK before s2idle: %r" % (
            virtio_status(vm),)
        vm.sh("echo enabled > " + KBD_WAKEUP)
        self.success0 = self._successes()
        self.lines0 = self._pm_lines()
        self._start()
        deadline = time.monotonic() + self.timeout
        while _driver_ok(vm):
            if not self._thread.is_alive():
                raise AssertionError(
                    "the guest was back from s2idle before QEMU saw the balloon frozen: "
                    "echo freeze > /sys/power/state -> %r" % (self.result,))
            assert time.monotonic() < deadline, \
                "the balloon still DRIVER_OK %.0f s after echo freeze" % self.timeout
            vm.qmp.poll_events(0.1)
        assert self.asleep(), "echo freeze > /sys/power/state returned %r while the " \
            "balloon was frozen" % (self.result,)
        return self

    def asleep(self):
        return self._thread.is_alive() and not _driver_ok(self.vm)

    def wake(self):
        vm = self.vm
        self.woken = True
        vm.cmd("send-key", keys=[{"type": "qcode", "data": "shift"}])
        self._returned("a key press")
        assert _driver_ok(vm), "the balloon not DRIVER_OK after s2idle: %r" % (
            virtio_status(vm),)
        n = self._successes()
        assert n == self.success0 + 1, \
            "suspend_stats/success %d after s2idle, %d before" % (n, self.success0)
        entries, exits = self._pm_lines()
        assert (entries, exits) == (self.lines0[0] + 1, self.lines0[1] + 1), \
            "the kernel logged %d 'PM: suspend entry (s2idle)' and %d 'PM: suspend exit' " \
            "lines for one s2idle" % (entries - self.lines0[0], exits - self.lines0[1])

    def __exit__(self, *exc):
        if self._thread is None:
            return False
        if not self.woken and self._thread.is_alive() and self.vm.alive():
            try:
                self.vm.cmd("send-key", keys=[{"type": "qcode", "data": "shift"}])
            except Exception:
                pass
        self._thread.join(self.timeout)
        if self._thread.is_alive() and self.vm.alive():
            self.vm.close()
        return False


def suspend_s2idle(vm, timeout=300):
    return S2idleGuest(vm, timeout)
