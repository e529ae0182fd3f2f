# SPDX-License-Identifier: GPL-2.0
"""Secure Boot fallback: the guest keeps a balloon when ours is refused.

The suite's root with balloon-dkms installed (from the signed repository
by tests/test_repo.py when it ran earlier in this process, else from the
.deb) boots as a VM from an ext4 image with real udev, as
test_packaging's test_udev_autoloads_ours_in_vm does.

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
"""
import os
import re

import pytest

from lib import pkg, repo, roots
from test_packaging import install_deb, need_suite

VERSION = pkg.VERSION
MiB = 1 << 20
LINE = ("balloon-dkms: our virtio_balloon was refused (Key was rejected by service); "
        "using the kernel's driver; enrol /var/lib/dkms/mok.pub with mokutil --import")


def image(suite, work, timing):
    """(ext4 image of the root with the package installed, root base, kver,
    dkms moved the kernel's modules aside)"""
    img = repo.kept_image(suite)
    with pkg.Root(suite) as r:
        if not img:
            install_deb(r, pkg.build_deb())
            r.run("apt-get clean")
            img = os.path.join(work, "root.ext4")
            with pkg.timed(timing, "%s ext4 image of the root" % suite):
                roots.make_ext4(r.path, img)
        base, kver = r.base, r.kver
        moved = r.run("dpkg --compare-versions \"$(dpkg-query -W -f='${Version}' dkms)\" ge 3.1",
                      check=False).returncode == 0
    return img, base, kver, moved


def boot(make_vm, base, img, suite, append, timing, what):
    with pkg.timed(timing, "%s VM boot %s (udev settled)" % (suite, what)):
        return make_vm(base, root_disk=img, intree_only=True, append=append,
                       name="sb-%s-%s" % (suite, what))


def udev_loaded(vm, module):
    before = re.search(r"VMH-MODULES-BEFORE-UDEV: (.*)", vm.console_text())
    assert before and module not in before.group(1).split(), vm.console_tail(60)
    assert vm.shell("test -d /sys/module/%s" % module)[0] == 0, "%s not loaded" % module
    bound = vm.sh("ls /sys/bus/virtio/drivers/virtio_balloon/")
    assert re.search(r"\bvirtio\d+\b", bound), "virtio_balloon bound to no device: " + bound


def kernel_log(vm):
    return vm.sh("dmesg --color=never")


def inflate_deflate(vm, suite, timing):
    full = vm.query_balloon()
    with pkg.timed(timing, "%s inflate and deflate 64 MiB" % suite):
        vm.balloon_to(full - 64 * MiB, timeout=300)
        vm.balloon_to(full, timeout=300)


@pytest.mark.parametrize("suite", [s for s in ("bookworm", "sid")])
def test_sb_fallback_in_vm(suite, work, make_vm, timing):
    need_suite(suite)
    img, base, kver, moved = image(suite, work, timing)

    # 1. signature enforcement: ours refused, the kernel's driver instead
    vm = boot(make_vm, base, img, suite, "module.sig_enforce=1", timing, "enforced")
    assert vm.sh("cat /sys/module/module/parameters/sig_enforce").strip() == "Y"
    udev_loaded(vm, "virtio_balloon")
    dmesg = kernel_log(vm)
    assert "Loading of module with unavailable key is rejected" in dmesg, dmesg[-3000:]
    said = [l for l in dmesg.splitlines() if "balloon-dkms:" in l]
    assert len(said) == 1 and said[0].endswith("] " + LINE), said
    # the loaded driver is the kernel's: not our version, no out-of-tree taint
    assert vm.shell("cat /sys/module/virtio_balloon/version")[1].strip() != VERSION
    assert "O" not in vm.sh("cat /sys/module/virtio_balloon/taint")
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
    udev_loaded(vm, "virtio_balloon")
    assert vm.sh("cat /sys/module/virtio_balloon/version").strip() == VERSION
    assert "balloon-dkms:" not in kernel_log(vm)
    inflate_deflate(vm, suite, timing)
    vm.close()
