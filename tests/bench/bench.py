# SPDX-License-Identifier: GPL-2.0
"""make bench: our virtio_balloon against the kernel's own, side by side.

One VM per suite (same kernel, same QEMU, same device); inside it the two
drivers take turns: insmod one, inflate 2 GiB -> 1 GiB, deflate back,
rmmod, then the other, N rounds, alternating which goes first.  Reported:
medians and the ratio ours/in-tree for inflate time, deflate time, guest
CPU time per GiB inflated, and reaction latency (target set -> first page
moved).  Ratios below 1 favour ours.  Nothing here passes or fails: TCG
timings swing with host load, which is why the two drivers alternate in
the same VM.

Writes out/bench/bench.md (table) and out/bench/bench.png (balloon size
over time in the last round, both drivers).
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from lib import build, roots  # noqa: E402
from lib.vm import VM, GiB  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))


def cpu_busy(vm):
    """Guest CPU time (s) spent not idle, all CPUs, since boot."""
    f = vm.sh("head -n1 /proc/stat").split()[1:]
    v = [int(x) for x in f]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / 100.0


def trace_to(vm, target, timeout=600):
    """Set the target; return (first-move latency, total time, samples)."""
    start_actual = vm.query_balloon()
    t0 = time.monotonic()
    vm.balloon(target)
    first = None
    samples = [(0.0, start_actual)]
    while True:
        a = vm.query_balloon()
        t = time.monotonic() - t0
        samples.append((t, a))
        if first is None and a != start_actual:
            first = t
        if a == target:
            return first or t, t, samples
        if t > timeout:
            raise TimeoutError("balloon stuck at %d, target %d" % (a, target))
        time.sleep(0.01)


def one_round(vm, path, mem):
    vm.sh("insmod %s" % path)
    vm.sh("for i in $(seq 100); do ls /sys/bus/virtio/drivers/virtio_balloon/ | grep -q virtio && break;"
          " sleep 0.1; done; ls /sys/bus/virtio/drivers/virtio_balloon/ | grep -q virtio")
    c0 = cpu_busy(vm)
    lat, tin, samples = trace_to(vm, mem // 2)
    c1 = cpu_busy(vm)
    _, tout, back = trace_to(vm, mem)
    vm.sh("rmmod virtio_balloon")
    return {"inflate_s": tin, "deflate_s": tout, "latency_s": lat,
            "cpu_s_per_gib": (c1 - c0) / ((mem // 2) / GiB),
            "trace": samples + [(tin + t, a) for t, a in back[1:]]}


def run_suite(suite, rounds, mem_mb):
    root = roots.root(suite)
    k = roots.kver(root)
    ko = build.modules(root, k, only=("virtio_balloon",))["virtio_balloon"]
    mem = mem_mb << 20
    paths = {"in-tree": "/lib/modules/%s/kernel/drivers/virtio/virtio_balloon.ko" % k,
             "ours": "/lib/modules/%s/updates/virtio_balloon.ko" % k}
    res = {"in-tree": [], "ours": []}
    with VM.for_root(root, ko=[ko], coldplug=False, modules=("virtio_pci",),
                     mem_mb=mem_mb, name="bench-" + suite) as vm:
        for i in range(rounds):
            order = ["in-tree", "ours"] if i % 2 == 0 else ["ours", "in-tree"]
            for which in order:
                r = one_round(vm, paths[which], mem)
                res[which].append(r)
                print("%s %s round %d: inflate %.2fs deflate %.2fs latency %.3fs cpu %.2fs/GiB"
                      % (suite, which, i, r["inflate_s"], r["deflate_s"], r["latency_s"],
                         r["cpu_s_per_gib"]), flush=True)
    return k, res


METRICS = (("inflate_s", "inflate 1 GiB (s)"), ("deflate_s", "deflate 1 GiB (s)"),
           ("cpu_s_per_gib", "guest CPU per GiB inflated (s)"),
           ("latency_s", "reaction latency (s)"))


def table(results):
    lines = ["| kernel | metric | in-tree (median) | ours (median) | ours / in-tree |",
             "|---|---|---|---|---|"]
    for suite, (k, res) in results.items():
        for key, label in METRICS:
            a = statistics.median(r[key] for r in res["in-tree"])
            b = statistics.median(r[key] for r in res["ours"])
            ratio = "%.2f" % (b / a) if a > 0 else "n/a"
            lines.append("| %s (%s) | %s | %.3f | %.3f | %s |" % (suite, k, label, a, b, ratio))
    return "\n".join(lines) + "\n"


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: python3-matplotlib missing, no plot")
        return
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (suite, (k, res)) in zip(axes[0], results.items()):
        for which, style in (("in-tree", "--"), ("ours", "-")):
            tr = res[which][-1]["trace"]
            ax.plot([t for t, _ in tr], [a / GiB for _, a in tr], style, label=which)
        ax.set_title("%s %s" % (suite, k))
        ax.set_xlabel("seconds")
        ax.set_ylabel("guest memory left to it (GiB)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--suites", default=os.environ.get("BENCH_SUITES", "bookworm"))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    ap.add_argument("--mem", type=int, default=2048, help="guest MiB")
    ap.add_argument("--out", default=os.path.join(REPO, "out", "bench"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    results = {}
    for s in a.suites.split():
        results[s] = run_suite(s, a.rounds, a.mem)
    md = table(results)
    print(md)
    with open(os.path.join(a.out, "bench.md"), "w") as f:
        f.write("Medians of %d alternating rounds in one TCG VM per kernel; "
                "ratio < 1 favours ours.\n\n" % a.rounds + md)
    with open(os.path.join(a.out, "bench.json"), "w") as f:
        json.dump({s: {"kernel": k, "runs": {w: [{x: y for x, y in r.items() if x != "trace"}
                                                 for r in rs] for w, rs in res.items()}}
                   for s, (k, res) in results.items()}, f, indent=1)
    plot(results, os.path.join(a.out, "bench.png"))


if __name__ == "__main__":
    main()
