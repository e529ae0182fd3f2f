# SPDX-License-Identifier: GPL-2.0
"""Our virtio_balloon on virtio-mmio: QEMU's microvm machine with
virtio-balloon-device, the transport of Firecracker, whose balloon reads
only the first descriptor of an element and skips one of more than 256
frames.  QEMU's own trace shows what the device gets: every element one
descriptor (out_num 1) of at most 256 frames (1024 bytes), whole blocks
or not.  Then the balloon works there as on PCI: inflate, deflate,
statistics, deflate on OOM, nothing leaked.
"""
import os
import re

import pytest

from lib import initramfs, roots
from lib import vm as vmlib
from lib.virtio_util import GiB, MiB, BalloonGuest, GuestPool

SUITES = roots.suites_quick_on_bookworm(("bookworm", "sid"))
STEP = 300


@pytest.fixture(scope="module")
def mmio(suite):
    pool = GuestPool(suite, {})
    initrd = initramfs.build(pool.root, pool.kver, ko=[pool.ko],
                             extra_modules=("virtio_mmio", "virtio_console"))
    v = vmlib.boot(lambda: vmlib.VM(
        roots.kernel(pool.root, pool.kver), initrd,
        # the devices come from ACPI (Debian's virtio_mmio takes none from
        # the command line); under TCG the kernel cannot calibrate its
        # clocks on microvm, so it is told them
        "vmh.modules=virtio_mmio tsc_early_khz=2600000 lpj=10000000",
        name="mmio-%s" % suite, machine="microvm",
        balloon_device="virtio-balloon-device",
        balloon_opts="deflate-on-oom=on"))
    g = BalloonGuest(suite, "mmio", v, pool.kver, pool._intree_path(), root=pool.root)
    yield g
    v.close()


@pytest.mark.parametrize("suite", SUITES, scope="module")
def test_mmio_requests_and_lifecycle(mmio):
    g, vm = mmio, mmio.vm
    assert g.bound(), "our driver did not bind the virtio-mmio balloon"
    parent = vm.sh("basename $(readlink -f /sys/bus/virtio/drivers/virtio_balloon/"
                   "virtio*/../driver)").strip()
    assert parent == "virtio-mmio", "the balloon's transport is %r" % parent
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
        lines = f.read().splitlines()
    sizes, outs, cur = [], [], None
    for line in lines:
        m = re.search(r"virtqueue_pop .*in_num (\d+) out_num (\d+)", line)
        if m:
            if cur:
                sizes.append(cur)
            cur = 0
            outs.append(int(m.group(2)))
        elif "virtio_balloon_handle_output" in line and cur is not None:
            cur += 1
    if cur:
        sizes.append(cur)
    print("%d elements, out_num %s, largest %d frames, %d blocks in the balloon" % (
        len(sizes), sorted(set(outs)), max(sizes), g.dbg_int("balloon_blocks")))
    assert sum(sizes) == 256 * MiB // 4096, "QEMU saw %d frames" % sum(sizes)
    assert max(sizes) <= 256, "an element of %d frames on virtio-mmio" % max(sizes)
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
