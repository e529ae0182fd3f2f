# SPDX-License-Identifier: GPL-2.0
"""pytest glue for the balloon-dkms tests (run them with tests/run).

- tests/ is put on sys.path: `from lib import roots, initramfs, vm, qmp`.
- --quick (or BALLOON_QUICK=1): only tests marked `quick`, only bookworm.
- --suites "a b" overrides $BALLOON_SUITES (default: all four suites).
- A test that takes an argument named `suite` is parametrized over the suites
  under test (lib.roots.suites()) unless it parametrizes `suite` itself.
- Fixtures:
    root(suite) -> path of the suite's cached build root (never modify it:
                   use lib.roots.overlay())
    kver(root)  -> its kernel release
    work        -> a fresh per-test directory under $BALLOON_WORK/tests/
    make_vm     -> make_vm(root=None, factory=None, **kw) boots factory(**kw),
                   else VM.for_root(root, **kw), else VM(**kw), through
                   lib.vm.boot(), and closes it after the test
    timing      -> timing(key, seconds): recorded, printed in the summary
                   and written to $BALLOON_WORK/results/timings.json
- tests/run runs two lanes (pytest-xdist); see lane_group() below.
- Any failing test that had a VM alive gets that VM's console log (path and
  last 200 lines) appended to its failure report.
"""
import json
import os
import re
import shutil
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import roots  # noqa: E402
from lib import vm as vmlib  # noqa: E402

_TIMINGS = []


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true",
                     help="only tests marked quick, bookworm kernel only")
    parser.addoption("--suites", default=None,
                     help="space-separated suites (overrides BALLOON_SUITES)")


def pytest_configure(config):
    if config.getoption("--quick"):
        os.environ["BALLOON_QUICK"] = "1"
    if config.getoption("--suites"):
        os.environ["BALLOON_SUITES"] = config.getoption("--suites")
    roots.suites()      # fail early on an unknown suite name


# Two lanes (tests/run: pytest-xdist -n 2 --dist loadgroup): each group
# runs whole on one lane, in order.  A group is one test file, or one file
# for one suite when its tests are parametrized by suite (they share that
# suite's VMs through module fixtures).  Groups start longest first, so the
# lanes end together: files are ranked by what they took here (warm cache,
# one lane), the rest come after in collection order.
LANE_RANK = ("test_virtio", "test_vmw", "test_zones", "test_hugepages", "test_mmio",
             "test_lifecycles", "test_libvirt", "test_arm64", "test_flavours", "test_packaging",
             "test_repo", "test_vmwhost", "test_sb_fallback", "test_autopkgtest",
             "test_build", "test_harness")


def lane_group(item):
    mod = item.module.__name__.rsplit(".", 1)[-1]
    cs = getattr(item, "callspec", None)
    if cs is not None and "suite" in cs.params:
        # no brackets: xdist takes a name ending in "]" for a parameter
        return "%s.%s" % (mod, cs.params["suite"])
    return mod


def _lane_order(item):
    mod = item.module.__name__.rsplit(".", 1)[-1]
    return LANE_RANK.index(mod) if mod in LANE_RANK else len(LANE_RANK)


def _wanted(item):
    """--quick keeps the tests marked quick; @pytest.mark.suites(...) keeps
    a test's parameter sets whose suite is one of those named."""
    if roots.quick() and not item.get_closest_marker("quick"):
        return False
    only = item.get_closest_marker("suites")
    cs = getattr(item, "callspec", None)
    if only is None or cs is None or "suite" not in cs.params:
        return True
    return cs.params["suite"] in only.args


@pytest.hookimpl(tryfirst=True)     # before xdist reads the group marks
def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for it in items:
        (keep if _wanted(it) else drop).append(it)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for it in items:
            it.add_marker(pytest.mark.xdist_group(name=lane_group(it)))
        items.sort(key=_lane_order)     # stable: a group keeps its order


def pytest_generate_tests(metafunc):
    if "suite" not in metafunc.fixturenames:
        return
    for m in metafunc.definition.iter_markers("parametrize"):
        names = m.args[0] if m.args else m.kwargs.get("argnames", "")
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "suite" in names:
            return
    metafunc.parametrize("suite", roots.suites())


@pytest.fixture
def root(suite):
    return roots.root(suite)


@pytest.fixture
def kver(root):
    return roots.kver(root)


@pytest.fixture
def work(request):
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:80]
    d = os.path.join(roots.work_dir("tests"), name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


@pytest.fixture
def make_vm():
    made = []

    def boot(root=None, factory=None, **kw):
        def make():
            if factory:
                v = factory(**kw)
            else:
                v = vmlib.VM.for_root(root, **kw) if root else vmlib.VM(**kw)
            made.append(v)
            return v
        return vmlib.boot(make)

    yield boot
    for v in made:
        v.close()


@pytest.fixture
def timing(request):
    def record(key, seconds):
        _TIMINGS.append({"test": request.node.nodeid, "what": key,
                         "seconds": round(seconds, 2),
                         "loadavg": os.getloadavg()[0]})
    return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    # rep_setup / rep_call / rep_teardown: fixtures read how a test went
    setattr(item, "rep_" + rep.when, rep)
    if call.when == "setup":
        item._vmh_t0 = time.monotonic() - call.duration
    if not rep.failed:
        return
    t0 = getattr(item, "_vmh_t0", time.monotonic() - call.duration)
    for v in vmlib.vms_between(t0, time.monotonic()):
        rep.sections.append((
            "guest console of VM %s: %s (last 200 lines)" % (v.name, v.console_path),
            v.console_tail(200) or "(empty)"))


def _run_id():
    return os.environ.setdefault("BALLOON_RUN_ID", str(os.getpid()))


def pytest_sessionstart(session):
    _run_id()           # set before the lanes start, so they inherit it


def pytest_sessionfinish(session):
    wid = os.environ.get("PYTEST_XDIST_WORKER")
    if wid:             # a lane: hand the timings to the controller
        path = os.path.join(roots.work_dir("results"),
                            "timings-%s-%s.json" % (_run_id(), wid))
        with open(path, "w") as f:
            json.dump(_TIMINGS, f)


def pytest_terminal_summary(terminalreporter):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    res = roots.work_dir("results")
    for name in sorted(os.listdir(res)):
        if name.startswith("timings-%s-" % _run_id()):
            with open(os.path.join(res, name)) as f:
                _TIMINGS.extend(json.load(f))
            os.unlink(os.path.join(res, name))
    if not _TIMINGS:
        return
    path = os.path.join(res, "timings.json")
    with open(path, "w") as f:
        json.dump(_TIMINGS, f, indent=1)
    tr = terminalreporter
    tr.section("timings (host seconds; %s)" % path)
    for t in _TIMINGS:
        tr.write_line("%8.2f  %-32s load %.1f  %s" % (t["seconds"], t["what"],
                                                      t["loadavg"], t["test"]))
