# SPDX-License-Identifier: GPL-2.0
"""What a balloon leaves each memory zone of the guest (src/zone_guard.h).

The rule: no zone the kernel allocates from for itself (every zone but
Movable) ends below its low watermark plus its lowmem_reserve, and none
ends lower than the kernel's own driver leaves it in the same guest.
Each test runs the kernel's driver and ours, one after the other, in one
guest, and compares /proc/zoneinfo after each inflation.

  movable   2 GiB booted with movablecore=1536M, balloon to 1 GiB, on the
            four amd64 kernels and sid's arm64 kernel with 16 KiB pages
  dimm      2 GiB plus two hot-plugged DIMMs (QMP object-add/device_add,
            onlined by the test): 128 MiB onlined movable, 512 MiB onlined
            to the kernel; the balloon inflated, both go offline and are
            unplugged again (blocks in the kernel's DIMM must leave the
            balloon when their memory goes offline: they cannot migrate);
            the same guest has a 1 GiB virtio-mem device (virtio_mem in
            its initramfs), 512 MiB of it plugged and onlined where the
            kernel puts it by default (its Normal zone), the balloon
            inflated into it, the device asked back to 0: virtio-mem
            unplugs sub-blocks of online memory by alloc_contig_range(),
            with no memory notifier, and must find no balloon frame there
"""
import pytest

from lib import lifecycle, memzones, roots
from lib.virtio_util import GiB, MiB, GuestPool

SUITES = roots.suites_quick_on_bookworm()
if not roots.quick() and "sid" in roots.suites():
    SUITES.append("sid-arm64-16k")
STEP = 300
# Free memory moves a little between two readings (per-cpu lists, the
# shell, 2 MiB granularity of blocks); what a drained zone loses is far
# more.
SLACK_MIB = 8

CONFIGS = {
    "movable": {"append": "movablecore=1536M"},
    "dimm": {"append": "memhp_default_state=offline",
             "extra_args": ["-m", "2048,slots=2,maxmem=4G",
                            "-object", "memory-backend-ram,id=vmem0,size=1G",
                            "-device", "virtio-mem-pci,id=vmem0dev,memdev=vmem0,"
                            "requested-size=0"],
             "extra_modules": ["virtio_mem"]},
}


@pytest.fixture(scope="module")
def pool(suite):
    if suite in roots.ARM64:
        import test_arm64
        test_arm64.need_suite(suite)
    p = GuestPool(suite, CONFIGS)
    yield p
    p.close()


def _table(before, after):
    return "\n".join("  %-8s %7.1f -> %7.1f MiB (min %.1f, low %.1f + reserve %.1f)" % (
        n, before[n].free, after[n].free, after[n].min, after[n].low, after[n].reserve)
        for n in after)


def _inflate(g, driver, size):
    """Load driver ("intree" or "ours"), balloon to size, read the zones,
    balloon back to full; returns the zones at size."""
    (g.load_intree if driver == "intree" else g.load_ours)()
    before = memzones.zones(g.vm, g.page_kb)
    g.vm.balloon_to(size, STEP)
    after = memzones.zones(g.vm, g.page_kb)
    print("%s, balloon to %d MiB:\n%s" % (driver, size // MiB, _table(before, after)))
    return before, after


def _assert_zone_rule(before, ours, intree_before, intree):
    """No kernel zone below its low watermark plus reserve, and none gives
    the balloon more than it gave the kernel's driver (the zones may start
    a little apart: each driver's round starts where the last one left)."""
    for name, z in ours.items():
        if name == memzones.MOVABLE:
            continue
        if before[name].free >= z.floor:
            assert z.free >= z.floor - SLACK_MIB, \
                "ours left %s at %.1f MiB, below its low watermark %.1f + reserve %.1f" % (
                    name, z.free, z.low, z.reserve)
        taken = before[name].free - z.free
        taken_intree = intree_before[name].free - intree[name].free
        assert taken <= taken_intree + SLACK_MIB, \
            "ours took %.1f MiB of %s (left %.1f), the kernel's driver %.1f MiB (left %.1f)" % (
                taken, name, z.free, taken_intree, intree[name].free)


def _assert_not_ours(vm, ledger, blocks, console, why):
    """Memory blocks that went offline with the kernel's driver but not
    with ours: each must have been kept by a page the kernel dumped as
    unmovable, and none of those a frame of our balloon (QEMU's trace).
    The kernel's own objects (slab, page tables) land in the kernel's
    DIMM, its highest zone, in other blocks from one round to the next."""
    if not blocks:
        return
    dumped = memzones.unmovable_pfns(console, vm, blocks)
    ledger.feed()
    ours = [hex(p) for b in blocks for p in dumped[b] if p * 4096 in ledger.held]
    print("went offline with the kernel's driver only: %s; the kernel dumped %s" % (
        blocks, {b: [hex(p) for p in dumped[b]] for b in blocks}))
    assert all(dumped[b] for b in blocks) and not ours, \
        "memory blocks %s went offline with the kernel's driver, not with ours: %s; " \
        "pages dumped as unmovable: %s, of them in our balloon: %s" % (
            blocks, why, {b: [hex(p) for p in dumped[b]] for b in blocks}, ours)


@pytest.mark.parametrize("suite", SUITES, scope="module")
def test_movable_zone_keeps_kernel_zones(pool):
    """movablecore=1536M: the kernel's driver takes its pages from the
    movable zone and leaves DMA32 as it was; ours must too (it used to
    take 2 MiB blocks from DMA32 down to its min watermark)."""
    g = pool.get("movable")
    assert memzones.MOVABLE in memzones.zones(g.vm, g.page_kb), \
        "movablecore= gave the guest no movable zone"
    intree_before, intree = _inflate(g, "intree", 1 * GiB)
    g.to_full(STEP)
    before, ours = _inflate(g, "ours", 1 * GiB)
    g.to_full(STEP)
    g.assert_nothing_leaked("after the movable-zone inflation")
    _assert_zone_rule(before, ours, intree_before, intree)


@pytest.mark.parametrize("suite", [s for s in roots.suites() if s in ("bookworm", "sid")],
                         scope="module")
def test_hotplugged_memory(pool, suite):
    """Two DIMMs plugged over QMP, one onlined movable, one to the kernel:
    the balloon leaves the kernel's zones as the kernel's driver does,
    and both DIMMs go offline and out with the balloon inflated (our
    blocks in the kernel's DIMM leave the balloon as it goes offline,
    the host told of each: QMP actual rises)."""
    g = pool.get("dimm")
    vm = g.vm
    movable = memzones.plug_dimm(vm, 128, "dimm1")
    memzones.online_blocks(vm, movable, "online_movable")
    kernel = memzones.plug_dimm(vm, 512, "dimm2")
    memzones.online_blocks(vm, kernel, "online_kernel")
    zones = memzones.block_zones(vm, movable + kernel)
    assert {zones[b] for b in movable} == {memzones.MOVABLE}, zones
    assert memzones.MOVABLE not in {zones[b] for b in kernel}, zones
    total = g.ram + 640 * MiB
    assert vm.query_balloon() == total
    # 640 MiB ballooned: more than the movable DIMM has, so the kernel's
    # zones give too (our blocks: the kernel's DIMM first).
    size = total - 640 * MiB
    intree_before, intree = _inflate(g, "intree", size)
    # Whether the kernel's DIMM can go offline at all: the kernel's own
    # allocations may sit there (it is its highest zone), whatever the
    # balloon does.  With the kernel's driver, then again with ours.
    intree_off, why = memzones.offline_blocks(vm, kernel)
    print("kernel DIMM with the kernel's driver inflated: blocks %s went offline; %s" % (
        intree_off, why))
    memzones.online_again(vm, kernel, "online_kernel")
    vm.balloon_to(total, STEP)
    ledger = lifecycle.FrameLedger(vm)
    ledger.start()
    try:
        before, ours = _inflate(g, "ours", size)
        _assert_zone_rule(before, ours, intree_before, intree)
        offline0 = g.dbg_int("offline_frames")
        off, why = memzones.offline_blocks(vm, movable)
        assert off == movable, "the movable DIMM did not go offline with our balloon " \
            "inflated: " + why
        actual = vm.query_balloon()
        con0 = len(vm.console_text())
        off, why = memzones.offline_blocks(vm, kernel)
        print("kernel DIMM with ours inflated: blocks %s went offline; %s; QMP actual %d -> "
              "%d MiB" % (off, why, actual // MiB, vm.query_balloon() // MiB))
        _assert_not_ours(vm, ledger, sorted(set(intree_off) - set(off)),
                         vm.console_text()[con0:], why)
    finally:
        ledger.stop()
    given = g.dbg_int("offline_frames") - offline0
    print("%d MiB of blocks left the balloon as their memory went offline" % (
        given * 4096 // MiB))
    ok = off == kernel
    vm.device_del("dimm1")
    if not ok:
        # The kernel's objects keep that DIMM: give the balloon back and
        # leave this guest to the next boot.
        memzones.online_again(vm, kernel, "online_kernel")
        vm.balloon_to(g.ram + 512 * MiB, STEP)
        pool.close()
        return
    vm.device_del("dimm2")
    assert vm.query_balloon() >= size, "the host lost track of the balloon"
    vm.balloon_to(g.ram, STEP)
    g.assert_nothing_leaked("after unplugging both DIMMs")


@pytest.mark.parametrize("suite", [s for s in roots.suites() if s in ("bookworm", "sid")],
                         scope="module")
def test_virtio_mem_unplug(pool, suite):
    """512 MiB of virtio-mem plugged and onlined as "online" does (sid's
    default, memhp_default_state=online: the Normal zone here, the
    guest's RAM all below 4 GiB), 700 MiB ballooned: QEMU's trace sees
    the balloon take frames in the device's memory; asked back to 0, the
    device unplugs with no balloon frame left in its memory (with the
    kernel's driver, then ours), and a deflation gives every frame back."""
    g = pool.get("dimm")
    vm = g.vm
    dev = memzones.VirtioMem(vm, "vmem0dev", "vmem0")
    left = {}
    for driver in ("intree", "ours"):
        blocks = dev.plug(512 * MiB, "online")
        zones = memzones.block_zones(vm, blocks)
        assert memzones.MOVABLE not in zones.values(), zones
        (g.load_intree if driver == "intree" else g.load_ours)()
        ledger = lifecycle.FrameLedger(vm)
        ledger.start()
        try:
            vm.balloon_to(g.ram - 700 * MiB, STEP)
            inside = dev.frames_in(ledger)
            print("%s: %d MiB of the balloon in the device's memory (blocks %s, %s)" % (
                driver, inside * 4096 // MiB, blocks, sorted(set(zones.values()))))
            assert inside * 4096 >= 256 * MiB, \
                "%s: only %d MiB of the balloon in the device's 512 MiB" % (
                    driver, inside * 4096 // MiB)
            size, inside = dev.unplug(ledger)
            left[driver] = size
            print("%s: the unplug stopped at %d MiB plugged, %d balloon frames in it" % (
                driver, size // MiB, inside))
            assert inside == 0, \
                "%s: the unplug stopped at %d MiB plugged, %d MiB of the balloon " \
                "still in the device's memory" % (driver, size // MiB, inside * 4096 // MiB)
            vm.balloon_to(g.ram, STEP)
            ledger.feed()
            assert not ledger.held, "%s: %d frames still in the balloon at full size" % (
                driver, len(ledger.held))
            ledger.assert_clean(driver)
        finally:
            ledger.stop()
    print("left plugged: the kernel's driver %d MiB, ours %d MiB" % (
        left["intree"] // MiB, left["ours"] // MiB))
    assert g.dbg_int("balloon_frames") == 0
    assert vm.query_balloon() == g.ram
