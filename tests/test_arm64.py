# SPDX-License-Identifier: GPL-2.0
"""virtio_balloon on arm64: Debian sid's linux-image-arm64 (4 KiB pages)
and linux-image-arm64-16k (16 KiB pages), and bookworm's linux-image-arm64
(6.1, 4 KiB pages).

Both sid kernels, their headers, gcc, dkms, sparse and busybox-static live
in one arm64 root (scripts/mkroot-arm64.sh sid), bookworm's in another
(scripts/mkroot-arm64.sh bookworm); their binaries run on this amd64 host
through qemu-user.  A few tools run natively, Debian's amd64
builds from the same archive (the script says why and how): the cross
cc1 of the same gcc release for kernel code, kmod, make, the shells
(bash, dash) and sed, grep, findutils and mawk.  Everything else (the gcc
driver, as, ld, sparse, coreutils with its uname saying aarch64, apt,
dpkg, dkms's own scripts' other tools, the kernel's build tools) is the
root's own arm64 binary.  Guests are qemu-system-aarch64 -M virt -cpu
max under TCG with virtio-balloon-pci, driven over QMP by the same
harness as test_virtio (lib/vm.py arch="aarch64").

The balloon protocol counts 4 KiB frames whatever the page size, so on
16 KiB pages every page is 4 frames, and a target that is not a multiple
of the page size cannot be met exactly: the balloon then holds a whole
number of pages, the target rounded up (upstream needed a fix in 6.6 for
endless inflate/deflate there).  test_targets_off_the_page_size checks
that it settles instead of chasing the remainder.

One VM of each kernel at a time.  The core of test_virtio runs here, the
same test functions imported (pytest collects them in this module, with
its fixtures); checkpatch is test_build's (the sources are the same).
"""
import functools
import os
import random
import re
import time

import pytest

from lib import build, pkg, roots
from lib.virtio_util import GiB, MiB, GuestPool

import test_packaging
import test_virtio

SUITES = list(roots.ARM64)          # sid-arm64, sid-arm64-16k, bookworm-arm64
SID = [s for s in SUITES if roots.ARM64[s][0] == "sid"]
VERSION = pkg.VERSION
STEP = test_virtio.STEP
# The VMs use the module the build test checked (W=1 and sparse).
MAKE_ARGS = ("W=1", "C=1")
CONFIGS = {name: test_virtio.CONFIGS[name] for name in ("std", "full")}
WARN_RX = re.compile(r"(warning|error):", re.I)


def need_suite(suite):
    """Skip unless the Debian suite of this arm64 kernel is under test."""
    test_packaging.need_suite(roots.ARM64[suite][0])


@pytest.fixture(scope="module")
def pool(suite):
    need_suite(suite)
    p = GuestPool(suite, CONFIGS, make_args=MAKE_ARGS)
    yield p
    p.close()


std = test_virtio.std
full = test_virtio.full


@pytest.mark.parametrize("suite", SUITES)
def test_build_w1_sparse(suite):
    """virtio_balloon builds for the arm64 kernel with the root's gcc, W=1
    and sparse, zero warnings; vmw_balloon (x86 only) is not built."""
    need_suite(suite)
    root = roots.root(suite)
    k = roots.suite_kver(suite)
    kos = build.modules(root, k, make_args=MAKE_ARGS)
    log = build.build_log(root, k, make_args=MAKE_ARGS)
    print(log[-3000:])
    assert "CHECK " in log, "sparse did not run (C=1 ignored?)"
    bad = [ln for ln in log.splitlines() if WARN_RX.search(ln)]
    assert not bad, "warnings building for %s:\n%s" % (k, "\n".join(bad[:40]))
    assert sorted(kos) == ["virtio_balloon"], kos
    assert "vmw_balloon" not in log, log[-2000:]
    d = os.path.dirname(kos["virtio_balloon"])
    p = roots.chroot_run(root, ["modinfo", "-F", "vermagic", kos["virtio_balloon"]],
                         binds=(d,), ephemeral=True)
    assert p.stdout.split()[0] == k, p.stdout
    with open(os.path.join(d, "autoconf.h")) as f:
        print("".join(ln for ln in f if ln.startswith("#define HAVE_")))


# ------------------------------------------------------------------ VMs
# test_virtio's core, std guest (device_del last: it ends that VM), then
# the deflate-on-oom guest.

@pytest.mark.parametrize("suite", SUITES, scope="module")
def test_page_size(std, suite):
    """The guest runs the kernel of its flavour, with its page size, and
    our module is the one bound."""
    assert std.vm.sh("uname -r").strip() == roots.suite_kver(suite)
    assert std.vm.sh("uname -m").strip() == "aarch64"
    assert std.page_kb == (16 if suite.endswith("-16k") else 4)
    assert std.driver_version() == VERSION and std.bound()


@pytest.mark.parametrize("suite", SUITES, scope="module")
def test_targets_off_the_page_size(std, suite):
    """Targets that are multiples of 4 KiB but not of the page size: the
    balloon settles on whole pages (the target rounded up, in frames), the
    guest agrees with QMP, and it does not keep moving afterwards: the
    driver's size work goes idle (the kernel's workqueue trace: its last
    run did not queue it again) with no page moved after that size was
    reached."""
    vm = std.vm
    page = std.page_kb * 1024
    rng = random.Random("%s-%s" % (suite, VERSION))
    targets = [1536 * MiB + 4096, 1024 * MiB + 3 * 4096] + \
        [rng.randrange(256 * 1024, 512 * 1024) * 4096 for _ in range(4)]
    trace_size_work(vm)
    try:
        for t in targets:
            want = std.ram - -(-(std.ram - t) // page) * page     # balloon rounded up
            vm.sh("echo > %s/trace" % TRACING)
            vm.balloon(t)
            vm.wait_actual(want, STEP)
            assert vm.meminfo()["MemTotal"] == test_virtio.memtotal_expected(std, want)
            moved0 = std.vmstat()
            runs = wait_size_work_idle(vm, STEP, "target %d" % t)
            moved1 = std.vmstat()
            assert vm.query_balloon() == want
            for key in ("balloon_inflate", "balloon_deflate"):
                assert moved1[key] == moved0[key], \
                    "target %d: the balloon kept moving after reaching %d (%s %d -> %d)" % (
                        t, want, key, moved0[key], moved1[key])
            print("target %d B -> actual %d B (%d frames over), %d runs of the size work"
                  % (t, want, (t - want) // 4096, runs))
    finally:
        untrace_size_work(vm)
    std.to_full(STEP)
    std.assert_nothing_leaked("after targets off the page size")


TRACING = "/sys/kernel/tracing"
WQ_EVENTS = ("workqueue_queue_work", "workqueue_execute_start", "workqueue_execute_end")
SIZE_WORK = "size_work_func"        # our driver's work function


def trace_size_work(vm):
    """The kernel's workqueue tracepoints on (the trace shows when our
    driver's size work is queued, starts and ends)."""
    vm.sh("mountpoint -q {t} || mount -t tracefs nodev {t}; echo > {t}/trace; "
          "for e in {e}; do echo 1 > {t}/events/workqueue/$e/enable; done; "
          "echo 1 > {t}/tracing_on".format(t=TRACING, e=" ".join(WQ_EVENTS)))


def untrace_size_work(vm):
    vm.sh("for e in {e}; do echo 0 > {t}/events/workqueue/$e/enable; done; echo > {t}/trace"
          .format(t=TRACING, e=" ".join(WQ_EVENTS)))


def wait_size_work_idle(vm, timeout, what):
    """Wait until the driver's size work is idle: its last run (in the
    trace since it was cleared) ended without queueing itself again, and
    nothing queued it since.  Only a new target (or memory pressure) runs
    it again, so the balloon cannot move any more.  Returns the number of
    runs traced."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [ln for ln in vm.sh("grep -F %s %s/trace || true" % (SIZE_WORK, TRACING)).splitlines()
                 if any(e + ":" in ln for e in WQ_EVENTS)]
        starts = [i for i, ln in enumerate(lines) if "workqueue_execute_start:" in ln]
        last = lines[starts[-1]:] if starts else []
        if len(last) == 2 and "workqueue_execute_end:" in last[1]:
            return len(starts)
        if time.monotonic() > deadline:
            raise AssertionError("%s: the size work did not become idle (its last run queued "
                                 "it again, or it is queued or running) in %d s; trace:\n%s"
                                 % (what, timeout, "\n".join(lines[-20:]) or
                                    "(no %s events: renamed?)" % SIZE_WORK))
        time.sleep(0.5)


def _core(fn):
    """test_virtio's test `fn`, collected here for the arm64 kernels (a
    wrapper: marking fn itself would change test_virtio's test)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        return fn(*args, **kwargs)
    return pytest.mark.parametrize("suite", SUITES, scope="module")(run)


test_module_is_ours = _core(test_virtio.test_module_is_ours)
test_inflate_1g_and_back = _core(test_virtio.test_inflate_1g_and_back)
test_guest_stats = _core(test_virtio.test_guest_stats)
test_random_targets = _core(test_virtio.test_random_targets)
test_free_page_reporting_returns_memory_to_host = _core(
    test_virtio.test_free_page_reporting_returns_memory_to_host)
test_compaction_migrates_balloon_pages = _core(test_virtio.test_compaction_migrates_balloon_pages)
test_rmmod_while_inflated = _core(test_virtio.test_rmmod_while_inflated)


@pytest.mark.parametrize("suite", SUITES, scope="module")
def test_inflate_timing_vs_intree(std, timing):
    """The kernel's own driver inflates and deflates 1 GiB in the same VM
    as test_inflate_1g_and_back measured ours (one run each, to
    timings.json), and ours binds again afterwards with nothing leaked.
    The comparison itself is make bench's (BENCH_SUITES with the arm64
    kernels: alternating rounds, medians)."""
    vm = std.vm
    std.load_intree()
    # the kernel's driver has no version (ours has): None, not a missing answer
    assert std.driver_version() is None and std.bound(), std.driver_version()
    try:
        vm.wait_actual(std.ram, 60)
        t_in = vm.balloon_to(1 * GiB, STEP)
        t_out = vm.balloon_to(std.ram, STEP)
    finally:
        std.load_ours()
    timing("virtio intree inflate 1GiB %s" % std.suite, t_in)
    timing("virtio intree deflate 1GiB %s" % std.suite, t_out)
    print("%s in-tree: inflate 1 GiB %.2f s, deflate %.2f s" % (std.suite, t_in, t_out))
    assert std.driver_version() == VERSION
    std.assert_nothing_leaked("after the in-tree run")


test_device_del_while_inflated = _core(test_virtio.test_device_del_while_inflated)
test_deflate_on_oom_keeps_memtotal = _core(test_virtio.test_deflate_on_oom_keeps_memtotal)


# ------------------------------------------------------------------ package

def test_deb_lifecycle_arm64(timing):
    """In the sid arm64 root, with its apt, dpkg and dkms: apt install
    ./balloon-dkms_<ver>_all.deb builds virtio_balloon, and only it, for
    both kernels (4K and 16K); modinfo -n resolves to updates/dkms with our
    version; apt remove brings the kernel's own driver back and leaves
    nothing of ours.

    Everything the package depends on is in the root already, so apt
    works here from the dpkg status alone: the copy's package lists
    (sid's arm64 and amd64 archives) are dropped first.  With them, apt's
    dependency solver took 80 to 250 s per run under qemu-user; without
    them, 3 s.  apt, dpkg and dkms themselves run as a user's would."""
    need_suite(SID[0])
    deb = pkg.build_deb()
    kvers = [roots.suite_kver(s) for s in SID]
    with pkg.Root(SID[0]) as r:
        r.kvers = kvers
        r.run("rm -f /var/lib/apt/lists/*_Packages* /var/lib/apt/lists/*_Translation-* "
              "/var/cache/apt/*.bin")
        intree = {k: r.modinfo("virtio_balloon", kver=k) for k in kvers}
        for k in kvers:
            assert "/kernel/drivers/virtio/" in intree[k], intree
        with pkg.timed(timing, "arm64 apt install (dkms build, 2 kernels)"):
            p = test_packaging.install_deb(r, deb)
        st = r.dkms_status()
        print(st)
        for k in kvers:
            assert re.search(r"balloon[/,] ?%s, %s, aarch64: installed" % (
                re.escape(VERSION), re.escape(k)), st), st
            path = r.modinfo("virtio_balloon", kver=k)
            assert "/updates/dkms/virtio_balloon.ko" in path, path
            assert r.modinfo("virtio_balloon", "version", k) == VERSION
            found = r.run("ls /lib/modules/%s/updates/dkms/" % k).stdout.split()
            assert [f for f in found if f.startswith("virtio_balloon.ko")], found
            assert not [f for f in found if f.startswith("vmw_balloon")], found
        assert "Error!" not in p.stdout, p.stdout
        test_packaging.assert_dpkg_clean(r)
        with pkg.timed(timing, "arm64 apt remove"):
            r.apt("remove balloon-dkms")
        for k in kvers:
            assert r.modinfo("virtio_balloon", kver=k) == intree[k]
        assert r.leftovers() == [], r.leftovers()
        test_packaging.assert_dpkg_clean(r)
