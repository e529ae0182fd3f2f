# SPDX-License-Identifier: GPL-2.0
"""A guest whose RAM is 2 MiB host huge pages gives memory back to the host.

The 2 GiB guest's RAM is a hugetlb memfd (-object memory-backend-memfd,
hugetlb=on,hugetlbsize=2M,prealloc=on, -machine memory-backend=), taken
from a pool of host huge pages that lib.hugepages reserves for the module
and gives back afterwards, under a host-wide lock: HugePages_Free is
global, and everything here is read from the host's side (HugePages_Free,
QMP), never from the driver's own counters.

QEMU frees a host huge page only once all 512 of its 4 KiB frames arrive
in one virtqueue element.  Our driver sends each 2 MiB block as one
request of 512 frames on virtio-pci (src/request_shape.h), so inflating
1 GiB returns about 512 host huge pages; the kernel's driver (at most 256
frames a request) returns none.  Deflating lets the guest use the memory
again: the host faults the huge pages back in as the guest touches them.

With a movable zone (movablecore=) inflation takes movable single pages
there first, as the kernel's driver does (src/zone_guard.h): those whose
frames happen to cover a whole 2 MiB host page go in one request of their
own (src/host_page_runs.h), so such a guest returns host huge pages too.

With free-page-reporting=on the guest reports free memory in 2 MiB blocks
(pageblock order on x86), which QEMU also discards whole: host huge pages
come back with either driver, without any balloon target.
"""
import time

import pytest

from lib import hugepages, memzones, roots
from lib.virtio_util import GiB, MiB, GuestPool, version

SUITES = roots.suites_quick_on_bookworm(("bookworm", "sid"))
# arm64 with 4 KiB and 16 KiB guest pages (a 2 MiB block is order 7 there)
if not roots.quick() and "sid" in roots.suites():
    SUITES += ["sid-arm64", "sid-arm64-16k"]
pytestmark = pytest.mark.parametrize("suite", SUITES, scope="module")

GUEST_MB = 2048
STEP = 300              # seconds allowed for one balloon step under TCG
SLACK_PAGES = 8         # host pages beyond the guest's RAM in the pool
BACKEND = ["-object", "memory-backend-memfd,id=m0,size=%dM,hugetlb=on,"
           "hugetlbsize=%d,prealloc=on" % (GUEST_MB, hugepages.PAGE),
           "-machine", "memory-backend=m0"]       # QEMU merges -machine options
# init_on_free=1: the guest zeroes every page it frees, so the pages a
# deflate gives back are touched at once and the host faults every huge
# page back in (without it they stay with the host until the guest next
# uses them: measured, 519 free host pages after the deflate, still 77 of
# them after the guest had touched all but 160 MiB of its free memory).
CONFIGS = {"huge": {"extra_args": BACKEND, "append": "init_on_free=1"},
           "fpr": {"extra_args": BACKEND, "balloon_opts": "free-page-reporting=on"},
           "movable": {"extra_args": BACKEND, "append": "init_on_free=1 movablecore=1536M"}}
TARGET = GUEST_MB * MiB - GiB                      # balloon holds 1 GiB
WANT_PAGES = int(0.95 * GiB) // hugepages.PAGE     # ours: >= 95 % of 1 GiB (486)


@pytest.fixture(scope="module")
def huge(suite):
    pool = GuestPool(suite, CONFIGS)        # builds our module before taking the lock
    with hugepages.reserve(hugepages.pages_for(GUEST_MB * MiB) + SLACK_PAGES) as hp:
        try:
            yield pool, hp
        finally:
            pool.close()                    # QEMU gone before the pool shrinks


def _inflate(g, hp, driver, load):
    load()
    assert g.vm.query_balloon() == g.ram
    before = hp.free()
    secs = g.vm.balloon_to(TARGET, STEP)
    if driver == "ours":        # ours-256 returns as few as the kernel's
        after = hp.wait_free(lambda v: v - before >= WANT_PAGES, 30)
    else:
        after = hp.free()       # QEMU discards before the guest acknowledges
    return before, after, secs


def test_inflate_returns_host_huge_pages(huge, timing):
    """Balloon to 1 GiB with the kernel's driver, then with ours: ours
    returns >= 95 % of it as host huge pages, the kernel's fewer (none);
    after each deflate the guest uses all its memory again and the host
    pool is back where it was."""
    pool, hp = huge
    g = pool.get("huge")
    rows = []
    def ours_short():
        g.vm.sh("rmmod virtio_balloon; modprobe virtio_balloon request_frames=256")

    # ours with requests of at most 256 frames (Firecracker's shape) shows
    # that the request shape is what returns the host's pages
    for driver, load in (("kernel's", g.load_intree), ("ours", g.load_ours),
                         ("ours-256", ours_short)):
        before, after, secs = _inflate(g, hp, driver, load)
        rows.append((driver, before, after, secs))
        timing("hugepages %s inflate 1 GiB" % driver, secs)
        print("%-8s HugePages_Free %d -> %d: %d MiB of 1024 returned, inflate %.1f s" % (
            driver, before, after, (after - before) * 2, secs))
        dsecs = g.to_full(STEP)
        back = hp.wait_free(lambda v: v == before, 60)
        print("%-8s deflate %.1f s, HugePages_Free %d (%d before inflating)" % (
            driver, dsecs, back, before))
        assert back == before, \
            "%s: HugePages_Free %d after the deflate, %d before inflating" % (
                driver, back, before)
        # the guest uses the memory it took back (QEMU alive: no SIGBUS)
        g.vm.sh("dd if=/dev/zero of=/dev/null bs=1024M count=1", timeout=STEP)
        assert hp.free() == before
        g.assert_nothing_leaked("%s after the hugepage inflate" % driver)
    g.load_ours()
    (_, kb, ka, _), (_, ob, oa, _), (_, sb, sa, _) = rows
    assert oa - ob >= WANT_PAGES, \
        "ours returned %d host huge pages of 512 (HugePages_Free %d -> %d)" % (oa - ob, ob, oa)
    assert ka - kb < oa - ob, "the kernel's driver returned %d, ours %d" % (ka - kb, oa - ob)
    assert sa - sb < WANT_PAGES // 10, \
        "ours with 256-frame requests returned %d host huge pages" % (sa - sb)


def _settled(hp, g, prealloc, slack=16, timeout=90):
    """HugePages_Free once the host has back all but `slack` of the 2 MiB
    blocks the guest has free (reporting is through with what boot left
    free), or after `timeout` seconds: the caller's assertion judges it."""
    deadline = time.monotonic() + timeout
    while True:
        # what reporting gives back: free chunks of its order, a pageblock
        want = g.free_2m_blocks(g.pageblock_order()) - slack
        v = hp.free()
        if v - prealloc >= want or time.monotonic() > deadline:
            return v
        time.sleep(0.5)


def test_free_page_reporting_returns_host_huge_pages(huge):
    """free-page-reporting=on: the guest reports free memory in 2 MiB
    blocks (x86's pageblock order), which QEMU discards whole, so host huge
    pages come back without any balloon target: most of the guest's free
    memory after boot, and >= 90 % of a 512 MiB buffer the guest touches
    (the host faults the pages back in) and frees again."""
    pool, hp = huge
    pool.close()
    # what stays free once QEMU has preallocated all guest RAM
    prealloc = hp.free() - hugepages.pages_for(GUEST_MB * MiB)
    g = pool.get("fpr")
    if g.driver_version() != version():
        g.load_ours()
    base = _settled(hp, g, prealloc)
    free_mb = g.free_kb() // 1024
    print("settled after boot: HugePages_Free %d -> %d (%d MiB returned; the guest has "
          "%d MiB free)" % (prealloc, base, (base - prealloc) * 2, free_mb))
    assert (base - prealloc) * 2 >= free_mb // 2, \
        "free page reporting returned %d MiB of the guest's %d MiB free" % (
            (base - prealloc) * 2, free_mb)
    _, low = hp.lowest_free_during(
        lambda: g.vm.sh("dd if=/dev/zero of=/dev/null bs=512M count=1", timeout=STEP))
    took = base - low
    t0 = time.monotonic()
    end = hp.wait_free(lambda v: v - low >= 0.9 * took, 90)
    print("dd 512 MiB: HugePages_Free %d -> lowest %d -> %d after %.1f s: "
          "%d of %d host huge pages back" % (base, low, end, time.monotonic() - t0,
                                            end - low, took))
    assert took >= 200, "the guest's 512 MiB buffer took only %d host huge pages" % took
    assert end - low >= 0.9 * took, \
        "free page reporting gave back %d of %d host huge pages in 90 s" % (end - low, took)
    g.assert_nothing_leaked("after free page reporting")


MOVABLE_WANT = 256      # host huge pages ours returns at least with a movable zone (half)


def test_movable_zone_returns_host_huge_pages(huge):
    """A guest with a movable zone (movablecore=1536M): inflating 1 GiB
    takes movable single pages from it, with either driver; ours sends
    those that cover a whole 2 MiB host page in a request of their own,
    and at least half of the 1 GiB comes back as host huge pages (892 MiB
    seen on bookworm); the kernel's driver returns none.  The pages came
    from the movable zone (its free memory fell by most of the 1 GiB),
    the deflate gives the host pool back, nothing leaked."""
    pool, hp = huge
    pool.close()
    g = pool.get("movable")
    zones0 = memzones.zones(g.vm, g.page_kb)
    assert memzones.MOVABLE in zones0, "movablecore= gave the guest no movable zone: %s" % (
        sorted(zones0),)
    got = {}
    for driver, load in (("kernel's", g.load_intree), ("ours", g.load_ours)):
        before, after, secs = _inflate(g, hp, "kernel's", load)
        # QEMU discards before the guest acknowledges: `after` is final
        moved = zones0[memzones.MOVABLE].free - \
            memzones.zones(g.vm, g.page_kb)[memzones.MOVABLE].free
        got[driver] = after - before
        print("movable zone, %-8s HugePages_Free %d -> %d: %d MiB of 1024 returned, "
              "inflate %.1f s; the movable zone gave %.0f MiB" % (
                  driver, before, after, (after - before) * 2, secs, moved))
        assert moved >= 768, "%s: the movable zone gave only %.0f MiB" % (driver, moved)
        g.to_full(STEP)
        back = hp.wait_free(lambda v: v == before, 60)
        assert back == before, "%s: HugePages_Free %d after the deflate, %d before" % (
            driver, back, before)
        g.assert_nothing_leaked("%s after the movable-zone inflate" % driver)
    assert got["ours"] >= MOVABLE_WANT, \
        "ours returned %d host huge pages of 512 from a movable zone" % got["ours"]
    assert got["kernel's"] < got["ours"], got
