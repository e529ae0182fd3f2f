# SPDX-License-Identifier: GPL-2.0
"""An emulated VMware host for balloon tests: QEMU 11.1 (sid vmwhost root)
with the tests/vmw-host/vmwbhost.so plugin, and a client for its control
socket.  tests/vmw-host/README.md documents the protocol.

    from lib import vmwhost
    with vmwhost.vmware_vm(roots.root("bookworm"), target=16384) as vm:
        vm.sh("modprobe vmw_balloon")
        vm.host.wait_state(lambda s: s["locked_pages"] == 16384, 120)
        vmwhost.wait_guest(vm, lambda g: g["current"] == 16384, 60)

plugin(defines=()) -> path of the built plugin (tests/vmw-host/build.sh,
    cached in $BALLOON_CACHE/vmwhost); `defines` ("-DX=Y") build variants.
qemu_version() -> the qemu-system-x86 version of the sid vmwhost root.
vmware_vm(guest_root, *, mem_mb=512, smp=1, host=True, vmware=True,
          target=0, caps=None, poison=True, clamp=True, verbose=False,
          plugin_path=None, plugin_args=(), ko=(), intree_only=None,
          modules=(), coldplug=False, kver=None, extra_files=None,
          **vm_kw) -> VM (not started)
    A lib.vm.VM that boots `guest_root`'s kernel with the initramfs of
    lib.initramfs (vmw_vmci + vmw_balloon; `ko` adds ours under updates/,
    intree_only defaults to "no ko given").  QEMU runs chrooted in the sid
    vmwhost root.  vmware=True adds the options that make the guest detect
    VMware (VMWARE_ARGS, machine pc,vmport=on, cpu qemu64,-hypervisor);
    vmware=False is a plain PC (same machine type, no vmport/SMBIOS).
    machine= and cpu= override those choices (e.g. the ESXi-like CPUID
    detection: vmware=False, machine="pc,vmport=on", cpu="qemu64",
    plugin_args=["cpuid=on"]).
    host=True loads the plugin with its control socket at vm.ctl_path;
    after start(), vm.host is a Host on it.  The driver is not loaded
    unless `modules` says so (or coldplug=True lets the DMI alias do it).
    extra_files={guest path: host path} adds executables to the initramfs
    (e.g. {"/bin/vmwb-rogue": rogue()}).
balloon_guest(guest_root, ko, *, name, kver=None) -> booted VM
    The guest the driver tests share (test_vmw, and test_flavours on the rt
    kernel): BALLOON_GUEST_MB, -smp 2, page poisoning, our module `ko`
    under updates/, vmw_vmci loaded, guest programs (vb-poll) in /bin;
    vm.intree is the path of the kernel's own vmw_balloon.ko in the guest.
rogue() -> path of vmwb-rogue (static; raw backdoor calls from the guest)
initrd_plus(initrd, files) -> an initramfs with more files appended
Host(path)                          client of the control socket
    cmd(line) -> [output lines]     raises HostError on "err ..."
    set_target(pages), set_caps(mask), inject_reset(), reset_mid_batch(k=None),
    busy(n), busy_entry(k, direction=None), pin(*pfns), unpin(*pfns), notneeded(*pfns), refuse_next(n, status),
    accept_every(n, status=None), clear_faults(), clear_stats(), start_reply("and"|"host"), clamp(on), poison(on)
    state() -> {key: int or str}    ("0x2e" caps come back as ints)
    locked() -> {pfn: order}        log(n=32) -> [dict]
    wait_state(pred, timeout, what=None, alive=None) -> state dict
guest_vmmemctl(vm) -> {key: value} of /sys/kernel/debug/vmmemctl
    ("current", "target", "used capabilities", "reset", ...; the per-command
    lines "start: N (M failed)" go to d["ops"]["start"] = (N, M), since
    "target" is both a value and a command name)
wait_guest(vm, pred, timeout, what=None) -> vmmemctl dict
settle(vm, pages, slack=0, timeout=240) -> (host state, vmmemctl)
    waits until host locked_pages and guest current are both in
    [pages, pages + slack], then asserts they are equal
assert_clean(vm) -> host state; asserts protocol_errors, poison_violations
    and host_errors are 0 (with the host context in the message)
"""
import functools
import gzip
import hashlib
import os
import re
import socket
import subprocess
import time

from . import roots
from .vm import VM, VMError

VMW_HOST_DIR = os.path.join(roots.REPO, "tests", "vmw-host")
BUILD = os.path.join(VMW_HOST_DIR, "build.sh")

# What makes Linux see VMware without KVM: the CPUID hypervisor bit off,
# QEMU's vmport (backdoor GETVERSION) and a DMI serial starting "VMware-";
# the manufacturer also gives vmw_balloon's DMI modalias.
VMWARE_MACHINE = "pc,vmport=on"
VMWARE_CPU = "qemu64,-hypervisor"
VMWARE_ARGS = ["-smbios",
               "type=1,manufacturer=VMware,, Inc.,product=VMware Virtual Platform,"
               "serial=VMware-56 4d 11 22 33 44 55 66-77 88 99 aa bb cc dd ee"]

CAP_BASIC, CAP_BATCHED, CAP_BATCHED_2M = 0x02, 0x04, 0x08
CAP_SIGNALLED, CAP_64BIT_TARGET = 0x10, 0x20
CAPS_DEFAULT = CAP_BASIC | CAP_BATCHED | CAP_BATCHED_2M | CAP_64BIT_TARGET

STATUS = {"success": 0, "cmd_invalid": 1, "ppn_invalid": 2, "ppn_locked": 3,
          "ppn_unlocked": 4, "ppn_pinned": 5, "ppn_notneeded": 6, "reset": 7,
          "busy": 8}


class HostError(RuntimeError):
    """The control socket answered "err ..." or went away."""


@functools.lru_cache(maxsize=None)
def plugin(defines=()):
    p = subprocess.run([BUILD] + list(defines), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=3600,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise RuntimeError("tests/vmw-host/build.sh %s failed (rc %d):\n%s" %
                           (" ".join(defines), p.returncode, p.stderr[-4000:]))
    return p.stdout.strip().splitlines()[-1]


def rogue():
    """Path of vmwb-rogue (tests/vmw-host/rogue.c), a static guest program
    that makes raw backdoor calls, protocol violations included."""
    return plugin(("--rogue",))


def _cpio_newc(files):
    """A newc cpio archive of {path in archive: (bytes, mode)}."""
    out = bytearray()
    ino = 1

    def member(name, data, mode):
        nonlocal ino
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join("%08x" % v for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        ino += 1
        out.extend(hdr.encode() + nb)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    dirs = set()
    for path in files:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    for d in sorted(dirs):
        member(d, b"", 0o040755)
    for path, (data, mode) in sorted(files.items()):
        member(path, data, 0o100000 | mode)
    member("TRAILER!!!", b"", 0)
    return bytes(out)


def initrd_plus(initrd, files):
    """`initrd` with more files: {path in the guest: host path}, all
    executable.  The kernel unpacks concatenated cpio archives in order, so
    this is the original archive followed by a second one.  Cached next to
    the original, named by content."""
    blobs = {}
    for gpath, hpath in files.items():
        with open(hpath, "rb") as f:
            blobs[gpath.lstrip("/")] = (f.read(), 0o755)
    extra = gzip.compress(_cpio_newc(blobs), compresslevel=1, mtime=0)
    with open(initrd, "rb") as f:
        base = f.read()
    h = hashlib.sha256(base + extra).hexdigest()[:16]
    out = os.path.join(os.path.dirname(initrd), "plus-%s.cpio.gz" % h)
    if not os.path.exists(out):
        tmp = out + ".%d.tmp" % os.getpid()
        with open(tmp, "wb") as f:
            f.write(base + extra)
        os.rename(tmp, out)
    return out


def host_root():
    return roots.root("sid", "vmwhost")


@functools.lru_cache(maxsize=None)
def qemu_version():
    p = roots.chroot_run(host_root(), ["dpkg-query", "-W", "-f=${Version}",
                                       "qemu-system-x86"])
    return p.stdout.strip()


BALLOON_GUEST_MB = 512
GUEST_PROGRAMS = ("vb-poll",)


def balloon_guest(guest_root, ko, *, name, kver=None):
    from . import virtio_util
    from . import vm as vmlib
    files = {"/bin/" + p: virtio_util.guest_program(p, guest_root) for p in GUEST_PROGRAMS}
    v = vmlib.boot(lambda: vmware_vm(guest_root, kver=kver, ko=[ko], mem_mb=BALLOON_GUEST_MB,
                                     smp=2, append="page_poison=1", boot_timeout=300,
                                     name=name, extra_files=files))
    v.sh("modprobe vmw_vmci")
    v.intree = v.sh("find /lib/modules/*/kernel -name 'vmw_balloon.ko*'").strip()
    return v


def _num(v):
    try:
        return int(v, 0)
    except ValueError:
        return v


class Host:
    def __init__(self, path, timeout=30, connect_timeout=60, alive=None):
        self.path = path
        self.timeout = timeout
        self.sock = None
        self._buf = b""
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(timeout)
                s.connect(path)
                self.sock = s
                return
            except OSError as e:
                s.close()
                if alive is not None and not alive():
                    raise HostError("QEMU exited before %s appeared" % path) from None
                if time.monotonic() > deadline:
                    raise HostError("cannot connect to %s: %s" % (path, e)) from None
                time.sleep(0.05)

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def _line(self):
        while b"\n" not in self._buf:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise HostError("no answer on %s in %ss" % (self.path, self.timeout)) from None
            if not data:
                raise HostError("%s closed the connection" % self.path)
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def cmd(self, line):
        if self.sock is None:
            raise HostError("not connected")
        if "\n" in line:
            raise ValueError("one command per line: %r" % line)
        self.sock.sendall(line.encode() + b"\n")
        out = []
        while True:
            ln = self._line()
            if ln == "ok":
                return out
            if ln.startswith("err "):
                raise HostError("%s: %s" % (line, ln[4:]))
            out.append(ln)

    # -- commands
    def set_target(self, pages):
        self.cmd("target %d" % pages)

    def set_caps(self, mask):
        self.cmd("caps 0x%x" % mask)

    def inject_reset(self):
        self.cmd("reset")

    def reset_mid_batch(self, k=None):
        self.cmd("reset-mid-batch" + ("" if k is None else " %d" % k))

    def busy(self, n):
        self.cmd("busy %d" % n)

    def busy_entry(self, k, direction=None):
        """The k-th lock/unlock entry from now (single command or batch
        entry; only "lock" or "unlock" ones if direction says so) answers
        BUSY; state busy_entry_left counts down to 0."""
        self.cmd("busy-entry %d%s" % (k, " " + direction if direction else ""))

    def _pfns(self, verb, pfns):
        pfns = list(pfns)
        for i in range(0, len(pfns), 256):
            self.cmd(verb + "".join(" 0x%x" % p for p in pfns[i:i + 256]))

    def pin(self, *pfns):
        self._pfns("pin", pfns)

    def unpin(self, *pfns):
        self._pfns("unpin", pfns)

    def notneeded(self, *pfns):
        self._pfns("notneeded", pfns)

    def refuse_next(self, n, status):
        self.cmd("refuse-next %d %s" % (n, status))

    def accept_every(self, n, status=None):
        """Refuse every lock entry but each n-th (0: off), with status
        (default ppn_notneeded)."""
        self.cmd("accept-every %d%s" % (n, " " + status if status else ""))

    def clear_faults(self):
        self.cmd("clear-faults")

    def clear_stats(self):
        self.cmd("clear-stats")

    def start_reply(self, mode):
        """START answers "and" (requested AND host caps) or "host"."""
        self.cmd("start-reply " + mode)

    def clamp(self, on=True):
        self.cmd("clamp " + ("on" if on else "off"))

    def poison(self, on=True):
        self.cmd("poison " + ("on" if on else "off"))

    def state(self):
        d = {}
        for ln in self.cmd("state"):
            k, _, v = ln.partition(" ")
            d[k] = v if k == "last_error" else _num(v)
        return d

    def locked(self):
        return {int(p, 16): int(o) for p, o in
                (ln.split() for ln in self.cmd("locked"))}

    def log(self, n=32):
        out = []
        for ln in self.cmd("log %d" % n):
            seq, usec, op, a1, a2, st, res, errs = ln.split()
            out.append({"seq": int(seq), "usec": int(usec), "op": op,
                        "a1": int(a1, 16),
                        "a2": int(a2, 16), "status": int(st, 16),
                        "result": int(res), "errors": int(errs)})
        return out

    def wait_state(self, pred, timeout, what=None, alive=None):
        deadline = time.monotonic() + timeout
        while True:
            st = self.state()
            if pred(st):
                return st
            if alive is not None:
                alive()
            if time.monotonic() > deadline:
                raise TimeoutError("host state: %s not reached in %.0f s; last state:\n%s" %
                                   (what or "condition", timeout,
                                    "\n".join("%s %s" % kv for kv in st.items())))
            time.sleep(0.05)


class VMwareVM(VM):
    """lib.vm.VM plus the plugin's control socket as .host."""

    def __init__(self, *a, plugin_args=None, **kw):
        super().__init__(*a, **kw)
        self.host = None
        self.ctl_path = None
        if plugin_args is not None:
            self.ctl_path = os.path.join(self.rundir, "vmwhost.sock")
            so = plugin_args.pop(0)
            args = ["ctl=" + self.ctl_path, "ram_mb=%d" % self.mem_mb] + plugin_args
            self.extra_args += ["-plugin", ",".join([so] + args)]
            self.binds.append(os.path.dirname(so))

    def start(self):
        super().start()
        if self.ctl_path:
            try:
                self.host = Host(self.ctl_path, alive=self.alive)
            except HostError as e:
                raise VMError("%s: %s\n%s" % (self.name, e, self._context())) from None
        return self

    def close(self):
        if self.host:
            try:
                st = self.host.state()
                with open(os.path.join(self.rundir, "host-state.txt"), "w") as f:
                    f.write("".join("%s %s\n" % kv for kv in st.items()))
            except Exception:
                pass
            self.host.close()
        super().close()

    def host_context(self):
        """Host state and command log, for failure messages."""
        try:
            st = self.host.state()
            lg = self.host.cmd("log 20")
        except Exception as e:
            return "(no host state: %s)" % e
        return "--- host state:\n%s\n--- last host commands:\n%s" % (
            "\n".join("%s %s" % kv for kv in st.items()), "\n".join(lg))


def vmware_vm(guest_root, *, mem_mb=512, smp=1, host=True, vmware=True,
              target=0, caps=None, poison=True, clamp=True, verbose=False,
              plugin_path=None, plugin_args=(), ko=(), intree_only=None,
              modules=(), coldplug=False, kver=None, extra_files=None, **vm_kw):
    from . import initramfs
    k = kver or roots.kver(guest_root)
    if intree_only is None:
        intree_only = not ko
    initrd = initramfs.build(guest_root, k, ko=ko, intree_only=intree_only)
    if extra_files:
        initrd = initrd_plus(initrd, extra_files)
    words = []
    if modules:
        words.append("vmh.modules=" + ",".join(modules))
    if not coldplug:
        words.append("vmh.coldplug=0")
    if vm_kw.get("append"):
        words.append(vm_kw.pop("append"))
    pargs = None
    if host:
        pargs = [plugin_path or plugin(), "target=%d" % target,
                 "poison=" + ("on" if poison else "off"),
                 "clamp=" + ("on" if clamp else "off")]
        if caps is not None:
            pargs.append("caps=0x%x" % caps)
        if verbose:
            pargs.append("verbose=on")
        pargs += list(plugin_args)
    extra = list(vm_kw.pop("extra_args", ()))
    if vmware:
        extra = VMWARE_ARGS + extra
    vm_kw.setdefault("name", "vmw-" + os.path.basename(guest_root.rstrip("/")).split("-")[0])
    vm_kw.setdefault("machine", VMWARE_MACHINE if vmware else "pc")
    vm_kw.setdefault("cpu", VMWARE_CPU if vmware else "qemu64")
    return VMwareVM(roots.kernel(guest_root, k), initrd, " ".join(words),
                    mem_mb=mem_mb, smp=smp, balloon=False,
                    qemu_root=host_root(), extra_args=extra,
                    plugin_args=pargs, **vm_kw)


_KV = re.compile(r"^([^:]+):\s*(.*)$")
_COUNT = re.compile(r"^(\d+) \((\d+) failed\)$")


def guest_vmmemctl(vm):
    """The in-tree (and our) driver's debugfs file, parsed."""
    out = vm.sh("cat /sys/kernel/debug/vmmemctl")
    d = {"ops": {}}
    for ln in out.splitlines():
        m = _KV.match(ln.strip())
        if not m:
            continue
        k, v = m.group(1).strip(), m.group(2).strip()
        c = _COUNT.match(v)
        if c:
            d["ops"][k] = (int(c.group(1)), int(c.group(2)))
        elif k not in d:
            d[k] = _num(v.split()[0]) if v else v
    return d


def wait_guest(vm, pred, timeout, what=None):
    deadline = time.monotonic() + timeout
    while True:
        g = guest_vmmemctl(vm)
        if pred(g):
            return g
        if time.monotonic() > deadline:
            raise TimeoutError("guest vmmemctl: %s not reached in %.0f s; last:\n%s\n%s" %
                               (what or "condition", timeout,
                                "\n".join("%s: %s" % kv for kv in g.items()),
                                vm.host_context() if getattr(vm, "host", None) else ""))
        time.sleep(0.2)


def settle(vm, pages, slack=0, timeout=240):
    """Wait until host and guest agree on a balloon of pages (+ slack)."""
    def near(n):
        return pages <= n <= pages + slack
    vm.host.wait_state(lambda s: near(s["locked_pages"]), timeout,
                       "host locked_pages ~ %d" % pages, alive=vm.check)
    g = wait_guest(vm, lambda g: near(g["current"]), timeout,
                   "guest current ~ %d" % pages)
    st = vm.host.state()
    assert st["locked_pages"] == g["current"], vm.host_context()
    return st, g


def assert_clean(vm):
    st = vm.host.state()
    for k in ("protocol_errors", "poison_violations", "host_errors"):
        assert st[k] == 0, "%s = %d: %s\n%s" % (k, st[k], st["last_error"],
                                                 vm.host_context())
    return st
