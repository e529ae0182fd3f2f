# SPDX-License-Identifier: GPL-2.0
"""Build matrix: both modules against every supported kernel, inside that
suite's root with that suite's compiler, with W=1 and sparse (C=1); zero
warnings allowed.  Plus checkpatch --strict over the sources, and the
clear one-line refusals for kernels we cannot build for."""
import os
import re
import shutil
import subprocess
import uuid

import pytest

from lib import pkg, roots

REPO = roots.REPO


class Scratch:
    """A fresh copy of src/ inside a root's /tmp; commands run chrooted there."""

    def __init__(self, root):
        self.root = root
        self.rel = "/tmp/balloon-build-%s" % uuid.uuid4().hex[:8]
        self.path = root + self.rel

    def __enter__(self):
        shutil.copytree(os.path.join(REPO, "src"), self.path + "/src",
                        ignore=shutil.ignore_patterns("autoconf.h", ".probes", "*.o", "*.ko", ".*.cmd"))
        self.overlay = None
        return self

    def supply_checker_valid(self, kver):
        """Debian's 7.x headers lack scripts/checker-valid.sh, so the kernel
        Makefile silently turns C=1 off.  Lay our stand-in over the headers
        (overlayfs, removed on exit) so sparse really runs."""
        r = self.run("readlink -f /lib/modules/%s/build" % kver)
        build = r.stdout.strip()
        r = self.run("sed -n 's/^include \\(.*\\)\\/Makefile$/\\1/p' %s/Makefile" % build)
        common = (r.stdout.strip() or build)
        if not common.startswith("/"):
            common = os.path.normpath(os.path.join(build, common))
        with open(self.root + common + "/Makefile") as f:
            if "checker-valid.sh" not in f.read():
                return      # older kernels run sparse unconditionally
        # scripts/ is a symlink into linux-kbuild-*: lay the overlay there
        scripts = self.run("readlink -f %s/scripts" % common).stdout.strip()
        if os.path.exists(self.root + scripts + "/checker-valid.sh"):
            return
        up = self.path + "/ovl-upper"
        os.makedirs(up)
        os.makedirs(self.path + "/ovl-work")
        with open(up + "/checker-valid.sh", "w") as f:
            f.write("#!/bin/sh\n# balloon-dkms test stand-in: the checker is usable if it runs.\n"
                    "\"$@\" -E -x c /dev/null >/dev/null 2>&1 && echo 1\n")
        os.chmod(up + "/checker-valid.sh", 0o755)
        target = self.root + scripts
        pkg.sh("mount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s %s"
               % (target, up, self.path + "/ovl-work", target))
        self.overlay = target

    def run(self, cmd, timeout=900):
        # proc/dev live in a private mount namespace: other users of the
        # same cached root are not disturbed, and nothing leaks.
        return roots.chroot_run(self.root, cmd, check=False, timeout=timeout)

    def __exit__(self, *exc):
        if self.overlay:
            pkg.sh("umount %s" % self.overlay, check=False)
        shutil.rmtree(self.path, ignore_errors=True)


WARN_RX = re.compile(r"(warning|error):", re.I)


@pytest.mark.parametrize("suite", roots.suites_quick_on_bookworm())
def test_build_w1_sparse(suite):
    """virtio_balloon and vmw_balloon build with W=1 and sparse, no warnings."""
    root = roots.root(suite)
    build_w1_sparse(root, roots.kver(root))


@pytest.mark.parametrize("flavour", ["cloud-amd64", "rt-amd64"])
@pytest.mark.parametrize("suite", roots.suites())
def test_build_flavour_w1_sparse(suite, flavour):
    """The same for Debian's other amd64 kernel flavours of each suite,
    from the suite's "flavours" root (the generic -amd64 kernel is
    test_build_w1_sparse's).  rt is PREEMPT_RT: spinlocks sleep there."""
    root = roots.root(suite, "flavours")
    build_w1_sparse(root, roots.flavour_kver(root, flavour))


def build_w1_sparse(root, k):
    with Scratch(root) as s:
        s.supply_checker_valid(k)
        r = s.run("make -C %s/src KVER=%s KDIR=/lib/modules/%s/build W=1 C=1 2>&1" % (s.rel, k, k))
        log = r.stdout
        print(log[-3000:])
        assert r.returncode == 0, "build failed for %s:\n%s" % (k, log[-4000:])
        assert "CHECK " in log, "sparse did not run (C=1 ignored?)"
        bad = [l for l in log.splitlines() if WARN_RX.search(l)]
        assert not bad, "warnings building for %s:\n%s" % (k, "\n".join(bad[:40]))
        with open(s.path + "/src/compat/autoconf.h") as f:
            print("".join(l for l in f if l.startswith("#define HAVE_")))
        for mod in ("virtio_balloon", "vmw_balloon"):
            ko = "%s/src/%s.ko" % (s.rel, mod)
            info = s.run("modinfo -F version %s; modinfo -F alias %s; modinfo -F vermagic %s" % (ko, ko, ko))
            assert info.returncode == 0, info.stderr
            lines = info.stdout.splitlines()
            assert lines[0] == pkg.VERSION, "%s version %r" % (mod, lines[0])
            assert lines[-1].split()[0] == k, "%s built for %r, not %s" % (mod, lines[-1], k)
            aliases = lines[1:-1]
            if mod == "virtio_balloon":
                assert "virtio:d00000005v*" in aliases, aliases
            else:
                assert "dmi:*:svnVMware*:*" in aliases and "vmware_vmmemctl" in aliases, aliases


def c_sources():
    """Our kernel code: the drivers and make bench's limit module."""
    out = []
    for d, _, files in (w for top in ("src", "tests/bench/limit")
                        for w in os.walk(os.path.join(REPO, top))):
        for f in sorted(files):
            if f.endswith((".c", ".h")) and f != "autoconf.h" and not f.endswith(".mod.c") \
                    and "/.probes" not in d:
                out.append(os.path.join(d, f))
    return out


@pytest.mark.quick
def test_checkpatch_strict():
    """Every C source and header is checkpatch --strict clean; the script's
    first fetch of checkpatch.pl leaves nothing behind in the cache (it did:
    157 MB of linux-source per fresh cache)."""
    files = c_sources()
    assert any(f.endswith("virtio_balloon_main.c") for f in files)
    assert any(f.endswith("vmw_balloon_main.c") for f in files)
    assert any(f.endswith("balloon_limit.c") for f in files)
    r = subprocess.run([REPO + "/scripts/checkpatch.sh"] + files, capture_output=True, text=True,
                       timeout=1200)
    out = r.stdout + r.stderr
    issues = [l for l in out.splitlines() if re.search(r": (ERROR|WARNING|CHECK):", l)
              and not kernel_page_flag_camelcase(l)]
    assert not issues, "\n".join(issues[:60])
    left = [d for d in os.listdir(roots.CACHE) if d.startswith("checkpatch.")]
    assert not left, "checkpatch.sh left %s in %s" % (left, roots.CACHE)


_PAGE_FLAGS = None


def kernel_page_flag_camelcase(line):
    """checkpatch --no-tree cannot know the kernel's macro-generated page
    flag helpers (__SetPageOffline ...) and calls them CamelCase.  Accept
    exactly those, after checking the newest kernel's page-flags.h really
    generates that flag."""
    global _PAGE_FLAGS
    m = re.search(r"CHECK:CAMELCASE: Avoid CamelCase: <(\w+)>", line)
    if not m:
        return False
    f = re.match(r"^(?:__)?(?:Set|Clear|TestSet|TestClear)?Page([A-Z]\w*)$", m.group(1))
    if not f:
        return False
    if _PAGE_FLAGS is None:
        root = roots.root("sid")
        k = roots.kver(root)
        r = pkg.sh("cat %s/usr/src/linux-headers-%s/include/linux/page-flags.h "
                   "%s/usr/src/linux-headers-*-common/include/linux/page-flags.h 2>/dev/null"
                   % (root, k, root), check=False)
        _PAGE_FLAGS = r.stdout
    return re.search(r"\b(?:PAGE_TYPE_OPS|FOLIO_TYPE_OPS|PAGEFLAG|__PAGEFLAG|TESTPAGEFLAG)"
                     r"\(\s*%s\s*," % f.group(1), _PAGE_FLAGS) is not None


def test_no_version_checks_outside_compat():
    """Kernel differences live in src/compat only, decided by probes."""
    offenders = []
    for f in c_sources():
        if "/compat/" in f:
            continue
        with open(f) as fh:
            if re.search(r"LINUX_VERSION_CODE|KERNEL_VERSION\(", fh.read()):
                offenders.append(f)
    assert not offenders, offenders
    with open(os.path.join(REPO, "src/compat/balloon.h")) as fh:
        assert "LINUX_VERSION_CODE" not in fh.read()


@pytest.mark.quick
def test_refuses_kernel_without_balloon_config():
    """A kernel without balloon support: one clear line, no compiler noise."""
    root = roots.root("bookworm")
    k = roots.kver(root)
    with Scratch(root) as s:
        fake = s.rel + "/fake-headers"
        # A copy of the headers' top level, with the balloon options removed.
        r = s.run("set -e; mkdir -p %s/include; cp -a /usr/src/linux-headers-%s/. %s/;"
                  " rm -rf %s/include/config; cp -a /usr/src/linux-headers-%s/include/config %s/include/;"
                  " sed -i '/^CONFIG_MEMORY_BALLOON=/d;/^CONFIG_BALLOON=/d;/^CONFIG_BALLOON_COMPACTION=/d'"
                  " %s/include/config/auto.conf" % (fake, k, fake, fake, k, fake, fake))
        assert r.returncode == 0, r.stderr
        r = s.run("make -s -C %s/src KVER=%s KDIR=%s 2>&1" % (s.rel, k, fake))
        assert r.returncode != 0
        msgs = [l for l in r.stdout.splitlines() if not l.startswith("make")]
        assert len(msgs) == 1, r.stdout
        assert msgs[0].startswith("balloon-dkms: ") and "CONFIG_MEMORY_BALLOON" in msgs[0], msgs
        assert not s.run("ls %s/src/*.o 2>/dev/null" % s.rel).stdout


@pytest.mark.quick
def test_refuses_missing_headers():
    """No headers for the requested kernel: one clear line naming the fix."""
    r = subprocess.run(["make", "-s", "-C", REPO, "KVER=0.0.0-nonexistent"], capture_output=True,
                       text=True)
    assert r.returncode != 0
    msgs = [l for l in (r.stdout + r.stderr).splitlines() if not l.startswith("make")]
    assert len(msgs) == 1 and msgs[0].startswith("balloon-dkms: ") and "headers" in msgs[0], msgs


@pytest.mark.quick
def test_probes_answer_in_the_module_pass():
    """The compat probes are answered in the Kbuild pass that builds the
    modules (one pass into the kernel's build tree, not two), with the
    kernel's flags: a probe that compiles defines HAVE_<NAME>, one that
    does not leaves it undefined, also when it shares its compiler run
    with others (same preprocessor lines) and when no error in that run
    names a single probe (each is then asked alone).  A second make
    re-asks nothing and rebuilds nothing; a changed probe is asked
    again."""
    root = roots.root("bookworm")
    k = roots.kver(root)
    with Scratch(root) as s:
        probes = s.path + "/src/compat/probes"
        with open(probes + "/zz_present.c", "w") as f:
            f.write("// SPDX-License-Identifier: GPL-2.0\n/* test: struct page exists */\n"
                    "#include <linux/mm_types.h>\n\nint zz_present = sizeof(struct page);\n")
        with open(probes + "/zz_absent.c", "w") as f:
            f.write("// SPDX-License-Identifier: GPL-2.0\n/* test: no such function */\n"
                    "#include <linux/mm.h>\n\nint zz_absent(void) { return balloon_dkms_nothing(); }\n")
        # Probes with the same preprocessor lines share one compiler run:
        # with zz_present, one whose error is in its own code and one whose
        # error is inside a header's macro (offsetof) that its code expanded.
        grouped = {"zz_grp_call": "int zz_grp_call(void) { return balloon_dkms_nothing(); }\n",
                   "zz_grp_macro": "int zz_grp_macro = offsetof(struct page, balloon_dkms_no);\n"}
        # ... and two whose shared lines break the header itself: no error
        # names one probe, so each is asked alone (both absent).
        broken = {"zz_brk_a": "int zz_brk_a;\n", "zz_brk_b": "int zz_brk_b;\n"}
        for name, code in grouped.items():
            with open("%s/%s.c" % (probes, name), "w") as f:
                f.write("// SPDX-License-Identifier: GPL-2.0\n/* test: grouped */\n"
                        "#include <linux/mm_types.h>\n\n" + code)
        for name, code in broken.items():
            with open("%s/%s.c" % (probes, name), "w") as f:
                f.write("// SPDX-License-Identifier: GPL-2.0\n/* test: broken header */\n"
                        "#define list_head balloon_dkms_broken (\n#include <linux/mm_types.h>\n\n"
                        + code)
        make = "make -C %s/src KVER=%s KDIR=/lib/modules/%s/build 2>&1" % (s.rel, k, k)
        r = s.run(make)
        print(r.stdout[-3000:])
        assert r.returncode == 0, r.stdout[-4000:]
        passes = re.findall(r"Entering directory '[^']*linux-headers", r.stdout)
        assert len(passes) == 1, r.stdout
        assert r.stdout.count("PROBE   ") == 1 and "CC [M]" in r.stdout, r.stdout
        with open(s.path + "/src/compat/autoconf.h") as f:
            conf = f.read()
        assert "#define HAVE_ZZ_PRESENT 1" in conf, conf
        assert "/* #undef HAVE_ZZ_ABSENT */" in conf, conf
        assert "#define HAVE_ZZ_ABSENT" not in conf, conf
        for name in list(grouped) + list(broken):
            assert "/* #undef HAVE_%s */" % name.upper() in conf, conf
        work = s.path + "/src/compat/.probes"
        with open(work + "/plan") as f:
            plan = f.read()
        assert re.search(r"^group \S+ (zz_\w+ ){2}zz_present$", plan, re.M) and \
            all(" %s " % n in plan for n in grouped), plan
        assert re.search(r"^group \S+ zz_brk_a zz_brk_b$", plan, re.M), plan
        logs = os.listdir(work)
        # the mm_types.h group was answered from its one run; the broken
        # pair fell back to a run each (their own logs, not the group's)
        assert "zz_present.log" not in logs and "zz_present.yes" in logs, logs
        for n in broken:
            with open("%s/%s.log" % (work, n)) as f:
                assert "/probes/%s.c" % n in f.read()
        assert re.search(r"^balloon-dkms: compat probes for %s: \d+ of \d+ present$"
                         % re.escape(k), r.stdout, re.M), r.stdout
        for mod in ("virtio_balloon", "vmw_balloon"):
            assert os.path.exists("%s/src/%s.ko" % (s.path, mod))
        r = s.run(make)
        assert r.returncode == 0, r.stdout[-4000:]
        assert "compat probes for" not in r.stdout and "CC [M]" not in r.stdout, r.stdout
        # The absent function appears: asked again, the answer changes.
        with open(probes + "/zz_absent.c", "w") as f:
            f.write("// SPDX-License-Identifier: GPL-2.0\n/* test: no such function */\n"
                    "#include <linux/mm.h>\n\nint balloon_dkms_nothing(void);\n"
                    "int zz_absent(void) { return balloon_dkms_nothing(); }\n")
        r = s.run(make)
        assert r.returncode == 0, r.stdout[-4000:]
        with open(s.path + "/src/compat/autoconf.h") as f:
            assert "#define HAVE_ZZ_ABSENT 1" in f.read()


BUILTIN_CASES = [("virtio_balloon",), ("vmw_balloon",), ("virtio_balloon", "vmw_balloon")]


@pytest.mark.parametrize("builtin", BUILTIN_CASES, ids=lambda b: "+".join(b) + "=y")
def test_builtin_driver_skipped(builtin):
    """`make KVER= KDIR=` against headers whose kernel has a driver built in
    (=y; a copy of bookworm's headers changed by the test, next to the real
    ones in a throwaway overlay): one line says so, the other module is still
    built; with both built in nothing is built and make fails with that one
    line."""
    root = roots.root("bookworm")
    k = roots.kver(root)
    fake = k.split("-")[0] + "-97-builtin"
    with roots.overlay(root, "builtin") as ovl:
        hdir = os.path.join(ovl, "usr/src/linux-headers-" + fake)
        shutil.copytree(os.path.join(ovl, "usr/src/linux-headers-" + k), hdir, symlinks=True)
        for rel in (".config", "include/config/auto.conf", "include/generated/autoconf.h"):
            assert pkg.set_builtin(os.path.join(hdir, rel),
                                   [pkg.BUILTIN_OPTION[m] for m in builtin]) == len(builtin)
        with open(os.path.join(hdir, "include/config/kernel.release"), "w") as f:
            f.write(fake + "\n")
        with Scratch(ovl) as s:
            r = s.run("make -s -C %s/src KVER=%s KDIR=/usr/src/linux-headers-%s 2>&1"
                      % (s.rel, fake, fake))
            print(r.stdout[-3000:])
            msgs = [l for l in r.stdout.splitlines()
                    if l.startswith("balloon-dkms:") and "built in" in l]
            what = " and ".join(builtin)
            assert msgs == [msgs[0]] and msgs[0].startswith(
                "balloon-dkms: kernel %s has %s built in; the kernel's own driver" % (fake, what)), \
                r.stdout
            built = sorted(os.path.basename(f)[:-3] for f in os.listdir(s.path + "/src")
                           if f.endswith(".ko"))
            if len(builtin) == 2:
                assert r.returncode != 0, r.stdout
                assert "balloon modules not built" in msgs[0], msgs
                assert not [f for f in os.listdir(s.path + "/src") if f.endswith(".o")]
            else:
                assert r.returncode == 0, r.stdout
                other = ({"virtio_balloon", "vmw_balloon"} - set(builtin)).pop()
                assert "our %s module is not built" % builtin[0] in msgs[0], msgs
                assert built == [other], built
                warn = [l for l in r.stdout.splitlines() if WARN_RX.search(l)]
                assert not warn, warn
