# SPDX-License-Identifier: GPL-2.0
"""Debian's autopkgtest on the built .deb, as Debian's CI would run it.

debian/control says `Testsuite: autopkgtest-pkg-dkms`; autodep8 turns that
into the test Debian runs for every DKMS package: /usr/lib/dkms/
dkms-autopkgtest, which installs the package by name, builds and installs
its modules with dkms for every kernel that has headers, and checks
`dkms status`.  The host's autopkgtest drives it with the `chroot` virt
server in a throwaway overlay of the suite's cached root, so the testbed is
that suite's apt, dkms, compiler and kernel headers.
"""
import os
import re
import shutil

import pytest

from lib import pkg, repo
from test_packaging import need_suite

VERSION = pkg.VERSION


@pytest.fixture(scope="module", autouse=True)
def host_tools():
    pkg.sh(". %s/scripts/lib.sh && need_host_pkgs autopkgtest autodep8" % pkg.REPO)


@pytest.mark.parametrize("suite", [s for s in ("bookworm", "sid")])
def test_autopkgtest_dkms(suite, work, timing):
    """autopkgtest balloon-dkms_<ver>_all.deb <source>/ -- chroot <root>:
    the autodep8 dkms test passes (autopkgtest's summary line) and it built
    and installed our modules for the root's kernel (its own summary line,
    dkms status)."""
    need_suite(suite)
    deb = pkg.build_deb()
    # the native source package mkdeb.sh made next to the .deb, unpacked
    src = os.path.join(work, "src")
    os.makedirs(src)
    pkg.sh("tar -C %s -xf %s" % (src, deb.replace("_all.deb", ".tar.xz")))
    tree = os.path.join(src, os.listdir(src)[0])
    assert re.search(r"^Testsuite: autopkgtest-pkg-dkms$",
                     open(os.path.join(tree, "debian/control")).read(), re.M)
    with pkg.Root(suite) as r:
        with pkg.timed(timing, "%s autopkgtest (dkms build)" % suite):
            p = repo.autopkgtest(r, tree, deb)
        print(p.stdout[-8000:])
        # 8: "all non-superficial tests were skipped"; the dkms test is
        # superficial by autodep8's definition, so a pass exits 8, not 0
        assert p.returncode in (0, 8), "autopkgtest exit %d" % p.returncode
        summary = p.stdout.split("@@@@@@@@@@@@@@@@@@@@ summary", 1)
        assert len(summary) == 2, "no autopkgtest summary"
        assert re.search(r"^dkms-autopkgtest\s+PASS\b", summary[1], re.M), summary[1]
        assert not re.search(r"\b(FAIL|SKIP)\b", summary[1]), summary[1]
        # dkms-autopkgtest's own verdict for the root's kernel
        assert re.search(r"^I: PASS (balloon/%s )?%s$" % (re.escape(VERSION), re.escape(r.kver)),
                         p.stdout, re.M), p.stdout[-3000:]
        assert re.search(r"balloon[/,] ?%s, %s, x86_64: installed" % (re.escape(VERSION),
                                                                     re.escape(r.kver)), p.stdout)
    shutil.rmtree(src, ignore_errors=True)
