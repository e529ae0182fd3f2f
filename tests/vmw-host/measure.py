#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""measure.py [--rounds N] [--sizes MiB,...] [--caps 0x22,...] [--mem MiB]

Figures for the emulated VMware host (not a test; numbers vary with load):
  * boot time (QEMU start -> guest shell) with and without the plugin,
    alternating, same QEMU 11.1 and VMware options;
  * inflate time of the bookworm kernel's own vmw_balloon for each size and
    capability set (modprobe -> host and guest agree on the target), and
    deflate time back to 0; in brackets the host-side part, from the first
    change of the host's locked set to the target (without the driver's
    wait for its next 1 s work tick).
Prints a Markdown table.  One VM at a time.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lib import roots, vmwhost  # noqa: E402


def boot(guest, **kw):
    vm = vmwhost.vmware_vm(guest, **kw)
    vm.start()
    vm.wait_boot()
    return vm


def agree(vm, pages, before, timeout=900):
    """Seconds from the first host-side change (away from `before`) to the
    host reaching pages (50 ms polls: excludes the driver's wait for its
    1 s work tick; 0 when it was all done within one poll)."""
    vm.host.wait_state(lambda s: s["locked_pages"] != before, timeout, alive=vm.check)
    t0 = time.monotonic()
    vm.host.wait_state(lambda s: s["locked_pages"] == pages, timeout, alive=vm.check)
    t = time.monotonic() - t0
    vmwhost.wait_guest(vm, lambda g: g["current"] == pages, timeout)
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--caps", default="0x22,0x26,0x2e")
    ap.add_argument("--mem", type=int, default=1024)
    a = ap.parse_args()
    guest = roots.root("bookworm")
    print("qemu-system-x86 %s, guest kernel %s, -m %d, load %.1f" %
          (vmwhost.qemu_version(), roots.kver(guest), a.mem, os.getloadavg()[0]))

    boots = {True: [], False: []}
    for _ in range(a.rounds):
        for with_host in (False, True):
            vm = boot(guest, host=with_host, mem_mb=a.mem)
            boots[with_host].append(vm.boot_seconds)
            vm.close()
    print("\n| boot to shell | median s | runs |\n|---|---|---|")
    for k, name in ((False, "no plugin"), (True, "plugin + ctl")) if a.rounds else ():
        print("| %s | %.2f | %s |" % (name, statistics.median(boots[k]),
                                      ", ".join("%.2f" % x for x in boots[k])))

    print("\n| caps | MiB | inflate s (host-side) | deflate to 0 s (host-side) | host ops |\n"
          "|---|---|---|---|---|")
    for caps in (int(c, 0) for c in a.caps.split(",")):
        for mib in (int(s) for s in a.sizes.split(",")):
            pages = mib * 256
            vm = boot(guest, caps=caps, target=pages, mem_mb=a.mem)
            try:
                t0 = time.monotonic()
                vm.sh("modprobe vmw_balloon")
                t_in_host = agree(vm, pages, 0)
                t_in = time.monotonic() - t0
                vm.host.set_target(0)
                t0 = time.monotonic()
                t_out_host = agree(vm, 0, pages)
                t_out = time.monotonic() - t0
                st = vm.host.state()
                ops = " ".join("%s=%d" % (k[3:], v) for k, v in st.items()
                               if k.startswith("op_") and v and k != "op_get_target")
                assert st["protocol_errors"] == 0, st["last_error"]
                print("| %#x | %d | %.2f (%.2f) | %.2f (%.2f) | %s |" %
                      (caps, mib, t_in, t_in_host, t_out, t_out_host, ops), flush=True)
            finally:
                vm.close()


if __name__ == "__main__":
    main()
