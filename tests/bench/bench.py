# SPDX-License-Identifier: GPL-2.0
"""make bench: our balloon drivers against the kernel's own, side by side.

For each suite (BENCH_SUITES, default "bookworm sid") and each CPU model
(BENCH_CPUS, default "max max,erms=off": TCG runs `rep stosb` one byte at a
time, so the second is closer to hardware proportions) one virtio VM boots
(2 GiB, deflate-on-oom=on, same kernel, QEMU and device for everything);
in it the two drivers take turns, N rounds (BENCH_ROUNDS, default 3),
alternating which goes first.  Rows (BENCH_ROWS picks a subset):

  inflate   insmod, inflate 2 GiB -> 1 GiB, deflate back: times, guest CPU
            time per GiB inflated, reaction latency (target set -> first
            page moved)
  limit     the same VM allocating the same 262144 frames with no protocol
            (tests/bench/limit/balloon_limit.ko), order 0 and order 9, and
            freeing them; shown as a ratio of the in-tree driver's times
  pressure  with 1 GiB ballooned, a guest program touches 256 MiB more than
            is free (deflate-on-oom must give it back); the same program in
            the same VM with the balloon empty is the limit; OOM kills,
            major faults and swap-ins during it
  thp       after an inflate/deflate cycle: free 2 MiB blocks (buddyinfo,
            order >= 9 in 2 MiB units) and the THP share of a fresh 512 MiB
            mapping (tests/bench/guest/thp.c)
  aged      the same cycle on a guest that has run for a while and keeps
            working: free memory first left in 64 KiB holes between tmpfs
            pages (tests/bench/guest/age.c), the balloon then holds 27 % of
            what was free while the guest writes 32 % more into tmpfs, then
            deflates; free 2 MiB blocks, the THP share of a plain (not
            madvised) 512 MiB mapping faulted in right after, and the pages
            compaction migrated meanwhile (kcompactd, proactive by default,
            repairing the layout)
  vmware    vmw_balloon, ours vs in-tree, inflate and deflate 256 MiB
            against the emulated VMware host (tests/vmw-host), one VM per
            suite and CPU model
  hugepages a 2 GiB guest whose RAM is 2 MiB host huge pages (a hugetlb
            memfd, as tests/test_hugepages.py boots it; the pool from
            lib.hugepages.reserve, the guest's size + 8 pages, under its
            host-wide lock), its own VM per suite and CPU model, freshly
            booted: host memory returned by inflating 1 GiB (MiB, from the
            host's HugePages_Free), inflate and deflate times, and what the
            host has not taken back once the guest has its memory again
  hugepages-movable
            the same with a movable zone (movablecore=1536M)
  migration live migration of a 2 GiB guest to a second QEMU (QEMU 11.1
            from the sid vmwhost root for both: this host's 7.2 corrupts
            destination guests, see tests/test_lifecycles.py) after the
            guest touched 1 GiB and freed it: RAM bytes sent and time from
            the source's query-migrate, with free-page-hint=on and the
            kernel's driver or ours hinting, and with free-page-hint=off
            (ours loaded: no device feature, no hints, whichever driver);
            a freshly booted VM for each migration; x86 only.
            Not in the default BENCH_ROWS (DEFAULT_ROWS)

The arm64 kernels (BENCH_SUITES="sid-arm64 sid-arm64-16k bookworm-arm64",
not in the default) boot the same way under qemu-system-aarch64 -M virt
with QEMU's arm64 "max" CPU model and run the inflate, limit and pressure
rows; the frames stay 4 KiB ones on 16 KiB pages (1 GiB is 1 GiB).

Reported: medians and ratios ours / in-tree (OOM kills: the sum over all
rounds), with the host's 1-minute load average taken before each round
(printed beside each round's figures and under each table) and at the
start and end of each pass; a table whose rounds started above load
LOAD_HIGH (1.5) says so in its title.  Nothing passes or fails on timings:
TCG timings swing with host load, which is why the drivers alternate in
the same VM.

Writes its results into doc/bench.md (BENCH_DOC, or --doc; "" for none):
the section of this run's settings (BENCH_SUITES, BENCH_ROWS, BENCH_CPUS),
between its "bench-run" comment lines, is replaced, or appended when new;
the rest of the file is kept as it is.  Also out/bench/bench.md (this run
alone), bench.json and bench.png (balloon size over time, last round, both
drivers).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from lib import build, hugepages, initramfs, lifecycle, memzones, roots, vmwhost  # noqa: E402
from lib.virtio_util import guest_program  # noqa: E402
from lib.vm import VM, GiB, MiB, boot  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
ROWS = ("inflate", "limit", "pressure", "thp", "aged", "vmware", "hugepages",
        "hugepages-movable", "migration")
# the rows BENCH_ROWS defaults to
DEFAULT_ROWS = tuple(r for r in ROWS if r != "migration")
# the rows of the main virtio VM (the others boot their own)
VIRTIO_ROWS = ("inflate", "limit", "pressure", "thp", "aged")
# arm64 (BENCH_SUITES sid-arm64, sid-arm64-16k, bookworm-arm64): the rows
# that hold whatever the page size, on QEMU's arm64 default CPU model
ARM64_ROWS = ("inflate", "limit", "pressure", "hugepages", "hugepages-movable")
ARM64_CPU = "max,pauth-impdef=on"
GUEST_TOOLS = {"thp": "thp", "pressure": "pressure", "age": "aged"}
WHO = ("in-tree", "ours")
PRESSURE_OVER_MIB = 256
THP_MIB = 512
AGE_DIR = "/bench-age"
VMW_PAGES = 256 * 256           # 256 MiB in 4 KiB pages
# Above this 1-minute host load a table's rounds are marked: on this
# 2-core host, TCG times then stretch and scatter.
LOAD_HIGH = 1.5
# hugepages rows: the guest's RAM as tests/test_hugepages.py has it (BACKEND),
# a 2 MiB hugetlb memfd, QEMU preallocating all of it; init_on_free=1 makes
# the guest zero what a deflate gives back, so the host faults every huge
# page in again and each round starts from a fully backed guest
HUGE_GUEST_MB = 2048
HUGE_SLACK_PAGES = 8
HUGE_BACKEND = ["-object", "memory-backend-memfd,id=m0,size=%dM,hugetlb=on,"
                "hugetlbsize=%d,prealloc=on" % (HUGE_GUEST_MB, hugepages.PAGE),
                "-machine", "memory-backend=m0"]      # QEMU merges -machine options
# row -> (key prefix, guest command line, label prefix, loads label)
HUGE_ROWS = {
    "hugepages": ("huge", "init_on_free=1", "2 MiB host pages", "hugepages"),
    "hugepages-movable": ("hugem", "init_on_free=1 movablecore=1536M",
                          "2 MiB host pages, movablecore=1536M", "hugepages movable"),
}
# a pool another test holds is waited for, but not for ever
HUGE_LOCK_S = 900
# migration row: what the guest touches and frees before each migration,
# and its columns: column -> free-page-hint (the driver: the column's, or
# MIG_NOHINT_DRIVER for no hinting)
MIG_DIRTY_MIB = 1024
MIG_COLUMNS = {"in-tree": True, "ours": True, "nohint": False}
MIG_NOHINT_DRIVER = "ours"
MIG_TIMEOUT = 900
DOC = os.path.join(REPO, "doc", "bench.md")


# ------------------------------------------------------------ guest tools

def cpu_busy(vm):
    """Guest CPU time (s) spent not idle, all CPUs, since boot."""
    v = [int(x) for x in vm.sh("head -n1 /proc/stat").split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / 100.0


def vmstat(vm):
    d = {}
    for line in vm.sh("cat /proc/vmstat").splitlines():
        k, _, v = line.partition(" ")
        if v.strip().isdigit():
            d[k] = int(v)
    return d


def buddy_2m(vm):
    """Free memory in blocks of order >= 9, counted in 2 MiB units."""
    n = 0
    for line in vm.sh("cat /proc/buddyinfo").splitlines():
        counts = line.split()[4:]
        for order, c in enumerate(counts):
            if order >= 9:
                n += int(c) << (order - 9)
    return n


# ------------------------------------------------------------ virtio rows

def trace_to(vm, target, timeout=600):
    """Set the target; return (first-move latency, total time, samples)."""
    start_actual = vm.query_balloon()
    t0 = time.monotonic()
    vm.balloon(target)
    first = None
    samples = [(0.0, start_actual)]
    while True:
        a = vm.query_balloon()
        t = time.monotonic() - t0
        samples.append((t, a))
        if first is None and a != start_actual:
            first = t
        if a == target:
            return first or t, t, samples
        if t > timeout:
            raise TimeoutError("balloon stuck at %d, target %d" % (a, target))
        time.sleep(0.01)


def pressure(vm, mem, mib, ballooned):
    """Run the pressure program; with ballooned=True 1 GiB sits in the
    balloon first.  Returns its figures (pressure_s None if it was killed)."""
    if ballooned:
        vm.balloon_to(mem - GiB, timeout=600)
    before = vm.query_balloon()
    v0 = vmstat(vm)
    rc, out = vm.shell("/bench/pressure %d" % mib, timeout=900)
    v1 = vmstat(vm)
    after = vm.query_balloon()
    m = re.search(r"PRESSURE mib \d+ ms ([\d.]+) majflt (\d+)", out)
    r = {"pressure_s": float(m.group(1)) / 1000 if m else None,
         "oom_kills": v1.get("oom_kill", 0) - v0.get("oom_kill", 0),
         "majflt": v1.get("pgmajfault", 0) - v0.get("pgmajfault", 0),
         "pswpin": v1.get("pswpin", 0) - v0.get("pswpin", 0),
         "given_mib": (after - before) / MiB}
    if ballooned:
        vm.balloon_to(mem, timeout=600)
    return r


def thp(vm, plain=False):
    out = vm.sh("/bench/thp %d%s" % (THP_MIB, " plain" if plain else ""), timeout=600)
    m = re.search(r"THP size_kb (\d+) anonhuge_kb (-?\d+)", out)
    return 100.0 * int(m.group(2)) / int(m.group(1))


def aged(vm, mem):
    """The "aged" row: a balloon cycle on a fragmented guest that allocates
    while the balloon holds memory.  Sizes are shares of what is free, so
    every kernel gets the same proportions: 55 % goes into the two
    interleaved files a and b, a is deleted (27.5 % free in small holes,
    45 % in large blocks), the balloon takes 27 %, the guest writes 32 %
    into a third file, the balloon deflates.  A balloon that takes its
    memory from the holes leaves the large blocks to the guest's new file
    and gets them back split; one that takes whole 2 MiB blocks leaves the
    holes to the guest and gives the blocks back whole."""
    free = vm.meminfo()["MemFree"] >> 10
    frag, held, more = free * 55 // 100, free * 27 // 100, free * 32 // 100
    vm.sh("mkdir -p {d} && mount -t tmpfs -o huge=never,size={s}m bench-age {d}".format(
        d=AGE_DIR, s=frag + more + 64))
    try:
        vm.sh("/bench/age %s %d" % (AGE_DIR, frag), timeout=900)
        vm.sh("rm %s/a" % AGE_DIR)
        vm.balloon_to(mem - held * MiB, timeout=600)
        vm.sh("dd if=/dev/zero of=%s/c bs=1M count=%d 2>/dev/null" % (AGE_DIR, more),
              timeout=900)
        vm.balloon_to(mem, timeout=600)
        r = {"aged_buddy_2m": buddy_2m(vm)}
        # kcompactd's proactive compaction (on by default) may repair the
        # layout while the mapping faults in: count what it had to move
        v0 = vmstat(vm)
        r["aged_thp_pct"] = thp(vm, plain=True)
        v1 = vmstat(vm)
        r["aged_migrated"] = v1.get("pgmigrate_success", 0) - v0.get("pgmigrate_success", 0)
        return r
    finally:
        vm.sh("rm -f {d}/a {d}/b {d}/c; umount {d}".format(d=AGE_DIR))


def prefault(vm):
    """Back all but 128 MiB of the guest's free memory on the host again.
    A balloon makes the host drop the pages it gets; whoever allocates them
    next pays the host's page faults.  Done before every timed step, so
    each starts from the same state whatever ran before it."""
    frames = max(vm.meminfo()["MemFree"] - (128 << 10), 0) // 4
    vm.sh("insmod /bench/balloon_limit.ko order=0 nr_frames=%d && rmmod balloon_limit"
          % frames, timeout=900)


def load_driver(vm, path):
    vm.sh("insmod %s" % path)
    vm.sh("for i in $(seq 100); do ls /sys/bus/virtio/drivers/virtio_balloon/ | grep -q virtio && break;"
          " sleep 0.1; done; ls /sys/bus/virtio/drivers/virtio_balloon/ | grep -q virtio")


def driver_round(vm, path, mem, rows, press_mib):
    load_driver(vm, path)
    r = {}
    if "inflate" in rows or "thp" in rows:
        prefault(vm)
        c0 = cpu_busy(vm)
        lat, tin, samples = trace_to(vm, mem - GiB)
        c1 = cpu_busy(vm)
        _, tout, back = trace_to(vm, mem)
        r.update({"inflate_s": tin, "deflate_s": tout, "latency_s": lat,
                  "cpu_s_per_gib": c1 - c0,
                  "trace": samples + [(tin + t, a) for t, a in back[1:]]})
    if "thp" in rows:
        r["buddy_2m"] = buddy_2m(vm)
        r["thp_pct"] = thp(vm)
    if "aged" in rows:
        r.update(aged(vm, mem))
    if "pressure" in rows:
        prefault(vm)
        r.update(pressure(vm, mem, press_mib, True))
    vm.sh("rmmod virtio_balloon")
    return r


def limit(vm, order):
    vm.sh("insmod /bench/balloon_limit.ko order=%d" % order, timeout=900)
    p = "/sys/module/balloon_limit/parameters/"
    a, f, bad = (int(x) for x in vm.sh("cat %salloc_ns %sfree_ns %sfailed" % (p, p, p)).split())
    vm.sh("rmmod balloon_limit")
    return {"limit%d_alloc_s" % order: a / 1e9, "limit%d_free_s" % order: f / 1e9,
            "limit%d_failed" % order: bad}


def virtio_pass(suite, root, k, cpu, rounds, rows, mem_mb=2048):
    arch = roots.arch(suite)
    ko = build.modules(root, k, only=("virtio_balloon",))["virtio_balloon"]
    # tests/bench/guest/<tool>.c, built for the root's architecture
    files = {"/bench/" + t: guest_program(t, root, srcdir=os.path.join(HERE, "guest"))
             for t, row in GUEST_TOOLS.items() if row in rows}
    files["/bench/balloon_limit.ko"] = build.external(
        root, os.path.join(HERE, "limit"), k)["balloon_limit"]
    initrd = vmwhost.initrd_plus(initramfs.build(root, k, ko=[ko]), files)
    mem = mem_mb << 20
    paths = driver_paths(k)
    res = {"in-tree": [], "ours": [], "limit": [], "loads": []}
    tag = "%s %s" % (suite, cpu)

    # no balloon driver at boot: each round loads the one it times
    mods = "virtio_pci,virtio_console" if arch == "aarch64" else "virtio_pci"

    def make():
        return VM(roots.kernel(root, k), initrd, "vmh.modules=%s vmh.coldplug=0" % mods,
                  name="bench-" + suite, mem_mb=mem_mb, cpu=cpu, arch=arch,
                  balloon_opts={"deflate-on-oom": "on"})
    vm = boot(make)
    try:
        # the pressure program asks for what is free with 1 GiB ballooned
        # plus 256 MiB; the same size for every run in this VM
        press_mib = vm.meminfo()["MemFree"] // 1024 - 1024 + PRESSURE_OVER_MIB
        drivers = bool({"inflate", "thp", "aged", "pressure"} & set(rows))
        for i in range(rounds):
            load = os.getloadavg()[0]
            res["loads"].append(load)
            for which in (WHO if i % 2 == 0 else WHO[::-1]) if drivers else ():
                r = driver_round(vm, paths[which], mem, rows, press_mib)
                res[which].append(r)
                print("%s %s round %d (load %.1f): %s" % (tag, which, i, load, brief(r)),
                      flush=True)
            lim = {}
            if {"pressure", "limit"} & set(rows):
                prefault(vm)      # then neither step below drops a page
            if "pressure" in rows:
                lim.update({"press_limit_s": pressure(vm, mem, press_mib, False)["pressure_s"]})
            if "limit" in rows:
                for order in (0, 9):
                    lim.update(limit(vm, order))
            if lim:
                res["limit"].append(lim)
                print("%s limit round %d (load %.1f): %s" % (tag, i, load, brief(lim)),
                      flush=True)
    finally:
        vm.close()
    return res


def driver_paths(k):
    return {"in-tree": "/lib/modules/%s/kernel/drivers/virtio/virtio_balloon.ko" % k,
            "ours": "/lib/modules/%s/updates/virtio_balloon.ko" % k}


# ------------------------------------------------------------ hugepages rows

def huge_round(vm, hp, path, mem, pre):
    """One driver: inflate 1 GiB, deflate; everything read on the host."""
    load_driver(vm, path)
    if vm.query_balloon() != mem:
        raise RuntimeError("balloon at %d before inflating, not %d" % (vm.query_balloon(), mem))
    before = hp.free()
    _, tin, _ = trace_to(vm, mem - GiB)
    # QEMU discards a host page while it handles the request, before the
    # guest sees it completed and moves `actual`: the figure is final here
    after = hp.free()
    _, tout, _ = trace_to(vm, mem)
    # the guest zeroes what it got back (init_on_free=1): the host faults
    # the huge pages in again; what is still free after 60 s was not
    back = hp.wait_free(lambda v: v <= before, 60)
    vm.sh("rmmod virtio_balloon")
    return {pre + "_returned_mib": (after - before) * hugepages.PAGE // MiB,
            pre + "_inflate_s": tin, pre + "_deflate_s": tout,
            pre + "_kept_mib": (back - before) * hugepages.PAGE // MiB,
            pre + "_free_before": before}


def huge_pass(suite, root, k, cpu, rounds, row):
    """The hugepages rows: a guest backed by 2 MiB host huge pages, its own
    VM, the two drivers alternating in it."""
    pre, append, _, _ = HUGE_ROWS[row]
    arch = roots.arch(suite)
    ko = build.modules(root, k, only=("virtio_balloon",))["virtio_balloon"]
    initrd = initramfs.build(root, k, ko=[ko])
    mem = HUGE_GUEST_MB * MiB
    paths = driver_paths(k)
    mods = "virtio_pci,virtio_console" if arch == "aarch64" else "virtio_pci"
    res = {"in-tree": [], "ours": [], "loads": []}
    tag = "%s %s %s" % (suite, cpu, row)

    def make():
        return VM(roots.kernel(root, k), initrd,
                  "vmh.modules=%s vmh.coldplug=0 %s" % (mods, append),
                  name="bench-huge-" + suite, mem_mb=HUGE_GUEST_MB, cpu=cpu, arch=arch,
                  balloon_opts={"deflate-on-oom": "on"}, extra_args=HUGE_BACKEND)
    with hugepages.reserve(hugepages.pages_for(mem) + HUGE_SLACK_PAGES,
                           lock_timeout=HUGE_LOCK_S) as hp:
        vm = boot(make)
        try:
            if "movablecore" in append and \
                    memzones.MOVABLE not in memzones.zones(vm, 4):   # (sizes unused)
                raise RuntimeError("movablecore= gave the guest no movable zone")
            for i in range(rounds):
                load = os.getloadavg()[0]
                res["loads"].append(load)
                for which in (WHO if i % 2 == 0 else WHO[::-1]):
                    r = huge_round(vm, hp, paths[which], mem, pre)
                    res[which].append(r)
                    print("%s %s round %d (load %.1f): %s" % (tag, which, i, load, brief(r)),
                          flush=True)
        finally:
            vm.close()          # QEMU gone before the pool shrinks
    return res


# ------------------------------------------------------------ migration row

def migration_vm(suite, root, k, cpu, initrd, hints):
    """A 2 GiB guest on QEMU 11.1 (the sid vmwhost root), no balloon driver
    loaded; free-page-hint=on (QEMU wants an iothread for it) or off."""
    opts = {"free-page-hint": "on" if hints else "off", "iothread": "bench-iot"}
    return boot(lambda: VM(roots.kernel(root, k), initrd,
                           "vmh.modules=virtio_pci vmh.coldplug=0", name="bench-mig-" + suite,
                           mem_mb=2048, cpu=cpu, balloon_opts=opts,
                           extra_args=["-object", "iothread,id=bench-iot"],
                           qemu_root=vmwhost.host_root(),
                           fail_patterns=lifecycle.FAIL_PATTERNS))


def migration_round(suite, root, k, cpu, initrd, path, hints):
    """A freshly booted guest loads the driver, touches MIG_DIRTY_MIB
    and frees it (the program exits) and migrates to a second QEMU;
    figures from the source's query-migrate.  Fresh each time: a QEMU's
    first migration is not like its destination's next one (bookworm, each
    driver once: hints saved 0.6 GiB of the 1.1 GiB sent on the first,
    nothing on the next)."""
    vm = migration_vm(suite, root, k, cpu, initrd, hints)
    dest = None
    try:
        load_driver(vm, path)
        vm.sh("/bench/pressure %d" % MIG_DIRTY_MIB, timeout=900)
        dest, st = lifecycle.migrate(vm, vm.name + "-dest", timeout=MIG_TIMEOUT)
    finally:
        vm.close()
        if dest:
            dest.close()
    ram = st["ram"]
    return {"mig_sent_mib": ram["transferred"] / MiB, "mig_total_mib": ram["total"] / MiB,
            "mig_s": st["total-time"] / 1000.0, "mig_downtime_s": st["downtime"] / 1000.0}


def migration_pass(suite, root, k, cpu, rounds):
    """The migration row: each round migrates once per column, the order
    turning by one column a round."""
    ko = build.modules(root, k, only=("virtio_balloon",))["virtio_balloon"]
    files = {"/bench/pressure": guest_program("pressure", root,
                                              srcdir=os.path.join(HERE, "guest"))}
    initrd = vmwhost.initrd_plus(initramfs.build(root, k, ko=[ko]), files)
    paths = driver_paths(k)
    cols = list(MIG_COLUMNS)
    res = {who: [] for who in cols}
    res["loads"] = []
    for i in range(rounds):
        load = os.getloadavg()[0]
        res["loads"].append(load)
        for which in cols[i % len(cols):] + cols[:i % len(cols)]:
            r = migration_round(suite, root, k, cpu, initrd,
                                paths[MIG_NOHINT_DRIVER if which == "nohint" else which],
                                MIG_COLUMNS[which])
            res[which].append(r)
            print("%s %s %s migration round %d (load %.1f): %s" % (
                suite, cpu, which, i, load, brief(r)), flush=True)
    return res


def brief(r):
    return " ".join("%s=%s" % (k, ("%.3f" % v) if isinstance(v, float) else v)
                    for k, v in r.items() if k != "trace")


# ------------------------------------------------------------ VMware rows

def vmware_cpu(cpu):
    """The VMware guest boots as the tests boot it, qemu64 without the
    CPUID hypervisor bit (with max it hangs early, once it has taken
    the VMware paravirt path); only ERMS follows the virtio pass's CPU."""
    return vmwhost.VMWARE_CPU + (",erms=off" if "erms=off" in cpu else ",+erms")


def vmw_wait(vm, pages, timeout=600):
    t0 = time.monotonic()
    vm.host.wait_state(lambda s: s["locked_pages"] == pages, timeout,
                       "locked_pages == %d" % pages, alive=vm.check)
    t = time.monotonic() - t0
    vmwhost.wait_guest(vm, lambda g: g["current"] == pages, timeout)
    return t


def vmware_pass(suite, root, k, cpu, rounds):
    ko = build.modules(root, k, only=("vmw_balloon",))["vmw_balloon"]
    res = {"in-tree": [], "ours": [], "loads": []}
    vm = boot(lambda: vmwhost.vmware_vm(root, mem_mb=1024, smp=2, target=0, ko=[ko],
                                        intree_only=False, modules=("vmw_vmci",),
                                        cpu=vmware_cpu(cpu), name="bench-vmw-" + suite))
    try:
        intree = vm.sh("find /lib/modules/%s/kernel -name vmw_balloon.ko" % k).split()[0]
        paths = {"in-tree": intree, "ours": "/lib/modules/%s/updates/vmw_balloon.ko" % k}
        for i in range(rounds):
            load = os.getloadavg()[0]
            res["loads"].append(load)
            for which in (WHO if i % 2 == 0 else WHO[::-1]):
                vm.sh("insmod %s" % paths[which])
                vm.host.set_target(VMW_PAGES)
                tin = vmw_wait(vm, VMW_PAGES)
                vm.host.set_target(0)
                tout = vmw_wait(vm, 0)
                vm.sh("rmmod vmw_balloon")
                r = {"vmw_inflate_s": tin, "vmw_deflate_s": tout}
                res[which].append(r)
                print("%s %s vmware round %d (load %.1f): %s" % (suite, which, i, load, brief(r)),
                      flush=True)
        vmwhost.assert_clean(vm)
    finally:
        vm.close()
    return res


# ------------------------------------------------------------ report

def med(runs, key):
    v = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(v) if v else None


def fmt(v, nd=3):
    return "—" if v is None else ("%.*f" % (nd, v))


def ratio(a, b):
    return "—" if a is None or b is None or not b else "%.2f" % (a / b)


# (key, label, digits); pairs: in-tree vs ours
PAIR_ROWS = {
    "inflate": [("inflate_s", "inflate 1 GiB (s)", 2), ("deflate_s", "deflate 1 GiB (s)", 2),
                ("cpu_s_per_gib", "guest CPU per GiB inflated (s)", 2),
                ("latency_s", "reaction latency (s)", 3)],
    "pressure": [("pressure_s", "pressure: 256 MiB over free, 1 GiB ballooned (s)", 2)],
    "thp": [("buddy_2m", "after a cycle: free 2 MiB blocks (order ≥ 9)", 0),
            ("thp_pct", "after a cycle: THP share of 512 MiB (%)", 1)],
    "aged": [("aged_buddy_2m", "aged guest, after a cycle: free 2 MiB blocks", 0),
             ("aged_thp_pct", "aged guest, after a cycle: THP share of a plain 512 MiB (%)", 1),
             ("aged_migrated", "aged guest: pages compaction moved while it faulted in", 0)],
    "vmware": [("vmw_inflate_s", "VMware: inflate 256 MiB (s)", 2),
               ("vmw_deflate_s", "VMware: deflate 256 MiB (s)", 2)],
    "migration": [("mig_sent_mib", "migration, hints on: RAM sent (MiB)", 0),
                  ("mig_s", "migration, hints on: time (s)", 2),
                  ("mig_total_mib", "migration: guest RAM QEMU counts (MiB)", 0)],
}
# the migration row's no-hinting column, beside the in-tree driver's hints
MIG_NOHINT_ROWS = [("mig_sent_mib", "migration: RAM sent (MiB), no hints ÷ in-tree's hints", 0),
                   ("mig_s", "migration: time (s), no hints ÷ in-tree's hints", 2)]
for _row, (_pre, _, _label, _) in HUGE_ROWS.items():
    PAIR_ROWS[_row] = [
        (_pre + "_returned_mib", "%s: host memory returned by inflating 1 GiB (MiB)" % _label, 0),
        (_pre + "_inflate_s", "%s: inflate 1 GiB (s)" % _label, 2),
        (_pre + "_deflate_s", "%s: deflate 1 GiB (s)" % _label, 2),
        (_pre + "_kept_mib", "%s: not taken back by the host after the deflate (MiB)" % _label, 0)]
# (limit key, label, the in-tree key it is compared with)
LIMIT_ROWS = [("limit0_alloc_s", "limit: allocate 1 GiB, order 0 (s)", "inflate_s"),
              ("limit9_alloc_s", "limit: allocate 1 GiB, order 9 (s)", "inflate_s"),
              ("limit0_free_s", "limit: free 1 GiB, order 0 (s)", "deflate_s"),
              ("limit9_free_s", "limit: free 1 GiB, order 9 (s)", "deflate_s")]


def rows_for(p, rows):
    """[(label, in-tree cell, ours cell, ratio cell)] of one pass."""
    it, us, lim = p.get("in-tree", []), p.get("ours", []), p.get("limit", [])
    out = []
    for row in ROWS:
        if row not in rows:
            continue
        if row == "limit":
            for key, label, base in LIMIT_ROWS:
                lv, bv = med(lim, key), med(it, base)
                out.append((label + " ÷ in-tree " + base.split("_")[0],
                            fmt(bv, 2), fmt(lv, 2), ratio(lv, bv)))
            continue
        for key, label, nd in PAIR_ROWS[row]:
            a, b = med(it, key), med(us, key)
            out.append((label, fmt(a, nd), fmt(b, nd), ratio(b, a)))
        if row == "migration":
            out += migration_nohint(it, p.get("nohint", []))
        if row == "pressure":
            lv = med(lim, "press_limit_s")
            a, b = med(it, "pressure_s"), med(us, "pressure_s")
            out.append(("pressure: no-balloon limit (s) ÷ in-tree", fmt(a, 2), fmt(lv, 2),
                        ratio(lv, a)))
            out.append(("pressure ÷ no-balloon limit", ratio(a, lv), ratio(b, lv), ""))
            out.append(("pressure: OOM kills (sum of rounds)",
                        str(sum(r.get("oom_kills", 0) for r in it)),
                        str(sum(r.get("oom_kills", 0) for r in us)), ""))
            for key, label in (("majflt", "pressure: major faults"),
                               ("pswpin", "pressure: swap-ins"),
                               ("given_mib", "pressure: balloon given back (MiB)")):
                a, b = med(it, key), med(us, key)
                out.append((label, fmt(a, 0), fmt(b, 0), ratio(b, a)))
    return out


def migration_nohint(it, nohint):
    """Rows with no hinting in the ours column, as the limit rows put the
    limit there: the in-tree driver's hints beside none."""
    out = []
    for key, label, nd in MIG_NOHINT_ROWS:
        a, b = med(it, key), med(nohint, key)
        out.append((label, fmt(a, nd), fmt(b, nd), ratio(b, a)))
    return out


def suite_cpus(suite, cpus):
    return [ARM64_CPU] if roots.arch(suite) == "aarch64" else cpus


def suite_rows(suite, rows):
    """The rows asked for that this suite runs; on arm64 the others are
    left out: vmware needs an x86 guest, and thp and aged count 2 MiB
    blocks as order 9, which holds with 4 KiB pages only; migration runs
    the x86 QEMU of the sid vmwhost root."""
    if roots.arch(suite) != "aarch64":
        return rows
    return [r for r in rows if r in ARM64_ROWS]


# the loads of the parts that boot their own VM: (key in a pass, label)
PART_LOADS = [("vmw_loads", "VMware")] + [(pre + "_loads", name)
                                          for pre, _, _, name in HUGE_ROWS.values()] + \
    [("mig_loads", "migration")]


def round_loads(p):
    """The 1-minute host loads taken before the rounds of one pass."""
    return p.get("loads", []) + [x for key, _ in PART_LOADS for x in p.get(key, [])]


def huge_notes(passes, cpus, rows):
    """What the kernel's driver returned on a hugepage-backed guest, said
    under the table: it stays at 0 (its requests hold at most 256 frames,
    and QEMU frees a 2 MiB host page only once all 512 of its frames come
    in one request)."""
    out = []
    for row, (pre, _, label, _) in HUGE_ROWS.items():
        if row not in rows:
            continue
        key = pre + "_returned_mib"
        it = [r[key] for c in cpus for r in passes[c].get("in-tree", []) if key in r]
        us = [r[key] for c in cpus for r in passes[c].get("ours", []) if key in r]
        if not it:
            continue
        if max(it) == 0 and min(it) == 0:
            s = ("%s: the kernel's driver stays at 0 MiB returned, in each of its %d "
                 "rounds: its requests hold at most 256 frames, and QEMU frees a 2 MiB host "
                 "page only when all 512 of its frames arrive in one request"
                 % (label, len(it)))
        else:
            s = ("%s: the kernel's driver returned %s MiB (each round), **not 0**"
                 % (label, " ".join(str(x) for x in it)))
        if us:
            s += "; ours returned %s MiB of 1024 (each round)" % " ".join(str(x) for x in us)
        out.append(s + ".")
    return out


def table(suite, passes, cpus, rows, left_out=()):
    head = "| metric |" + "".join(" in-tree | ours | ours / in-tree |" for _ in cpus)
    sub = "|---|" + "---|---|---|" * len(cpus)
    loads = [x for c in cpus for x in round_loads(passes[c])]
    high = [x for x in loads if x > LOAD_HIGH]
    mark = (" — **rounds ran above host load %.1f** (%d of %d, up to %.1f): "
            "slower, noisier times" % (LOAD_HIGH, len(high), len(loads), max(high))
            if high else "")
    lines = ["**%s (%s)** — columns: %s%s" % (
        suite, passes[cpus[0]].get("kernel", "?"),
        "; ".join("`-cpu %s`" % c for c in cpus), mark), "", head, sub]
    cols = [rows_for(passes[c], rows) for c in cpus]
    for i, (label, *_) in enumerate(cols[0]):
        lines.append("| %s |" % label + "".join(" %s | %s | %s |" % tuple(c[i][1:]) for c in cols))
    loads = []
    for c in cpus:
        p = passes[c]
        each = " ".join("%.1f" % x for x in p.get("loads", []))
        for key, name in PART_LOADS:
            if p.get(key):
                each += "%s%s %s" % (", " if each else "", name,
                                     " ".join("%.1f" % x for x in p[key]))
        loads.append("`%s` %.1f → %.1f (%.0f s; before each round: %s)" % (
            c, p["load"][0], p["load"][1], p["seconds"], each or "—"))
        loads += ["`%s` FAILED %s" % (c, e) for e in p.get("errors", ())]
    lines += ["", "Host load (1-min average) start → end, wall time: " + "; ".join(loads)]
    notes = huge_notes(passes, cpus, rows)
    if notes:
        lines += [""] + notes
    why = {"vmware": "vmware needs an x86 guest",
           "migration": "migration runs the x86 QEMU 11.1 of the sid vmwhost root",
           "thp": "thp and aged count 2 MiB blocks as order 9, true with 4 KiB pages only"}
    if left_out:
        lines += ["", "Not run on arm64: %s (%s)." % (", ".join(left_out), "; ".join(
            v for k, v in why.items() if k in left_out or k == "thp" and "aged" in left_out))]
    return "\n".join(lines) + "\n"


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: python3-matplotlib missing, no plot")
        return
    suites = [s for s in results if any("trace" in r for p in results[s].values()
                                       for r in p.get("ours", []))]
    if not suites:
        return
    n = max(len(results[s]) for s in suites)
    fig, axes = plt.subplots(n, len(suites), figsize=(5 * len(suites), 3 * n), squeeze=False)
    for si, suite in enumerate(suites):
        for ci in range(len(results[suite]), n):
            axes[ci][si].axis("off")
        for ci, (cpu, p) in enumerate(results[suite].items()):
            ax = axes[ci][si]
            for which, style in (("in-tree", "--"), ("ours", "-")):
                runs = [r for r in p.get(which, []) if "trace" in r]
                if runs:
                    tr = runs[-1]["trace"]
                    ax.plot([t for t, _ in tr], [a / GiB for _, a in tr], style, label=which)
            ax.set_title("%s %s, -cpu %s" % (suite, p.get("kernel", ""), cpu), fontsize=9)
            ax.set_xlabel("seconds")
            ax.set_ylabel("guest memory (GiB)")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=72)


def source_state():
    """Which src/ the drivers were built from: commit, and whether the work
    tree's src/ differs from it."""
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], check=True,
                              stdout=subprocess.PIPE, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "src"],
                               check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "a tree outside git"
    return "commit %s%s" % (head, " with uncommitted changes in src/" if dirty else "")


def run_settings(suites, rows, cpus):
    """What names a run's section in doc/bench.md: its environment."""
    return 'BENCH_SUITES="%s" BENCH_ROWS="%s" BENCH_CPUS="%s"' % (
        " ".join(suites.split()), " ".join(rows), " ".join(cpus))


DOC_HEAD = """# make bench results

This file is written by `make bench` (tests/bench/bench.py).  Each run
replaces the section of its settings (`BENCH_SUITES`, `BENCH_ROWS`,
`BENCH_CPUS`), between its `bench-run` comment lines, or adds one; the rest
is kept as it is.  Do not edit the sections by hand: run `make bench` again.
"""


def section(settings, rounds, md):
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return ("<!-- bench-run: %s -->\n### %s make bench\n\n%s, %d rounds.\n\n%s"
            "<!-- bench-run end -->\n" % (settings, settings, when, rounds, md))


def write_doc(path, settings, sec):
    """Put sec in place of the section of these settings in path (or at
    its end), keeping everything else."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = DOC_HEAD
    start = "<!-- bench-run: %s -->\n" % settings
    i = text.find(start)
    if i < 0:
        text = text.rstrip("\n") + "\n\n" + sec
    else:
        end = "<!-- bench-run end -->\n"
        j = text.find(end, i)
        j = len(text) if j < 0 else j + len(end)
        text = text[:i] + sec + text[j:]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--suites", default=os.environ.get("BENCH_SUITES", "bookworm sid"))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    ap.add_argument("--rows", default=os.environ.get("BENCH_ROWS", " ".join(DEFAULT_ROWS)))
    ap.add_argument("--cpus", default=os.environ.get("BENCH_CPUS", "max max,erms=off"))
    ap.add_argument("--out", default=os.path.join(REPO, "out", "bench"))
    ap.add_argument("--doc", default=os.environ.get("BENCH_DOC", DOC),
                    help='the results file whose section of these settings this run '
                         'replaces ("" for none; default doc/bench.md)')
    a = ap.parse_args()
    rows = a.rows.split()
    bad = set(rows) - set(ROWS)
    if bad:
        sys.exit("bench: unknown rows %s (known: %s)" % (" ".join(sorted(bad)), " ".join(ROWS)))
    cpus = a.cpus.split()
    os.makedirs(a.out, exist_ok=True)
    t_all = time.monotonic()
    results, failed = {}, False
    src = source_state()
    for suite in a.suites.split():
        root = roots.root(suite)
        k = roots.suite_kver(suite)
        results[suite] = {}
        srows = suite_rows(suite, rows)
        for cpu in suite_cpus(suite, cpus):
            t0, l0 = time.monotonic(), os.getloadavg()[0]
            p = {"kernel": k}
            for part in ("virtio", "vmware") + tuple(HUGE_ROWS) + ("migration",):
                if part == "virtio" and not set(srows) & set(VIRTIO_ROWS) or \
                        part != "virtio" and part not in srows:
                    continue
                try:
                    if part == "virtio":
                        p.update(virtio_pass(suite, root, k, cpu, a.rounds, srows))
                        continue
                    if part == "vmware":
                        vres = vmware_pass(suite, root, k, cpu, a.rounds)
                        p["vmw_loads"] = vres.pop("loads")
                    elif part == "migration":
                        vres = migration_pass(suite, root, k, cpu, a.rounds)
                        p["mig_loads"] = vres.pop("loads")
                    else:
                        vres = huge_pass(suite, root, k, cpu, a.rounds, part)
                        p[HUGE_ROWS[part][0] + "_loads"] = vres.pop("loads")
                    for who, runs in vres.items():
                        lst = p.setdefault(who, [])
                        for i, r in enumerate(runs):
                            if i < len(lst):
                                lst[i].update(r)
                            else:
                                lst.append(r)
                except Exception as e:
                    failed = True
                    msg = (str(e).splitlines() or [""])[0][:200]
                    p.setdefault("errors", []).append("%s: %s: %s" % (part, type(e).__name__, msg))
                    p.setdefault("tracebacks", []).append(traceback.format_exc())
                    print("bench: %s -cpu %s (%s) failed:\n%s" %
                          (suite, cpu, part, traceback.format_exc()), flush=True)
            p["load"] = (l0, os.getloadavg()[0])
            p["seconds"] = time.monotonic() - t0
            results[suite][cpu] = p
    wall = time.monotonic() - t_all
    md = ("Medians of %d alternating rounds, one TCG VM per kernel and CPU model; "
          "ratio < 1 favours ours for times and RAM a migration sent, > 1 for the THP and "
          "aged rows and host memory returned. Rows `limit:` put "
          "the limit (no protocol) in the ours column and divide it by the in-tree "
          "driver's inflate or deflate time. Bench wall time %.0f s; drivers built from %s.\n\n"
          % (a.rounds, wall, src))
    md += "\n".join(table(s, results[s], suite_cpus(s, cpus), suite_rows(s, rows),
                          [r for r in rows if r not in suite_rows(s, rows)])
                    for s in results)
    print(md)
    with open(os.path.join(a.out, "bench.md"), "w") as f:
        f.write(md)
    if a.doc:
        settings = run_settings(a.suites, rows, cpus)
        write_doc(a.doc, settings, section(settings, a.rounds, md))
        print("bench: results written to %s" % a.doc)
    with open(os.path.join(a.out, "bench.json"), "w") as f:
        json.dump({"rounds": a.rounds, "rows": rows, "cpus": cpus, "wall_s": wall, "src": src,
                   "suites": {s: {c: {x: ([{kk: vv for kk, vv in r.items() if kk != "trace"}
                                            if isinstance(r, dict) else r for r in y]
                                           if isinstance(y, list) else y)
                                      for x, y in p.items()}
                                  for c, p in ps.items()}
                              for s, ps in results.items()}}, f, indent=1)
    plot(results, os.path.join(a.out, "bench.png"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
