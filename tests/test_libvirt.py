# SPDX-License-Identifier: GPL-2.0
"""Our virtio_balloon driven by libvirt, as users drive it (bookworm's
libvirt 9.0 with QEMU 7.2, sid's 12.8 with QEMU 11.1).

libvirtd runs from the suite's "libvirt" root (scripts/mkroot.sh SUITE
libvirt: that suite's libvirt and QEMU), chrooted in private mount and PID
namespaces (lib/libvirt.py), never installed on this host.  One transient
TCG domain per suite, shared by the tests: direct kernel boot of the
suite's kernel with our initramfs and our module, 2 GiB backed by 2 MiB
host huge pages (<memoryBacking><hugepages/>, hugetlbfs mounted in the
daemon's namespace, the host pool reserved by lib.hugepages under its
host-wide lock), <memballoon model='virtio'><stats period='2'/>.
Everything is asserted from the host's side: virsh's output and the host's
HugePages_Free.

init_on_free=1 on the guest's command line: a deflate's pages are zeroed
as the guest frees them, so the host faults its huge pages back in at once
and HugePages_Free shows the memory taken back (see test_hugepages.py).

sid's libvirt also runs an aarch64 TCG domain (virt, the sid-arm64
kernel, sid's root has qemu-system-arm): the setmem test only; seen:
booted in 12 s, setmem 1 GiB in 1.1 s returns 511 host huge pages.

Seen here (both suites): setmem 1 GiB in 1.2 s returns 511 host huge
pages of 512, setmem 2 GiB takes them all back; dommemstat shows all 13
statistics both libvirts map, last_update 0 to 2 s old; a guest dd
holding 512 MiB lowers unused and usable by 481 to 515 MiB (six runs).
"""
import os
import re
import time

import pytest

from lib import build, hugepages, initramfs, libvirt, roots
from lib import vm as vmlib
from lib.virtio_util import version

# not in make check-quick: its own root and daemon per suite
SUITES = [s for s in roots.suites() if s in ("bookworm", "sid")]
# an aarch64 TCG domain (virt, the sid-arm64 kernel) under sid's libvirt
# with its qemu-system-aarch64: setmem only
ARM = ["sid-arm64"] if "sid" in SUITES else []

GiB, MiB = vmlib.GiB, vmlib.MiB
GUEST_MB = 2048
PERIOD = 2              # <stats period='2'/>
STEP = 300              # seconds allowed for one balloon step under TCG
SLACK_PAGES = 8
WANT_PAGES = int(0.95 * GiB) // hugepages.PAGE     # >= 95 % of 1 GiB back to the host
HOLD_MB = 512           # what the guest program holds

# QEMU's guest-stats names -> what `virsh dommemstat` calls them (libvirt's
# VIR_DOMAIN_MEMORY_STAT_* fields, qemuMonitorJSONGetMemoryStats).  Which
# of them a libvirt maps is read from its QEMU driver (the "stat-..."
# strings it asks QEMU for); every one of those shows, as our driver sends
# every statistic the virtio spec defines.  libvirt adds actual (the
# balloon's size), rss (QEMU's) and last_update itself.
VIRSH_NAMES = {"stat-swap-in": "swap_in", "stat-swap-out": "swap_out",
               "stat-major-faults": "major_fault", "stat-minor-faults": "minor_fault",
               "stat-free-memory": "unused", "stat-total-memory": "available",
               "stat-available-memory": "usable", "stat-disk-caches": "disk_caches",
               "stat-htlb-pgalloc": "hugetlb_pgalloc", "stat-htlb-pgfail": "hugetlb_pgfail"}
ALWAYS = ("actual", "rss", "last_update")


def mapped_stats(lvroot):
    """The QEMU statistics this libvirt's QEMU driver maps."""
    for dirpath, _, files in os.walk(os.path.join(lvroot, "usr", "lib")):
        if "libvirt_driver_qemu.so" in files:
            with open(os.path.join(dirpath, "libvirt_driver_qemu.so"), "rb") as f:
                found = re.findall(rb"(?<=\0)stat-[a-z-]+(?=\0)", f.read())
            return sorted({n.decode() for n in found})
    raise FileNotFoundError("no libvirt_driver_qemu.so in %s" % lvroot)


@pytest.fixture(scope="module")
def lv(suite):
    root = roots.root(suite)
    arch = roots.arch(suite)
    lvroot = roots.root(roots.ARM64[suite][0] if suite in roots.ARM64 else suite, "libvirt")
    kver = roots.suite_kver(suite)
    ko = build.modules(root, kver, only=("virtio_balloon",))["virtio_balloon"]
    initrd = initramfs.build(root, kver, ko=[ko])
    kernel = roots.kernel(root, kver)
    # on arm64 the domain boots the Image lib.vm unpacks (maybe elsewhere)
    image = vmlib.arm64_image(kernel) if arch == "aarch64" else kernel
    with hugepages.reserve(hugepages.pages_for(GUEST_MB * MiB) + SLACK_PAGES) as hp:
        d = libvirt.Daemon(lvroot, hugepages=True,
                           binds=(os.path.dirname(initrd), os.path.dirname(kernel),
                                  os.path.dirname(image)))
        with d:
            free0 = hp.free()
            v = vmlib.boot(lambda: d.domain(kernel, initrd, "init_on_free=1",
                                            name="balloon-%s" % suite, mem_mb=GUEST_MB,
                                            hugepages=True, stats_period=PERIOD,
                                            arch=arch))
            print("libvirt %s, %s; domain %s booted in %.0f s; HugePages_Free %d -> %d" % (
                ".".join(map(str, d.version())), d.qemu_version(), v.dom,
                v.boot_seconds, free0, hp.free()))
            try:
                # our module is the one bound to libvirt's balloon, in a
                # guest of the arch asked for
                assert v.sh("uname -m").strip() == arch
                assert v.sh("cat /sys/module/virtio_balloon/version").strip() == version()
                v.sh("ls -d /sys/bus/virtio/drivers/virtio_balloon/virtio*")
                yield d, v, hp, lvroot
            finally:
                v.close()           # QEMU gone before the pool shrinks (d, hp exits)


def _kib(d, dom):
    return d.dominfo(dom)["Used memory"]


def _wait(what, fn, ok, timeout, every=0.5):
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        v = fn()
        if ok(v):
            return v
        if not seen or seen[-1] != v:
            seen.append(v)
        assert time.monotonic() < deadline, "%s: not reached in %d s (seen: %s)" % (
            what, timeout, seen[-6:])
        time.sleep(every)


def _setmem(d, v, kib):
    t0 = time.monotonic()
    d.virsh("setmem", v.dom, "%dKiB" % kib, "--live")
    _wait("dommemstat actual %d KiB" % kib, lambda: d.dommemstat(v.dom).get("actual"),
          lambda a: a == kib, STEP)
    used = _wait("dominfo Used memory %d KiB" % kib, lambda: _kib(d, v.dom),
                 lambda u: u == "%d KiB" % kib, 30)
    v.check()
    return time.monotonic() - t0, used


@pytest.mark.parametrize("suite", SUITES + ARM, scope="module")
def test_setmem_returns_host_huge_pages(lv, timing):
    """virsh setmem to 1 GiB and back to 2 GiB reaches each value (virsh
    dominfo and dommemstat); the host's HugePages_Free rises by >= 95 % of
    the 1 GiB and falls back to where it was once the guest has it again."""
    d, v, hp, _ = lv
    full = GUEST_MB * 1024
    assert d.dommemstat(v.dom)["actual"] == full
    before = hp.free()
    secs, used = _setmem(d, v, 1024 * 1024)
    after = hp.wait_free(lambda f: f - before >= WANT_PAGES, 30)
    timing("libvirt setmem 1 GiB", secs)
    print("setmem 1 GiB: %.1f s, dominfo %s, HugePages_Free %d -> %d (%d MiB returned)" % (
        secs, used, before, after, (after - before) * 2))
    assert after - before >= WANT_PAGES, \
        "HugePages_Free %d -> %d: %d of 512 host huge pages returned" % (
            before, after, after - before)
    secs, used = _setmem(d, v, full)
    back = hp.wait_free(lambda f: f == before, 60)
    timing("libvirt setmem 2 GiB", secs)
    print("setmem 2 GiB: %.1f s, dominfo %s, HugePages_Free %d (%d before)" % (
        secs, used, back, before))
    assert back == before, "HugePages_Free %d after setmem back to 2 GiB, %d before" % (
        back, before)
    # the guest uses the memory it took back (QEMU alive: no SIGBUS)
    v.sh("dd if=/dev/zero of=/dev/null bs=1024M count=1", timeout=STEP)
    assert hp.free() == before
    assert d.dommemstat(v.dom)["actual"] == full


def _fresh_stats(d, v):
    """dommemstat with last_update read against the host's clock."""
    st = d.dommemstat(v.dom)
    return st, int(time.time()) - st.get("last_update", 0)


@pytest.mark.parametrize("suite", SUITES, scope="module")
def test_dommemstat(lv):
    """virsh dommemstat shows every statistic this libvirt maps, kept
    fresh (last_update within two periods), and unused/usable follow a
    guest program that holds 512 MiB and lets it go."""
    d, v, hp, lvroot = lv
    ver = d.version()
    mapped = mapped_stats(lvroot)
    assert "stat-free-memory" in mapped, "libvirt %s: no statistics found in its QEMU " \
        "driver (%s)" % (ver, mapped)
    unknown = [n for n in mapped if n not in VIRSH_NAMES]
    assert not unknown, "libvirt %s maps QEMU statistics this test does not know: %s" % (
        ver, unknown)
    want = [VIRSH_NAMES[n] for n in mapped] + list(ALWAYS)
    st = _wait("a first stats report", lambda: d.dommemstat(v.dom),
               lambda s: "last_update" in s, 60)
    missing = [k for k in want if k not in st]
    assert not missing, "libvirt %s: dommemstat lacks %s: %r" % (ver, missing, st)
    # fresh in every sample, over five periods
    ages = []
    for _ in range(6):
        st, age = _fresh_stats(d, v)
        ages.append(age)
        time.sleep(PERIOD / 2)
    print("libvirt %s maps %d QEMU statistics; dommemstat: %s; last_update ages %s s" % (
        ".".join(map(str, ver)), len(mapped),
        " ".join("%s=%d" % kv for kv in sorted(st.items())), ages))
    assert max(ages) <= 2 * PERIOD, "last_update %s s old (period %d s)" % (ages, PERIOD)

    def settled(key):
        # the same value in two consecutive reports
        vals = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            s = d.dommemstat(v.dom)
            if not vals or vals[-1][0] != s["last_update"]:
                vals.append((s["last_update"], s[key]))
            if len(vals) >= 3 and abs(vals[-1][1] - vals[-2][1]) < 16 * 1024:
                return vals[-1][1]
            time.sleep(0.5)
        raise AssertionError("%s never settled: %s" % (key, vals))

    base = {k: settled(k) for k in ("unused", "usable")}
    hold = HOLD_MB * 1024
    # dd holds its 512 MiB buffer (zeroed: every page touched) while it is
    # blocked writing into a pipe nobody reads
    v.sh("(dd if=/dev/zero bs=%dM count=1 2>/dev/null | sleep 600) "
         ">/dev/null 2>&1 </dev/null &" % HOLD_MB)
    try:
        low = _wait("unused and usable down by 90 %% of %d MiB" % HOLD_MB,
                    lambda: d.dommemstat(v.dom),
                    lambda s: all(base[k] - s[k] >= 0.9 * hold for k in base), 120)
        rss = v.sh("grep VmRSS /proc/$(pidof dd)/status").split()[1]
    finally:
        v.sh("kill $(pidof dd) $(pidof sleep) 2>/dev/null; true")
    high = _wait("unused and usable back within 10 %% of %d MiB" % HOLD_MB,
                 lambda: d.dommemstat(v.dom),
                 lambda s: all(base[k] - s[k] < 0.1 * hold for k in base), 120)
    print("guest dd holding %d MiB (VmRSS %s kB): unused %d -> %d -> %d kB, "
          "usable %d -> %d -> %d kB" % (HOLD_MB, rss, base["unused"], low["unused"],
                                       high["unused"], base["usable"], low["usable"],
                                       high["usable"]))
