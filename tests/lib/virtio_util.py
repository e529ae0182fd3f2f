# SPDX-License-Identifier: GPL-2.0
"""Helpers for the virtio_balloon VM tests (tests/test_virtio.py).

version() -> str                 VERSION from the top-level Makefile (lib.pkg's)
kconfig(root, kver) -> {name: value}
kernel_has_balloon_node_stat(root, kver) -> bool
                                 NR_BALLOON_PAGES in the kernel's headers
                                 the kernel's .config (/boot/config-<kver>)
our_stats_tags(root, kver) -> int
                                 how many ours sends: all 16 the virtio spec
                                 defines on every kernel (with vm event
                                 counters and hugetlb, as Debian's have)
guest_program(name, root=None) -> path
                                 tests/guest/<name>.c built static on the host
                                 (cached by content), for an initramfs; for an
                                 arm64 root, built in that root (emulated)
Features                         virtio_balloon feature bit numbers

GuestPool(suite, configs, make_args=())
                                 our module built with make_args (then the
                                 whole src/, to share test_arm64's build);
                                 suite may be an arm64 id (lib.roots.ARM64):
                                 then the VM is aarch64, with that flavour's
                                 kernel.  At most one VM of a suite at a time (the box
                                 has two cores): .get(name) returns a
                                 BalloonGuest for configs[name], booting it
                                 (and closing the other one) when needed, and
                                 rebooting one that died or lost its device.
BalloonGuest                     a booted VM plus what it looked like at boot
    .vm, .ram, .memtotal0, .free0 (kB, see free_kb()), .kver, .suite
    .page_kb                     the guest's page size in KiB (4; 16 on arm64-16k)
    .free_kb() -> int            free pages in kB: the buddy allocator's plus
                                 those parked on per-cpu lists (MemFree leaves
                                 those out, and after a deflate 6.12+ keeps
                                 100 MiB there for a while)
    .vmstat() -> {name: int}     /proc/vmstat
    .debugfs() -> {key: str}     our driver's debugfs file ({} when absent)
    .features() -> int           negotiated feature bits of the balloon device
    .driver_version() -> str|None
    .load_ours() / .load_intree()
    .qemu_rss() -> bytes         resident memory of the QEMU process
    .to_full(timeout)            balloon back to all RAM
    .assert_nothing_leaked()     actual == RAM, MemTotal as at boot, free
                                 memory back, balloon_inflate == balloon_deflate,
                                 nr_balloon_pages 0 where the kernel has it
    .wait_node_stat(name, want, what)   a /proc/vmstat node counter reaches want
"""
import hashlib
import os
import re
import subprocess
import time

from . import build, initramfs, pkg, roots
from . import vm as vmlib

GiB = vmlib.GiB
MiB = vmlib.MiB
# Free memory may legitimately be a little lower than at boot (slab, page
# tables, the shell's own allocations); anything a leak would cost is far
# more than this.
FREE_SLACK_KB = 48 * 1024


class Features:
    MUST_TELL_HOST = 0
    STATS_VQ = 1
    DEFLATE_ON_OOM = 2
    FREE_PAGE_HINT = 3
    PAGE_POISON = 4
    REPORTING = 5


def version():
    return pkg.VERSION


def kconfig(root, kver):
    out = {}
    with open(os.path.join(root, "boot", "config-" + kver)) as f:
        for line in f:
            k, sep, v = line.strip().partition("=")
            if sep and k.startswith("CONFIG_"):
                out[k] = v
    return out


def our_stats_tags(root, kver):
    cfg = kconfig(root, kver)
    n = 4
    if cfg.get("CONFIG_VM_EVENT_COUNTERS") == "y":
        n += 4 + 6
        if cfg.get("CONFIG_HUGETLB_PAGE") == "y":
            n += 2
    return n


def kernel_has_balloon_node_stat(root, kver):
    """Whether the kernel counts balloon pages per node (nr_balloon_pages
    in /proc/vmstat, the Balloon: line of meminfo): its headers say, not
    its version."""
    m = re.match(r"\d+\.\d+\.\d+(?:-\d+)?(?:\+deb\d+)?", kver)
    src = os.path.join(root, "usr", "src")
    for d in os.listdir(src):
        if d.startswith("linux-headers-" + m.group(0)) and d.endswith(("-common", "-common-rt")):
            with open(os.path.join(src, d, "include", "linux", "mmzone.h")) as f:
                return "NR_BALLOON_PAGES" in f.read()
    raise FileNotFoundError("no common headers of %s in %s" % (kver, src))


def guest_program(name, root=None, srcdir=None):
    """A static build of <srcdir, default tests/guest>/<name>.c for the
    root's architecture (the host's gcc, or the arm64 root's own), cached
    by source."""
    src = os.path.join(srcdir or os.path.join(roots.REPO, "tests", "guest"), name + ".c")
    with open(src, "rb") as f:
        h = hashlib.sha256(f.read()).hexdigest()[:16]
    arm = root is not None and initramfs.root_arch(root) == "aarch64"
    out = os.path.join(roots.work_dir("guest-bin"),
                       "%s-%s%s" % (name, h, "-aarch64" if arm else ""))
    if not os.path.exists(out):
        tmp = "%s.%d.tmp" % (out, os.getpid())
        cmd = ["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", tmp, src]
        if arm:
            # the root's own gcc and static libc, through qemu-user
            d = os.path.dirname(out)
            roots.chroot_run(root, cmd, binds=(d, os.path.dirname(src)), ephemeral=True,
                             timeout=900)
        else:
            subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
        os.rename(tmp, out)
    return out


class BalloonGuest:
    def __init__(self, suite, name, vm, kver, intree_path, root=None):
        self.suite, self.name, self.vm, self.kver = suite, name, vm, kver
        self.intree_path = intree_path
        self.ram = vm.mem_mb * MiB
        self.device_gone = False
        # the test that failed with this VM, if one did
        self.failed_by = None
        self.memtotal0 = vm.meminfo()["MemTotal"]
        self.page_kb = int(vm.sh("awk '/^KernelPageSize:/ { print $2; exit }' "
                                 "/proc/self/smaps"))
        self.free0 = self.free_kb()
        self.node_stat = kernel_has_balloon_node_stat(root or roots.root(suite), kver)

    # guest views
    def free_2m_blocks(self, min_order=0):
        """Free memory in whole 2 MiB blocks, from /proc/buddyinfo (2 MiB
        is order 9 with 4 KiB pages, order 7 with arm64's 16 KiB ones),
        counting free chunks of at least `min_order` only."""
        base = 9 - ((self.page_kb // 4).bit_length() - 1)
        order = max(base, min_order)
        n = 0
        for line in self.vm.sh("cat /proc/buddyinfo").splitlines():
            counts = [int(c) for c in line.split()[4:]]
            n += sum(c << (o - base) for o, c in enumerate(counts) if o >= order)
        return n

    def pageblock_order(self):
        return int(re.search(r"Page block order:\s*(\d+)",
                             self.vm.sh("head -n 2 /proc/pagetypeinfo")).group(1))

    def vmstat(self):
        out = {}
        for line in self.vm.sh("cat /proc/vmstat").splitlines():
            k, _, v = line.partition(" ")
            if v.strip().lstrip("-").isdigit():
                out[k] = int(v)
        return out

    def free_kb(self):
        out = self.vm.sh("grep -w nr_free_pages /proc/vmstat; "
                         "awk '$1 == \"count:\" { s += $2 } END { print s + 0 }' /proc/zoneinfo")
        buddy, pcp = (int(w) for w in out.split()[1:3])
        return (buddy + pcp) * self.page_kb

    def debugfs(self):
        rc, out = self.vm.shell("cat /sys/kernel/debug/virtio_balloon-virtio* 2>/dev/null")
        d = {}
        for line in out.splitlines():
            k, sep, v = line.partition(":")
            if sep:
                d[k.strip()] = v.strip()
        return d

    def dbg_int(self, key):
        v = self.debugfs().get(key)
        assert v is not None, "debugfs of our driver has no %r" % key
        return int(v, 0)

    def features(self):
        out = self.vm.sh(
            "for d in /sys/bus/virtio/devices/*; do "
            "[ \"$(cat $d/device)\" = 0x0005 ] && cat $d/features; done")
        bits = out.strip().splitlines()[0]
        return sum(1 << i for i, c in enumerate(bits) if c == "1")

    def driver_version(self):
        rc, out = self.vm.shell("cat /sys/module/virtio_balloon/version")
        return out.strip() if rc == 0 else None

    def bound(self):
        rc, _ = self.vm.shell("ls /sys/bus/virtio/drivers/virtio_balloon/virtio* >/dev/null")
        return rc == 0

    def load_ours(self):
        self.vm.sh("rmmod virtio_balloon 2>/dev/null; modprobe virtio_balloon")

    def load_intree(self):
        self.vm.sh("rmmod virtio_balloon 2>/dev/null; insmod %s" % self.intree_path)

    def qemu_rss(self):
        with open("/proc/%d/status" % self.vm.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS for QEMU pid %d" % self.vm.proc.pid)

    def to_full(self, timeout=300):
        return self.vm.balloon_to(self.ram, timeout)

    def assert_nothing_leaked(self, what):
        vm = self.vm
        actual = vm.query_balloon()
        assert actual == self.ram, "%s: QMP actual %d, expected all RAM %d" % (
            what, actual, self.ram)
        mi = vm.meminfo()
        assert mi["MemTotal"] == self.memtotal0, \
            "%s: MemTotal %d kB, %d kB at boot" % (what, mi["MemTotal"], self.memtotal0)
        self.assert_free_back(what)
        st = self.vmstat()
        assert st.get("balloon_inflate") == st.get("balloon_deflate"), \
            "%s: vmstat balloon_inflate %s != balloon_deflate %s" % (
                what, st.get("balloon_inflate"), st.get("balloon_deflate"))
        if self.node_stat:
            assert "nr_balloon_pages" in st, "the kernel's headers count balloon pages " \
                "per node, /proc/vmstat does not"
        if "nr_balloon_pages" in st:
            self.wait_node_stat("nr_balloon_pages", 0, what)
        dbg = self.debugfs()
        if dbg:
            assert dbg["balloon_frames"] == "0", "%s: debugfs %r" % (what, dbg)


    def wait_node_stat(self, name, want, what, timeout=15):
        """A /proc/vmstat node counter reaches want (VM.wait_folded)."""
        got = self.vm.wait_folded(self.vmstat, name, want, timeout).get(name)
        assert got == want, "%s: %s is %s, expected %s" % (what, name, got, want)

    def assert_free_back(self, what, timeout=30):
        """Free memory is back to what it was at boot; pages on their way
        back (being reported to the host) get `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            free = self.free_kb()
            if free >= self.free0 - FREE_SLACK_KB:
                return
            assert time.monotonic() < deadline, \
                "%s: %d kB free (buddy + per-cpu lists), %d kB at boot: pages not given back" % (
                    what, free, self.free0)
            time.sleep(0.5)


class GuestPool:
    """At most one VM per pool; configs: name -> dict(balloon_opts=...,
    extra_args=..., append=..., extra_modules=[in-tree modules for the
    initramfs])."""

    def __init__(self, suite, configs, make_args=()):
        self.suite = suite
        self.configs = configs
        self.root = roots.root(suite)
        self.kver = roots.suite_kver(suite)
        self.arch = roots.arch(suite)
        self.ko = build.modules(self.root, self.kver, make_args=make_args,
                                only=None if make_args else ("virtio_balloon",))["virtio_balloon"]
        self.cur = None

    def _intree_path(self):
        rels = [r for r in initramfs.resolve_modules(self.root, self.kver, ["virtio_balloon"])
                if r.startswith("kernel/")]
        assert rels, "no in-tree virtio_balloon module in %s" % self.root
        rel = rels[0]
        for s in (".xz", ".zst", ".gz"):
            if rel.endswith(s):
                rel = rel[:-len(s)]
        return "/lib/modules/%s/%s" % (self.kver, rel)

    def get(self, name):
        c = self.cur
        if c is not None and c.name == name and c.vm.alive() and not c.device_gone:
            return c
        self.close()
        cfg = self.configs[name]
        initrd = initramfs.build(self.root, self.kver, ko=[self.ko],
                                 extra_modules=cfg.get("extra_modules", ()))
        if cfg.get("programs"):
            from .vmwhost import initrd_plus
            initrd = initrd_plus(initrd, {"/bin/" + p: guest_program(p, self.root)
                                          for p in cfg["programs"]})
        qemu_root = cfg.get("qemu_root")
        v = vmlib.boot(lambda: vmlib.VM(
            roots.kernel(self.root, self.kver), initrd, cfg.get("append", ""),
            name="virtio-%s-%s" % (self.suite, name),
            balloon_opts=cfg.get("balloon_opts"),
            extra_args=cfg.get("extra_args", ()),
            qemu_root=qemu_root() if qemu_root else None, arch=self.arch))
        self.cur = BalloonGuest(self.suite, name, v, self.kver, self._intree_path(),
                                root=self.root)
        return self.cur

    def close(self):
        if self.cur is not None:
            self.cur.vm.close()
            self.cur = None
