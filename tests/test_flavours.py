# SPDX-License-Identifier: GPL-2.0
"""Both drivers on sid's PREEMPT_RT kernel (linux-image-rt-amd64).

PREEMPT_RT turns spinlocks into sleeping locks: a spinlock held across a
GFP_ATOMIC allocation still works, but one held where the kernel must not
sleep (hard interrupt context, preempt_disable()) is a "BUG: scheduling
while atomic", and a raw spinlock held across an allocation is one too.
So the core of test_virtio.py and test_vmw.py runs again here, the same
test functions imported from those files (pytest collects them in this
module, with this module's fixtures): the kernel is the rt one of sid's
"flavours" root (scripts/mkroot.sh sid flavours), our modules are built
against its headers.

One VM per configuration, at most one at a time: test_virtio's "std" and
"full" (deflate-on-oom) guests, then the VMware guest against the emulated
host.  test_virtio's compaction test is not among them: it reads the
kernel configuration from roots.root(suite), which knows no rt kernel.

What the rt run catches, on Debian's rt kernel (CONFIG_PREEMPT_RT=y,
CONFIG_DETECT_HUNG_TASK=y with a 120 s timeout; no lockdep
(CONFIG_PROVE_LOCKING), no CONFIG_DEBUG_ATOMIC_SLEEP; test_console_checks
checks that configuration, so this list stays true):
- "BUG: scheduling while atomic" (the scheduler's own check, always
  built): lib/vm.py fails the VM on any "BUG:" at once, and RT_PATTERNS
  names it again;
- a task blocked for more than 120 s ("INFO: task ... blocked for more
  than"), e.g. a work item or rmmod stuck on a lock: RT_PATTERNS, checked
  after every test; the kernel looks every 120 s, so the report comes 120
  to 240 s after the task blocked and fails whichever test runs then (a
  shorter hang is not caught);
- any other "BUG:", "WARNING: CPU:", Oops or panic (lib/vm.py).
It does not catch lockdep's reports (circular or recursive locking,
inconsistent lock state, suspicious RCU usage) nor "sleeping function
called from invalid context": this kernel cannot print them, so no pattern
looks for them.
"""
import os
import re

import pytest

from lib import build, pkg, roots, vmwhost
from lib import vm as vmlib
from lib.virtio_util import GuestPool

import test_packaging
import test_virtio
import test_vmw

SUITE = "sid"
FLAVOUR = "rt-amd64"
LABEL = "sid-rt"            # the guests' suite label (timings, seeds, VM names)
VERSION = pkg.VERSION
CONFIGS = {name: test_virtio.CONFIGS[name] for name in ("std", "full")}
# Besides lib/vm.py's FAIL_PATTERNS: what Debian's rt kernel can report
# (see the module docstring; test_console_checks checks its configuration).
RT_PATTERNS = (r"scheduling while atomic", r"INFO: task \S+ blocked for more than")
# the configuration those patterns rely on, and what no pattern is kept for
RT_CONFIG = {"CONFIG_PREEMPT_RT": "y", "CONFIG_DETECT_HUNG_TASK": "y",
             "CONFIG_DEFAULT_HUNG_TASK_TIMEOUT": "120", "CONFIG_PROVE_LOCKING": None, "CONFIG_DEBUG_ATOMIC_SLEEP": None}

_VMS = []


def need_sid():
    test_packaging.need_suite(SUITE)


@pytest.fixture(scope="module")
def rt():
    """(flavours root, rt kernel release)."""
    need_sid()
    r = roots.root(SUITE, "flavours")
    return r, roots.flavour_kver(r, FLAVOUR)


class RtPool(GuestPool):
    """test_virtio's GuestPool on the rt kernel of the flavours root."""

    def __init__(self, root, kver, configs):
        self.suite, self.configs, self.root, self.kver = LABEL, configs, root, kver
        self.arch = "x86_64"
        self.ko = build.modules(root, kver, only=("virtio_balloon",))["virtio_balloon"]
        self.cur = None

    def get(self, name):
        g = super().get(name)
        if g.vm not in _VMS:
            _VMS.append(g.vm)
        return g


@pytest.fixture(scope="module")
def pool(rt):
    p = RtPool(rt[0], rt[1], CONFIGS)
    yield p
    p.close()


@pytest.fixture(scope="module")
def ko(rt):
    return build.modules(rt[0], rt[1], only=("vmw_balloon",))["vmw_balloon"]


@pytest.fixture(scope="module")
def vm(rt, ko, pool):
    """The VMware guest on the rt kernel (as test_vmw's); the virtio guest
    is shut down first: one VM at a time."""
    pool.close()
    v = vmwhost.balloon_guest(rt[0], ko, kver=rt[1], name="vmw-" + LABEL)
    _VMS.append(v)
    yield v
    v.close()


@pytest.fixture(autouse=True)
def no_rt_splats():
    seen = {id(v): len(v.console_text()) for v in _VMS}
    yield
    for v in _VMS:
        text = v.console_text()[seen.get(id(v), 0):]
        bad = [ln for ln in text.splitlines() if any(re.search(p, ln) for p in RT_PATTERNS)]
        assert not bad, "%s console:\n%s" % (v.name, "\n".join(bad[:20]))


std = test_virtio.std
full = test_virtio.full
fresh = test_vmw.fresh


def test_console_checks(rt):
    """The rt kernel is configured as the module docstring says (so
    RT_PATTERNS can match, and nothing else of its kind can be printed),
    and the harness fails a VM on the reports it can produce (no VM:
    lines as the kernel prints them, against lib/vm.py's patterns and
    RT_PATTERNS)."""
    with open(os.path.join(rt[0], "boot", "config-" + rt[1])) as f:
        config = dict(re.findall(r"^(CONFIG_\w+)=(.*)$", f.read(), re.M))
    got = {k: config.get(k) for k in RT_CONFIG}
    assert got == RT_CONFIG, "config-%s: %s, the docstring says %s" % (rt[1], got, RT_CONFIG)
    fatal = ["BUG: scheduling while atomic: kworker/0:1/42/0x00000002",
             "WARNING: CPU: 0 PID: 1 at mm/balloon_compaction.c:60 balloon_page_dequeue+0x0/0x10"]
    for ln in fatal:
        assert any(re.search(p, ln) for p in vmlib.FAIL_PATTERNS), ln
    for ln in ("BUG: scheduling while atomic: kworker/0:1/42/0x00000002",
               "INFO: task kworker/1:2:77 blocked for more than 120 seconds."):
        assert any(re.search(p, ln) for p in RT_PATTERNS), ln


def test_rt_kernel_runs_ours(std, rt):
    """The guest runs the PREEMPT_RT kernel, with our virtio_balloon bound."""
    assert std.vm.sh("uname -r").strip() == rt[1]
    assert "PREEMPT_RT" in std.vm.sh("uname -v"), std.vm.sh("uname -v")
    assert std.driver_version() == VERSION and std.bound()


# test_virtio's core, std guest (device_del last: it ends that VM)
test_inflate_1g_and_back = test_virtio.test_inflate_1g_and_back
test_random_targets = test_virtio.test_random_targets
test_rmmod_while_inflated = test_virtio.test_rmmod_while_inflated
test_device_del_while_inflated = test_virtio.test_device_del_while_inflated
# deflate-on-oom guest
test_deflate_on_oom_keeps_memtotal = test_virtio.test_deflate_on_oom_keeps_memtotal
test_pressure_gives_back_what_is_needed = test_virtio.test_pressure_gives_back_what_is_needed
# test_vmw's core, VMware guest
test_ours_is_loaded = test_vmw.test_ours_is_loaded
test_caps_inflate_deflate = test_vmw.test_caps_inflate_deflate
test_reset_while_inflated = test_vmw.test_reset_while_inflated
test_unload_inflated_returns_all = test_vmw.test_unload_inflated_returns_all
test_unload_during_compaction = test_vmw.test_unload_during_compaction
test_shrinker_gives_back = test_vmw.test_shrinker_gives_back
