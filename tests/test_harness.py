# SPDX-License-Identifier: GPL-2.0
"""Tests of the test harness itself (tests/lib), on the kernels' own drivers.

If these fail, no driver test result means anything.  They use the in-tree
virtio_balloon of each root, QEMU's real virtio-balloon device over QMP and
the real guest shell; nothing is mocked.
"""
import hashlib
import lzma
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from lib import initramfs, pkg, roots
from lib import vm as vmlib
from lib.qmp import GuestTimeout, QMPError
from lib.vm import GiB, MiB, VM, GuestCrash

TESTS = os.path.dirname(os.path.abspath(__file__))


def _dep_lines(path, k):
    text = initramfs.read_member(path, "lib/modules/%s/modules.dep" % k).decode()
    return {line.split(":")[0]: line.split(":")[1].split()
            for line in text.splitlines() if ":" in line}


# --------------------------------------------------------------- initramfs

@pytest.mark.quick
def test_initramfs_intree_only():
    r = roots.root("bookworm")
    k = roots.kver(r)
    path = initramfs.build(r, k, intree_only=True)
    files = initramfs.contents(path)
    for f in ("init", "shell.sh", "rootinit", "bin/busybox"):
        assert files.get(f, 0) > 0, "%s missing from %s" % (f, path)
    mods = [f for f in files if "/modules/" in f and re.search(r"\.ko(\.\w+)?$", f)]
    assert not [f for f in mods if not f.endswith(".ko")], "compressed modules left"
    assert not [f for f in mods if "/updates/" in f], "updates/ in an in-tree-only build"
    dep = _dep_lines(path, k)
    assert "kernel/drivers/virtio/virtio_balloon.ko" in dep
    # every module and every dependency depmod lists is really in the image
    for mod, deps in dep.items():
        for m in [mod] + deps:
            assert "lib/modules/%s/%s" % (k, m) in files, m
    for name in ("virtio_pci", "ext4", "vmw_balloon", "vmw_vmci", "virtio_blk"):
        assert any(os.path.basename(m).startswith(name + ".") for m in dep), name


@pytest.mark.quick
def test_initramfs_updates_cache_and_decompression(work):
    r = roots.root("bookworm")
    k = roots.kver(r)
    intree = os.path.join(r, "lib/modules", k, "kernel/drivers/virtio/virtio_balloon.ko")
    with open(intree, "rb") as f:
        raw = f.read()
    ours = os.path.join(work, "virtio_balloon.ko.xz")
    with open(ours, "wb") as f:
        f.write(lzma.compress(raw, format=lzma.FORMAT_XZ))

    path = initramfs.build(r, k, ko=[ours])
    files = initramfs.contents(path)
    dep = _dep_lines(path, k)
    # depmod puts updates/ first: busybox modprobe will load our copy
    assert "updates/virtio_balloon.ko" in dep
    assert "kernel/drivers/virtio/virtio_balloon.ko" not in dep
    assert "lib/modules/%s/kernel/drivers/virtio/virtio_balloon.ko" % k in files
    got = initramfs.read_member(path, "lib/modules/%s/updates/virtio_balloon.ko" % k)
    assert hashlib.sha256(got).digest() == hashlib.sha256(raw).digest()

    # same inputs: same cached file, not rebuilt
    mtime = os.stat(path).st_mtime_ns
    assert initramfs.build(r, k, ko=[ours]) == path
    assert os.stat(path).st_mtime_ns == mtime
    # other module content: another image
    with open(ours, "wb") as f:
        f.write(lzma.compress(raw + b"\0" * 16, format=lzma.FORMAT_XZ))
    assert initramfs.build(r, k, ko=[ours]) != path
    assert initramfs.build(r, k, intree_only=True) != path
    with pytest.raises(ValueError):
        initramfs.build(r, k, ko=[ours], intree_only=True)


# ------------------------------------------------------------------- roots

def _mounted_under(path):
    """Mount points at or below `path` in this mount namespace."""
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    return [m for m in points if m == path or m.startswith(path + "/")]


@pytest.mark.quick
def test_roots_overlay_and_chroot_leave_the_cache_clean(work):
    r = roots.root("bookworm")
    assert os.path.exists(roots.kernel(r))
    with roots.overlay(r) as o:
        out = roots.chroot_run(o, "touch /vmh-probe && test -c /dev/null && "
                               "grep -c . /proc/self/status").stdout
        assert int(out) > 5
        assert os.path.exists(os.path.join(o, "vmh-probe"))
        assert not os.path.exists(os.path.join(r, "vmh-probe"))
    assert _mounted_under(o) == [] and not os.path.exists(o)
    # ephemeral: binds work, nothing sticks to the cached root
    p = roots.chroot_run(r, "cat /etc/debian_version > %s/v && touch /vmh-eph"
                         % work, ephemeral=True, binds=[work])
    assert p.returncode == 0
    with open(os.path.join(work, "v")) as f:
        assert f.read().startswith("12.")
    assert not os.path.exists(os.path.join(r, "vmh-eph"))
    assert not os.path.exists(r + work)
    assert _mounted_under(r) == []
    with pytest.raises(roots.RootCommandError) as ei:
        roots.chroot_run(r, "echo to-the-log; exit 7", ephemeral=True)
    assert ei.value.rc == 7 and "to-the-log" in str(ei.value)


# ------------------------------------------------------ one VM, many checks

@pytest.fixture(scope="module")
def vm61():
    r = roots.root("bookworm")
    with VM.for_root(r, intree_only=True, name="harness61") as v:
        yield v


@pytest.mark.quick
def test_boot_coldplug_binds_intree_driver(vm61, timing):
    timing("boot to shell, 6.1 (in-tree)", vm61.boot_seconds)
    assert "VMH-COLDPLUG" in vm61.console_text()
    mods = vm61.sh("cut -d' ' -f1 /proc/modules").split()
    assert "virtio_balloon" in mods
    drv = vm61.sh("for d in /sys/bus/virtio/devices/*; do "
                  "basename $(readlink $d/driver); done").split()
    assert drv == ["virtio_balloon"]
    # modprobe resolves to the in-tree module
    dep = vm61.sh("grep virtio_balloon.ko: /lib/modules/$(uname -r)/modules.dep")
    assert dep.startswith("kernel/drivers/virtio/virtio_balloon.ko:"), dep


@pytest.mark.quick
def test_guest_shell_framing(vm61):
    assert vm61.shell("printf 'a\\nb'") == (0, "a\nb")
    assert vm61.shell("echo out; echo err >&2; exit 3") == (3, "out\nerr\n")
    assert vm61.shell("echo \"it's \\\"quoted\\\" $((40 + 2))\"") == (0, "it's \"quoted\" 42\n")
    # output that looks like the framing must not confuse it
    assert vm61.shell("echo '__VMH_END_x_0__'; echo __VMH_BEGIN_y__") == \
        (0, "__VMH_END_x_0__\n__VMH_BEGIN_y__\n")
    # 200 kB survive the serial line byte for byte
    rc, out = vm61.shell("head -c 150000 /dev/urandom | base64 > /tmp/blob; "
                         "cat /tmp/blob")
    assert rc == 0 and len(out) > 200000
    guest_md5 = vm61.sh("md5sum /tmp/blob").split()[0]
    assert hashlib.md5(out.encode()).hexdigest() == guest_md5
    # a timeout leaves the shell usable and in sync, and says where the
    # guest was: each vCPU's registers, the kernel's backtraces (SysRq)
    with pytest.raises(GuestTimeout) as ei:
        vm61.shell("sleep 4; echo late", timeout=1)
    assert vm61.shell("echo next") == (0, "next\n")
    report = str(ei.value)
    assert re.search(r"^CPU#0 ip=[0-9a-f]+ IF=[01]$", report, re.M), report
    assert re.search(r"^CPU#1 ip=[0-9a-f]+ IF=[01]$", report, re.M), report
    console = vm61.console_text()
    assert "Show backtrace of all active CPUs" in console, console[-3000:]
    assert "Show Blocked State" in console, console[-3000:]


@pytest.mark.quick
def test_guest_shell_survives_orphans(vm61):
    """A command's background processes outlive it; when they end, the
    shell that serves the host must not lose a byte of what it is reading
    or writing (CI, stop 16: a compaction loop killed in one command, and
    the next command's line lost its first 40 bytes, so its reply never
    came).  Here twenty such processes end one after another while the
    host sends command after command."""
    vm61.sh("for i in $(seq 20); do (sleep $((i / 10)).$((i % 10)); true) & done")
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 4 or n < 40:
        assert vm61.shell("echo %d" % n, timeout=20) == (0, "%d\n" % n)
        n += 1


@pytest.mark.quick
def test_qmp_errors_are_raised(vm61):
    with pytest.raises(QMPError):
        vm61.cmd("no-such-command")
    with pytest.raises(QMPError):
        vm61.cmd("qom-get", path="/machine/peripheral/nope", property="x")
    assert vm61.cmd("query-status")["status"] == "running"


@pytest.mark.quick
def test_inflate_deflate_1gib(vm61, timing):
    full = vm61.mem_mb * MiB
    assert full == 2 * GiB
    assert vm61.query_balloon() == full
    mem0 = vm61.meminfo()["MemTotal"]

    t_in = vm61.balloon_to(1 * GiB, timeout=600)
    timing("inflate 2 GiB -> 1 GiB (6.1 in-tree)", t_in)
    actual = vm61.query_balloon()
    mem1 = vm61.meminfo()["MemTotal"]
    assert actual == 1 * GiB
    # without deflate-on-oom the driver takes the pages out of MemTotal:
    # the guest's loss equals what QMP reports the balloon holds
    assert (mem0 - mem1) * 1024 == full - actual, (mem0, mem1, actual)

    st = vm61.guest_stats()
    stats = st["stats"]
    assert st["last-update"] > 0
    assert abs(stats["stat-total-memory"] - mem1 * 1024) <= 4 * MiB, (stats, mem1)
    assert 0 < stats["stat-free-memory"] <= stats["stat-total-memory"]
    assert 0 < stats["stat-available-memory"] <= stats["stat-total-memory"]

    t_out = vm61.balloon_to(full, timeout=600)
    timing("deflate 1 GiB -> 2 GiB (6.1 in-tree)", t_out)
    assert vm61.query_balloon() == full
    assert vm61.meminfo()["MemTotal"] == mem0


@pytest.mark.quick
def test_device_del_unplugs_balloon(vm61, timing):
    t0 = time.monotonic()
    ev = vm61.device_del(vm61.balloon_id)
    timing("device_del -> DEVICE_DELETED", time.monotonic() - t0)
    assert ev["device"] == vm61.balloon_id
    assert vm61.sh("ls /sys/bus/virtio/devices/").split() == []
    with pytest.raises(QMPError):
        vm61.query_balloon()
    assert "virtio_balloon" in vm61.sh("cut -d' ' -f1 /proc/modules").split()


@pytest.mark.quick
def test_guest_crash_fails_fast(vm61, timing):
    """A panic during a guest command ends that command with GuestCrash
    (the console's panic seen), not with the shell's timeout: the command
    would have run 600 s and been given 900."""
    # keep this last in the module: it crashes the shared VM
    t0 = time.monotonic()
    with pytest.raises(GuestCrash) as ei:
        vm61.shell("echo c > /proc/sysrq-trigger; sleep 600", timeout=900)
    timing("guest panic -> GuestCrash", time.monotonic() - t0)
    assert "Kernel panic" in str(ei.value)
    assert vm61.console_path in str(ei.value)


# ------------------------------------- a crash or a hang before our /init

def _boots(made, name, bad, **kw):
    """make(bad_when) for vmlib.boot: bookworm VMs, kept in `made`, with the
    VM arguments `bad` added while bad_when(how many were made) is true."""
    r = roots.root("bookworm")

    def make(bad_when):
        def build():
            extra = bad if bad_when(len(made)) else {}
            v = VM.for_root(r, intree_only=True, name=name, **kw, **extra)
            made.append(v)
            return v
        return build
    return make


@pytest.mark.quick
def test_crash_before_init_boots_again(capsys):
    """A kernel that dies before our /init has run gets one more boot, even
    when its report carries no module list (CI, stop 15: an int3 Oops in
    kernel init on 7.2 rt, cut off at its RIP line, failed the run); a
    second such death is raised."""
    made = []
    make = _boots(made, "harness-reboot",
                  {"append": "rdinit=/nonexistent init=/nonexistent"})
    try:
        v = vmlib.boot(make(lambda n: n == 0))
        assert len(made) == 2
        assert "VMH-INIT" not in made[0].console_text()
        assert "Kernel panic" in made[0].console_text()
        assert v.sh("echo up").strip() == "up"
        assert "crashed while booting, before /init ran; booting again" in capsys.readouterr().out
        v.close()
        del made[:]
        with pytest.raises(GuestCrash):
            vmlib.boot(make(lambda n: True))
        assert len(made) == 2
    finally:
        for v in made:
            v.close()


@pytest.mark.quick
def test_silent_boot_boots_again(capsys):
    """A kernel that goes silent before our /init (CI, stop 16's cold run:
    6.1 quiet after "pnp: PnP ACPI: found 6 devices") is given up after
    boot_stall seconds of silence, not boot_timeout, with a hang report, and
    booted once more; a second silent boot is raised.  A VM started paused
    (-S) prints nothing at all: the same symptom, from QEMU itself."""
    made = []
    stall = 10
    make = _boots(made, "harness-silent", {"extra_args": ["-S"]}, boot_stall=stall)
    try:
        v = vmlib.boot(make(lambda n: n == 0))
        assert len(made) == 2
        assert made[0].console_text() == ""
        assert v.sh("echo up").strip() == "up"
        out = capsys.readouterr().out
        assert "hung while booting, before /init ran; booting again" in out, out
        # the stall rule, not boot_timeout, ended the first boot: only it
        # says how long the console was silent, and that was boot_stall
        m = re.search(r"the console silent for (\d+) s before VMH-INIT", out)
        assert m and int(m.group(1)) >= stall, out
        assert "hang report (registers in" in out, out
        assert os.path.exists(os.path.join(made[0].rundir, "hang-registers.txt"))
        v.close()
        del made[:]
        with pytest.raises(TimeoutError, match="silent for"):
            vmlib.boot(make(lambda n: True))
        assert len(made) == 2
    finally:
        for v in made:
            v.close()


# ------------------------------------------- the failure report carries logs

@pytest.mark.quick
def test_failure_report_has_console_log(work):
    """An inner pytest run whose VM test fails must print the console log."""
    for f in ("conftest.py", "pytest.ini"):
        shutil.copy(os.path.join(TESTS, f), work)
    os.symlink(os.path.join(TESTS, "lib"), os.path.join(work, "lib"))
    with open(os.path.join(work, "test_inner.py"), "w") as f:
        f.write(textwrap.dedent("""
            from lib import roots
            from lib import vm as vmlib
            from lib.vm import VM

            def test_boot_with_missing_init():
                r = roots.root("bookworm")
                # through boot(), as every test boots: a TCG guest that
                # hangs before /init on a loaded host gets one more boot
                vmlib.boot(lambda: VM.for_root(
                    r, intree_only=True, name="inner",
                    append="rdinit=/nonexistent init=/nonexistent"))
            """))
    env = {k: v for k, v in os.environ.items() if k != "BALLOON_QUICK"}
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                        "test_inner.py"], cwd=work, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=900,
                       env=dict(env, PYTHONDONTWRITEBYTECODE="1"))
    assert p.returncode == 1, p.stdout
    assert "GuestCrash" in p.stdout, p.stdout
    assert re.search(r"guest console of VM inner: \S+/console.log", p.stdout), p.stdout
    assert "Kernel panic - not syncing" in p.stdout.split("guest console of VM inner")[1]


# ------------------------------------------------------------ every kernel

def test_boot_and_balloon_each_kernel(suite, root, kver, make_vm, timing):
    vm = make_vm(root, intree_only=True, name="harness-" + suite)
    timing("boot to shell, %s %s" % (suite, kver), vm.boot_seconds)
    assert vm.sh("uname -r").strip() == kver
    assert "virtio_balloon" in vm.sh("cut -d' ' -f1 /proc/modules").split()
    mem0 = vm.meminfo()["MemTotal"]
    timing("inflate 512 MiB (%s)" % suite, vm.balloon_to(vm.mem_mb * MiB - 512 * MiB))
    assert (mem0 - vm.meminfo()["MemTotal"]) * 1024 == 512 * MiB
    timing("deflate 512 MiB (%s)" % suite, vm.balloon_to(vm.mem_mb * MiB))
    assert vm.meminfo()["MemTotal"] == mem0


# ------------------------------------- full root on a disk, real udev inside

def _bookworm_image(timing):
    """(the cached bookworm root, an ext4 image of it, made once)"""
    r = roots.root("bookworm")
    img = os.path.join(roots.work_dir("images"), os.path.basename(r) + ".ext4")
    if not os.path.exists(img):
        t0 = time.monotonic()
        roots.make_ext4(r, img)
        timing("mke2fs -d bookworm root", time.monotonic() - t0)
    return r, img


def test_root_disk_udev_autoloads_balloon(make_vm, timing):
    r, img = _bookworm_image(timing)
    vm = make_vm(r, root_disk=img, name="harness-rootdisk")
    timing("boot to shell, bookworm root on disk + udev", vm.boot_seconds)
    assert "VMH-UDEV-SETTLED" in vm.console_text()
    # the initramfs did not load it, udev did (and the kernel's has no version)
    assert pkg.loaded_by_udev(vm, "virtio_balloon") is None
    assert vm.sh("cat /etc/debian_version").startswith("12.")
    # writes go to the qcow2 overlay, never to the cached image
    st = os.stat(img)
    vm.sh("echo scratch > /root/vmh-scratch; sync")
    vm.close()
    assert os.stat(img).st_mtime_ns == st.st_mtime_ns


def test_root_disk_udev_settle_failure_fails_the_boot(timing):
    """udev that cannot settle (vmh.udev_hold=1: tests/guest/rootinit stops
    udev's event queue until settle has failed) fails the boot with
    VMH-FAIL, and no VMH-UDEV-SETTLED is printed (it was, whatever settle
    returned)."""
    r, img = _bookworm_image(timing)
    made = []

    def make():
        v = VM.for_root(r, root_disk=img, append="vmh.udev_hold=1", name="harness-nosettle")
        made.append(v)
        return v
    try:
        with pytest.raises(GuestCrash, match="VMH-FAIL udevadm settle failed"):
            vmlib.boot(make)
        assert len(made) == 1, "booted again after a failure past /init"
        con = made[0].console_text()
        assert "VMH-INIT" in con and "VMH-UDEV-SETTLED" not in con, con[-3000:]
    finally:
        for v in made:
            v.close()


# ------------------------------------------ QEMU from the sid vmwhost root

def test_qemu_from_vmwhost_root(make_vm, timing):
    host = roots.root("sid", "vmwhost")
    guest = roots.root("bookworm")
    ver = roots.chroot_run(host, "qemu-system-x86_64 --version", ephemeral=True).stdout
    vm = make_vm(guest, intree_only=True, qemu_root=host, name="harness-sidqemu",
                 mem_mb=1024)
    timing("boot to shell, 6.1 under sid's QEMU", vm.boot_seconds)
    # the PID we would kill is QEMU itself, not a wrapper
    with open("/proc/%d/comm" % vm.proc.pid) as f:
        assert f.read().strip().startswith("qemu-system-x86")
    # QMP speaks for the chrooted QEMU, not the host's
    q = vm.cmd("query-version")["qemu"]
    assert "%d.%d.%d" % (q["major"], q["minor"], q["micro"]) in ver
    timing("inflate 256 MiB (sid QEMU)", vm.balloon_to(768 * MiB))
    assert "virtio_balloon" in vm.sh("cut -d' ' -f1 /proc/modules").split()
