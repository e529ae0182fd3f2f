# SPDX-License-Identifier: GPL-2.0
"""Small busybox initramfs for booting a root's kernel under QEMU.

build(root, kver=None, ko=(), intree_only=False, root_updates=True,
      extra_modules=()) -> path of a .cpio.gz
    Contents: the host's static busybox (package busybox-static), /init and
    the guest scripts from tests/guest/, and these modules of kernel `kver`
    (default: roots.kver(root)) with everything they depend on (modules.dep,
    plus softdeps and exact aliases such as crypto-crc32c):
        virtio_pci virtio_balloon virtio_blk ext4 crypto-crc32c
        vmw_vmci vmw_balloon  + extra_modules
    Modules built into the kernel are skipped.  The in-tree copies always sit
    under lib/modules/$k/kernel/.  Our modules go to lib/modules/$k/updates/:
      - `ko`: host paths of .ko / .ko.xz / .ko.zst / .ko.gz files;
      - root_updates=True: whatever the root has under updates/ and extra/
        (e.g. after our .deb was installed into an overlay of the root).
    intree_only=True leaves updates/ empty (then `ko` must be empty).
    Compressed modules are decompressed (busybox modprobe cannot read them)
    and `depmod -b` indexes the tree, so modprobe picks updates/ first.
    Output is cached in $BALLOON_WORK/initramfs/, named by a hash of
    everything that goes in; a second build with equal inputs is free.

contents(path) -> {relative path: size}   list a built initramfs (no extract)
resolve_modules(root, kver, names) -> [relpath under lib/modules/$k]

Guest side (tests/guest/init), driven by the kernel command line:
    vmh.modules=a,b,c   modprobe these in order first (each prints
                        "VMH-MODPROBE <name> rc=<n>" on the console)
    vmh.coldplug=0|1    load a module for every device modalias like udev's
                        coldplug does (default 1)
    vmh.root=/dev/vda   mount that ext4 disk and switch_root into it; there
                        tests/guest/rootinit starts systemd-udevd, triggers
                        and settles (udev loads modules from the root):
                        "VMH-UDEV-SETTLED" when settle succeeded, else
                        "VMH-FAIL udevadm settle failed ..." (the boot fails)
    vmh.udev_hold=1     (rootinit) udev runs no event until settle, after
                        5 s, has failed: for test_harness
    vmh.init=PATH       run PATH instead of rootinit after switch_root
    vmh.shell=TTY       serve the shell on /dev/TTY (default ttyS1; arm64
                        VMs use hvc0, a virtconsole)
    vmh.resume=DEV      first of all: virtio_pci, virtio_blk, and DEV's
                        MAJ:MIN to /sys/power/resume, which restores the
                        hibernation image on that swap disk (the guest that
                        hibernated goes on); "VMH-RESUME DEV <uptime>"
                        before, "VMH-FAIL" when there was no image
Console markers: "VMH-INIT", "VMH-COLDPLUG", "VMH-MODULES: ...",
"VMH-READY <uptime>" (shell served on ttyS1), "VMH-FAIL <why>" on error.

arm64 roots (root_arch(root) == "aarch64"): the initramfs takes the root's
own static busybox (busybox-static in the arm64 root) instead of the
host's, and always carries virtio_console (the shell's hvc0).

root_arch(root) -> "x86_64" | "aarch64"
"""
import gzip
import hashlib
import lzma
import os
import shutil
import struct
import subprocess
import tempfile

from . import roots

GUEST_DIR = os.path.join(roots.REPO, "tests", "guest")
GUEST_FILES = {"init": 0o755, "shell.sh": 0o644, "rootinit": 0o755}
BASE_MODULES = ("virtio_pci", "virtio_balloon", "virtio_blk", "ext4",
                "crypto-crc32c", "vmw_vmci", "vmw_balloon")
INDEX_FILES = ("modules.builtin", "modules.builtin.modinfo", "modules.order")
BUSYBOX = "/bin/busybox"
# Bump when the layout changes in a way the content hash cannot see.
FORMAT = "vmh-initramfs-1"
_SUFFIXES = (".ko.xz", ".ko.zst", ".ko.gz", ".ko")


def _modname(path):
    base = os.path.basename(path)
    for s in _SUFFIXES:
        if base.endswith(s):
            base = base[:-len(s)]
            break
    return base.replace("-", "_")


def _plain(relpath):
    """relpath with the compression suffix dropped."""
    for s in _SUFFIXES[:-1]:
        if relpath.endswith(s):
            return relpath[:-len(s) + 3]
    return relpath


def _mdir(root, k):
    return os.path.join(root, "lib", "modules", k)


class _Index:
    def __init__(self, root, k):
        self.mdir = _mdir(root, k)
        self.dep = {}
        with open(os.path.join(self.mdir, "modules.dep")) as f:
            for line in f:
                mod, _, deps = line.partition(":")
                if mod:
                    self.dep[mod.strip()] = deps.split()
        self.by_name = {}
        # the in-tree copy wins the name lookup, so we always ship it
        for rel in self.dep:
            name = _modname(rel)
            if rel.startswith("kernel/") or name not in self.by_name:
                self.by_name[name] = rel
        self.alias = {}
        self.softdep = {}
        self.builtin = set()
        self._read_optional("modules.alias", self._alias_line)
        self._read_optional("modules.softdep", self._softdep_line)
        self._read_optional("modules.builtin", self._builtin_line)

    def _read_optional(self, name, fn):
        path = os.path.join(self.mdir, name)
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                for line in f:
                    fn(line.split())

    def _alias_line(self, w):
        if len(w) == 3 and w[0] == "alias":
            self.alias.setdefault(w[1], []).append(w[2].replace("-", "_"))

    def _softdep_line(self, w):
        if len(w) >= 2 and w[0] == "softdep":
            self.softdep[w[1].replace("-", "_")] = [
                x for x in w[2:] if x not in ("pre:", "post:")]

    def _builtin_line(self, w):
        if w:
            self.builtin.add(_modname(w[0]))

    def resolve(self, names, required=()):
        out, seen, missing = [], set(), []
        todo = list(names)
        while todo:
            name = todo.pop(0)
            key = name.replace("-", "_")
            if key in seen:
                continue
            seen.add(key)
            if key in self.builtin:
                continue
            rel = self.by_name.get(key)
            if rel is None:
                targets = self.alias.get(name, [])
                if not targets and name in required:
                    missing.append(name)
                todo.extend(targets)
                continue
            out.append(rel)
            todo.extend(_modname(d) for d in self.dep.get(rel, []))
            todo.extend(self.softdep.get(key, []))
        if missing:
            raise RuntimeError("modules not found in %s: %s" %
                               (self.mdir, " ".join(missing)))
        return out


def resolve_modules(root, kver, names):
    return _Index(root, kver).resolve(names)


def _is_static(path):
    with open(path, "rb") as f:
        hdr = f.read(64)
        if hdr[:4] != b"\x7fELF" or hdr[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", hdr, 32)
        phentsize, phnum = struct.unpack_from("<HH", hdr, 54)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            if struct.unpack("<I", f.read(4))[0] == 3:      # PT_INTERP
                return False
    return True


def _read_module(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-q", "-d", "-c", path], check=True,
                              stdout=subprocess.PIPE).stdout
    return data


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def root_arch(root):
    if os.path.isdir(os.path.join(root, "usr", "lib", "aarch64-linux-gnu")):
        return "aarch64"
    return "x86_64"


def build(root, kver=None, ko=(), intree_only=False, root_updates=True,
          extra_modules=()):
    k = kver or roots.kver(root)
    if intree_only and ko:
        raise ValueError("intree_only=True with our modules in ko=%r" % (ko,))
    busybox = BUSYBOX
    if root_arch(root) == "aarch64":
        busybox = os.path.join(root, "bin", "busybox")
        if os.path.islink(busybox) or not os.path.exists(busybox):
            busybox = os.path.join(root, "usr", "bin", "busybox")
        extra_modules = tuple(extra_modules) + ("virtio_console",)
    if not os.path.exists(busybox) or not _is_static(busybox):
        raise RuntimeError("%s is not a static busybox: install busybox-static"
                           % busybox)
    idx = _Index(root, k)
    names = list(BASE_MODULES) + list(extra_modules)
    files = {}          # destination relpath under lib/modules/$k -> bytes
    for rel in idx.resolve(names, required=("virtio_balloon", "ext4") +
                           tuple(extra_modules)):
        if intree_only and not rel.startswith("kernel/"):
            continue
        files[_plain(rel)] = _read_module(os.path.join(idx.mdir, rel))
    if root_updates and not intree_only:
        for sub in ("updates", "extra"):
            top = os.path.join(idx.mdir, sub)
            for dirpath, _, fnames in os.walk(top):
                for fn in fnames:
                    if fn.endswith(_SUFFIXES):
                        full = os.path.join(dirpath, fn)
                        files[_plain(os.path.relpath(full, idx.mdir))] = _read_module(full)
    for path in ko:
        files[_plain("updates/" + os.path.basename(path))] = _read_module(path)

    h = hashlib.sha256()
    h.update(FORMAT.encode() + b"\0" + k.encode() + b"\0")
    with open(busybox, "rb") as f:
        h.update(_sha(f.read()).encode())
    for g in sorted(GUEST_FILES):
        with open(os.path.join(GUEST_DIR, g), "rb") as f:
            h.update(g.encode() + _sha(f.read()).encode())
    for n in INDEX_FILES:
        p = os.path.join(idx.mdir, n)
        if os.path.exists(p):
            with open(p, "rb") as f:
                h.update(n.encode() + _sha(f.read()).encode())
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + _sha(files[rel]).encode())
    outdir = roots.work_dir("initramfs")
    out = os.path.join(outdir, "%s-%s.cpio.gz" % (k, h.hexdigest()[:16]))
    if os.path.exists(out):
        return out

    tmp = tempfile.mkdtemp(prefix="build-", dir=outdir)
    try:
        t = os.path.join(tmp, "tree")
        for d in ("bin", "sbin", "proc", "sys", "dev", "tmp", "run", "etc",
                  "newroot", "lib/modules/" + k):
            os.makedirs(os.path.join(t, d))
        shutil.copy(busybox, os.path.join(t, "bin", "busybox"))
        os.symlink("busybox", os.path.join(t, "bin", "sh"))
        # the kernel's request_module() runs /sbin/modprobe
        os.symlink("/bin/busybox", os.path.join(t, "sbin", "modprobe"))
        for g, mode in GUEST_FILES.items():
            dst = os.path.join(t, g)
            shutil.copy(os.path.join(GUEST_DIR, g), dst)
            os.chmod(dst, mode)
        mt = os.path.join(t, "lib", "modules", k)
        for n in INDEX_FILES:
            p = os.path.join(idx.mdir, n)
            if os.path.exists(p):
                shutil.copy(p, mt)
        for rel, data in files.items():
            dst = os.path.join(mt, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as f:
                f.write(data)
        p = subprocess.run(["depmod", "-b", t, k], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            raise RuntimeError("depmod -b failed: %s" % p.stdout)
        listing = subprocess.run(["find", ".", "-mindepth", "1"], cwd=t, check=True,
                                 stdout=subprocess.PIPE).stdout
        cpio = subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"],
                              cwd=t, input=listing, stdout=subprocess.PIPE,
                              check=True).stdout
        part = os.path.join(tmp, "out.cpio.gz")
        with open(part, "wb") as f:
            f.write(gzip.compress(cpio, compresslevel=1, mtime=0))
        os.rename(part, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def contents(path):
    """{relpath: size} of the files in a built initramfs."""
    with open(path, "rb") as f:
        data = gzip.decompress(f.read())
    out, off = {}, 0
    while off + 110 <= len(data):
        hdr = data[off:off + 110]
        if hdr[:6] != b"070701":
            raise ValueError("%s: bad cpio header at %d" % (path, off))
        fields = [int(hdr[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[off + 110:off + 110 + namesize - 1].decode()
        off = (off + 110 + namesize + 3) & ~3
        if name == "TRAILER!!!":
            break
        out[name[2:] if name.startswith("./") else name] = (
            size if (mode & 0o170000) == 0o100000 else -1)
        off = (off + size + 3) & ~3
    return out


def read_member(path, member):
    """Bytes of one regular file in a built initramfs."""
    with open(path, "rb") as f:
        data = gzip.decompress(f.read())
    off = 0
    while off + 110 <= len(data):
        hdr = data[off:off + 110]
        fields = [int(hdr[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        size, namesize = fields[6], fields[11]
        name = data[off + 110:off + 110 + namesize - 1].decode()
        off = (off + 110 + namesize + 3) & ~3
        if name in (member, "./" + member):
            return data[off:off + size]
        if name == "TRAILER!!!":
            break
        off = (off + size + 3) & ~3
    raise KeyError(member)
