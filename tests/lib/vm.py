# SPDX-License-Identifier: GPL-2.0
"""A QEMU (TCG) guest driven over QMP and a serial shell.

    from lib.vm import VM
    with VM.for_root(root, ko=[my_ko]) as vm:     # boots, waits for the shell
        vm.balloon_to(1 << 30)                    # seconds it took
        rc, out = vm.shell("cat /proc/meminfo")

VM(kernel, initrd, append="", *, name="vm", mem_mb=2048, smp=2,
   machine="q35", cpu="max", accel="tcg", balloon=True,
   balloon_id="balloon0", balloon_opts=None, balloon_device="virtio-balloon-pci",
   disk=None, disk_overlay=True, extra_args=(), qemu_binary="qemu-system-x86_64",
   qemu_root=None, qemu_prefix=(), binds=(), boot_timeout=300, boot_stall=60,
   ready_marker="VMH-READY", fail_patterns=FAIL_PATTERNS, shell=True,
   shell_timeout=120, max_lifetime=3600, arch="x86_64")
    Builds: qemu-system-x86_64 -accel tcg -machine q35 -cpu max -smp 2 -m 2048
      -nodefaults -display none -no-reboot -nic none -kernel -initrd -append
      "console=ttyS0 panic=-1 <BASE_APPEND> <append>", ttyS0 -> <rundir>/console.log,
      ttyS1 -> unix socket (guest shell), -qmp unix socket, and (balloon=True)
      -device <balloon_device>,id=<balloon_id>[,<balloon_opts>].  On q35 a
      PCI balloon sits behind a pcie-root-port so device_del (hot-unplug) works.
    balloon_opts: "k=v,k=v" or {"deflate-on-oom": "on", ...}.
    disk: a raw/qcow2 image attached as virtio-blk (/dev/vda); with
      disk_overlay=True (default) QEMU writes to a qcow2 overlay in the run
      directory, never to `disk` itself.
    extra_args: appended verbatim (e.g. ["-machine", ...] is NOT merged:
      pass machine=/cpu= instead; "-smbios ...", "-plugin ..." go here).
    qemu_root: run QEMU chrooted in that root (e.g. roots.root("sid",
      "vmwhost")) inside a private mount namespace with a throwaway overlay;
      the run directory, the kernel/initrd/disk directories and `binds` are
      bind-mounted at their host paths, so every path stays the same inside.
    qemu_prefix: argv put in front of the QEMU command (e.g. ["taskset", "-c", "1"]).
    arch="aarch64": qemu-system-aarch64 -machine virt -cpu max,pauth-impdef=on
      (machine, cpu and qemu_binary default to those), console ttyAMA0 (the one PL011), the
      shell on a virtconsole (guest hvc0, vmh.shell=hvc0), the balloon behind
      a pcie-root-port on the virt machine's pcie.0 (hot-unplug works), and
      the kernel as an uncompressed arm64 Image (arm64_image()).
    machine="microvm,..." (x86): no PCI; the console on its one serial port,
      the shell on a virtconsole over virtio-mmio (guest hvc0); pass
      balloon_device="virtio-balloon-device" (the initramfs needs
      virtio_mmio and virtio_console: extra_modules, vmh.modules=virtio_mmio;
      tests/test_mmio.py has the machine options TCG needs).
    balloon_device="virtio-balloon-device" on arm64 virt: on the machine's
      virtio-mmio bus (found from the device tree; virtio_mmio as above),
      no root port.
arm64_image(vmlinuz) -> path     Debian's arm64 vmlinuz (gzip, or EFI zboot
                                 with gzip/zstd payload) unpacked to a plain
                                 Image, cached under $BALLOON_WORK/kernels/
    The run directory is $BALLOON_WORK/vm/<name>-<time>-<pid>; .console_path,
    .rundir.  Every wait below is bounded and fails fast (GuestCrash) once a
    fail pattern shows on the console or QEMU exits (VMError).

VM.for_root(root, ko=(), intree_only=False, modules=(), coldplug=True,
            root_disk=None, kver=None, extra_modules=(), append="", **kw)
    kernel and initramfs (lib.initramfs.build) of `root`; modules= ->
    vmh.modules=, coldplug=False -> vmh.coldplug=0; root_disk=IMAGE boots
    that ext4 image as / (vmh.root=/dev/vda, real udev in the root).

Lifecycle: start(); wait_boot() -> seconds to shell; close() (QMP quit, then
SIGKILL of QEMU's own PID); `with VM(...)` does start+wait_boot / close.
.boot_seconds (QEMU start -> shell answering), .guest_uptime_ready.

Guest and device:
    shell(cmd, timeout=None) -> (rc, output)
    sh(cmd, timeout=None) -> output; GuestCommandError if rc != 0
    meminfo() -> {"MemTotal": kB, ...}
    dmesg() -> str
    console_text() -> str; console_tail(n=200) -> str
    check()                        raise if the console shows a failure or
                                   QEMU is gone (called inside every wait)
    qmp                            lib.qmp.QMP; cmd(name, **args) shortcut
    query_balloon() -> actual bytes
    balloon(target_bytes)          set the target (QMP "balloon")
    wait_actual(target, timeout=300) -> seconds until actual == target
    balloon_to(target, timeout=300) -> seconds (balloon + wait_actual)
    guest_stats(interval=2, timeout=120) -> {"stats": {...}, "last-update": t}
                                   enables stats polling and waits for a fresh
                                   report from the guest
    device_del(dev_id, timeout=120) -> DEVICE_DELETED event data
    wait_console(regex, timeout) -> re.Match (fails fast like the rest)

Module-level: vms_between(t0, t1) -> [VM] alive at some point in [t0, t1]
(tests/conftest.py uses it to attach console logs to failure reports).
boot(make) -> VM: make() builds a VM, boot() starts it and waits for its
shell; a kernel that dies while booting, before our /init ran or with no
module linked in, gets one more boot (every test boots through this).
"""
import ctypes
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import signal
import struct
import subprocess
import threading
import time

from . import initramfs, roots
from .qmp import QMP, GuestShell

GiB = 1 << 30
MiB = 1 << 20

# Any of these on the console fails the VM at the next wait.  Kernel WARNs
# count (a WARN in our driver is a bug), and so do soft lockups ("BUG: soft
# lockup": a long loop without cond_resched()).  RCU stall reports do not:
# a starved TCG vCPU on a loaded host can produce them on its own.
FAIL_PATTERNS = (r"Kernel panic", r"\bBUG:", r"kernel BUG at", r"\bOops\b",
                 r"general protection", r"KASAN", r"UBSAN:",
                 r"WARNING: CPU: \d+ PID: \d+", r"mount .* failed",
                 r"VMH-FAIL")

# A TCG vCPU on a loaded host can miss the kernel's early check that the
# timer interrupt works through the IO-APIC, which then panics ("IO-APIC +
# timer doesn't work!").  The check only guards against broken hardware.
# SysRq from boot on, for hang_report() before /init too.
BASE_APPEND = "no_timer_check sysrq_always_enabled"

# A kernel that prints nothing for this long before our /init runs has hung
# (seen under two TCG vCPUs: silent after the HPET or PnP lines; the longest
# quiet stretch of a good boot here is about 6 s): boot() then tries again
# without waiting for boot_timeout.
BOOT_STALL = 60

_REGISTRY = []
_REG_LOCK = threading.Lock()


class VMError(RuntimeError):
    """QEMU failed or exited; the message carries the console tail."""


class GuestCrash(VMError):
    """A fail pattern appeared on the guest console."""


class GuestCommandError(RuntimeError):
    def __init__(self, cmd, rc, output):
        self.cmd, self.rc, self.output = cmd, rc, output
        super().__init__("guest command %r -> rc %d:\n%s" % (cmd, rc, output[-3000:]))


def boot(make, retry=True):
    """Start make()'s VM and wait for its shell.  A guest kernel that dies
    while booting before our /init has run (seen: an int3 Oops from code
    patching under two TCG vCPUs on 7.2, in kernel init), or after it but
    with no module linked in, is not the code under test and gets one more
    boot; so does a kernel that hangs before our /init runs.  A crash with
    modules in (udev may have loaded ours), any other failure or a second
    crash or hang is raised."""
    v = make()
    try:
        v.start()
        v.wait_boot()
        return v
    except TimeoutError as e:
        # The same for a kernel that hung before it ever ran our /init
        # (seen on 7.2 and 6.1 under load: silent after "hpet0: 3
        # comparators" or "pnp: PnP ACPI: found 6 devices" until killed),
        # noticed after boot_stall seconds of silence.
        console = v.console_text()
        v.close()
        if not retry or "VMH-INIT" in console:
            raise
        print("guest %s hung while booting, before /init ran; booting again:\n%s" % (
            v.name, str(e)[:3000]))
    except GuestCrash as e:
        console = v.crash_report()
        v.close()
        # Nothing loads a module before /init runs: udev and modprobe are
        # started from it.  After it, the report's module list decides.
        before_init = "VMH-INIT" not in console
        lists = re.findall(r"Modules linked in:([^\r\n]*)", console)
        no_modules = bool(lists) and not any(m.strip() for m in lists)
        if not retry or not (before_init or no_modules):
            raise
        print("guest %s crashed while booting, %s; booting again:\n%s" % (
            v.name, "before /init ran" if before_init else
            "before any module was loaded", str(e)[:3000]))
    except BaseException:
        v.close()
        raise
    return boot(make, retry=False)


def _unzboot(data):
    """An EFI zboot image ("MZ", "zimg" at 4): its compressed payload."""
    off, size = struct.unpack_from("<II", data, 8)
    comp = data[24:32].split(b"\0")[0].decode()
    payload = data[off:off + size]
    if comp == "gzip":
        return gzip.decompress(payload)
    if comp == "zstd":
        return subprocess.run(["zstd", "-q", "-d", "-c"], input=payload, check=True,
                              stdout=subprocess.PIPE).stdout
    if comp == "xz":
        return lzma.decompress(payload)
    raise VMError("zboot kernel compressed with %r: unsupported" % comp)


def arm64_image(path):
    """An uncompressed arm64 Image of the kernel at `path`, cached by content."""
    with open(path, "rb") as f:
        data = f.read()
    if data[56:60] == b"ARM\x64":
        return path         # already a plain Image (Debian's 7.x packages)
    h = hashlib.sha256(data).hexdigest()[:16]
    out = os.path.join(roots.work_dir("kernels"), "Image-%s" % h)
    if os.path.exists(out):
        return out
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    elif data[:2] == b"MZ" and data[4:8] == b"zimg":
        data = _unzboot(data)
    if data[56:60] != b"ARM\x64":
        raise VMError("%s is not an arm64 Image (no ARM\\x64 magic after unpacking)" % path)
    tmp = "%s.%d.tmp" % (out, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, out)
    return out


def vms_between(t0, t1):
    with _REG_LOCK:
        return [v for v in _REGISTRY
                if v.started_at is not None and v.started_at <= t1 and
                (v.closed_at is None or v.closed_at >= t0)]


def _pdeathsig():
    # QEMU dies with the test process, even if that is killed hard
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def _opts(o):
    if not o:
        return ""
    if isinstance(o, dict):
        o = ",".join("%s=%s" % kv for kv in o.items())
    return "," + o


class VM:
    def __init__(self, kernel, initrd, append="", *, name="vm", mem_mb=2048,
                 smp=2, machine=None, cpu=None, accel="tcg", balloon=True,
                 balloon_id="balloon0", balloon_opts=None,
                 balloon_device="virtio-balloon-pci", disk=None,
                 disk_overlay=True, extra_args=(),
                 qemu_binary=None, qemu_root=None,
                 qemu_prefix=(), binds=(), boot_timeout=300,
                 boot_stall=BOOT_STALL, ready_marker="VMH-READY",
                 fail_patterns=FAIL_PATTERNS,
                 shell=True, shell_timeout=120, max_lifetime=3600,
                 arch="x86_64"):
        self.arch = arch
        if arch == "aarch64":
            machine = machine or "virt"
            # QEMU's own pointer authentication algorithm: far cheaper
            # under TCG than the architected QARMA one
            cpu = cpu or "max,pauth-impdef=on"
            qemu_binary = qemu_binary or "qemu-system-aarch64"
            kernel = arm64_image(kernel)
        else:
            machine = machine or "q35"
            cpu = cpu or "max"
            qemu_binary = qemu_binary or "qemu-system-x86_64"
        self.kernel, self.initrd = kernel, initrd
        self.append = append
        self.name = name
        self.mem_mb, self.smp = mem_mb, smp
        self.machine, self.cpu, self.accel = machine, cpu, accel
        self.balloon_enabled = balloon
        self.balloon_id = balloon_id
        self.balloon_opts = balloon_opts
        self.balloon_device = balloon_device
        self.disk, self.disk_overlay = disk, disk_overlay
        self.extra_args = list(extra_args)
        self.qemu_binary = qemu_binary
        self.qemu_root = qemu_root
        self.qemu_prefix = list(qemu_prefix)
        self.binds = list(binds)
        self.boot_timeout, self.boot_stall = boot_timeout, boot_stall
        self.ready_marker = ready_marker
        self.fail_rx = re.compile("|".join(fail_patterns)) if fail_patterns else None
        self.want_shell = shell
        self.shell_timeout = shell_timeout
        self.max_lifetime = max_lifetime

        stamp = time.strftime("%m%d-%H%M%S")
        self.rundir = os.path.join(roots.work_dir("vm"),
                                   "%s-%s-%d" % (name, stamp, os.getpid()))
        n = 0
        while os.path.exists(self.rundir + ("" if n == 0 else ".%d" % n)):
            n += 1
        self.rundir += "" if n == 0 else ".%d" % n
        os.makedirs(self.rundir)
        self.console_path = os.path.join(self.rundir, "console.log")
        self.qemu_log = os.path.join(self.rundir, "qemu.log")
        self.qmp_path = os.path.join(self.rundir, "qmp.sock")
        self.shell_path = os.path.join(self.rundir, "shell.sock")
        if len(self.qmp_path) > 100:
            raise ValueError("run directory path too long for a unix socket: %s"
                             % self.rundir)
        self._disk_path = None
        self.proc = None
        self.qmp = None
        self._shell = None
        self.started_at = self.closed_at = None
        self.boot_seconds = None
        self.guest_uptime_ready = None
        self._con_off = 0
        self._con_tail = ""
        self._failure = None
        self._ready = False
        self._timer = None
        self.cmdline = None

    # ----------------------------------------------------------------- build

    @classmethod
    def for_root(cls, root, ko=(), intree_only=False, modules=(), coldplug=True,
                 root_disk=None, kver=None, extra_modules=(), append="", **kw):
        k = kver or roots.kver(root)
        initrd = initramfs.build(root, k, ko=ko, intree_only=intree_only,
                                 extra_modules=extra_modules)
        words = []
        if modules:
            words.append("vmh.modules=" + ",".join(modules))
        if not coldplug:
            words.append("vmh.coldplug=0")
        if root_disk:
            words.append("vmh.root=/dev/vda")
            kw["disk"] = root_disk
        if append:
            words.append(append)
        kw.setdefault("name", os.path.basename(root.rstrip("/")).split("-")[0])
        if initramfs.root_arch(root) == "aarch64":
            kw.setdefault("arch", "aarch64")
        return cls(roots.kernel(root, k), initrd, " ".join(words), **kw)

    def qemu_argv(self):
        arm = self.arch == "aarch64"
        if arm:
            append = "console=ttyAMA0 panic=-1 vmh.shell=hvc0 " + self.append
            shell = ["-device", "virtio-serial-pci,id=vmhvs",
                     "-device", "virtconsole,chardev=vmhsh,bus=vmhvs.0"]
        elif self.machine.split(",")[0] == "microvm":
            # one serial port: the console; the shell on a virtconsole
            # over virtio-mmio
            append = ("console=ttyS0 panic=-1 vmh.shell=hvc0 " + BASE_APPEND + " " +
                      self.append)
            shell = ["-device", "virtio-serial-device,id=vmhvs",
                     "-device", "virtconsole,chardev=vmhsh,bus=vmhvs.0"]
        else:
            append = "console=ttyS0 panic=-1 " + BASE_APPEND + " " + self.append
            shell = ["-serial", "chardev:vmhsh"]
        a = [self.qemu_binary, "-accel", self.accel, "-machine", self.machine,
             "-cpu", self.cpu, "-smp", str(self.smp), "-m", str(self.mem_mb),
             "-nodefaults", "-display", "none", "-no-reboot", "-nic", "none",
             "-kernel", self.kernel, "-initrd", self.initrd,
             "-append", append.strip(),
             "-chardev", "file,id=vmhcon,path=" + self.console_path,
             "-serial", "chardev:vmhcon",
             "-chardev", "socket,id=vmhsh,path=%s,server=on,wait=off" % self.shell_path]
        a += shell + ["-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        if self.balloon_enabled:
            dev = "%s,id=%s" % (self.balloon_device, self.balloon_id)
            # a PCI balloon on q35 or virt behind a root port (hot-unplug
            # works); virtio-balloon-device on the machine's virtio-mmio bus
            if "-pci" in self.balloon_device and \
                    self.machine.split(",")[0].startswith(("q35", "virt")):
                a += ["-device", "pcie-root-port,id=vmhrp0,bus=pcie.0,chassis=1"]
                dev += ",bus=vmhrp0"
            a += ["-device", dev + _opts(self.balloon_opts)]
        if self.disk:
            a += ["-drive", "file=%s,if=virtio,format=%s,cache=unsafe" %
                  (self._disk_path, "qcow2" if self._disk_path.endswith(".qcow2")
                   else "raw")]
        return a + self.extra_args

    def _prepare_disk(self):
        if not self.disk:
            return
        base = os.path.abspath(self.disk)
        if not os.path.exists(base):
            raise FileNotFoundError(base)
        if not self.disk_overlay:
            self._disk_path = base
            return
        ov = os.path.join(self.rundir, "disk.qcow2")
        fmt = "qcow2" if base.endswith(".qcow2") else "raw"
        p = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt,
                            "-b", base, ov], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            raise VMError("qemu-img create overlay of %s failed: %s" % (base, p.stdout))
        self._disk_path = ov

    # ------------------------------------------------------------- lifecycle

    def start(self):
        self._prepare_disk()
        argv = self.qemu_argv()
        if self.qemu_root:
            binds = [self.rundir, os.path.dirname(os.path.abspath(self.kernel)),
                     os.path.dirname(os.path.abspath(self.initrd))]
            if self.disk:
                binds.append(os.path.dirname(os.path.abspath(self.disk)))
            binds += self.binds
            argv = roots.chroot_argv(self.qemu_root, argv, binds,
                                     overlay_dir=os.path.join(self.rundir, "qemu-root"))
        argv = self.qemu_prefix + argv
        self.cmdline = argv
        with open(os.path.join(self.rundir, "cmdline.json"), "w") as f:
            json.dump(argv, f, indent=1)
        with _REG_LOCK:
            _REGISTRY.append(self)
        self.started_at = time.monotonic()
        with open(self.qemu_log, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=subprocess.STDOUT,
                                         preexec_fn=_pdeathsig)
        if self.max_lifetime:
            self._timer = threading.Timer(self.max_lifetime, self._lifetime_expired)
            self._timer.daemon = True
            self._timer.start()
        try:
            self.qmp = QMP(self.qmp_path, timeout=60, connect_timeout=60,
                           alive=self.alive)
        except Exception as e:
            raise VMError("%s: no QMP: %s\n%s" % (self.name, e, self._context())) from None
        return self

    def _lifetime_expired(self):
        if self.proc and self.proc.poll() is None:
            self._failure = "killed after max_lifetime=%ss" % self.max_lifetime
            self.proc.kill()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_boot(self):
        try:
            m = self.wait_console(re.escape(self.ready_marker) + r" ([\d.]+)",
                                  self.boot_timeout, what="boot",
                                  quiet_until=("VMH-INIT", self.boot_stall))
        except TimeoutError as e:
            report = self.hang_report()
            raise TimeoutError("%s\n%s%s" % (str(e).split("\n", 1)[0], report,
                                             self._context(100))) from None
        self.guest_uptime_ready = float(m.group(1))
        if self.want_shell:
            self._shell = GuestShell(self.shell_path, timeout=self.shell_timeout,
                                     connect_timeout=30, alive=self.alive)
            self._shell.wait_ready(timeout=60, check=self.check)
        self._ready = True
        self.boot_seconds = time.monotonic() - self.started_at
        return self.boot_seconds

    def __enter__(self):
        try:
            self.start()
            self.wait_boot()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self.closed_at is not None:
            return
        if self._timer:
            self._timer.cancel()
        if self.proc and self.proc.poll() is None:
            try:
                if self.qmp:
                    self.qmp.cmd("quit", timeout=10)
            except Exception:
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()         # our own child, by PID
                self.proc.wait(timeout=30)
        for c in (self._shell, self.qmp):
            if c:
                c.close()
        self._scan_console()
        self.closed_at = time.monotonic()
        # keep console.log, qemu.log and cmdline.json; drop the big parts
        for junk in ("disk.qcow2", "qemu-root"):
            p = os.path.join(self.rundir, junk)
            if os.path.isdir(p):
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.exists(p):
                os.unlink(p)

    # --------------------------------------------------------------- console

    def _scan_console(self):
        try:
            with open(self.console_path, "rb") as f:
                f.seek(self._con_off)
                data = f.read()
        except FileNotFoundError:
            return
        if not data:
            return
        self._con_off += len(data)
        text = self._con_tail + data.decode(errors="replace")
        if self.fail_rx and self._failure is None:
            m = self.fail_rx.search(text)
            if m:
                line_start = text.rfind("\n", 0, m.start()) + 1
                line_end = text.find("\n", m.end())
                self._failure = "console: %r" % text[line_start:line_end if line_end >= 0 else None]
        # a pattern may straddle two reads: keep the last partial line
        self._con_tail = text[text.rfind("\n") + 1:][-400:]

    def console_text(self):
        try:
            with open(self.console_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def crash_report(self, timeout=10):
        """The console once the kernel has finished its crash report (the
        module list, the end of the trace or the panic line), or after
        timeout seconds: a crash is seen at its first line, and closing
        the VM then would cut the report short (CI, stop 15: an Oops
        ended at its RIP line, without "Modules linked in")."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.console_text()
            m = self.fail_rx.search(text) if self.fail_rx else None
            tail = text[m.start():] if m else text
            if (re.search(r"Modules linked in:|---\[ end |Kernel panic", tail)
                    or not self.alive() or time.monotonic() > deadline):
                return text
            time.sleep(0.2)

    def hang_report(self, wait=8):
        """Where a guest that stopped answering is: every vCPU's registers
        (QMP, written to hang-registers.txt in the run directory; their
        instruction pointers and interrupt flags summed up here) and, on a
        PC, the kernel's own account through magic SysRq from the emulated
        keyboard: backtraces of the CPUs and of the blocked tasks, which
        land on the console.  Best effort: a QEMU that no longer answers
        QMP gives an empty report."""
        lines = []
        try:
            regs = self.cmd("human-monitor-command",
                            **{"command-line": "info registers -a"})
        except Exception as e:
            return "--- hang report: QMP gave no registers (%s)\n" % e
        path = os.path.join(self.rundir, "hang-registers.txt")
        with open(path, "w") as f:
            f.write(regs)
        cpus = re.split(r"^CPU#", regs, flags=re.M)[1:]
        for c in cpus:
            ip = re.search(r"\b(?:RIP|PC)=([0-9a-f]+)", c)
            fl = re.search(r"\bRFL=([0-9a-f]+)", c)      # x86: IF is bit 9
            lines.append("CPU#%s ip=%s%s" % (
                c.split("\n", 1)[0].strip(), ip.group(1) if ip else "?",
                " IF=%d" % (int(fl.group(1), 16) >> 9 & 1) if fl else ""))
        if self.arch == "x86_64":
            # l: all CPUs' backtraces (NMI), w: tasks blocked (D state)
            for key in ("l", "w"):
                try:
                    self.cmd("send-key", keys=[{"type": "qcode", "data": k}
                                               for k in ("alt", "sysrq", key)])
                except Exception as e:
                    lines.append("sysrq-%s not sent: %s" % (key, e))
            # until the console has been quiet for a second
            deadline, size, quiet = time.monotonic() + wait, -1, 0
            while time.monotonic() < deadline and quiet < 5:
                n = len(self.console_text())
                quiet = quiet + 1 if n == size else 0
                size = n
                time.sleep(0.2)
        return "--- hang report (registers in %s):\n%s\n" % (path, "\n".join(lines))

    def console_tail(self, n=200):
        return "\n".join(self.console_text().splitlines()[-n:])

    def _context(self, n=60):
        try:
            with open(self.qemu_log, errors="replace") as f:
                qlog = f.read()[-3000:]
        except FileNotFoundError:
            qlog = ""
        return ("--- qemu (rc=%s) %s:\n%s\n--- console %s (last %d lines):\n%s" %
                (self.proc.poll() if self.proc else None, self.qemu_log, qlog,
                 self.console_path, n, self.console_tail(n)))

    def check(self):
        self._scan_console()
        if self._failure:
            raise GuestCrash("%s: %s\n%s" % (self.name, self._failure, self._context()))
        if not self.alive():
            # QEMU may have written its last words just before exiting
            self._scan_console()
            if self._failure:
                raise GuestCrash("%s: %s\n%s" % (self.name, self._failure, self._context()))
            raise VMError("%s: QEMU exited\n%s" % (self.name, self._context()))

    def wait_console(self, pattern, timeout, what=None, quiet_until=None):
        """quiet_until=(marker, seconds): until the marker is printed, a
        console silent for that many seconds is a timeout too."""
        rx = re.compile(pattern)
        now = time.monotonic()
        deadline, size, changed = now + timeout, -1, now
        while True:
            self.check()
            text = self.console_text()
            m = rx.search(text)
            if m:
                return m
            now = time.monotonic()
            if len(text) != size:
                size, changed = len(text), now
            quiet = (quiet_until is not None and quiet_until[0] not in text and
                     now - changed > quiet_until[1])
            if now > deadline or quiet:
                raise TimeoutError("%s: %s (console %r) not seen in %.0f s%s\n%s" % (
                    self.name, what or "pattern", pattern, timeout - (deadline - now),
                    ", the console silent for %.0f s before %s" % (
                        now - changed, quiet_until[0]) if quiet else "",
                    self._context()))
            time.sleep(0.05)

    # ------------------------------------------------------------------ guest

    def shell(self, cmd, timeout=None):
        if self._shell is None:
            raise VMError("%s: no guest shell (not booted, or shell=False)" % self.name)
        try:
            return self._shell.run(cmd, timeout=timeout, check=self.check)
        except (ConnectionError, TimeoutError) as e:
            self.check()
            report = self.hang_report() if isinstance(e, TimeoutError) else ""
            raise type(e)("%s\n%s%s" % (e, report,
                                        self._context(200 if report else 60))) from None

    def sh(self, cmd, timeout=None):
        rc, out = self.shell(cmd, timeout)
        if rc != 0:
            raise GuestCommandError(cmd, rc, out)
        return out

    def meminfo(self):
        out = self.sh("cat /proc/meminfo")
        d = {}
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if v.split():
                d[k.strip()] = int(v.split()[0])
        return d

    @staticmethod
    def wait_folded(read, name, want, timeout=15):
        """Node and zone counters (/proc/vmstat, /proc/meminfo) lag behind by
        the per-CPU deltas until vmstat folds them in, every second: call
        read() until its `name` is `want` or `timeout` seconds have passed.
        Returns the last reading; the caller asserts on it."""
        deadline = time.monotonic() + timeout
        while True:
            d = read()
            if d.get(name) == want or time.monotonic() > deadline:
                return d
            time.sleep(0.5)

    def dmesg(self):
        return self.sh("dmesg")

    # ------------------------------------------------------------------- QMP

    def cmd(self, name, **args):
        self.check()
        return self.qmp.cmd(name, args)

    def query_balloon(self):
        return self.cmd("query-balloon")["actual"]

    def balloon(self, target_bytes):
        self.cmd("balloon", value=int(target_bytes))

    def wait_actual(self, target, timeout=300):
        t0 = time.monotonic()
        deadline = t0 + timeout
        seen = []
        while True:
            actual = self.query_balloon()
            if actual == target:
                return time.monotonic() - t0
            if not seen or seen[-1] != actual:
                seen.append(actual)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    "%s: balloon actual %d != target %d after %.0f s (values "
                    "seen: %s)\n%s" % (self.name, actual, target, timeout,
                                      seen[-10:], self._context()))
            self.qmp.poll_events(0.05)

    def balloon_to(self, target, timeout=300):
        t0 = time.monotonic()
        self.balloon(target)
        self.wait_actual(target, timeout)
        return time.monotonic() - t0

    def _balloon_path(self):
        return "/machine/peripheral/" + self.balloon_id

    def guest_stats(self, interval=2, timeout=120):
        path = self._balloon_path()
        before = self.cmd("qom-get", path=path, property="guest-stats")
        if self.cmd("qom-get", path=path,
                    property="guest-stats-polling-interval") != interval:
            self.cmd("qom-set", path=path,
                     property="guest-stats-polling-interval", value=interval)
        deadline = time.monotonic() + timeout
        while True:
            st = self.cmd("qom-get", path=path, property="guest-stats")
            if st.get("last-update") and st["last-update"] != before.get("last-update"):
                return st
            if time.monotonic() > deadline:
                raise TimeoutError("%s: no fresh guest-stats in %.0f s (last %r)\n%s" %
                                   (self.name, timeout, st, self._context()))
            self.qmp.poll_events(0.2)

    def device_del(self, dev_id, timeout=120):
        self.cmd("device_del", id=dev_id)
        try:
            ev = self.qmp.wait_event(
                "DEVICE_DELETED", timeout, check=self.check,
                match=lambda e: e.get("data", {}).get("device") == dev_id)
        except TimeoutError as e:
            raise TimeoutError("%s: device_del %s: %s\n%s" %
                               (self.name, dev_id, e, self._context())) from None
        return ev["data"]
