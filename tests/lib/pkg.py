# SPDX-License-Identifier: GPL-2.0
"""Packaging helpers for tests/test_packaging.py.

VERSION                          the version in the top-level Makefile
build_deb(version=None) -> path  balloon-dkms_<v>_all.deb, made by
                                 scripts/mkdeb.sh (once per session); with a
                                 version other than VERSION, from a copy of
                                 the release tarball stamped to it (an
                                 "upgrade" package with the same sources)
build_rpm(version=None) -> path  the same with scripts/mkrpm.sh
tree_for(version) -> path        that stamped copy of the source tree
Root(suite, profile="build")     context manager: a throwaway overlay of the
                                 suite's cached root (roots.overlay); every
                                 command runs chrooted in it with /proc,
                                 /dev, /sys mounted (roots.chroot_run)
  .kver                          the root's kernel (in a "flavours" root:
                                 the generic -amd64 one)
  .kvers                         every kernel of the root (image+headers)
  .run(cmd, check=True, timeout=) -> CompletedProcess (stdout+stderr)
  .apt(args, timeout=)           apt-get with the persistent archive cache
                                 $BALLOON_CACHE/apt/<suite> (downloads are
                                 kept there, so a second run is offline)
  .archive_lock()                context manager: hold that cache's lock
                                 (for apt run by scripts inside the root)
  .install_file(path) -> path    copy a host file into the root's /tmp
  .modinfo(module, field=None, kver=None) -> str ('' if not found)
  .dkms_status() -> str
  .leftovers() -> [str]          our files left under /usr/src, /var/lib/dkms
                                 and /lib/modules/*/updates
  .dpkg_audit() -> str           `dpkg --audit` output ('' when all is well)
  .not_configured() -> [str]     `dpkg -l` lines whose state is not "ii"/"rc"
make_fake_kernel(root, kver, name, outdir, builtin=())
                              -> (image_deb, headers_deb)
                                 two small packages for a kernel release
                                 <name> that cannot carry our drivers: a copy
                                 of kver's headers with memory balloon support
                                 removed from its configuration, and an
                                 "image" with /boot/config and empty module
                                 lists.  Their maintainer scripts run the
                                 /etc/kernel/*.d hooks exactly as Debian's
                                 linux-image/linux-headers packages do.
                                 builtin=("virtio_balloon", ...): instead,
                                 the headers keep balloon support and have
                                 those drivers built in (=y, listed in
                                 modules.builtin).
timed(record, key)               context manager: record(key, seconds)
deb_root_image(suite, work, timing=None) -> (image, base, kver, moved)
                                 the suite's build root with build_deb()
                                 installed by apt (a throwaway overlay), as
                                 an ext4 image under work; base: the cached
                                 root; moved: dkms (>= 3.1) moved the
                                 kernel's own modules aside
module_version(vm, module) -> str or None
                                 /sys/module/MODULE/version in a booted VM;
                                 None when the module has no version (the
                                 kernel's own balloon drivers have none);
                                 fails when the module is not loaded
loaded_by_udev(vm, module) -> str or None
                                 in a VM booted from a root image (real udev):
                                 MODULE was not loaded before udev ran and is
                                 now (virtio_balloon: bound to a device);
                                 returns module_version()
rpm_in_root(root, args) -> CompletedProcess
                                 host rpm --root on a Root overlay; its
                                 scriptlets run chrooted in it (that root's
                                 dkms)
"""
import contextlib
import fcntl
import functools
import glob
import os
import re
import shutil
import subprocess
import tarfile
import time

from lib import roots

REPO = roots.REPO
CACHE = roots.CACHE


def _makefile_version():
    with open(os.path.join(REPO, "Makefile")) as f:
        m = re.search(r"^VERSION\s*:=\s*(\S+)", f.read(), re.M)
    if not m:
        raise RuntimeError("no VERSION := line in the top-level Makefile")
    return m.group(1)


VERSION = _makefile_version()


def sh(cmd, check=True, timeout=900, cwd=None):
    p = subprocess.run(["bash", "-c", cmd], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout,
                       cwd=cwd, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise RuntimeError("%s -> rc %d\n%s" % (cmd, p.returncode, p.stdout[-4000:]))
    return p


@functools.lru_cache(maxsize=None)
def tree_for(version):
    """The source tree, or for another version a copy of the release tarball
    with the Makefile's VERSION changed and `make stamp` applied."""
    if version == VERSION:
        return REPO
    base = _private_dir("tree-" + version)
    tarball = sh("%s/scripts/mkdist.sh %s" % (REPO, base)).stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as t:
        t.extractall(base)
    tree = os.path.join(base, "balloon-dkms-" + VERSION)
    mk = os.path.join(tree, "Makefile")
    with open(mk) as f:
        text = f.read()
    with open(mk, "w") as f:
        f.write(re.sub(r"^(VERSION\s*:=\s*)\S+", r"\g<1>" + version, text, flags=re.M))
    sh("scripts/stamp-version.sh", cwd=tree)
    return tree


def _private_dir(name):
    """$BALLOON_WORK/pkg/<name>-<pid>, fresh; directories of processes that
    are gone are removed (two test runs may share the work area)."""
    base = roots.work_dir("pkg")
    for d in glob.glob(os.path.join(base, "*-p[0-9]*")):
        pid = d.rsplit("-p", 1)[1]
        if pid.isdigit() and not os.path.exists("/proc/" + pid):
            shutil.rmtree(d, ignore_errors=True)
    d = os.path.join(base, "%s-p%d" % (name, os.getpid()))
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def _build(script, kind, version, name):
    version = version or VERSION
    out = _private_dir("%s-%s" % (kind, version))
    p = sh("%s/scripts/%s %s" % (tree_for(version), script, out), timeout=900)
    path = p.stdout.strip().splitlines()[-1]
    assert path == os.path.join(out, name % version) and os.path.isfile(path), p.stdout
    return path


@functools.lru_cache(maxsize=None)
def build_deb(version=None):
    return _build("mkdeb.sh", "deb", version, "balloon-dkms_%s_all.deb")


@functools.lru_cache(maxsize=None)
def build_rpm(version=None):
    return _build("mkrpm.sh", "rpm", version, "balloon-dkms-%s-1.noarch.rpm")


@contextlib.contextmanager
def timed(record, key):
    t0 = time.monotonic()
    yield
    record(key, time.monotonic() - t0)


def deb_root_image(suite, work, timing=None):
    with Root(suite) as r:
        p = r.apt("install %s" % r.install_file(build_deb()), timeout=1800)
        print(p.stdout[-3000:])
        r.run("apt-get clean")
        img = os.path.join(work, "root-%s.ext4" % suite)
        t0 = time.monotonic()
        roots.make_ext4(r.path, img)
        if timing:
            timing("%s ext4 image of the root" % suite, time.monotonic() - t0)
        moved = r.run("dpkg --compare-versions \"$(dpkg-query -W -f='${Version}' dkms)\" ge 3.1",
                      check=False).returncode == 0
        return img, r.base, r.kver, moved


def module_version(vm, module):
    d = "/sys/module/" + module
    rc, out = vm.shell("if [ -e %s/version ]; then cat %s/version; "
                       "elif [ -d %s ]; then echo no-version; else exit 3; fi" % (d, d, d))
    assert rc == 0, "%s is not loaded (no %s)" % (module, d)
    return None if out.strip() == "no-version" else out.strip()


def loaded_by_udev(vm, module):
    before = re.search(r"VMH-MODULES-BEFORE-UDEV: (.*)", vm.console_text())
    assert before, "no VMH-MODULES-BEFORE-UDEV line (not a root image boot?)\n" + vm.console_tail(60)
    assert module not in before.group(1).split(), \
        "%s was loaded before udev ran:\n%s" % (module, vm.console_tail(60))
    version = module_version(vm, module)
    if module == "virtio_balloon":
        bound = vm.sh("ls /sys/bus/virtio/drivers/virtio_balloon/")
        assert re.search(r"\bvirtio\d+\b", bound), "virtio_balloon bound to no device: " + bound
    return version


class Root:
    def __init__(self, suite, profile="build"):
        self.suite = suite
        self.base = roots.root(suite, profile)
        if profile == "flavours":
            self.kvers = [roots.flavour_kver(self.base, f) for f in roots.FLAVOURS]
            self.kver = self.kvers[0]
        else:
            self.kver = roots.kver(self.base)
            self.kvers = [self.kver]
        self.archives = os.path.join(CACHE, "apt", suite)
        os.makedirs(os.path.join(self.archives, "partial"), exist_ok=True)
        self._cm = None
        self.path = None

    def __enter__(self):
        self._cm = roots.overlay(self.base, name="pkg-" + self.suite)
        self.path = self._cm.__enter__()
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)

    def run(self, cmd, check=True, timeout=1800):
        return roots.chroot_run(self.path, cmd, check=check, timeout=timeout,
                                binds=(self.archives,))

    @contextlib.contextmanager
    def archive_lock(self):
        """Serialises users of the shared archive directory (apt refuses
        to run while another apt holds its lock there)."""
        with open(os.path.join(self.archives, ".balloon-lock"), "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def apt(self, args, check=True, timeout=1800):
        """apt-get ARGS; on a failed download (the root's package lists are
        older than the mirror) refresh the lists once and retry."""
        cmd = ("apt-get -y -q -o Dir::Cache::Archives=%s/ "
               "-o APT::Keep-Downloaded-Packages=true %s" % (self.archives, args))
        with self.archive_lock():
            p = self.run(cmd, check=False, timeout=timeout)
            if p.returncode != 0 and re.search(r"(Failed to fetch|Unable to locate|"
                                               r"has no installation candidate|404)", p.stdout):
                self.run("apt-get -q update", timeout=timeout)
                p = self.run(cmd, check=False, timeout=timeout)
        if check and p.returncode != 0:
            raise roots.RootCommandError(self.path, cmd, p.returncode, p.stdout)
        return p

    def install_file(self, path):
        dest = os.path.join(self.path, "tmp", os.path.basename(path))
        shutil.copy(path, dest)
        return "/tmp/" + os.path.basename(path)

    def modinfo(self, module, field=None, kver=None):
        what = "-F %s" % field if field else "-n"
        p = self.run("modinfo -k %s %s %s" % (kver or self.kver, what, module), check=False)
        return p.stdout.strip() if p.returncode == 0 else ""

    def dkms_status(self):
        return self.run("dkms status balloon 2>&1 || dkms status -m balloon 2>&1",
                        check=False).stdout

    def leftovers(self):
        found = []
        for pat in ("usr/src/balloon-*", "var/lib/dkms/balloon",
                    "lib/modules/*/updates/dkms/virtio_balloon.ko*",
                    "lib/modules/*/updates/dkms/vmw_balloon.ko*"):
            found += glob.glob(os.path.join(self.path, pat))
        return [f[len(self.path):] for f in found]

    def dpkg_audit(self):
        return self.run("dpkg --audit", check=False).stdout.strip()

    def not_configured(self):
        out = self.run("dpkg -l | tail -n +6", check=False).stdout
        return [l for l in out.splitlines() if l and not l.startswith(("ii ", "rc "))]


_FAKE_POSTINST = """#!/bin/sh
set -e
# As Debian's %(what)s postinst: run the kernel hooks, fail if one fails.
[ "$1" = configure ] || exit 0
%(extra)s
if [ -d /etc/kernel/%(dir)s ]; then
	DEB_MAINT_PARAMS="$*" run-parts --report --exit-on-error --arg=%(k)s %(args)s /etc/kernel/%(dir)s
fi
"""

_FAKE_PRERM = """#!/bin/sh
set -e
# As Debian's linux-image prerm: run the removal hooks (dkms remove ...).
[ "$1" = remove ] || exit 0
if [ -d /etc/kernel/prerm.d ]; then
	DEB_MAINT_PARAMS="$*" run-parts --report --exit-on-error --arg=%(k)s --arg=/boot/vmlinuz-%(k)s /etc/kernel/prerm.d
fi
"""

NO_BALLOON = ("CONFIG_MEMORY_BALLOON", "CONFIG_BALLOON_COMPACTION", "CONFIG_BALLOON",
              "CONFIG_BALLOON_MIGRATION", "CONFIG_VIRTIO_BALLOON", "CONFIG_VMWARE_BALLOON")


def _strip_config(path):
    """Remove memory balloon support from a .config / auto.conf / autoconf.h."""
    with open(path) as f:
        lines = f.readlines()
    keep = []
    for l in lines:
        m = re.match(r"(?:#define )?(CONFIG_[A-Z0-9_]+)[ =]", l)
        if m and m.group(1) in NO_BALLOON:
            continue
        keep.append(l)
    with open(path, "w") as f:
        f.writelines(keep)
    return len(lines) - len(keep)


BUILTIN_OPTION = {"virtio_balloon": "CONFIG_VIRTIO_BALLOON",
                  "vmw_balloon": "CONFIG_VMWARE_BALLOON"}
BUILTIN_PATH = {"virtio_balloon": "kernel/drivers/virtio/virtio_balloon.ko",
                "vmw_balloon": "kernel/drivers/misc/vmw_balloon.ko"}


def set_builtin(path, options):
    """Turn =m options into =y in a .config / auto.conf / autoconf.h."""
    with open(path) as f:
        text = f.read()
    n = 0
    for o in options:
        text, a = re.subn(r"^%s=m$" % o, "%s=y" % o, text, flags=re.M)
        text, b = re.subn(r"^#define %s_MODULE 1$" % o, "#define %s 1" % o, text, flags=re.M)
        n += a + b
    with open(path, "w") as f:
        f.write(text)
    return n


def _control(d, name, desc):
    os.makedirs(os.path.join(d, "DEBIAN"), exist_ok=True)
    with open(os.path.join(d, "DEBIAN", "control"), "w") as f:
        f.write("Package: %s\nVersion: 1\nArchitecture: amd64\n"
                "Maintainer: balloon-dkms tests <tests@localhost>\n"
                "Section: kernel\nPriority: optional\n"
                "Description: %s\n test fixture made by tests/lib/pkg.py\n" % (name, desc))


def _script(d, name, text):
    p = os.path.join(d, "DEBIAN", name)
    with open(p, "w") as f:
        f.write(text)
    os.chmod(p, 0o755)


def make_fake_kernel(root_path, kver, name, outdir, builtin=()):
    """See the module docstring.  Returns (image_deb, headers_deb)."""
    hdr_src = os.path.join(root_path, "usr/src/linux-headers-" + kver)
    if not os.path.isfile(os.path.join(hdr_src, "Makefile")):
        raise RuntimeError("no headers for %s in %s" % (kver, root_path))
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)

    # headers: a copy of the flavour directory (its symlinks into the
    # -common and kbuild directories stay valid: same parent directory)
    h = os.path.join(outdir, "headers")
    hdir = os.path.join(h, "usr/src/linux-headers-" + name)
    shutil.copytree(hdr_src, hdir, symlinks=True)
    changed = 0
    for rel in (".config", "include/config/auto.conf", "include/generated/autoconf.h"):
        p = os.path.join(hdir, rel)
        if os.path.exists(p):
            changed += (set_builtin(p, [BUILTIN_OPTION[m] for m in builtin]) if builtin
                        else _strip_config(p))
    if builtin and changed != 3 * len(builtin):
        raise RuntimeError("%s: %d of %d =m options turned to =y" %
                           (hdr_src, changed, 3 * len(builtin)))
    if not changed:
        raise RuntimeError("no balloon options found to remove in %s" % hdr_src)
    what = ("with %s built in" % " and ".join(builtin) if builtin
            else "without memory balloon support")
    rel = os.path.join(hdir, "include/config/kernel.release")
    if os.path.exists(rel):
        with open(rel, "w") as f:
            f.write(name + "\n")
    os.makedirs(os.path.join(h, "lib/modules", name))
    os.symlink("/usr/src/linux-headers-" + name, os.path.join(h, "lib/modules", name, "build"))
    _control(h, "linux-headers-" + name, "fake kernel headers " + what)
    _script(h, "postinst", _FAKE_POSTINST % {"what": "linux-headers", "k": name, "args": "",
                                              "dir": "header_postinst.d", "extra": ""})

    # image: the configuration and module lists of the real kernel, no modules
    i = os.path.join(outdir, "image")
    os.makedirs(os.path.join(i, "boot"))
    shutil.copy(os.path.join(hdir, ".config"), os.path.join(i, "boot", "config-" + name))
    mdir = os.path.join(i, "lib/modules", name)
    os.makedirs(mdir)
    for f in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        src = os.path.join(root_path, "lib/modules", kver, f)
        if os.path.exists(src):
            shutil.copy(src, mdir)
    if builtin:
        with open(os.path.join(mdir, "modules.builtin"), "a") as f:
            f.writelines(BUILTIN_PATH[m] + "\n" for m in builtin)
    _control(i, "linux-image-" + name, "fake kernel image " + what)
    _script(i, "postinst", _FAKE_POSTINST % {
        "what": "linux-image", "k": name, "dir": "postinst.d",
        "args": "--arg=/boot/vmlinuz-" + name, "extra": "depmod " + name})
    _script(i, "prerm", _FAKE_PRERM % {"k": name})

    debs = []
    for d, pkg in ((i, "linux-image-" + name), (h, "linux-headers-" + name)):
        deb = os.path.join(outdir, pkg + "_1_amd64.deb")
        sh("dpkg-deb --root-owner-group -Zxz -b %s %s" % (d, deb))
        debs.append(deb)
    return tuple(debs)


_RPM_NS = r'''
set -e
r=$1; shift
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
mount --rbind /sys "$r/sys"
exec rpm --root "$r" "$@"
'''


def rpm_in_root(r, args, check=True, timeout=1800):
    """The host's rpm with --root on the overlay of Root `r`: the database is
    the root's /var/lib/rpm, and scriptlets run chrooted in the root (with
    /proc, /dev and /sys mounted in a private mount namespace), so they call
    that root's dkms."""
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _RPM_NS,
            "rpm-root", r.path] + args.split()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise RuntimeError("rpm --root %s %s -> rc %d\n%s" % (r.path, args, p.returncode,
                                                            p.stdout[-4000:]))
    return p
