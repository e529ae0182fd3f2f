# SPDX-License-Identifier: GPL-2.0
"""Our vmw_balloon against the emulated VMware host, on every suite's kernel.

The guest kernel comes from each suite's root; QEMU 11.1 runs from the sid
vmwhost root with the tests/vmw-host plugin as the hypervisor's balloon
side (lib/vmwhost.py).  One VM per suite serves all the checks of this
file (-smp 2, 512 MiB, page poisoning in the guest, locked-page poisoning
on the host); each check starts from a freshly loaded driver and an empty
balloon, and ends with the host's global invariants: no protocol error, no
write to a locked page, no host error, and host and guest agreeing on the
balloon size.  A plain (non-VMware) PC is booted once per suite to check
that the driver refuses to load there, quietly.

No check depends on the host's clock: amounts are counted (pages, host
commands, the drivers' work ticks as the host's GET_TARGETs), and a wait
for a condition has a deadline only so that a hang ends.  Speed against
the kernel's own driver is `make bench`'s to measure.
"""
import os
import re
import subprocess

import pytest

from lib import build, roots, vmwhost
from lib.virtio_util import kernel_has_balloon_node_stat
from test_virtio import _poller_done
from lib.vmwhost import CAP_BASIC, CAP_BATCHED, CAP_BATCHED_2M, CAP_64BIT_TARGET

MEM_MB = vmwhost.BALLOON_GUEST_MB
TARGET = 16384                  # 64 MiB in 4 KiB frames
SLACK = 512                     # deflation stops within 2 MiB of the target
STEP = 240                      # seconds for one inflate/deflate step (TCG)
CAPS_2M = CAP_BASIC | CAP_BATCHED | CAP_BATCHED_2M | CAP_64BIT_TARGET   # 0x2e
CAPS_4K = CAP_BASIC | CAP_BATCHED | CAP_64BIT_TARGET                    # 0x26
CAPS_BASIC = CAP_BASIC | CAP_64BIT_TARGET                               # 0x22

pytestmark = pytest.mark.parametrize(
    "suite", [pytest.param(s, marks=pytest.mark.quick if s == "bookworm" else ())
              for s in roots.suites()], scope="module")

# How ours spends host commands when the host refuses pages is protocol
# logic of ours that no kernel difference (src/compat) touches: checked on
# bookworm 6.1 and sid 7.2, the kernels the issues name, to keep make
# check within its time (80 and 35 s a kernel).
POLICY_SUITES = pytest.mark.suites("bookworm", "sid")


def our_version():
    with open(os.path.join(roots.REPO, "src", "version.h")) as f:
        return re.search(r'BALLOON_VERSION "([^"]+)"', f.read()).group(1)


def srcversion(ko):
    return subprocess.run(["modinfo", "-F", "srcversion", ko], check=True,
                          stdout=subprocess.PIPE, text=True).stdout.strip()


@pytest.fixture(scope="module")
def ko(suite):
    return build.modules(roots.root(suite), only=("vmw_balloon",))["vmw_balloon"]


@pytest.fixture(scope="module")
def vm(suite, ko):
    """The VMware-looking guest of this suite, with our module installed
    under updates/ (the kernel's own is still in the initramfs)."""
    v = vmwhost.balloon_guest(roots.root(suite), ko, name="vmw-" + suite)
    yield v
    v.close()


def loaded(vm):
    return "vmw_balloon" in vm.sh("cut -d' ' -f1 /proc/modules").split()


def unload(vm):
    """rmmod while (maybe) inflated: START(0) and every page back."""
    starts = vm.host.state()["starts"]
    vm.sh("rmmod vmw_balloon")
    st = vm.host.state()
    assert st["starts"] == starts + 1 and st["guest_caps"] == 0, vm.host_context()
    assert st["locked_pages"] == 0 and st["locked_entries"] == 0, vm.host_context()
    return st


def load(vm, params=""):
    vm.sh("modprobe vmw_balloon " + params)
    return vmwhost.wait_guest(vm, lambda g: g["is resetting"] == "n" and
                              g["ops"]["start"][0] >= 1, STEP, "protocol started")


def settle(vm, pages, slack=0, timeout=STEP):
    """Wait until host and guest agree on a balloon of pages (+ slack)."""
    return vmwhost.settle(vm, pages, slack, timeout)


def switch_driver(vm, who, caps):
    """Unload whichever driver is loaded (target 0 first), then load ours
    or the kernel's own ("in-tree") against a host offering caps."""
    vm.host.set_target(0)
    if loaded(vm):
        unload(vm)
    vm.host.set_caps(caps)
    if who == "ours":
        load(vm)
    else:
        vm.sh("insmod " + vm.intree)
        vm.host.wait_state(lambda s: s["started"] == 1, STEP, "in-tree START",
                           alive=vm.check)


def invariants(vm):
    """The host's invariants hold and the guest's count is what the host
    holds, read between two work ticks (a tick may be sending commands
    while the guest's figures are read: then read again)."""
    for _ in range(20):
        st = vmwhost.assert_clean(vm)
        g = vmwhost.guest_vmmemctl(vm)
        if vm.host.state()["commands"] == st["commands"]:
            break
    assert g["current"] == st["locked_pages"], vm.host_context()
    return st, g


def meminfo_pcp(vm):
    """(/proc/meminfo in kB, KiB free on the per-CPU lists), read by one
    shell command.

    MemFree and MemAvailable count only the buddy allocator's free pages.
    Freed order-0 pages go to the freeing CPU's list first; since 6.7 those
    lists grow while a CPU frees many pages and shrink again over seconds,
    so right after a deflation several MiB of returned pages are free but
    in neither figure (6.12, 7.x)."""
    out = vm.sh("cat /proc/meminfo; grep -E '^ +count: ' /proc/zoneinfo")
    mi = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+)", out, re.M)}
    pcp = sum(int(n) for n in re.findall(r"^\s+count:\s+(\d+)$", out, re.M))
    return mi, pcp * 4                  # x86_64: 4 KiB pages


def mem_free_kb(vm):
    """Free memory in KiB: MemFree plus the pages on the per-CPU lists."""
    mi, pcp_kb = meminfo_pcp(vm)
    return mi["MemFree"] + pcp_kb


@pytest.fixture
def fresh(vm):
    """Our driver freshly loaded with the default capabilities, target 0,
    no faults pending; the global invariants are checked afterwards."""
    h = vm.host
    h.clear_faults()
    h.clamp(True)
    h.set_target(0)
    h.set_caps(CAPS_2M)
    if loaded(vm):
        unload(vm)
    h.clear_stats()
    load(vm)
    yield vm
    invariants(vm)


# ---------------------------------------------------------------------------

def test_ours_is_loaded(fresh, ko):
    vm = fresh
    assert vm.sh("cat /sys/module/vmw_balloon/version").strip() == our_version()
    assert vm.sh("cat /sys/module/vmw_balloon/srcversion").strip() == srcversion(ko)
    dep = vm.sh("grep -h '/vmw_balloon.ko' /lib/modules/*/modules.dep | cut -d: -f1")
    assert dep.split() == ["updates/vmw_balloon.ko"], dep
    st = vm.host.state()
    assert st["guest_id"] == 1 and st["started"] == 1
    # the doorbell is built and asked for; our host cannot ring one
    g = vmwhost.guest_vmmemctl(vm)
    assert g["balloon capabilities"] & 0x10, g
    assert g["used capabilities"] == CAPS_2M


# Variants loop inside one test (not pytest parameters): pytest would run
# parametrized variants after the other suites and boot each VM twice.
CAPS_CASES = [(CAPS_BASIC, 4096, "lock"), (CAPS_4K, TARGET, "batched_lock"),
              (CAPS_2M, TARGET, "batched_2m_lock")]


def test_caps_inflate_deflate(fresh):
    for caps, target, lock_op in CAPS_CASES:
        caps_case(fresh, caps, target, lock_op)


def caps_case(vm, caps, target, lock_op):
    unload(vm)
    vm.host.set_caps(caps)
    vm.host.clear_stats()
    g = load(vm)
    assert g["used capabilities"] == caps
    assert vm.host.state()["guest_caps"] == caps

    free0 = mem_free_kb(vm)
    vm.host.set_target(target)
    st, _ = settle(vm, target)
    ops = {op: st["op_" + op] for op in ("lock", "batched_lock", "batched_2m_lock")}
    assert ops[lock_op] > 0 and sum(ops.values()) == ops[lock_op], ops
    if lock_op == "batched_2m_lock":
        assert st["locked_2m"] * 512 == target
    else:
        assert st["locked_2m"] == 0 and st["locked_4k"] == target
    assert free0 - mem_free_kb(vm) >= target * 4 * 9 // 10

    vm.host.set_target(target // 4)
    settle(vm, target // 4, slack=SLACK)
    vm.host.set_target(0)
    st, _ = settle(vm, 0)
    unlock_op = lock_op.replace("lock", "unlock")
    assert st["op_" + unlock_op] > 0 and st["fail_" + unlock_op] == 0
    assert mem_free_kb(vm) >= free0 - 8 * 1024


def test_reset_while_inflated(fresh):
    vm = fresh
    vm.host.set_target(TARGET)
    settle(vm, TARGET)
    resets = vmwhost.guest_vmmemctl(vm)["reset"]
    vm.host.inject_reset()
    st = vm.host.wait_state(lambda s: s["starts"] == 2 and s["locked_pages"] == TARGET,
                            STEP, "re-START and re-inflate", alive=vm.check)
    assert st["op_guest_id"] == 2 and st["resets_injected"] == 1
    g = vmwhost.wait_guest(vm, lambda g: g["current"] == TARGET, STEP)
    assert g["reset"] == resets + 1


TRACING = "/sys/kernel/tracing"
STATUS_VIEW = "/sys/module/vmw_balloon/status"
# trace (and debugfs) command names -> the emulator's op_ counters
TRACE_OPS = {"start": "start", "target": "get_target", "lock": "lock", "unlock": "unlock",
             "guestType": "guest_id", "batchLock": "batched_lock",
             "batchUnlock": "batched_unlock", "2m-lock": "batched_2m_lock",
             "2m-unlock": "batched_2m_unlock", "doorbellSet": "doorbell_set"}
CAP_NAMES = [(0x02, "basic"), (0x04, "batched"), (0x08, "batched_2m"),
             (0x10, "signalled_wakeup"), (0x20, "64bit_target")]


def test_tracepoints_and_status_view(fresh, suite):
    """Our tracepoints (system "balloon") during an inflate with two
    refused 2 MiB pages, a RESET (pop and re-inflate) and a deflate: the
    target moves, the batches add up to what moved, refusals and the reset
    show, and every backdoor command is there with its status, as many as
    the host counted.  The read-only status view under /sys/module agrees
    with the host and debugfs; where the kernel counts balloon pages per
    node (NR_BALLOON_PAGES in its headers: 7.x) /proc/meminfo's Balloon:
    line counts the 2 MiB pages too, elsewhere there is no such line."""
    vm = fresh
    root = roots.root(suite)
    node_stat = kernel_has_balloon_node_stat(root, roots.kver(root))
    t = TRACING
    vm.sh("mountpoint -q %s || mount -t tracefs nodev %s" % (t, t))
    names = vm.sh("ls %s/events/balloon" % t).split()
    for e in ("vmw_balloon_target", "vmw_balloon_batch", "vmw_balloon_backoff",
              "vmw_balloon_refused", "vmw_balloon_cmd"):
        assert e in names, names
    target = TARGET + 256               # 32 pages of 2 MiB, then 256 of 4 KiB
    vm.sh("echo > %s/trace; echo 1 > %s/events/balloon/enable" % (t, t))
    try:
        h0 = vm.host.state()
        vm.host.refuse_next(2, "ppn_pinned")
        vm.host.set_target(target)
        st, g = settle(vm, target)
        status = dict(zip(("size_frames", "target_frames", "refused_frames", "last_error",
                           "capabilities"),
                          vm.sh("cd %s && cat size_frames target_frames refused_frames "
                                "last_error capabilities" % STATUS_VIEW).splitlines()))
        mi = vm.meminfo()
        assert ("Balloon" in mi) == node_stat, mi
        if node_stat:
            mi = vm.wait_folded(vm.meminfo, "Balloon", target * 4, 30)
        vm.host.inject_reset()
        vm.host.wait_state(lambda s: s["starts"] == 2 and s["locked_pages"] == target,
                           STEP, "re-START and re-inflate", alive=vm.check)
        settle(vm, target)
        vm.host.set_target(0)
        settle(vm, 0)
    finally:
        vm.sh("echo 0 > %s/events/balloon/enable" % t)
    h1 = vm.host.state()
    trace = vm.sh("cat %s/trace" % t)
    print("\n".join(ln for ln in trace.splitlines() if not ln.startswith("#")))
    print("\n".join("%s/%s: %s" % (STATUS_VIEW, k, v) for k, v in status.items()))
    print("meminfo Balloon: %s kB" % mi.get("Balloon"))

    assert re.search(r"vmw_balloon_target: old=0 new=%d source=host" % target, trace), trace
    assert re.search(r"vmw_balloon_target: old=%d new=0 source=host" % target, trace), trace
    moved = {"inflate": [0, 0], "deflate": [0, 0]}
    for m in re.finditer(r"vmw_balloon_batch: (inflate|deflate) frames_4k=(\d+) "
                         r"frames_2m=(\d+) us=\d+ err=0", trace):
        moved[m.group(1)][0] += int(m.group(2))
        moved[m.group(1)][1] += int(m.group(3))
    # inflated twice (before and after the reset), deflated once
    assert moved == {"inflate": [2 * 256, 2 * TARGET], "deflate": [256, TARGET]}, moved
    assert "err=-" not in trace
    refused = re.findall(r"vmw_balloon_refused: (\w+) pages=(\d+) size=(\w+) status=(\d+)",
                         trace)
    assert ("lock", "2", "2M", "5") in refused, refused
    assert sorted(r for r in refused if r[0] == "reset") == [
        ("reset", "256", "4k", "7"), ("reset", "32", "2M", "7")], refused

    cmds = [(c, a1, int(a2), int(st, 16), int(res)) for c, a1, a2, st, res in
            re.findall(r"vmw_balloon_cmd: (\S+) arg1=(\S+) arg2=(\d+) status=(\S+) "
                       r"result=(\d+)", trace)]
    counts = {}
    for name, _, _, _, _ in cmds:
        counts[name] = counts.get(name, 0) + 1
    for name, op in TRACE_OPS.items():
        if name != "target":        # GET_TARGET goes on around the window
            assert counts.get(name, 0) == h1["op_" + op] - h0["op_" + op], (name, counts)
    assert counts.get("target", 0) >= 3, counts
    assert ("start", "0x3e", 0, 0x3000000, CAPS_2M) in cmds, cmds
    assert ("2m-lock", 32) in [(c[0], c[2]) for c in cmds if c[3] == 0], cmds
    assert any(c[0] == "target" and c[3] == 0 and c[4] == target for c in cmds), cmds
    # the RESET reached the guest as the status of a command
    assert any(c[3] == 7 for c in cmds), cmds

    assert int(status["size_frames"]) == st["locked_pages"] == g["current"] == target
    assert int(status["target_frames"]) == g["target"] == target
    assert int(status["refused_frames"]) == 2 * 512, status
    assert int(status["last_error"]) == 0, status
    assert status["capabilities"].split() == [n for b, n in CAP_NAMES if CAPS_2M & b], status
    g = vmwhost.guest_vmmemctl(vm)
    assert int(vm.sh("cat %s/size_frames" % STATUS_VIEW)) == g["current"] == 0
    assert int(vm.sh("cat %s/last_error" % STATUS_VIEW)) == 7     # the RESET
    if node_stat:
        assert mi["Balloon"] == target * 4, mi


def _poll_state(vm, want, out):
    """vb-poll waiting on the status view's state for want, in the
    background; returns once it has read the first value (and blocks)."""
    vm.sh("(vb-poll %s/state %s; echo VB-POLL-EXIT $?) > %s 2>&1 &" % (STATUS_VIEW, want, out))
    vm.sh("until grep -q VB-POLL %s; do sleep 0.1; done" % out, timeout=60)


def test_state_says_reached_or_stuck(fresh):
    """A program blocked in poll() on the status view's state (with no
    timeout of its own) returns when the balloon stops short of the
    host's target (the host refusing every page: reason host-refused),
    and when it reaches it; each change is a change uevent of the module
    with BALLOON_STATE= and BALLOON_REASON= (busybox's uevent applet
    listens on the netlink socket).  vb-poll returns on its value after
    another one: so it waits for stuck from reached, and for reached from
    stuck (the driver may reach a target within one tick, before a
    program woken by "moving" reads it)."""
    vm = fresh
    view = STATUS_VIEW
    assert vm.sh("cat %s/state %s/reason" % (view, view)).split() == ["reached", "none"]
    vm.sh("(uevent env > /tmp/vmw-uevents 2>&1 &)")
    _poll_state(vm, "stuck", "/tmp/vmw-poll1")
    vm.host.refuse_next(REFUSE_ALL, "ppn_notneeded")
    vm.host.set_target(TARGET)
    seen = _poller_done(vm, "/tmp/vmw-poll1", STEP)
    assert "VB-POLL-EXIT 0" in seen, seen
    assert vm.sh("cat %s/reason" % view).strip() == "host-refused"
    assert vm.host.state()["locked_pages"] == 0, vm.host_context()

    _poll_state(vm, "reached", "/tmp/vmw-poll2")
    vm.host.clear_faults()
    seen = _poller_done(vm, "/tmp/vmw-poll2", STEP)
    assert "VB-POLL stuck" in seen and "VB-POLL-EXIT 0" in seen, seen
    assert vm.sh("cat %s/reason" % view).strip() == "none"
    st, _ = settle(vm, TARGET)
    vm.host.set_target(0)
    settle(vm, 0)
    vm.sh("until [ $(cat %s/state) = reached ]; do sleep 0.2; done" % view, timeout=STEP)
    events = vm.sh("cat /tmp/vmw-uevents; kill $(pidof uevent) 2>/dev/null; true")
    print("uevents:\n%s" % events[-1500:])
    assert "DEVPATH=/module/vmw_balloon" in events, events[-1500:]
    for state, reason in (("moving", "none"), ("reached", "none"), ("stuck", "host-refused")):
        assert "BALLOON_STATE=%s" % state in events and \
            "BALLOON_REASON=%s" % reason in events, (state, reason, events[-1500:])


FLOOR = "/sys/module/vmw_balloon/parameters/floor_mb"


def test_floor_mb(fresh):
    """floor_mb (floor_policy.h, as virtio_balloon's): -1 by default, a
    32nd of RAM within 16 MiB and 1 GiB; bad values are refused with one
    balloon-dkms: line, at load and at run time; a floor set at run time
    holds a balloon asked for all of RAM, which says it is stuck at the
    floor (a vb-poll blocked on its state returns)."""
    vm = fresh
    view = STATUS_VIEW
    mi = vm.meminfo()
    assert vm.sh("cat " + FLOOR).strip() == "-1"
    default = min(max(mi["MemTotal"] // 4 // 32, 4096), 262144)
    assert int(vm.sh("cat %s/floor_pages" % view)) == default
    rc, _ = vm.shell("echo -5 > " + FLOOR)
    assert rc != 0 and vm.sh("cat " + FLOOR).strip() == "-1"
    unload(vm)
    rc, out = vm.shell("modprobe vmw_balloon floor_mb=lots")
    assert rc != 0 and not loaded(vm), out
    bad = [ln for ln in vm.dmesg().splitlines() if "floor_mb must be" in ln]
    print("\n".join(bad))
    # (busybox's modprobe may try a module twice: one line a try)
    said = [re.search(r"\] balloon-dkms: vmw_balloon: floor_mb must be -1 \(a 32nd of RAM\), "
                      r"0 \(no floor\) or a size in MiB, not '(.*)'$", ln) for ln in bad]
    assert all(said) and [m.group(1) for m in said][:2] == ["-5", "lots"] and \
        {m.group(1) for m in said} == {"-5", "lots"}, bad
    load(vm)
    vm.sh("echo 0 > " + FLOOR)
    assert int(vm.sh("cat %s/floor_pages" % view)) == 0
    vm.sh("echo 256 > " + FLOOR)
    assert int(vm.sh("cat %s/floor_pages" % view)) == 256 * 256
    try:
        _poll_state(vm, "stuck", "/tmp/vmw-poll3")
        # all of RAM, no more (test_absurd_targets counts the clamp messages)
        all_ram = mi["MemTotal"] // 4
        n0 = vm.host.state()["op_get_target"]
        vm.host.set_target(all_ram)
        seen = _poller_done(vm, "/tmp/vmw-poll3", 2 * STEP)
        assert "VB-POLL-EXIT 0" in seen, seen
        assert vm.sh("cat %s/reason" % view).strip() == "floor"
        # Held at the floor, the balloon polls once a second
        # (vmw_poll_policy.h): every round here is cut short by the floor.
        vm.host.wait_state(lambda s: s["op_get_target"] >= n0 + 3, STEP,
                           "three GET_TARGETs", alive=vm.check)
        gets = [e["usec"] for e in vm.host.log(64)
                if e["op"] == "get_target" and e["result"] == all_ram]
        gaps = [(b - a) / 1e6 for a, b in zip(gets, gets[1:])]
        assert len(gaps) >= 1 and min(gaps) >= 0.5, \
            "held at the floor: GET_TARGETs %s s apart" % ["%.2f" % x for x in gaps]
        st, g = invariants(vm)
        mi, pcp_kb = meminfo_pcp(vm)
        avail = (mi["MemAvailable"] + pcp_kb) // 1024
        print("floor 256 MiB: balloon %d MiB, MemAvailable %d MiB" % (g["current"] // 256, avail))
        assert 256 - 16 <= avail <= 256 + 64, (mi, pcp_kb)
        assert g["current"] >= 128 * 256, g
    finally:
        vm.sh("echo -1 > " + FLOOR)
    vm.host.set_target(0)
    settle(vm, 0)


def test_reset_mid_batch(fresh):
    """RESET after part of a batch: on inflation and on deflation."""
    for caps in (CAPS_4K, CAPS_2M):
        mid_batch_case(fresh, caps)


def mid_batch_case(vm, caps):
    unload(vm)
    vm.host.set_caps(caps)
    load(vm)
    vm.host.clear_stats()
    # inflation: the host locks 10 entries, then forgets everything
    vm.host.reset_mid_batch(10)
    vm.host.set_target(TARGET)
    st = vm.host.wait_state(lambda s: s["starts"] == 1 and s["locked_pages"] == TARGET,
                            STEP, "re-inflate after a mid-batch reset", alive=vm.check)
    assert st["resets_injected"] == 1 and st["mid_batch_pending"] == 0
    settle(vm, TARGET)
    # deflation: 5 entries unlocked, then RESET: the guest pops the rest
    vm.host.reset_mid_batch(5)
    vm.host.set_target(0)
    st = vm.host.wait_state(lambda s: s["resets_injected"] == 2 and s["starts"] == 2,
                            STEP, "restart after a mid-deflate reset", alive=vm.check)
    settle(vm, 0)
    assert vmwhost.guest_vmmemctl(vm)["reset"] >= 2


def test_busy(fresh):
    vm = fresh
    vm.host.busy(6)             # GET_TARGET and the locks that follow
    vm.host.set_target(TARGET)
    st, _ = settle(vm, TARGET)
    assert vm.host.state()["busy_left"] == 0
    assert st["status_busy"] == 6
    vm.host.busy(3)
    vm.host.set_target(0)
    settle(vm, 0)
    assert vm.host.state()["busy_left"] == 0


# (target, K, direction): BUSY on the K-th lock/unlock entry from now,
# then the target.  K = 10 met the kernel's driver and ours in issue 18;
# 700 falls past the first 512 pages of a round; deflations end exactly
# on their target (4 KiB pages, more than 2 MiB left after the BUSY).
BUSY_ENTRY_STEPS = [(4096, 10, "lock"), (6144, 700, "lock"), (2048, 10, "unlock"),
                    (4096, 1, "lock"), (0, 600, "unlock")]


def test_busy_entry_without_batching(fresh):
    """Basic capabilities (0x22, one LOCK or UNLOCK per page): the host
    answers BUSY on the K-th entry of an inflation or a deflation, for
    several K.  Each page's outcome is its own: after every step the host
    holds exactly the pages the guest counts (none the guest freed or
    reused while the host held it, none the guest lost), with no protocol
    error, and target 0 ends at 0 on both sides."""
    vm = fresh
    unload(vm)
    vm.host.set_caps(CAPS_BASIC)
    g = load(vm)
    assert g["used capabilities"] == CAPS_BASIC
    vm.host.clear_stats()
    for target, k, direction in BUSY_ENTRY_STEPS:
        vm.host.busy_entry(k, direction)
        vm.host.set_target(target)
        vm.host.wait_state(lambda s: s["busy_entry_left"] == 0, STEP,
                           "BUSY on %s entry %d" % (direction, k), alive=vm.check)
        g = vmwhost.wait_guest(vm, lambda g: g["current"] == target, STEP,
                               "guest current = %d after BUSY on %s entry %d" % (
                                   target, direction, k))
        st = vm.host.state()
        what = "target %d, BUSY on %s entry %d: host holds %d pages, guest counts %d, " \
            "%d protocol errors (%s)" % (target, direction, k, st["locked_pages"],
                                         g["current"], st["protocol_errors"], st["last_error"])
        print(what)
        assert st["locked_pages"] == g["current"] and st["protocol_errors"] == 0, \
            what + "\n" + vm.host_context()
    assert vm.host.state()["busy_entries"] == len(BUSY_ENTRY_STEPS)
    settle(vm, 0)


def test_refused_2m_split_to_4k(fresh):
    """16 refused 2 MiB pages: the driver breaks them into 4 KiB pages and
    goes on with those; the host never holds what it refused."""
    vm = fresh
    vm.host.refuse_next(16, "ppn_pinned")
    vm.host.set_target(TARGET)
    st, g = settle(vm, TARGET)
    assert st["refused_entries"] == 16
    assert st["locked_2m"] == (TARGET - st["locked_4k"]) // 512
    assert st["locked_4k"] > 0, "no 4 KiB fallback after 16 refused 2 MiB pages"
    out = vm.sh("cat /sys/kernel/debug/vmmemctl")
    assert re.search(r"errAlloc\s*\(2M\):\s+16$", out, re.M), out
    vm.host.set_target(0)
    settle(vm, 0)


def test_refused_pfns(fresh):
    """The host refuses chosen PFNs (those the balloon held a moment ago,
    which the allocator tends to hand out again)."""
    for status in ("ppn_pinned", "ppn_notneeded"):
        refused_case(fresh, status)


def refuse_last_balloon(vm, status):
    """Inflate to 4096 pages and back with 4 KiB batches; the host then
    refuses the PFNs it held with `status`.  Returns them."""
    unload(vm)
    vm.host.set_caps(CAPS_4K)
    load(vm)
    vm.host.set_target(4096)
    settle(vm, 4096)
    before = sorted(vm.host.locked())
    vm.host.set_target(0)
    settle(vm, 0)
    (vm.host.pin if status == "ppn_pinned" else vm.host.notneeded)(*before)
    vm.host.clear_stats()
    return before


def refused_case(vm, status):
    before = refuse_last_balloon(vm, status)
    # Whether the allocator hands those PFNs out again is its business (on
    # 6.7+ freed pages linger on per-CPU lists); the first lock entries of
    # the next round are refused with the same status in any case, so the
    # refused-page path is always exercised.
    vm.host.refuse_next(16, status)
    vm.host.set_target(4096)
    st, _ = settle(vm, 4096)
    held = set(vm.host.locked())
    assert not held & set(before), "host holds PFNs it refused"
    out = vm.sh("cat /sys/kernel/debug/vmmemctl")
    refused = int(re.search(r"errAlloc\s*\(4k\):\s+(\d+)$", out, re.M).group(1))
    assert refused == st["refused_entries"] > 0, out
    vm.host.clear_faults()
    vm.host.set_target(0)
    settle(vm, 0)


def test_refused_set_larger_than_request(fresh):
    """The host pins a set of pages larger than the next request: the
    4096 pages the balloon held a moment ago; then it asks for 1024, and
    4096 more.  Refused pages freed at the end of a round are the first the
    allocator hands out in the next one, so a round that gives up after as
    many refusals as it asked for, or frees what it passed when its credit
    runs out, meets the same set in every round and never gets past it (CI
    saw sid stay at 2046 of 4096 for 240 s; bookworm stayed at 972 of 1024
    here).  A round short of its target for refusals keeps its refused
    pages for the next one, so the set is passed across rounds."""
    vm = fresh
    before = refuse_last_balloon(vm, "ppn_pinned")
    # the round that passes the set frees what it refused at its end; a
    # small request after it meets those pages first
    for target in (1024, 1024 + 4096):
        vm.host.set_target(target)
        st, _ = settle(vm, target, timeout=60)
        assert not set(vm.host.locked()) & set(before), "host holds PFNs it pinned"
        print("pinned set of %d, target %d: %d refused, %d lock commands"
              % (len(before), target, st["refused_entries"], st["op_batched_lock"]))
    vm.host.clear_faults()
    vm.host.set_target(0)
    settle(vm, 0)


def test_host_refuses_everything(fresh):
    """A host that refuses every page for a while (twice the request, in a
    row) costs the guest nothing: each round gives up once it holds as
    many refused pages as it may, or once its credit for batches the
    host took nothing of is spent (one batch a second then, as the
    kernel's driver), and frees the pages it held, so no round hangs and no
    page is lost; once the host takes pages again the balloon reaches the
    target."""
    vm = fresh
    unload(vm)
    vm.host.set_caps(CAPS_4K)
    load(vm)
    free0 = mem_free_kb(vm)
    want, refusals = 4096, 2 * 4096
    vm.host.refuse_next(refusals, "ppn_notneeded")
    vm.host.set_target(want)
    vm.host.wait_state(lambda s: s["refuse_left"] == 0, STEP,
                       "host refused %d entries" % refusals, alive=vm.check)
    st, _ = settle(vm, want)
    assert st["refused_entries"] == refusals, vm.host_context()
    out = vm.sh("cat /sys/kernel/debug/vmmemctl")
    refused = int(re.search(r"errAlloc\s*\(4k\):\s+(\d+)$", out, re.M).group(1))
    assert refused == refusals, out
    vm.host.set_target(0)
    settle(vm, 0)
    # 8192 refused pages are 32 MiB: any of them kept would show here
    assert mem_free_kb(vm) >= free0 - 8 * 1024, (free0, mem_free_kb(vm))


REFUSE_ALL = 1 << 40            # refuse_next: every lock entry from now on
# (caps, least ticks before the saved credit is spent, the held bound:
# refused pages a round holds at most, 12 batches or 256 single pages)
REFUSE_ALL_CASES = [(CAPS_4K, 4, 12 * 512), (CAPS_BASIC, 3, 256)]
REFUSE_ALL_TICKS = 3


def refuse_all_case(vm, who, caps, spent):
    """`who` against a host refusing every lock entry: (lock entries of
    the first tick, most lock commands in a tick once the first `spent`
    ticks are over), counted by the host between its GET_TARGETs."""
    vm.host.clear_faults()
    switch_driver(vm, who, caps)
    vm.host.refuse_next(REFUSE_ALL, "ppn_notneeded")
    vm.host.clear_stats()
    vm.host.set_target(4096)
    first = vm.host.wait_state(lambda s: s["op_get_target"] >= 2, STEP, "two ticks",
                               alive=vm.check)["tick_lock_entries_max"]
    vm.host.wait_state(lambda s: s["op_get_target"] >= spent, STEP, "%d ticks" % spent,
                       alive=vm.check)
    vm.host.clear_stats()
    st = vm.host.wait_state(lambda s: s["op_get_target"] >= REFUSE_ALL_TICKS + 1, STEP,
                            "%d more ticks" % REFUSE_ALL_TICKS, alive=vm.check)
    assert st["locked_pages"] == 0, vm.host_context()
    vm.host.clear_faults()
    vm.host.set_target(0)
    print("refusing host, caps %#x, %-7s: %d lock entries in the first tick, "
          "at most %d lock commands a tick after tick %d" % (
              caps, who, first, st["tick_lock_cmds_max"], spent))
    return first, st["tick_lock_cmds_max"]


@POLICY_SUITES
def test_refusing_host_costs_no_more_than_intree(fresh):
    """A host that refuses every page gets no more lock commands a tick
    from ours than from the kernel's own driver (one a tick: a batch of 4
    KiB pages, or without batching one LOCK), once the credit saved for
    passing a set of refused pages is spent (the first ticks), both
    measured in the same VM against the same host, counted by the host
    between GET_TARGETs (the drivers work once a tick).  The first tick
    stays within the bound on refused pages held, page by page (it used to
    be checked after a whole batch: 512 single LOCKs for a bound of 256)."""
    vm = fresh
    res = {}
    for caps, spent, held in REFUSE_ALL_CASES:
        for who in ("ours", "in-tree"):
            res[(caps, who)] = refuse_all_case(vm, who, caps, spent)
    switch_driver(vm, "ours", CAPS_2M)
    for caps, spent, held in REFUSE_ALL_CASES:
        first, per_tick = res[(caps, "ours")]
        intree = res[(caps, "in-tree")][1]
        assert 0 < per_tick <= intree, \
            "caps %#x: %d lock commands a tick, in-tree %d" % (caps, per_tick, intree)
        assert first <= held, "caps %#x: %d refused in the first tick" % (caps, first)


POLL_STEPS = 16         # the moving host raises its target by a 2 MiB page this often
POLL_TICKS = 6          # ticks watched while idle and while refused


def guest_seconds(vm):
    return float(vm.sh("cut -d' ' -f1 /proc/uptime").split()[0])


def poll_phase(vm, run):
    """Host commands and ticks (GET_TARGETs) counted while run() goes on,
    and the guest seconds it took (the guest's own clock)."""
    st0, t0 = vm.host.state(), guest_seconds(vm)
    run()
    st1, t1 = vm.host.state(), guest_seconds(vm)
    return dict(ticks=st1["op_get_target"] - st0["op_get_target"],
                cmds=st1["commands"] - st0["commands"], guest_s=t1 - t0)


def poll_case(vm, who):
    """`who` with 2 MiB pages: idle; a host that raises its target one 2
    MiB page at a time, each step as soon as it holds the last one; a
    host that refuses every page.  Returns each phase's counts."""
    switch_driver(vm, who, CAPS_2M)
    h = vm.host
    n0 = h.state()["op_get_target"]
    h.wait_state(lambda s: s["op_get_target"] >= n0 + 2, STEP, "two ticks", alive=vm.check)

    def idle():
        n = h.state()["op_get_target"]
        h.wait_state(lambda s: s["op_get_target"] >= n + POLL_TICKS, STEP,
                     "%d idle ticks" % POLL_TICKS, alive=vm.check)

    def moving():
        for i in range(1, POLL_STEPS + 1):
            h.set_target(512 * i)
            h.wait_state(lambda s: s["locked_pages"] == 512 * i, STEP,
                         "step %d taken" % i, alive=vm.check)

    def refused():
        h.refuse_next(REFUSE_ALL, "ppn_notneeded")
        h.set_target(512 * POLL_STEPS + 4096)
        n = h.state()["op_get_target"]
        h.wait_state(lambda s: s["op_get_target"] >= n + POLL_TICKS, STEP,
                     "%d refused ticks" % POLL_TICKS, alive=vm.check)

    res = {name: poll_phase(vm, f) for name, f in
           (("idle", idle), ("moving", moving), ("refused", refused))}
    h.clear_faults()
    h.set_target(0)
    settle(vm, 0)
    for name, r in res.items():
        print("poll %-7s %-7s: %2d ticks, %3d host commands in %5.1f guest s: "
              "%.2f ticks/s, %.2f commands/s" % (
                  who, name, r["ticks"], r["cmds"], r["guest_s"],
                  r["ticks"] / r["guest_s"], r["cmds"] / r["guest_s"]))
    return res


def test_polls_faster_only_while_host_takes(fresh, suite):
    """Without a doorbell the target is learnt once a second
    (src/vmw_poll_policy.h).  While the host takes pages the next tick
    comes sooner: a host raising its target step by step sees more than one
    GET_TARGET a guest second (the kernel's driver: one, a step a
    second).  Idle, and while the host refuses every page, the ticks stay
    at one a guest second (+2 for the span's ends), as the kernel's
    driver's.  Counted by the host; the guest's own clock for the span.
    The kernel's driver runs the same phases on bookworm, for the
    figures (printed, not asserted: test_sparse_acceptance and
    test_refusing_host_costs_no_more_than_intree bound ours by it)."""
    vm = fresh
    ours = poll_case(vm, "ours")
    if suite == "bookworm":
        poll_case(vm, "in-tree")
        switch_driver(vm, "ours", CAPS_2M)
    for name in ("idle", "refused"):
        r = ours[name]
        assert r["ticks"] <= r["guest_s"] + 2, \
            "%s: %d ticks in %.1f guest s" % (name, r["ticks"], r["guest_s"])
    r = ours["moving"]
    assert r["ticks"] >= POLL_STEPS and r["ticks"] > r["guest_s"] + 2, \
        "moving: %d ticks in %.1f guest s, %d steps" % (r["ticks"], r["guest_s"], POLL_STEPS)


def test_absurd_targets(fresh):
    """Targets the host has no business sending: beyond guest RAM, beyond
    32 and 64 bits.  The guest clamps them to its RAM with one message,
    survives, and follows the next sane target."""
    vm = fresh
    vm.host.clamp(False)
    limit = None
    for t in (MEM_MB * 256 + 1000, (1 << 32) + 7, (1 << 40), (1 << 64) - 1):
        vm.host.set_target(t)
        vm.host.wait_state(lambda s: s["reported_target"] == t, STEP,
                           "host reports %d" % t, alive=vm.check)
        g = vmwhost.wait_guest(vm, lambda g: g["target"] != 0 and g["target"] < t, STEP,
                               "guest clamps target %d" % t)
        limit = vm.host.state()["guest_limit"]
        assert g["target"] == limit, (g["target"], limit)
    # it stops short of the guest's reserve (1/32 of RAM available, at
    # least 16 MiB, at most 1 GiB), and the guest keeps working
    vm.wait_console(r"vmw_balloon: guest memory is low: holding the balloon", STEP)
    # pages parked on the per-CPU lists are available all the same
    mi, pcp_kb = meminfo_pcp(vm)
    reserve_kb = min(max(mi["MemTotal"] // 32, 16 << 10), 1 << 20)
    assert mi["MemAvailable"] + pcp_kb >= reserve_kb - 4096, (mi, pcp_kb)
    assert vmwhost.guest_vmmemctl(vm)["current"] > (MEM_MB - 128) * 256
    assert vm.sh("echo alive").strip() == "alive"
    msgs = [ln for ln in vm.dmesg().splitlines() if "more than the guest" in ln]
    assert len(msgs) == 1, msgs
    invariants(vm)
    vm.host.set_target(0)
    settle(vm, 0)
    vm.host.set_target(4096)
    settle(vm, 4096)
    vm.host.set_target(0)
    settle(vm, 0)


SPARSE_TARGET = 2048            # 8 MiB
SPARSE_WINDOW_TICKS = 5         # work ticks sampled where no convergence is due
SPARSE_CONVERGE_TICKS = 90      # work ticks ours may take at N = 20 (55 seen)
SPARSE_CMD_RATIO = 10           # ours' host commands a tick at most this x in-tree's

# In the background until /tmp/sparse-stop exists: MemFree (kB) and the
# guest's own clock (/proc/uptime) every 0.2 s.
SPARSE_SAMPLER = (
    "rm -f /tmp/sparse-stop; (while [ ! -e /tmp/sparse-stop ]; do"
    " grep '^MemFree:' /proc/meminfo; echo up $(cut -d' ' -f1 /proc/uptime);"
    " sleep 0.2; done > /tmp/sparse.out 2>&1 &)")


def sparse_case(vm, who, n, converge):
    """Load `who` with 4 KiB batches, let the host accept only every n-th
    lock entry, ask for SPARSE_TARGET pages and sample the guest's free
    memory (from inside the guest, five times a second) while the host
    counts SPARSE_WINDOW_TICKS work ticks (GET_TARGETs), or with
    `converge` until the balloon holds the target or SPARSE_CONVERGE_TICKS
    ticks went by.  Returns a dict: MemFree before ("free0") and lowest
    ("low"), host commands a tick ("per_tick"), ticks counted ("ticks"),
    the guest seconds the sampler saw meanwhile ("guest_s", a span that
    holds the ticks), pages held at the end ("held")."""
    vm.host.clear_faults()
    switch_driver(vm, who, CAPS_4K)
    free0 = vm.meminfo()["MemFree"]
    vm.sh(SPARSE_SAMPLER)
    vm.host.accept_every(n)
    vm.host.clear_stats()
    c0 = vm.host.state()["commands"]
    vm.host.set_target(SPARSE_TARGET)
    if converge:
        st = vm.host.wait_state(lambda s: s["locked_pages"] >= SPARSE_TARGET or
                                s["op_get_target"] >= SPARSE_CONVERGE_TICKS, 4 * STEP,
                                "the target or %d ticks" % SPARSE_CONVERGE_TICKS,
                                alive=vm.check)
    else:
        st = vm.host.wait_state(lambda s: s["op_get_target"] >= SPARSE_WINDOW_TICKS, STEP,
                                "%d ticks" % SPARSE_WINDOW_TICKS, alive=vm.check)
    held = vmwhost.guest_vmmemctl(vm)["current"]
    out = vm.sh("touch /tmp/sparse-stop; sleep 0.5; cat /tmp/sparse.out")
    ticks = st["op_get_target"]
    per_tick = (st["commands"] - c0) / max(ticks, 1)
    ops = " ".join("%s %d" % (k[3:], v) for k, v in st.items() if k.startswith("op_") and v)
    frees = [int(v) for v in re.findall(r"^MemFree:\s+(\d+)", out, re.M)]
    ups = [float(v) for v in re.findall(r"^up (\S+)", out, re.M)]
    assert len(frees) >= 5 and len(ups) >= 5, out
    vm.host.clear_faults()
    vm.host.set_target(0)
    settle(vm, 0)
    vmwhost.assert_clean(vm)
    r = dict(free0=free0, low=min(frees), per_tick=per_tick, ticks=ticks,
             guest_s=ups[-1] - ups[0], held=held)
    print("sparse acceptance 1/%d %-7s: MemFree %d -> min %d kB, %.1f host commands a tick, "
          "%d ticks in %.1f guest s, %d of %d pages (%s)" % (
              n, who, free0, r["low"], per_tick, ticks, r["guest_s"], held, SPARSE_TARGET, ops))
    return r


@POLICY_SUITES
def test_sparse_acceptance(fresh):
    """A host that takes only every N-th page (N = 20, N = 512) costs the
    guest little: its free memory never drops below half of what it was,
    and the host sees at most SPARSE_CMD_RATIO times the commands a work
    tick of the kernel's own driver, measured in the same VM against the
    same host.  Both drivers work once a second (one GET_TARGET each
    time): that ours does not tick faster, which would hide behind a
    per-tick figure, is checked against the guest's own clock (ticks the
    host counted <= guest seconds the sampler saw + 2: the sampler's span
    holds the ticks, give or take its 0.2 s steps).  With N = 20 the
    balloon still reaches its target, within SPARSE_CONVERGE_TICKS ticks."""
    vm = fresh
    res = {}
    for n in (20, 512):
        for who in ("ours", "in-tree"):
            res[(n, who)] = sparse_case(vm, who, n, converge=(n == 20 and who == "ours"))
    unload(vm)
    load(vm)
    for n in (20, 512):
        ours, intree = res[(n, "ours")], res[(n, "in-tree")]
        assert ours["low"] >= ours["free0"] // 2, \
            "1/%d: MemFree fell from %d to %d kB" % (n, ours["free0"], ours["low"])
        assert ours["per_tick"] <= SPARSE_CMD_RATIO * intree["per_tick"], \
            "1/%d: %.1f host commands a tick, in-tree %.1f" % (n, ours["per_tick"],
                                                              intree["per_tick"])
        assert ours["ticks"] <= ours["guest_s"] + 2, \
            "1/%d: %d ticks in %.1f guest seconds" % (n, ours["ticks"], ours["guest_s"])
    ours = res[(20, "ours")]
    assert ours["held"] >= SPARSE_TARGET, \
        "1/20: %d of %d pages after %d ticks" % (ours["held"], SPARSE_TARGET, ours["ticks"])


def test_wide_target_without_64bit(fresh):
    """Without the 64-bit-target capability the protocol carries 32 bits:
    a host answering more (here the raw 2^32 + 7, the emulator's clamp
    off) sent no target the guest can use.  Our choice: ignore it, keep
    the previous target, say so once; the next sane target is followed.
    (Taking it as "all of RAM" would press the guest to its reserve.)"""
    vm = fresh
    unload(vm)
    vm.host.set_caps(CAP_BASIC | CAP_BATCHED)
    g = load(vm)
    assert not g["used capabilities"] & CAP_64BIT_TARGET
    vm.host.clamp(False)
    vm.host.set_target(4096)
    settle(vm, 4096)
    wide = (1 << 32) + 7
    vm.host.set_target(wide)
    n = vm.host.wait_state(lambda s: s["reported_target"] == wide, STEP,
                           "host reports %d" % wide, alive=vm.check)["op_get_target"]
    # three more rounds with the wide answer
    vm.host.wait_state(lambda s: s["op_get_target"] >= n + 3, STEP,
                       "three more GET_TARGETs", alive=vm.check)
    g = vmwhost.guest_vmmemctl(vm)
    assert (g["target"], g["current"]) == (4096, 4096), g
    assert vm.host.state()["locked_pages"] == 4096, vm.host_context()
    msgs = [ln for ln in vm.dmesg().splitlines() if "without 64-bit targets" in ln]
    assert len(msgs) == 1, msgs
    vm.host.set_target(8192)
    settle(vm, 8192)
    vm.host.clamp(True)
    vm.host.set_target(0)
    settle(vm, 0)


FILL = "/run/vmw-fill"
FILL_RESERVE_KB = 64 * 1024     # free memory left beside the fill files

# Two tmpfs files written in alternating 64 KiB chunks until free memory
# is down to the reserve (the guest has busybox only: its awk).
FILL_AWK = (
    "awk -v A=%s/a -v B=%s/b -v R=%d -v M=%d 'BEGIN {"
    " c = \"x\"; while (length(c) < 65536) c = c c;"
    " for (n = 0; n * 128 < M; n++) {"
    " if (n %% 16 == 0) { fflush(); f = 0;"
    " while ((getline l < \"/proc/meminfo\") > 0)"
    " if (l ~ /^MemFree:/) { split(l, w, \" \"); f = w[2] };"
    " close(\"/proc/meminfo\"); if (f < R) break };"
    " printf \"%%s\", c > A; printf \"%%s\", c > B } }'"
    " && wc -c %s/a %s/b" % (FILL, FILL, FILL_RESERVE_KB, MEM_MB * 1024, FILL, FILL))


def balloon_migrated(vm):
    return int(re.search(r"^balloon_migrate (\d+)$",
                         vm.sh("cat /proc/vmstat"), re.M).group(1))


def inflate_spread(vm):
    """Inflate the loaded driver into holes spread over the whole zone
    (test_compaction_migrates says why); returns the target in pages."""
    vm.sh("mkdir -p %s && mount -t tmpfs -o size=%dm vmw-fill %s" % (FILL, MEM_MB, FILL))
    try:
        out = vm.sh(FILL_AWK, timeout=2 * STEP)
        size_a, size_b = (int(n) for n in re.findall(r"^\s*(\d+)\s+\S+/[ab]$", out, re.M))
        assert size_a == size_b >= 32 << 20, out
        vm.sh("rm %s/a" % FILL)
        target = (size_a >> 10) // 4
        vm.host.set_target(target)
        settle(vm, target)
        vm.sh("rm %s/b" % FILL)
    finally:
        vm.sh("rm -f %s/a %s/b; umount %s" % (FILL, FILL, FILL))
    return target


def test_compaction_migrates(fresh):
    """Compaction moves 4 KiB balloon pages: the host unlocks the old page
    and locks the new one, and the two sides still agree.

    Compaction moves pages from the bottom of a zone to free pages at its
    top; balloon pages that all sit high (where a fresh guest, or the
    free lists left by earlier checks, may well put them) are never
    moved.  So the layout is made first: free memory is filled with two
    tmpfs files in alternating 64 KiB chunks, one file is deleted and the
    balloon inflated into the holes it left, the other is deleted.  Now
    balloon pages are spread over the whole zone between free pages,
    whatever the free lists looked like before."""
    vm = fresh
    unload(vm)
    vm.host.set_caps(CAPS_4K)
    load(vm)
    target = inflate_spread(vm)
    before = set(vm.host.locked())
    low = sum(1 for pfn in before if pfn < MEM_MB * 128)

    m0 = balloon_migrated(vm)
    vm.sh("echo 1 > /proc/sys/vm/compact_memory", timeout=STEP)
    moved = balloon_migrated(vm) - m0
    st, _ = settle(vm, target)
    after = set(vm.host.locked())
    print("compaction: %d of %d balloon pages migrated (%d in the lower half of RAM)"
          % (moved, target, low))
    assert moved > 0, "compaction migrated no balloon page (%d of %d in the lower half)" % (
        low, target)
    assert len(after - before) == moved
    vm.host.set_target(0)
    settle(vm, 0)


def test_unload_inflated_returns_all(fresh):
    vm = fresh
    free0 = mem_free_kb(vm)
    vm.host.set_target(TARGET)
    settle(vm, TARGET)
    unload(vm)
    assert mem_free_kb(vm) >= free0 - 8 * 1024
    load(vm)
    settle(vm, TARGET)
    vm.host.set_target(0)
    settle(vm, 0)


UNLOAD_ATTEMPTS = 3
UNLOADED_RX = re.compile(r"balloon-dkms: vmw_balloon: unloaded: (\d+) migrations turned away "
                         r"during resets and the unload, (\d+) waits for pages under migration$")


def test_unload_during_compaction(fresh):
    """rmmod while compaction keeps isolating balloon pages (issue 10,
    B3): pop waits for every page under migration instead of giving it up
    after a while, so the host holds nothing afterwards, the guest gets
    every page back, and nothing in the kernel log complains.  That a
    migration really overlapped the unload is asserted from the driver's
    own word (its debug line at unload, turned on with dyndbg=+p): the
    migrations it turned away while the unload held the balloon, and how
    often pop waited for a page under migration.  The balloon is inflated
    into holes spread over the zone (inflate_spread), and the unload waits
    until compaction has migrated a balloon page; attempts repeat (at most
    UNLOAD_ATTEMPTS) until one overlapped."""
    vm = fresh
    unload(vm)
    vm.host.set_caps(CAPS_4K)
    free0 = mem_free_kb(vm)
    moved, held, waits, attempts = 0, 0, 0, []
    while not held and len(attempts) < UNLOAD_ATTEMPTS:
        load(vm, "dyndbg=+p")
        inflate_spread(vm)
        m0 = balloon_migrated(vm)
        vm.sh("(while :; do echo 1 > /proc/sys/vm/compact_memory; done) & "
              "echo $! > /tmp/compact.pid")
        try:
            # compaction reaches balloon pages before the unload begins
            vm.sh("until [ $(awk '/^balloon_migrate / {print $2}' /proc/vmstat) -gt %d ]; "
                  "do sleep 0.1; done" % m0, timeout=STEP)
            unload(vm)
        finally:
            vm.sh("kill $(cat /tmp/compact.pid); wait 2>/dev/null; true")
        moved += balloon_migrated(vm) - m0
        said = [m for m in map(UNLOADED_RX.search, vm.dmesg().splitlines()) if m]
        assert said, "no unload line with dyndbg=+p"
        attempts.append((int(said[-1].group(1)), int(said[-1].group(2))))
        held += attempts[-1][0]
        waits += attempts[-1][1]
        vm.host.set_target(0)
    print("unload during compaction: %d balloon pages migrated around the unloads; "
          "(migrations turned away during the unload, pop's waits) of each attempt: %s" % (
              moved, attempts))
    assert held > 0, "no migration overlapped an unload in %d attempts" % len(attempts)
    load(vm)
    assert mem_free_kb(vm) >= free0 - 8 * 1024, (free0, mem_free_kb(vm))
    bad = [ln for ln in vm.dmesg().splitlines()
           if "vmw_balloon" in ln and ("leak" in ln or "stuck" in ln) or
           "BUG" in ln or "WARNING" in ln]
    assert not bad, bad


def test_shrinker_gives_back(fresh):
    """With vmwballoon_shrinker_enable=1, memory pressure deflates."""
    vm = fresh
    unload(vm)
    load(vm, "vmwballoon_shrinker_enable=1")
    free = mem_free_kb(vm)
    target = (free // 4) * 7 // 8            # most of the free memory
    vm.host.set_target(target)
    vmwhost.wait_guest(vm, lambda g: g["current"] >= target - 4096, STEP, "inflated")
    # a tmpfs file larger than what is left forces reclaim
    size_mb = free // 1024 // 4
    vm.sh("dd if=/dev/zero of=/tmp/fill bs=1M count=%d 2>/dev/null; rm -f /tmp/fill"
          % size_mb, timeout=STEP)
    g = vmwhost.guest_vmmemctl(vm)
    assert g["shrink"] > 0 and g["shrinkFree"] > 0, g
    invariants(vm)
    vm.host.set_target(0)
    settle(vm, 0)


def test_plain_pc_refuses(suite, ko):
    """Not on VMware: -ENODEV, nothing in dmesg."""
    v = vmwhost.vmware_vm(roots.root(suite), ko=[ko], host=False, vmware=False,
                          mem_mb=256, smp=1, name="plain-" + suite)
    with v:
        rc, out = v.shell("modprobe vmw_balloon")
        assert rc != 0 and "No such device" in out, out
        assert "vmw_balloon" not in v.sh("cut -d' ' -f1 /proc/modules").split()
        # loading any out-of-tree module taints; beyond that, not a word
        taint = ("loading out-of-tree module taints kernel",
                 "module verification failed")
        d = v.dmesg()
        noise = [ln for ln in d.splitlines()
                 if ("vmw_balloon" in ln or "WARNING" in ln) and
                 not any(t in ln for t in taint)]
        assert not noise, noise
