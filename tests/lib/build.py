# SPDX-License-Identifier: GPL-2.0
"""Build our modules for a suite's kernel, inside that suite's root, cached.

modules(root, kver=None, make_args=(), only=None) -> {"virtio_balloon": path, ...}
    Builds src/ (`make -C src KVER=<kver> KDIR=/lib/modules/<kver>/build`,
    i.e. compat probes, then Kbuild) with the root's own compiler, in a
    private throwaway overlay of the root (the cached root is never
    touched), and returns the host paths of every .ko produced.  The .ko
    files are cached in $BALLOON_CACHE/modules/<kver>/<key>/, where key
    hashes the source tree (every file under src/ except build products),
    the kernel's identity (release, its generated autoconf.h and
    Module.symvers) and make_args; a second call with equal inputs only
    looks the files up.  Concurrent builders of the same key wait on a lock.
    only=("virtio_balloon",) builds just those modules (the copy's Kbuild is
    cut down to them), so a half-written other driver cannot break a test
    of this one; `only` is part of the key.
    Raises BuildError (with the build log tail) when make fails.

    make_args with C=1 (sparse): where the kernel's Makefile asks
    scripts/checker-valid.sh and Debian's headers lack it (7.x), a stand-in
    ("the checker is usable if it runs") is laid into the throwaway overlay
    first, so sparse really runs.
    The root may be an arm64 one (scripts/mkroot-arm64.sh): the build then
    runs the root's own arm64 gcc, make and sparse through qemu-user.

src_hash() -> str        the source part of the key (hex)
build_log(root, kver=None, make_args=(), only=None) -> str
                         the log of the cached build (the build runs if needed)
external(root, srcdir, kver=None) -> {"name": path, ...}
    Builds a small out-of-tree Kbuild directory that is not src/ (a test-only
    module such as tests/bench/limit/) the same way: the root's compiler,
    `make -C /lib/modules/<kver>/build M=<copy> modules` in a throwaway
    overlay, cached by the directory's files and the kernel's identity.
"""
import fcntl
import hashlib
import os
import shutil
import tempfile

from . import roots

SRC = os.path.join(roots.REPO, "src")
# Build products and probe results: never part of the source identity.
_SKIP_DIRS = {".probes", ".tmp_versions"}
_SKIP_SUFFIXES = (".o", ".ko", ".mod", ".mod.c", ".cmd", ".a", ".order",
                  ".symvers", ".tmp", ".orig", ".rej", "~")
_SKIP_FILES = {"autoconf.h", "Module.symvers", "modules.order"}
# Bump when the recipe below changes what ends up in the cache.
FORMAT = "vb-build-1"


class BuildError(RuntimeError):
    pass


def _source_files():
    out = []
    for d, dirs, files in os.walk(SRC):
        dirs[:] = sorted(x for x in dirs if x not in _SKIP_DIRS and not x.startswith("."))
        for f in sorted(files):
            if f in _SKIP_FILES or f.endswith(_SKIP_SUFFIXES) or f.startswith("."):
                continue
            out.append(os.path.join(d, f))
    return out


def src_hash():
    h = hashlib.sha256()
    for p in _source_files():
        with open(p, "rb") as f:
            data = f.read()
        h.update(os.path.relpath(p, SRC).encode() + b"\0")
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def _kernel_identity(root, k):
    build = os.path.join(root, "usr", "src", "linux-headers-" + k)
    h = hashlib.sha256(k.encode() + b"\0")
    for rel in ("include/generated/autoconf.h", "Module.symvers"):
        p = os.path.join(build, rel)
        if os.path.exists(p):
            with open(p, "rb") as f:
                h.update(rel.encode() + hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def _key(root, k, make_args, only):
    h = hashlib.sha256()
    h.update(FORMAT.encode() + b"\0" + src_hash().encode() + b"\0")
    h.update(_kernel_identity(root, k).encode() + b"\0")
    h.update("\0".join(make_args).encode() + b"\0")
    h.update("\0".join(sorted(only or ())).encode())
    return h.hexdigest()[:20]


def _restrict_kbuild(src, only):
    """Keep only the obj-m lines of the modules in `only`."""
    path = os.path.join(src, "Kbuild")
    with open(path) as f:
        lines = f.readlines()
    out, kept = [], set()
    for line in lines:
        words = line.replace("+=", " += ").split()
        if len(words) >= 3 and words[0] == "obj-m" and words[1] == "+=":
            mod = words[2][:-2] if words[2].endswith(".o") else words[2]
            if mod not in only:
                continue
            kept.add(mod)
        out.append(line)
    missing = set(only) - kept
    if missing:
        raise BuildError("src/Kbuild has no obj-m line for %s" % " ".join(sorted(missing)))
    with open(path, "w") as f:
        f.writelines(out)


# Runs before make in the throwaway overlay: gives a kernel whose Makefile
# asks scripts/checker-valid.sh (and whose headers lack it) a stand-in.
_CHECKER_STANDIN = r'''
b=$(readlink -f "/lib/modules/$1/build")
shift
for d in "$b" $(sed -n 's/^include \(.*\)\/Makefile$/\1/p' "$b/Makefile"); do
	case $d in /*) ;; *) d=$b/$d ;; esac
	grep -q checker-valid.sh "$d/Makefile" 2>/dev/null || continue
	s=$(readlink -f "$d/scripts")
	[ -e "$s/checker-valid.sh" ] && continue
	printf '#!/bin/sh\n"$@" -E -x c /dev/null >/dev/null 2>&1 && echo 1\n' >"$s/checker-valid.sh"
	chmod +x "$s/checker-valid.sh"
done
exec "$@"
'''


def _cache_dir(k, key):
    return os.path.join(roots.CACHE, "modules", k, key)


def _found(d):
    if not os.path.exists(os.path.join(d, ".complete")):
        return None
    return {f[:-3]: os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".ko")}


def _build(root, k, make_args, only, out):
    tmp = tempfile.mkdtemp(prefix="build-", dir=roots.work_dir("build"))
    try:
        src = os.path.join(tmp, "src")
        shutil.copytree(SRC, src, ignore=shutil.ignore_patterns(
            "autoconf.h", ".probes", "*.o", "*.ko", ".*.cmd", "*.mod", "*.mod.c"))
        if only:
            _restrict_kbuild(src, only)
        cmd = ["make", "-C", src, "KVER=" + k, "KDIR=/lib/modules/%s/build" % k]
        cmd += list(make_args)
        if "C=1" in make_args:
            cmd = ["sh", "-c", _CHECKER_STANDIN, "vb-checker", k] + cmd
        p = roots.chroot_run(root, cmd, check=False, binds=(tmp,), ephemeral=True,
                             timeout=1800)
        log = p.stdout
        if p.returncode != 0:
            raise BuildError("building our modules for %s in %s failed (rc %d):\n%s" %
                             (k, root, p.returncode, "\n".join(log.splitlines()[-60:])))
        kos = [f for f in os.listdir(src) if f.endswith(".ko")]
        if not kos:
            raise BuildError("make succeeded but produced no .ko for %s:\n%s" %
                             (k, log[-4000:]))
        part = out + ".part"
        shutil.rmtree(part, ignore_errors=True)
        os.makedirs(part)
        for f in kos:
            shutil.copy(os.path.join(src, f), part)
        shutil.copy(os.path.join(src, "compat", "autoconf.h"), part)
        with open(os.path.join(part, "build.log"), "w") as f:
            f.write(log)
        with open(os.path.join(part, ".complete"), "w") as f:
            f.write("%s\n" % k)
        shutil.rmtree(out, ignore_errors=True)
        os.rename(part, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def modules(root, kver=None, make_args=(), only=None):
    k = kver or roots.kver(root)
    only = tuple(sorted(only)) if only else None
    key = _key(root, k, tuple(make_args), only)
    out = _cache_dir(k, key)
    got = _found(out)
    if got:
        return got
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        got = _found(out)
        if not got:
            _build(root, k, tuple(make_args), only, out)
            got = _found(out)
    return got


def build_log(root, kver=None, make_args=(), only=None):
    kos = modules(root, kver, make_args, only)
    d = os.path.dirname(next(iter(kos.values())))
    with open(os.path.join(d, "build.log")) as f:
        return f.read()



def _dir_hash(d):
    h = hashlib.sha256()
    for f in sorted(os.listdir(d)):
        p = os.path.join(d, f)
        if os.path.isfile(p) and not f.startswith(".") and not f.endswith(_SKIP_SUFFIXES):
            with open(p, "rb") as fh:
                h.update(f.encode() + b"\0" + hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def _build_external(root, k, srcdir, out):
    tmp = tempfile.mkdtemp(prefix="build-", dir=roots.work_dir("build"))
    try:
        src = os.path.join(tmp, "src")
        shutil.copytree(srcdir, src, ignore=shutil.ignore_patterns(
            "*.o", "*.ko", ".*.cmd", "*.mod", "*.mod.c"))
        p = roots.chroot_run(root, ["make", "-C", "/lib/modules/%s/build" % k,
                                    "M=" + src, "modules"],
                             check=False, binds=(tmp,), ephemeral=True, timeout=1800)
        if p.returncode != 0 or not any(f.endswith(".ko") for f in os.listdir(src)):
            raise BuildError("building %s for %s in %s failed (rc %d):\n%s" %
                             (srcdir, k, root, p.returncode,
                              "\n".join(p.stdout.splitlines()[-60:])))
        keep = {"build.log", ".complete"}
        with open(os.path.join(src, "build.log"), "w") as f:
            f.write(p.stdout)
        with open(os.path.join(src, ".complete"), "w") as f:
            f.write("%s\n" % k)
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(src, out, ignore=lambda d, names: [
            n for n in names if n not in keep and not n.endswith(".ko")])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def external(root, srcdir, kver=None):
    k = kver or roots.kver(root)
    h = hashlib.sha256(("%s-ext\0%s\0%s" % (FORMAT, _dir_hash(srcdir),
                                            _kernel_identity(root, k))).encode())
    out = _cache_dir(k, "ext-" + h.hexdigest()[:20])
    os.makedirs(os.path.dirname(out), exist_ok=True)
    # always under the lock: the copy into the cache is not atomic
    with open(out + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _found(out):
            _build_external(root, k, srcdir, out)
        return _found(out)
