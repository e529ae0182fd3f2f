# SPDX-License-Identifier: GPL-2.0
"""Secure Boot fallback: the guest keeps a balloon when ours is refused.

The input is always the same: the suite's build root with the .deb
(pkg.build_deb()) installed by apt in a throwaway overlay
(pkg.deb_root_image), booted as a VM from an ext4 image of it with real
udev, as test_packaging's test_udev_autoloads_ours_in_vm does.  (The
repository install of tests/test_repo.py installs the same package; its
root is not reused here, so this test's input does not depend on what ran
before it.)

There is no Secure Boot firmware here; `module.sig_enforce=1` on the
kernel command line takes the same refusal path in the kernel.  Debian's
kernels trust only their own build-time key, which signed every in-tree
module; dkms (>= 3.0.4) signed ours with its own key
(/var/lib/dkms/mok.pub), which the kernel does not trust: ours is refused
with EKEYREJECTED ("Key was rejected by service").

1. Enforced: udev loads virtio_balloon by modalias; the modprobe.d rule
   (packaging/balloon-dkms-fallback.conf) falls back to the kernel's own
   driver (on dkms 3.2 taken from where dkms moved it); exactly one line in
   the kernel log says so; that driver inflates and deflates over QMP.
   `modprobe vmw_balloon` (not a VMware guest) fails as it would without
   the rule, and says nothing about using the kernel's driver.
2. Not enforced: ours is loaded, and the rule says nothing.
3. Not enforced, a bad `floor_mb` in /etc/modprobe.d: ours refuses it
   (its own "floor_mb must be" line), the rule loads the kernel's driver
   and says in one line which parameter was refused and which file set
   it, with no Secure Boot advice.
"""
import re

import pytest

from lib import pkg
from test_packaging import need_suite

VERSION = pkg.VERSION
MiB = 1 << 20
LINE = ("balloon-dkms: our virtio_balloon was refused (Key was rejected by service); "
        "using the kernel's driver; enrol /var/lib/dkms/mok.pub with mokutil --import")
FLOOR_CONF = "/etc/modprobe.d/balloon-floor.conf"
FLOOR_LINE = ("balloon-dkms: our virtio_balloon refused its parameter floor_mb='lots' set in "
              "%s; using the kernel's driver; fix or remove floor_mb there" % FLOOR_CONF)


def boot(make_vm, base, img, suite, append, timing, what):
    with pkg.timed(timing, "%s VM boot %s (udev settled)" % (suite, what)):
        return make_vm(base, root_disk=img, intree_only=True, append=append,
                       name="sb-%s-%s" % (suite, what))


def kernel_log(vm):
    return vm.sh("dmesg --color=never")


def fallback_lines(text):
    """The rule's lines (not our module's own "balloon-dkms: <module>: ...")."""
    return [l for l in text.splitlines() if "balloon-dkms: our " in l]


def assert_kernels_driver(vm, kver):
    """The loaded virtio_balloon is the kernel's: like the kernel's module
    file it has no version (ours always has one), no out-of-tree taint."""
    intree = vm.sh("modinfo -F version $(find /lib/modules/%s/kernel "
                   "/var/lib/dkms/balloon/original_module/%s -name 'virtio_balloon.ko*' "
                   "! -name '*.origin' 2>/dev/null | head -n 1)" % (kver, kver)).strip()
    assert intree == "", "the kernel's virtio_balloon file has a version: %r" % intree
    got = pkg.module_version(vm, "virtio_balloon")
    assert got is None, "the loaded virtio_balloon has version %r, not the kernel's (none)" % got
    assert "O" not in vm.sh("cat /sys/module/virtio_balloon/taint")


def inflate_deflate(vm, suite, timing):
    full = vm.query_balloon()
    with pkg.timed(timing, "%s inflate and deflate 64 MiB" % suite):
        vm.balloon_to(full - 64 * MiB, timeout=300)
        vm.balloon_to(full, timeout=300)


@pytest.mark.parametrize("suite", [s for s in ("bookworm", "sid")])
def test_sb_fallback_in_vm(suite, work, make_vm, timing):
    need_suite(suite)
    img, base, kver, moved = pkg.deb_root_image(suite, work, timing)

    # 1. signature enforcement: ours refused, the kernel's driver instead
    vm = boot(make_vm, base, img, suite, "module.sig_enforce=1", timing, "enforced")
    assert vm.sh("cat /sys/module/module/parameters/sig_enforce").strip() == "Y"
    pkg.loaded_by_udev(vm, "virtio_balloon")
    dmesg = kernel_log(vm)
    assert "Loading of module with unavailable key is rejected" in dmesg, dmesg[-3000:]
    said = [l for l in dmesg.splitlines() if "balloon-dkms:" in l]
    assert len(said) == 1 and said[0].endswith("] " + LINE), said
    assert_kernels_driver(vm, kver)
    # ours is what modprobe resolves to: installed, but refused
    assert "/updates/dkms/virtio_balloon.ko" in vm.sh("modinfo -n virtio_balloon")
    if moved:
        # dkms 3.2 moved the kernel's module aside: it came from there
        assert vm.shell("ls /lib/modules/%s/kernel/drivers/virtio/virtio_balloon.ko*" % kver)[0] != 0
        assert vm.sh("ls /var/lib/dkms/balloon/original_module/%s/*/virtio_balloon.ko*" % kver)
    inflate_deflate(vm, suite, timing)
    # vmw_balloon: ours refused, and the kernel's refuses a non-VMware
    # guest too: modprobe fails as without the rule, no "using" line
    rc, out = vm.shell("modprobe vmw_balloon 2>&1")
    assert rc != 0 and "could not insert 'vmw_balloon': Key was rejected by service" in out, out
    assert "balloon-dkms: our vmw_balloon" not in kernel_log(vm)
    vm.close()

    # 2. no enforcement: ours, and the rule says nothing
    vm = boot(make_vm, base, img, suite, "", timing, "not-enforced")
    got = pkg.loaded_by_udev(vm, "virtio_balloon")
    assert got is not None, "virtio_balloon has no version: the kernel's driver, not ours"
    assert got == VERSION, "virtio_balloon version %r, ours is %s" % (got, VERSION)
    assert "balloon-dkms:" not in kernel_log(vm)
    inflate_deflate(vm, suite, timing)

    # 3. a bad floor_mb in /etc/modprobe.d: the rule names it and its file
    vm.sh("echo 'options virtio_balloon floor_mb=lots' > %s" % FLOOR_CONF)
    vm.sh("rmmod virtio_balloon")
    out = vm.sh("modprobe virtio_balloon 2>&1")
    dmesg = kernel_log(vm)
    assert re.search(r"\] balloon-dkms: virtio_balloon: floor_mb must be .*, not 'lots'$",
                     dmesg, re.M), dmesg[-3000:]
    said = fallback_lines(dmesg)
    assert len(said) == 1 and said[0].endswith("] " + FLOOR_LINE), (said, out)
    assert "mokutil" not in dmesg and "mokutil" not in out, out
    assert_kernels_driver(vm, kver)
    inflate_deflate(vm, suite, timing)
    vm.close()
