# SPDX-License-Identifier: GPL-2.0
"""Our virtio_balloon on virtio-mmio, the transport of Firecracker, whose
balloon reads only the first descriptor of an element and skips one of
more than 256 frames: QEMU's microvm machine on x86 and its arm64 `virt`
machine (4 KiB and 16 KiB guest pages, the devices from the device
tree), each with virtio-balloon-device on the machine's own virtio-mmio
bus.  QEMU's own trace shows what the device gets: every element one
descriptor (out_num 1) of at most 256 frames (1024 bytes), whole blocks
or not, and on 16 KiB pages every page's 4 frames in one element.  Then
the balloon works there as on PCI: inflate, deflate, statistics, deflate
on OOM, nothing leaked.
"""
import collections
import os
import re

import pytest

from lib import initramfs, roots
from lib import vm as vmlib
from lib.virtio_util import GiB, MiB, BalloonGuest, GuestPool

SUITES = roots.suites_quick_on_bookworm(("bookworm", "sid"))
# arm64 -M virt with 4 KiB and 16 KiB guest pages
if not roots.quick() and "sid" in roots.suites():
    SUITES += ["sid-arm64", "sid-arm64-16k"]
STEP = 300
# Debian's virtio_mmio takes no device from the command line: microvm
# describes them in ACPI, arm64 virt in the device tree.  Under TCG the
# x86 kernel cannot calibrate its clocks on microvm, so it is told them.
MACHINES = {
    "x86_64": dict(machine="microvm",
                   append="vmh.modules=virtio_mmio tsc_early_khz=2600000 lpj=10000000"),
    "aarch64": dict(machine="virt", append="vmh.modules=virtio_mmio"),
}


@pytest.fixture(scope="module")
def mmio(suite):
    pool = GuestPool(suite, {})
    initrd = initramfs.build(pool.root, pool.kver, ko=[pool.ko],
                             extra_modules=("virtio_mmio", "virtio_console"))
    m = MACHINES[pool.arch]
    v = vmlib.boot(lambda: vmlib.VM(
        roots.kernel(pool.root, pool.kver), initrd, m["append"],
        name="mmio-%s" % suite, machine=m["machine"], arch=pool.arch,
        balloon_device="virtio-balloon-device",
        balloon_opts="deflate-on-oom=on"))
    g = BalloonGuest(suite, "mmio", v, pool.kver, pool._intree_path(), root=pool.root)
    yield g
    v.close()


def _elements(lines):
    """The balloon's elements in QEMU's trace: (in_num, out_num, [gpa])
    for each virtqueue_pop followed by virtio_balloon_handle_output lines
    (the other devices' elements have none)."""
    out, cur = [], None
    for line in lines:
        m = re.search(r"virtqueue_pop .*in_num (\d+) out_num (\d+)", line)
        if m:
            cur = (int(m.group(1)), int(m.group(2)), [])
            out.append(cur)
            continue
        m = re.search(r"virtio_balloon_handle_output .*gpa: 0x([0-9a-f]+)", line)
        if m and cur is not None:
            cur[2].append(int(m.group(1), 16))
    return [e for e in out if e[2]]


@pytest.mark.parametrize("suite", SUITES, scope="module")
def test_mmio_requests_and_lifecycle(mmio):
    g, vm = mmio, mmio.vm
    assert g.bound(), "our driver did not bind the virtio-mmio balloon"
    parent = vm.sh("basename $(readlink -f /sys/bus/virtio/drivers/virtio_balloon/"
                   "virtio*/../driver)").strip()
    assert parent == "virtio-mmio", "the balloon's transport is %r" % parent
    bus = vm.qmp.cmd("qom-get", {"path": "/machine/peripheral/" + vm.balloon_id,
                                 "property": "parent_bus"})
    assert "virtio-mmio-bus" in bus, "QEMU has the balloon on %s" % bus
    events = ("virtqueue_pop", "virtio_balloon_handle_output")
    since = os.path.getsize(vm.qemu_log)
    vm.cmd("human-monitor-command",
           **{"command-line": "log " + ",".join("trace:" + e for e in events)})
    try:
        vm.balloon_to(g.ram - 256 * MiB, STEP)
    finally:
        vm.cmd("human-monitor-command", **{"command-line": "log none"})
        for e in events:
            vm.qmp.cmd("trace-event-set-state", {"name": e, "enable": False})
    with open(vm.qemu_log, errors="replace") as f:
        f.seek(since)
        elems = _elements(f.read().splitlines())
    sizes = [len(e[2]) for e in elems]
    shapes = sorted(set((e[0], e[1]) for e in elems))
    print("%d elements, (in_num, out_num) %s, largest %d frames (%d bytes), "
          "%d blocks in the balloon, %d KiB pages" % (
              len(sizes), shapes, max(sizes), 4 * max(sizes),
              g.dbg_int("balloon_blocks"), g.page_kb))
    assert sum(sizes) == 256 * MiB // 4096, "QEMU saw %d frames" % sum(sizes)
    assert shapes == [(0, 1)], "balloon elements of (in_num, out_num) %s" % shapes
    assert max(sizes) <= 256, "an element of %d frames (%d bytes) on virtio-mmio" % (
        max(sizes), 4 * max(sizes))
    # every guest page whole in one element (4 frames on 16 KiB pages)
    page = g.page_kb * 1024
    for _, _, gpas in elems:
        split = [p for p, n in collections.Counter(a // page for a in gpas).items()
                 if n != page // 4096]
        assert not split, "pages at %s not whole in one element" % [
            hex(p * page) for p in split[:4]]
    assert g.dbg_int("balloon_blocks"), "no 2 MiB block: the test shows nothing"
    assert g.dbg_int("request_max_frames") <= 256
    # statistics
    stats = vm.guest_stats(interval=2)
    assert stats["stats"].get("stat-total-memory", -1) > 0, stats
    # deflate on OOM: a program that needs more than is free gets it
    vm.balloon_to(1 * GiB, STEP)
    free_mib = vm.meminfo()["MemFree"] // 1024
    rc, out = vm.shell("dd if=/dev/zero of=/dev/null bs=%dM count=1" % (free_mib + 128),
                       timeout=STEP)
    assert rc == 0, out
    assert "Killed process" not in vm.dmesg()
    g.to_full(STEP)
    g.assert_nothing_leaked("after the virtio-mmio round")
