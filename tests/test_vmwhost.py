# SPDX-License-Identifier: GPL-2.0
"""The emulated VMware balloon host (tests/vmw-host/vmwbhost.so) against the
kernel's own vmw_balloon of the bookworm root (6.1): if these pass, the
emulator speaks the protocol the way a real driver expects, and its
accounting agrees with the guest's.

Every VM test boots QEMU 11.1 from the sid vmwhost root (TCG).  The guest
driver is loaded only after boot (modprobe over the guest shell), so each
test decides what the host offers first.
"""
import os
import subprocess
import time

import pytest

from lib import roots, vmwhost
from lib.vmwhost import CAP_BASIC, CAP_BATCHED, CAP_BATCHED_2M, CAP_64BIT_TARGET

MEM_MB = 512
TARGET = 16384                   # 64 MiB in 4 KiB pages
SLACK_4K = 512                   # the driver stops deflating within 2 MiB
BOOT_TIMEOUT = 300
STEP_TIMEOUT = 240               # one inflate/deflate step under TCG + load


@pytest.fixture(scope="module")
def guest_root():
    return roots.root("bookworm")


@pytest.fixture
def vmw(guest_root, make_vm):
    """vmw(**kw) boots a VMware-looking guest with the plugin host."""
    def boot(**kw):
        kw.setdefault("mem_mb", MEM_MB)
        kw.setdefault("boot_timeout", BOOT_TIMEOUT)
        return make_vm(factory=lambda **k: vmwhost.vmware_vm(guest_root, **k), **kw)
    return boot


def load_driver(vm):
    vm.sh("modprobe vmw_balloon")
    assert "vmw_balloon" in vm.sh("cut -d' ' -f1 /proc/modules").split()


def settle(vm, pages, timeout=STEP_TIMEOUT, slack=0):
    return vmwhost.settle(vm, pages, slack=slack, timeout=timeout)


assert_clean = vmwhost.assert_clean


CAPSETS = {
    # host caps -> the command that must carry the locks
    CAP_BASIC | CAP_64BIT_TARGET: "lock",                                   # 0x22
    CAP_BASIC | CAP_BATCHED | CAP_64BIT_TARGET: "batched_lock",            # 0x26
    CAP_BASIC | CAP_BATCHED | CAP_BATCHED_2M | CAP_64BIT_TARGET: "batched_2m_lock",  # 0x2e
}


@pytest.mark.quick
@pytest.mark.parametrize("caps", sorted(CAPSETS), ids=lambda c: "caps%#x" % c)
def test_caps_inflate_deflate(vmw, caps, timing):
    vm = vmw(caps=caps, target=TARGET)
    t0 = time.monotonic()
    load_driver(vm)
    st, g = settle(vm, TARGET)
    timing("vmw inflate 64MiB caps %#x" % caps, time.monotonic() - t0)

    # what the guest asked for is more than we offer; both sides agree on
    # the intersection
    assert st["guest_caps"] == caps, vm.host_context()
    assert g["used capabilities"] == caps
    assert st["started"] == 1 and st["guest_id"] == 1   # 1 = Linux
    assert st["reported_target"] == TARGET
    # the locks went through the command the capabilities allow, and only it
    lock_ops = {op: st["op_" + op] for op in
                ("lock", "batched_lock", "batched_2m_lock")}
    used = CAPSETS[caps]
    assert lock_ops[used] > 0, lock_ops
    assert all(n == 0 for op, n in lock_ops.items() if op != used), lock_ops
    if used == "batched_2m_lock":
        assert st["locked_2m"] * 512 + st["locked_4k"] == TARGET
    else:
        assert st["locked_2m"] == 0 and st["locked_4k"] == TARGET
    assert st["locked_entries"] == st["locked_2m"] + st["locked_4k"]
    locked = vm.host.locked()
    assert sum(1 << o for o in locked.values()) == TARGET
    assert_clean(vm)

    # deflate to a quarter: 4k balloons stop within 2 MiB of the target
    vm.host.set_target(TARGET // 4)
    t0 = time.monotonic()
    settle(vm, TARGET // 4, slack=SLACK_4K)
    timing("vmw deflate 48MiB caps %#x" % caps, time.monotonic() - t0)
    # and to zero: no slack there
    vm.host.set_target(0)
    st, g = settle(vm, 0)
    assert st["locked_entries"] == 0
    unlock_op = {"lock": "unlock", "batched_lock": "batched_unlock",
                 "batched_2m_lock": "batched_2m_unlock"}[used]
    assert st["op_" + unlock_op] > 0
    assert st["fail_" + unlock_op] == 0
    assert_clean(vm)
    # the guest got its memory back
    assert vm.meminfo()["MemTotal"] > (MEM_MB - 64) * 1024


@pytest.mark.quick
def test_reset_reinflate(vmw):
    vm = vmw(target=TARGET)
    load_driver(vm)
    settle(vm, TARGET)
    st0 = vm.host.state()
    assert st0["starts"] == 1

    vm.host.inject_reset()
    # the host forgets the balloon at once; the guest pops its pages,
    # STARTs again and inflates again to the same target
    st = vm.host.wait_state(lambda s: s["starts"] == 2 and
                            s["locked_pages"] == TARGET, STEP_TIMEOUT,
                            "re-START and re-inflate", alive=vm.check)
    assert st["resets_injected"] == 1 and st["reset_pending"] == 0
    assert st["status_reset"] >= 1
    assert st["op_guest_id"] == 2
    g = vmwhost.wait_guest(vm, lambda g: g["current"] == TARGET, STEP_TIMEOUT)
    assert g["reset"] >= 1
    assert_clean(vm)

    # Unloading while inflated sends START(0) and then frees the pages
    # without UNLOCK.  6.1 frees 2 MiB pages only if the START(0) answer
    # still grants 2 MiB batches (it loops forever in rmmod otherwise), so
    # this host answers with its own capabilities here.
    vm.host.start_reply("host")
    vm.sh("rmmod vmw_balloon", timeout=STEP_TIMEOUT)
    st = vm.host.state()
    assert st["starts"] == 3 and st["requested_caps"] == 0, vm.host_context()
    assert st["locked_pages"] == 0 and st["locked_entries"] == 0
    assert_clean(vm)
    assert vm.meminfo()["MemTotal"] > (MEM_MB - 64) * 1024


def test_smp2_256m(vmw, timing):
    """Two vCPUs run in parallel TCG threads; the host state is shared
    with the control thread.  256 MiB in 2 MiB pages, poisoned, and back."""
    pages = 256 * 256
    vm = vmw(mem_mb=1024, smp=2, target=pages)
    t0 = time.monotonic()
    load_driver(vm)
    st, _ = settle(vm, pages)
    timing("vmw inflate 256MiB smp2 caps 0x2e", time.monotonic() - t0)
    assert st["locked_2m"] * 512 + st["locked_4k"] == pages
    # the guest keeps working (both CPUs) while its balloon is full
    vm.sh("for i in 1 2; do dd if=/dev/zero of=/dev/null bs=1M count=64 & done; wait")
    vm.host.set_target(0)
    settle(vm, 0)
    assert_clean(vm)


@pytest.mark.quick
def test_reset_mid_batch(vmw):
    """A RESET in the middle of a batch: some entries locked, then the host
    drops everything; the guest must start over without double locks."""
    vm = vmw(target=TARGET, caps=0x26)           # 4k batches: 32 of them
    vm.host.reset_mid_batch(100)
    load_driver(vm)
    st = vm.host.wait_state(lambda s: s["starts"] >= 2 and
                            s["locked_pages"] == TARGET, STEP_TIMEOUT,
                            "re-inflate after a mid-batch reset", alive=vm.check)
    assert st["resets_injected"] == 1 and st["mid_batch_pending"] == 0
    g = vmwhost.wait_guest(vm, lambda g: g["current"] == TARGET, STEP_TIMEOUT)
    assert g["current"] == vm.host.state()["locked_pages"]
    assert_clean(vm)


@pytest.mark.quick
def test_refused_pages(vmw):
    """Refused lock entries (refuse-next, PPN_PINNED, PPN_NOTNEEDED): the
    guest keeps going and the host never holds a page it refused."""
    vm = vmw(target=2048, caps=0x26)
    vm.host.refuse_next(8, "ppn_notneeded")
    load_driver(vm)
    st, _ = settle(vm, 2048)
    assert st["refused_entries"] == 8 and st["refuse_left"] == 0
    assert_clean(vm)

    # pin pages the guest just had in its balloon: after a deflate the page
    # allocator hands the same pages out again, and their locks must fail
    before = sorted(vm.host.locked())
    vm.host.set_target(0)
    settle(vm, 0)
    pinned, notneeded = before[:64], before[64:128]
    vm.host.pin(*pinned)
    vm.host.notneeded(*notneeded)
    assert vm.host.state()["pinned"] == 64
    vm.host.clear_stats()
    vm.host.set_target(2048)
    vm.host.wait_state(lambda s: s["refused_entries"] >= 16, STEP_TIMEOUT,
                       "locks of pinned pages refused", alive=vm.check)
    assert not set(vm.host.locked()) & set(pinned + notneeded)
    # 6.1 keeps getting the refused pages back from the allocator and stays
    # short of the target by them; once they are unpinned it gets there
    vm.host.unpin(*(pinned + notneeded))
    st, _ = settle(vm, 2048)
    assert st["pinned"] == 0 and st["notneeded"] == 0

    # unloading a 4k balloon: START(0), the host forgets every page
    vm.sh("rmmod vmw_balloon", timeout=STEP_TIMEOUT)
    st = vm.host.state()
    assert st["starts"] == 1 and st["requested_caps"] == 0, vm.host_context()
    assert st["guest_caps"] == 0 and st["locked_pages"] == 0
    assert_clean(vm)


@pytest.mark.quick
def test_absurd_targets(vmw):
    """Targets beyond guest RAM are clamped to the limit the guest sends;
    the guest keeps running and gives everything back at target 0."""
    vm = vmw(target=0)
    load_driver(vm)
    vm.host.wait_state(lambda s: s["op_get_target"] > 0, STEP_TIMEOUT,
                       alive=vm.check)
    for absurd in (MEM_MB * 256 + 1, 1 << 32, (1 << 64) - 1):
        vm.host.set_target(absurd)
        n = vm.host.state()["op_get_target"]
        st = vm.host.wait_state(lambda s: s["op_get_target"] > n + 1, STEP_TIMEOUT,
                                alive=vm.check)
        limit = st["guest_limit"]
        assert 0 < limit < MEM_MB * 256
        assert st["reported_target"] == limit
        vm.host.set_target(0)
        settle(vm, 0)
    g = vmwhost.guest_vmmemctl(vm)
    assert g["target"] == 0
    vm.sh("echo alive")
    assert_clean(vm)


@pytest.mark.quick
def test_busy(vmw):
    vm = vmw(target=4096)
    vm.host.busy(5)
    load_driver(vm)
    st, _ = settle(vm, 4096)
    assert st["status_busy"] == 5 and st["busy_left"] == 0
    assert_clean(vm)


@pytest.mark.quick
def test_not_vmware_enodev(vmw):
    """Without vmport and the VMware DMI strings the kernel does not detect
    VMware and vmw_balloon refuses to load, even with the host present."""
    vm = vmw(vmware=False, target=TARGET)
    rc, out = vm.shell("modprobe vmw_balloon")
    assert rc != 0 and "No such device" in out, out
    assert "Hypervisor detected: VMware" not in vm.dmesg()
    assert vm.host.state()["commands"] == 0


def test_vmware_detected(vmw):
    """The positive twin of test_not_vmware_enodev (part of the others'
    flow, kept separate so a detection failure reads clearly)."""
    vm = vmw(host=False)
    assert "Hypervisor detected: VMware" in vm.dmesg()
    # no host on the port: START fails, the driver retries and stays empty
    load_driver(vm)
    g = vmwhost.wait_guest(vm, lambda g: g["ops"].get("start", (0, 0))[1] >= 1, 60)
    assert g["current"] == 0


def test_cpuid_detection(vmw):
    """cpuid=on: the CPUID hypervisor leaf says VMwareVMware, as on ESXi,
    with the hypervisor bit on and no VMware DMI strings; the guest still
    detects VMware and balloons."""
    vm = vmw(vmware=False, machine=vmwhost.VMWARE_MACHINE, cpu="qemu64",
             plugin_args=["cpuid=on"], target=4096)
    assert "Hypervisor detected: VMware" in vm.dmesg()
    load_driver(vm)
    settle(vm, 4096)
    assert_clean(vm)


# ---------------------------------------------------------------------------
# Plugin loading without a guest: QEMU with -machine none, QMP on stdin.

def qemu_noguest(so, args=(), qmp=True, timeout=120):
    d = os.path.dirname(so)
    inp = ('{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n' if qmp else "")
    argv = ["timeout", str(timeout), "qemu-system-x86_64", "-machine", "none",
            "-display", "none", "-nodefaults", "-qmp", "stdio",
            "-plugin", ",".join([so] + list(args))]
    return roots.chroot_run(vmwhost.host_root(), argv, check=False, binds=[d],
                            ephemeral=True, input=inp, timeout=timeout + 30)


@pytest.mark.quick
def test_plugin_loads():
    p = qemu_noguest(vmwhost.plugin())
    assert p.returncode == 0, p.stdout
    assert "vmwbhost: ready (plugin API 7" in p.stdout
    assert "vmwbhost: exit:" in p.stdout


@pytest.mark.quick
def test_plugin_wrong_api_declared():
    """A plugin that declares another API version (as one built for an
    older QEMU would) is refused by QEMU itself, with a one-line error."""
    p = qemu_noguest(vmwhost.plugin(("-DVMWB_API_DECLARED=6",)), qmp=False)
    assert p.returncode not in (0, 124), p.stdout
    assert "API version 6" in p.stdout and "7" in p.stdout, p.stdout
    assert "vmwbhost: ready" not in p.stdout


@pytest.mark.quick
def test_plugin_wrong_api_expected():
    """A plugin whose ABI expectations differ from the QEMU it is loaded
    into refuses in qemu_plugin_install, naming the API it supports."""
    p = qemu_noguest(vmwhost.plugin(("-DVMWB_API_EXPECTED=8",)), qmp=False)
    assert p.returncode not in (0, 124), p.stdout
    assert "vmwbhost: supports QEMU plugin API 8 only" in p.stdout, p.stdout
    assert "this QEMU has API 7" in p.stdout
    assert "vmwbhost: ready" not in p.stdout


@pytest.mark.quick
def test_plugin_bad_argument():
    p = qemu_noguest(vmwhost.plugin(), ["caps=banana"], qmp=False)
    assert p.returncode not in (0, 124), p.stdout
    assert "vmwbhost: bad plugin argument 'caps=banana'" in p.stdout


@pytest.mark.quick
def test_control_protocol(work):
    """The control socket's parser and bookkeeping, with no guest."""
    so = vmwhost.plugin()
    ctl = os.path.join(work, "ctl.sock")
    argv = roots.chroot_argv(vmwhost.host_root(),
                             ["qemu-system-x86_64", "-machine", "none", "-display",
                              "none", "-nodefaults", "-qmp", "stdio", "-plugin",
                              "%s,ctl=%s,ram_mb=512,target=7,state_file=%s" %
                              (so, ctl, os.path.join(work, "state"))],
                             binds=[os.path.dirname(so), work],
                             overlay_dir=os.path.join(work, "ovl"))
    q = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        h = vmwhost.Host(ctl, alive=lambda: q.poll() is None)
        s = h.state()
        assert s["target"] == 7 and s["ram_mb"] == 512 and s["api"] == 7
        assert s["host_caps"] == 0x2e and s["started"] == 0
        assert s["commands"] == 0 and s["protocol_errors"] == 0
        for t in (0, 1 << 32, (1 << 64) - 1):
            h.set_target(t)
            assert h.state()["target"] == t
        for bad in ("target 18446744073709551616", "target -1", "target 12abc",
                    "target", "caps 0x100000000", "refuse-next 3 success",
                    "refuse-next 3 32", "reset-mid-batch 513", "busy",
                    "accept-every", "accept-every 20 success", "accept-every x",
                    "busy-entry", "busy-entry x", "busy-entry 3 sideways",
                    "busy-entry 3 lock extra",
                    "clamp maybe", "frobnicate", "state extra", ""):
            with pytest.raises(vmwhost.HostError):
                h.cmd(bad)
        h.set_caps(0x22)
        h.start_reply("host")
        assert h.state()["start_reply"] == "host"
        h.start_reply("and")
        h.busy(3)
        h.refuse_next(2, "ppn_pinned")
        h.pin(0x1234)
        h.notneeded(0x1235)
        h.inject_reset()
        h.reset_mid_batch()
        h.accept_every(20, "ppn_pinned")
        h.busy_entry(10)
        h.busy_entry(7, "unlock")
        s = h.state()
        assert (s["host_caps"], s["busy_left"], s["refuse_left"], s["pinned"],
                s["notneeded"], s["reset_pending"], s["mid_batch_pending"],
                s["accept_every"], s["busy_entry_left"]) == (0x22, 3, 2, 1, 1, 1, 1, 20, 7)
        assert (s["busy_entries"], s["tick_lock_cmds_max"], s["tick_lock_entries_max"]) == (0, 0, 0)
        h.clear_faults()
        s = h.state()
        assert (s["busy_left"], s["refuse_left"], s["pinned"], s["notneeded"],
                s["reset_pending"], s["mid_batch_pending"],
                s["accept_every"], s["busy_entry_left"]) == (0, 0, 0, 0, 0, 0, 0, 0)
        assert h.locked() == {} and h.log() == []
        # a second client is served while the first stays connected
        h2 = vmwhost.Host(ctl)
        assert h2.state()["target"] == (1 << 64) - 1
        h2.cmd("quit")
        h2.close()
        assert "target N" in h.cmd("help")[0]
        h.close()
        q.stdin.write('{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n')
        q.stdin.flush()
        out, _ = q.communicate(timeout=60)
        assert q.returncode == 0, out
        assert not os.path.exists(ctl), "control socket left behind"
        with open(os.path.join(work, "state")) as f:       # written at exit
            assert "target 18446744073709551615\n" in f.read()
    finally:
        if q.poll() is None:
            q.kill()
            q.wait()


# ---------------------------------------------------------------------------
# A rogue guest: vmwb-rogue (tests/vmw-host/rogue.c) breaks the protocol on
# purpose from guest user space, so these tests see the host notice.

def rogue_run(vm, ops, timeout=120):
    """Run vmwb-rogue OPS in the guest; its "R: " lines, in order."""
    out = vm.sh("vmwb-rogue " + ops, timeout=timeout)
    lines = [ln[3:] for ln in out.splitlines() if ln.startswith("R: ")]
    assert lines and not any(ln.startswith("error") for ln in lines), out
    return lines


def fields(line):
    d = {}
    for w in line.split():
        k, _, v = w.partition("=")
        d[k] = [int(x, 16) for x in v.split(",")] if k == "entries" else int(v, 16)
    return d


@pytest.fixture
def rogue_vm(vmw):
    def boot(**kw):
        kw.setdefault("extra_files", {"/bin/vmwb-rogue": vmwhost.rogue()})
        return vmw(**kw)
    return boot


# (rogue op, status the guest must see, protocol errors it must cause, checks)
# in one process, so its pages stay put between the calls
ROGUE_STEPS = [
    ("call 1 100 0", 7, 0, {}),                 # GET_TARGET before START: tolerated
    ("call 2 p1 1", 7, 1, {}),                  # LOCK before START
    ("call 7 p0 1", 7, 1, {}),                  # BATCHED_UNLOCK before START
    ("call 0 0xff 0", 0x03000000, 0, {"rcx": 0x2e}),   # more caps than offered
    ("call 2 p1 1", 0, 0, {"rbx": 1 << 40}),    # LOCK: the target comes back
    ("call 2 p1 1", 3, 1, {}),                  # the same page again: PPN_LOCKED
    ("peek 1", None, 0, {}),                    # the host poisoned it
    ("call 3 p2 1", 4, 1, {}),                  # UNLOCK of a page never locked
    ("batch 8 1 0x1001", 0, 1, {"entries": [2]}),      # 2M pfn misaligned
    ("batch 6 1 0x7fffffff", 0, 1, {"entries": [2]}),  # pfn beyond guest RAM
    ("batch 6 0 p3", 1, 1, {}),                 # batch counts out of range
    ("batch 6 513 p3", 1, 1, {}),
    ("call 5 0 0", 1, 1, {}),                   # unknown commands
    ("call 42 0 0", 1, 1, {}),
    ("batch 8 1 h1", 0, 1, {"entries": [3]}),   # 2M over the locked 4k p1
    ("batch 9 1 h1", 0, 1, {"entries": [4]}),   # 2M unlock, never locked
    ("call 2 0x100000000 1", 2, 1, {}),         # LOCK pfn wider than 32 bits
    ("call 1 0x100000001 0", 0, 0, {"rbx": 0x100000001}),  # 64-bit limit, cap ok
    ("poke 1", None, 0, {}),                    # write to p1 while locked
    ("call 3 p1 1", 0, 0, {}),                  # unlock fine, poison violated
    ("call 10 1 2", 1, 0, {}),                  # doorbell without the cap
    ("call 0 0x2 0", 0x03000000, 0, {"rcx": 0x2}),     # START, BASIC only
    ("batch 6 1 p3", 1, 1, {}),                 # batched without the cap
    ("call 1 0x100000001 0", 0, 1, {"rbx": 0xffffffff}),  # no 64-bit cap: saturate
    ("call 1 1000 0", 0, 0, {"rbx": 1000}),
]


@pytest.mark.quick
def test_rogue_protocol_errors(rogue_vm):
    """Every kind of protocol violation is answered as documented and
    counted exactly once, by the command that made it; nothing else is."""
    vm = rogue_vm(target=1 << 40)
    r = rogue_run(vm, " ".join(step[0] for step in ROGUE_STEPS))
    assert len(r) == len(ROGUE_STEPS), r
    calls = [(step, line) for step, line in zip(ROGUE_STEPS, r) if step[1] is not None]
    log = vm.host.log(len(calls))
    assert len(log) == len(calls)
    for ((op, status, errs, checks), line), entry in zip(calls, log):
        f = fields(line)
        what = (op, line, entry)
        assert f["status"] == status == entry["status"], what
        assert entry["errors"] == errs, what
        for k, v in checks.items():
            assert f[k] == v, (what, k, v)
    assert r[6] == "0x5a5a5a5a5a5a5a5a"          # peek: poisoned
    assert r[18] == "0x1111111111111111"          # poke
    st = vm.host.state()
    assert st["protocol_errors"] == sum(step[2] for step in ROGUE_STEPS)
    assert st["poison_violations"] == 1 and st["host_errors"] == 0
    assert st["requested_caps"] == 0x2 and st["guest_caps"] == 0x2
    assert st["locked_entries"] == 0             # the 2nd START forgot p1
    assert st["before_start"] == 3


def rogue_lines(vm, path):
    txt = vm.sh("cat %s" % path)
    r = [ln[3:] for ln in txt.splitlines() if ln.startswith("R: ")]
    assert not any(ln.startswith("error") for ln in r), txt
    return r


def rogue_wait(vm, path, n, timeout=120):
    """Wait until the background rogue wrote n "R: " lines to path."""
    deadline = time.monotonic() + timeout
    while True:
        r = rogue_lines(vm, path)
        if len(r) >= n:
            return r
        assert time.monotonic() < deadline, (n, r)
        time.sleep(0.2)


@pytest.mark.quick
def test_rogue_faults(rogue_vm):
    """Injected faults as a guest sees them: BUSY, refused entries, pinned
    and not-needed pages, RESET, a RESET in the middle of a batch, and an
    unclamped absurd target.  The rogue runs in the background and waits at
    /tmp/go1 and /tmp/go2 while the host is set up."""
    vm = rogue_vm(target=50)
    h = vm.host
    out = "/tmp/rogue.out"
    vm.sh("(vmwb-rogue pfns waitfile /tmp/go1 " + " ".join([
        "call 0 0x2e 0",                  # BUSY (any command but the doorbell)
        "call 0 0x2e 0",                  # START
        "call 2 p1 1",                    # refused: PPN_NOTNEEDED
        "batch 6 3 p2,p3,p4",             # p3 pinned, p4 not needed
        "waitfile /tmp/go2",
        "call 1 1000 0",                  # RESET (injected)
        "call 2 p5 1",                    # before START: RESET
        "call 0 0x2e 0",                  # START again
        "batch 6 4 p6,p7,p8,p9",          # RESET after 2 entries
        "call 0 0x2e 0",
        "call 1 1000 0",                  # clamp off: the raw target
    ]) + " > %s 2>&1 &)" % out)
    r = rogue_wait(vm, out, 1)
    pfns = [int(x, 16) for x in r[0].split()[1:]]
    assert len(pfns) == 16
    h.busy(1)
    h.refuse_next(1, "ppn_notneeded")
    h.pin(pfns[3])
    h.notneeded(pfns[4])
    vm.sh("touch /tmp/go1")
    r = rogue_wait(vm, out, 6)[2:]
    assert fields(r[0])["status"] == 8                       # BUSY
    assert fields(r[1])["status"] == 0x03000000
    assert fields(r[2])["status"] == 6                       # refused
    f = fields(r[3])
    assert f["status"] == 0 and f["entries"] == [0, 5, 6]
    st = h.state()
    assert sorted(h.locked()) == [pfns[2]] and st["locked_pages"] == 1
    assert st["refused_entries"] == 3 and st["status_busy"] == 1
    assert (st["busy_left"], st["refuse_left"]) == (0, 0)
    assert st["protocol_errors"] == 0, st["last_error"]

    h.inject_reset()
    h.reset_mid_batch(2)
    h.clamp(False)
    h.set_target(1 << 40)
    vm.sh("touch /tmp/go2")
    r = rogue_wait(vm, out, 13)[7:]
    assert fields(r[0])["status"] == 7                       # injected RESET
    assert fields(r[1])["status"] == 7                       # before START
    assert fields(r[2])["status"] == 0x03000000
    f = fields(r[3])
    assert f["status"] == 7 and f["entries"] == [0, 0, 0x1f, 0x1f]
    assert fields(r[4])["status"] == 0x03000000
    f = fields(r[5])
    assert f["status"] == 0 and f["rbx"] == 1 << 40
    st = h.state()
    assert st["resets_injected"] == 2 and st["locked_entries"] == 0
    assert st["protocol_errors"] == 1 and "lock before START" in st["last_error"]
    assert st["reported_target"] == 1 << 40 and st["guest_limit"] == 1000
    assert st["host_errors"] == 0 and st["poison_violations"] == 0


@pytest.mark.quick
def test_rogue_flags_survive_call(rogue_vm):
    """The host answers a backdoor call without disturbing anything but
    rax/rbx/rcx: EFLAGS right after the IN are still the ones the ADD
    before it left (all arithmetic flags clear, no TF/NT).  A host that
    resumes the guest from a plugin callback without QEMU writing its
    lazily computed flags back fails this (every call reported bad; an
    interrupt taken there pushes the same wrong flags, the most likely
    cause of a double fault once seen after the in-tree driver's IN).
    Three processes on two vCPUs call at once, so a caller can be
    preempted, or moved to the other vCPU, with its answer pending: each
    must get its own answer (a status, never the 0xffffffff of a bare IN;
    vmwb-rogue stops with an error line then)."""
    n, procs = 10000, 3
    vm = rogue_vm(target=0, smp=2)
    before = vm.host.state()["commands"]
    out = vm.sh("for i in %s; do vmwb-rogue flags %d > /tmp/flags.$i 2>&1 & done; wait; "
                "cat /tmp/flags.*" % (" ".join(str(i) for i in range(procs)), n),
                timeout=600)
    lines = [ln[3:] for ln in out.splitlines() if ln.startswith("R: ")]
    assert len(lines) == procs and all(ln.startswith("flags ") for ln in lines), out
    for ln in lines:
        f = fields(ln.split(None, 1)[1])
        assert f["calls"] == n and f["bad"] == 0, lines
    st = vm.host.state()
    assert st["commands"] - before == n * procs
    assert st["host_errors"] == 0, st["last_error"]
    assert st["protocol_errors"] == 0, st["last_error"]
