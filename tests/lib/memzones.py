# SPDX-License-Identifier: GPL-2.0
"""A guest's memory zones and memory hot-plug, for the tests that check
what a balloon leaves each zone (tests/test_zones.py) and for later
lifecycle tests that plug memory in and out.

zones(vm, page_kb) -> {"DMA32": Zone, ...}
                                 /proc/zoneinfo of node 0's populated zones
Zone                             .free .min .low .high .managed (MiB)
                                 .reserve: its largest lowmem_reserve (MiB)
                                 .floor: low watermark + reserve (MiB)
plug_dimm(vm, mib, dimm_id)      QMP object_add + device_add of a pc-dimm
                                 (the VM needs -m N,slots=S,maxmem=M);
                                 returns the guest memory block numbers that
                                 appeared, left offline (memhp_default_state=
                                 offline on the guest command line)
online_blocks(vm, blocks, how)   echo online_movable / online_kernel
offline_blocks(vm, blocks)       echo offline to each; (blocks offline, why not)
online_again(vm, blocks, how)    online what a failed offlining left offline
block_zones(vm, blocks)          the zone each block's memory went to
unmovable_pfns(console, vm, blocks) -> {block: [pfn, ...]}
                                 the pages the kernel dumped as "unmovable
                                 page" (an offlining that failed) in a
                                 piece of console text, by memory block

VirtioMem(vm, dev_id, memdev_id) a virtio-mem-pci device, seen from QEMU
    .addr, .region                its memory range (QOM memaddr, memdev size)
    .size()                       bytes plugged now (QOM size)
    .plug(nbytes, how)            requested-size up; waits for QEMU's size to
                                  follow, onlines the device's memory blocks
                                  the guest left offline (echo how); returns
                                  the device's blocks
    .frames_in(ledger)            frames of a lifecycle.FrameLedger's balloon
                                  that lie in the device's memory
    .unplug(ledger, timeout)      requested-size 0; waits until QEMU's size is
                                  0, or until no balloon frame is left in the
                                  device's memory and the size has stopped
                                  (the rest is the kernel's own pages);
                                  returns (size left, balloon frames left)
"""
import time

MOVABLE = "Movable"
# Lines of zoneinfo we read, and what we call them.
_FIELDS = {"free": "free", "min": "min", "low": "low", "high": "high",
           "managed": "managed"}


class Zone:
    def __init__(self, name):
        self.name = name
        self.free = self.min = self.low = self.high = self.managed = 0.0
        self.reserve = 0.0

    @property
    def floor(self):
        return self.low + self.reserve

    def __repr__(self):
        return "%s(free %.1f, min %.1f, low %.1f, reserve %.1f MiB)" % (
            self.name, self.free, self.min, self.low, self.reserve)


def zones(vm, page_kb):
    """Node 0's populated zones from /proc/zoneinfo, in MiB."""
    mib = page_kb / 1024.0
    out, cur = {}, None
    for line in vm.sh("cat /proc/zoneinfo").splitlines():
        w = line.split()
        if line.startswith("Node"):
            cur = None
            if w[1].rstrip(",") == "0":
                cur = Zone(w[3])
                out[cur.name] = cur
        elif cur is None or not w:
            continue
        elif w[0] == "pages" and w[1] == "free":
            cur.free = int(w[2]) * mib
        elif w[0] in _FIELDS and len(w) == 2 and w[1].isdigit():
            setattr(cur, _FIELDS[w[0]], int(w[1]) * mib)
        elif w[0] == "protection:":
            nums = [int(x) for x in line.split("(", 1)[1].rstrip(")").split(",")]
            cur.reserve = max(nums) * mib
    return {k: z for k, z in out.items() if z.managed}


def plug_dimm(vm, mib, dimm_id):
    """A pc-dimm of mib MiB plugged over QMP; the memory blocks it added."""
    before = set(_blocks(vm))
    vm.cmd("object-add", **{"qom-type": "memory-backend-ram",
                            "id": dimm_id + "-mem", "size": mib << 20})
    vm.cmd("device_add", driver="pc-dimm", id=dimm_id, memdev=dimm_id + "-mem")
    deadline = time.monotonic() + 60
    while True:
        new = sorted(set(_blocks(vm)) - before)
        if len(new) * _block_mib(vm) >= mib:
            return new
        assert time.monotonic() < deadline, \
            "the guest saw %d new memory blocks of a %d MiB DIMM" % (len(new), mib)
        time.sleep(0.5)


def _blocks(vm):
    out = vm.sh("ls /sys/devices/system/memory/ | sed -n 's/^memory//p'")
    return [int(x) for x in out.split() if x.isdigit()]


def _block_mib(vm):
    return int(vm.sh("cat /sys/devices/system/memory/block_size_bytes"), 16) >> 20


def _state(block):
    return "/sys/devices/system/memory/memory%d/state" % block


def online_blocks(vm, blocks, how):
    for b in blocks:
        vm.sh("echo %s > %s" % (how, _state(b)))
        assert vm.sh("cat %s" % _state(b)).strip() == "online", "memory%d not online" % b


def offline_blocks(vm, blocks):
    """Offline each block; (the blocks that went offline, what the kernel
    said of the others)."""
    done, why = [], []
    for b in blocks:
        rc, out = vm.shell("(echo offline > %s) 2>&1" % _state(b), timeout=300)
        if rc == 0:
            done.append(b)
        else:
            why.append("memory%d: %s" % (b, out.strip()))
    return done, "; ".join(why)


def online_again(vm, blocks, how):
    """Online the blocks an offlining that failed half-way left offline."""
    for b in blocks:
        if vm.sh("cat %s" % _state(b)).strip() == "offline":
            vm.sh("echo %s > %s" % (how, _state(b)))


def block_zones(vm, blocks):
    return {b: vm.sh("cat /sys/devices/system/memory/memory%d/valid_zones" % b).split()[0]
            for b in blocks}


def unmovable_pfns(console, vm, blocks):
    per = (_block_mib(vm) << 20) // 4096
    out, pfn = {b: [] for b in blocks}, None
    for line in console.splitlines():
        if "page:" in line and " pfn:0x" in line:
            pfn = int(line.split(" pfn:0x")[1].split()[0], 16)
        elif "page dumped because: unmovable page" in line and pfn is not None:
            if pfn // per in out:
                out[pfn // per].append(pfn)
            pfn = None
    return out


class VirtioMem:
    # Once no balloon frame is left in the device's memory the balloon
    # holds up nothing there; the size gets these seconds to settle, for
    # the record only (the rest is the guest's own pages, which the guest
    # retries after 50 s at the soonest).
    STILL = 3

    def __init__(self, vm, dev_id, memdev_id):
        self.vm = vm
        self.path = "/machine/peripheral/" + dev_id
        self.addr = self._get("memaddr")
        self.region = vm.cmd("qom-get", path="/objects/" + memdev_id, property="size")

    def _get(self, prop):
        return self.vm.cmd("qom-get", path=self.path, property=prop)

    def size(self):
        return self._get("size")

    def _request(self, nbytes):
        self.vm.cmd("qom-set", path=self.path, property="requested-size", value=nbytes)

    def blocks(self):
        size = _block_mib(self.vm) << 20
        lo, hi = self.addr // size, (self.addr + self.region) // size
        return [b for b in _blocks(self.vm) if lo <= b < hi]

    def plug(self, nbytes, how, timeout=120):
        self._request(nbytes)
        deadline = time.monotonic() + timeout
        while self.size() != nbytes:
            assert time.monotonic() < deadline, \
                "virtio-mem: %d of %d MiB plugged after %d s" % (
                    self.size() >> 20, nbytes >> 20, timeout)
            time.sleep(0.5)
        blocks = self.blocks()
        online_again(self.vm, blocks, how)
        return blocks

    def frames_in(self, ledger):
        ledger.feed()
        return sum(1 for f in ledger.held if self.addr <= f < self.addr + self.region)

    def unplug(self, ledger, timeout=180):
        self._request(0)
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while True:
            size, inside = self.size(), self.frames_in(ledger)
            now = time.monotonic()
            if size != last:
                last, since = size, now
            if size == 0 or (inside == 0 and now - since >= self.STILL):
                return size, inside
            if now > deadline:
                return size, inside
            time.sleep(1)
