# SPDX-License-Identifier: GPL-2.0
"""Cached Debian roots (scripts/mkroot.sh) seen from the tests.

REPO, CACHE, WORK                  repo top, $BALLOON_CACHE, $BALLOON_WORK
suites() -> [str]                  suites under test: $BALLOON_SUITES (default
                                   "bullseye bookworm trixie sid"); only
                                   "bookworm" when $BALLOON_QUICK=1
suites_quick_on_bookworm(only=None) -> [str or pytest.param]
                                   suites() (those in `only`, if given) for
                                   @pytest.mark.parametrize("suite", ...),
                                   the bookworm case marked quick
root(suite, profile="build") -> str
                                   path of the cached root; builds it (or waits
                                   for another builder's lock) via mkroot.sh.
                                   NEVER modify it in place: use overlay().
kver(root) -> str                  newest kernel release with image and headers
FLAVOURS                           Debian's amd64 kernel flavours, as the
                                   release suffix: amd64, cloud-amd64, rt-amd64
flavour_kver(root, flavour) -> str newest kernel release of that flavour with
                                   image and headers (for "flavours" roots,
                                   which hold all three; root(s, "flavours"))
kernel(root, kver=None) -> str     path of its vmlinuz
chroot_run(root, cmd, check=True, timeout=1800, env=None, input=None,
           binds=(), ephemeral=False) -> subprocess.CompletedProcess
                                   runs `cmd` (str: via sh -c; list: argv) in
                                   `root` with /proc, /dev, /dev/pts and /sys
                                   mounted in a private mount namespace, so the
                                   mounts vanish with the process and never leak
                                   into other users of the root.  Output is
                                   .stdout (text, stderr merged).  `binds`:
                                   host files/directories bind-mounted at the
                                   same path inside (this creates their mount
                                   points in the root, so use binds only with
                                   ephemeral=True or on an overlay()).
                                   ephemeral=True runs in a private throwaway
                                   overlay of `root`: safe on a cached root;
                                   every change is dropped.  check=True raises
                                   RootCommandError (with the output) on rc != 0.
chroot_argv(root, argv, binds=(), overlay_dir=None) -> [str]
                                   the command line chroot_run uses, for callers
                                   that need their own Popen (vm.VM(qemu_root=)).
overlay(root, name="ovl") -> context manager yielding a writable path
                                   a throwaway view of `root` (overlayfs, upper
                                   layer under $BALLOON_WORK; falls back to a
                                   copy where overlayfs is unavailable).  All
                                   changes are dropped and the mount removed on
                                   exit.
make_ext4(tree, out, size_mb=None, label="root") -> out
                                   raw ext4 image holding `tree` (mke2fs -d),
                                   without anything mounted below `tree`; size
                                   defaults to the tree size + 50 % + 256 MiB.
work_dir(*parts) -> str            a directory under $BALLOON_WORK (created)

arm64 (scripts/mkroot-arm64.sh; binaries run through qemu-user):
ARM64 = {"sid-arm64": ("sid", "arm64"), "sid-arm64-16k": ("sid", "arm64-16k"),
         "bookworm-arm64": ("bookworm", "arm64")}
                                   arm64 "suite" ids -> (Debian suite, kernel
                                   flavour); root(id) gives the Debian
                                   suite's arm64 root (sid's holds both)
arch(suite) -> "x86_64" | "aarch64"
suite_kver(suite) -> str           the kernel release a suite id stands for
                                   (its flavour's on arm64, else kver(root))
"""
import contextlib
import functools
import os
import shlex
import shutil
import subprocess
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
CACHE = os.environ.get("BALLOON_CACHE", "/var/cache/balloon-dkms")
WORK = os.environ.get("BALLOON_WORK", "/var/tmp/balloon-work")
ALL_SUITES = ("bullseye", "bookworm", "trixie", "sid")
ARM64 = {"sid-arm64": ("sid", "arm64"), "sid-arm64-16k": ("sid", "arm64-16k"),
         "bookworm-arm64": ("bookworm", "arm64")}


class RootCommandError(RuntimeError):
    def __init__(self, root, cmd, rc, output):
        self.root, self.cmd, self.rc, self.output = root, cmd, rc, output
        tail = "\n".join(output.splitlines()[-40:])
        super().__init__("in %s: %s -> rc %d\n%s" % (root, cmd, rc, tail))


def quick():
    return os.environ.get("BALLOON_QUICK") == "1"


def suites():
    if quick():
        return ["bookworm"]
    env = os.environ.get("BALLOON_SUITES", " ".join(ALL_SUITES)).split()
    bad = [s for s in env if s not in ALL_SUITES]
    if bad:
        raise ValueError("BALLOON_SUITES: unknown suite(s) %s (known: %s)" %
                         (" ".join(bad), " ".join(ALL_SUITES)))
    return env


def suites_quick_on_bookworm(only=None):
    import pytest
    return [pytest.param(s, marks=pytest.mark.quick) if s == "bookworm" else s
            for s in suites() if only is None or s in only]


def work_dir(*parts):
    d = os.path.join(WORK, *parts)
    os.makedirs(d, exist_ok=True)
    return d


def arch(suite):
    return "aarch64" if suite in ARM64 else "x86_64"


@functools.lru_cache(maxsize=None)
def root(suite, profile="build"):
    script = os.path.join(REPO, "scripts", "mkroot.sh")
    args = [script, suite, profile]
    if suite in ARM64:
        args = [os.path.join(REPO, "scripts", "mkroot-arm64.sh"), ARM64[suite][0]]
    p = subprocess.run(args, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=3600,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise RuntimeError("mkroot.sh %s %s failed (rc %d):\n%s" %
                           (suite, profile, p.returncode, p.stderr[-4000:]))
    path = p.stdout.strip().splitlines()[-1]
    if not os.path.isdir(path):
        raise RuntimeError("mkroot.sh %s %s printed %r, not a directory" %
                           (suite, profile, path))
    return path


def _vsort_key(s):
    out = []
    for part in s.replace("-", ".").replace("+", ".").split("."):
        out.append((0, int(part), "") if part.isdigit() else (1, 0, part))
    return out


def kver(root_path):
    mods = os.path.join(root_path, "lib", "modules")
    for k in sorted(os.listdir(mods) if os.path.isdir(mods) else [],
                    key=_vsort_key, reverse=True):
        if (os.path.exists(os.path.join(root_path, "boot", "vmlinuz-" + k)) and
                os.path.exists(os.path.join(root_path, "usr", "src",
                                            "linux-headers-" + k, "Makefile"))):
            return k
    raise RuntimeError("no kernel with image and headers in %s" % root_path)


def suite_kver(suite):
    r = root(suite)
    if suite not in ARM64:
        return kver(r)
    flavour = ARM64[suite][1]
    mods = os.path.join(r, "lib", "modules")
    for k in sorted(os.listdir(mods), key=_vsort_key, reverse=True):
        # "7.0.1+deb14-arm64" / "7.0.1+deb14-arm64-16k"
        if k.endswith("-" + flavour) and os.path.exists(os.path.join(r, "boot", "vmlinuz-" + k)) \
                and os.path.exists(os.path.join(r, "usr", "src", "linux-headers-" + k,
                                                "Makefile")):
            return k
    raise RuntimeError("no %s kernel with image and headers in %s" % (flavour, r))


FLAVOURS = ("amd64", "cloud-amd64", "rt-amd64")


def flavour_kver(root_path, flavour):
    if flavour not in FLAVOURS:
        raise ValueError("unknown flavour %r (known: %s)" % (flavour, " ".join(FLAVOURS)))
    mods = os.path.join(root_path, "lib", "modules")
    for k in sorted(os.listdir(mods) if os.path.isdir(mods) else [],
                    key=_vsort_key, reverse=True):
        f = next(x for x in ("cloud-amd64", "rt-amd64", "amd64", "")
                 if k.endswith("-" + x) or not x)
        if f == flavour and (
                os.path.exists(os.path.join(root_path, "boot", "vmlinuz-" + k)) and
                os.path.exists(os.path.join(root_path, "usr", "src", "linux-headers-" + k,
                                            "Makefile"))):
            return k
    raise RuntimeError("no %s kernel with image and headers in %s" % (flavour, root_path))


def kernel(root_path, k=None):
    path = os.path.join(root_path, "boot", "vmlinuz-" + (k or kver(root_path)))
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return path


_NS_SCRIPT = r'''
set -e
r=$1 ovl=$2; shift 2
if [ -n "$ovl" ]; then
	mount -t overlay overlay -o "lowerdir=$r,upperdir=$ovl/upper,workdir=$ovl/work" "$ovl/merged"
	r=$ovl/merged
fi
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$r/dev/pts" 2>/dev/null || true
mount --rbind /sys "$r/sys" 2>/dev/null || true
while [ "$1" != -- ]; do
	if [ -d "$1" ]; then mkdir -p "$r$1"; else mkdir -p "$r${1%/*}"; touch "$r$1"; fi
	mount --bind "$1" "$r$1"
	shift
done
shift
exec chroot "$r" "$@"
'''


def chroot_argv(root_path, argv, binds=(), overlay_dir=None):
    """argv that runs `argv` chrooted in root_path with proc/dev/sys mounted
    in a private mount namespace.  With overlay_dir (an empty directory), the
    chroot is a throwaway overlayfs view of root_path whose upper layer lives
    in overlay_dir.  The exec chain keeps one PID: the returned command's PID
    is the PID of the final program."""
    ovl = ""
    if overlay_dir:
        ovl = os.path.abspath(overlay_dir)
        for d in ("upper", "work", "merged"):
            os.makedirs(os.path.join(ovl, d), exist_ok=True)
    args = ["unshare", "--mount", "--propagation", "private",
            "sh", "-c", _NS_SCRIPT, "vmh-chroot", root_path, ovl]
    seen = set()
    for b in binds:
        b = os.path.abspath(b)
        if b not in seen:
            seen.add(b)
            args.append(b)
    return args + ["--"] + list(argv)


def chroot_run(root_path, cmd, check=True, timeout=1800, env=None, input=None,
               binds=(), ephemeral=False):
    argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    full_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME": "/root", "LC_ALL": "C.UTF-8",
                "DEBIAN_FRONTEND": "noninteractive"}
    full_env.update(env or {})
    ovl = tempfile.mkdtemp(prefix="eph-", dir=work_dir("overlays")) if ephemeral else None
    try:
        p = subprocess.run(chroot_argv(root_path, argv, binds, ovl), env=full_env,
                           input=input, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout,
                           stdin=None if input is not None else subprocess.DEVNULL)
    finally:
        if ovl:
            shutil.rmtree(ovl, ignore_errors=True)
    if check and p.returncode != 0:
        raise RootCommandError(root_path, cmd if isinstance(cmd, str)
                               else " ".join(map(shlex.quote, cmd)),
                               p.returncode, p.stdout)
    return p


def _umount(path):
    if subprocess.run(["umount", path], stderr=subprocess.DEVNULL).returncode:
        subprocess.run(["umount", "-l", path], stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def overlay(root_path, name="ovl"):
    base = tempfile.mkdtemp(prefix=name + "-", dir=work_dir("overlays"))
    upper, wdir, merged = (os.path.join(base, d) for d in ("upper", "work", "merged"))
    for d in (upper, wdir, merged):
        os.mkdir(d)
    opts = "lowerdir=%s,upperdir=%s,workdir=%s" % (root_path, upper, wdir)
    mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, merged],
                             stderr=subprocess.PIPE, text=True).returncode == 0
    if not mounted:
        # no overlayfs here: a full copy (reflinks where the filesystem can)
        os.rmdir(merged)
        subprocess.run(["cp", "-a", "--reflink=auto", root_path, merged], check=True)
    try:
        yield merged
    finally:
        if mounted:
            _umount(merged)
        shutil.rmtree(base, ignore_errors=True)


def _tree_size_mb(tree):
    out = subprocess.run(["du", "-sxm", "--apparent-size", tree],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    return int(out.split()[0])


def make_ext4(tree, out, size_mb=None, label="root"):
    if size_mb is None:
        size_mb = _tree_size_mb(tree) * 3 // 2 + 256
    tmp = out + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    view = tempfile.mkdtemp(prefix="ext4src-", dir=work_dir("overlays"))
    # a non-recursive bind in a private namespace: the image never picks up
    # a /proc or /dev that someone else has mounted in the tree right now
    script = 'mount --bind "$1" "$2" && shift 2 && exec mke2fs "$@"'
    try:
        p = subprocess.run(["unshare", "--mount", "--propagation", "private",
                            "sh", "-c", script, "vmh-mke2fs", tree, view,
                            "-q", "-t", "ext4", "-L", label, "-E", "root_owner=0:0",
                            "-d", view, "-F", tmp, "%dM" % size_mb],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    finally:
        os.rmdir(view)
    if p.returncode != 0:
        raise RuntimeError("mke2fs -d %s failed:\n%s" % (tree, p.stdout[-3000:]))
    os.rename(tmp, out)
    return out
