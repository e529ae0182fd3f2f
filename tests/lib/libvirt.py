# SPDX-License-Identifier: GPL-2.0
"""libvirt as users drive it, run from a suite root (never installed here).

    from lib import libvirt
    with libvirt.Daemon(roots.root("bookworm", "libvirt"), hugepages=True) as d:
        vm = vmlib.boot(lambda: d.domain(kernel, initrd, hugepages=True))
        d.virsh("setmem", vm.dom, "1G", "--live")
        d.dommemstat(vm.dom)          # {"actual": kB, ..., "last_update": s}
        vm.close()

Daemon(root, binds=(), hugepages=False, name="libvirtd")
    libvirtd of `root` (scripts/mkroot.sh SUITE libvirt) chrooted in a
    throwaway overlay of it, in a private mount namespace (as
    lib.roots.chroot_argv does for QEMU) and a PID namespace of its own
    (PID 1 a reaper whose one child is libvirtd: the QEMUs die with it,
    and it with the test process, even one killed outright): a fresh /proc,
    the host's /dev and /sys, a tmpfs on /run (its sockets and pid files), with hugepages=True a
    hugetlbfs on /run/hugepages (qemu.conf hugetlbfs_mount), and bind-mounted
    at their host paths: $BALLOON_WORK/vm (the VMs' run directories) and
    `binds` (the kernel's and initramfs' directories).  qemu.conf: QEMU runs
    as root, no security driver, no cgroups, no private /dev, its output
    straight to a file (no virtlogd).  Unix sockets without auth.
    start() waits until `virsh version` answers; stop() (and leaving the
    `with` block, failure or not) destroys the domains it started, ends
    libvirtd by its PID (SIGTERM; then SIGKILL of `unshare`, which takes the
    whole PID namespace with it), kills any QEMU of ours left (by its host
    PID, checked to be in that namespace still) and drops the overlay.
    .log_path                   libvirtd's own stderr ($BALLOON_WORK/libvirt/...,
                                kept three days)
    .pid                        libvirtd's host PID
    .host_pid(nspid) -> int     host PID of a process of its namespace
    .virsh(*args, timeout=120, check=True) -> str
                                virsh -c qemu:///system ARGS, run in the
                                daemon's namespace and root (nsenter)
    .version() -> (major, minor, micro) of the daemon's libvirt
    .qemu_version() -> str      the hypervisor version virsh reports
    .dominfo(dom) -> {key: str}
    .dommemstat(dom) -> {name: int}
    .domain(kernel, initrd, append="", name=None, mem_mb=2048, smp=2,
            hugepages=False, stats_period=2, **vm_kw) -> Domain
                                a VM (not started) whose start() creates a
                                transient TCG domain (type 'qemu', q35,
                                <cpu mode='maximum'/>) from domain_xml();
                                hugepages=True needs Daemon(hugepages=True)
                                and a pool (lib.hugepages.reserve);
                                arch="aarch64" (a root with
                                qemu-system-aarch64: sid's): machine virt,
                                the kernel as lib.vm's arm64 Image (bind its
                                directory), the shell on a virtconsole

Domain(daemon, ...)              a lib.vm.VM run by libvirt: console on the
    first serial port (a file in the run directory), the guest shell on the
    second (<serial type='unix'>, mode bind; on aarch64, whose virt machine
    has one serial port, a <console type='unix'> virtconsole, hvc0), so VM.wait_boot(), shell(),
    sh(), check() and lib.vm.boot() work as for any VM; cmd(name, **args)
    goes through `virsh qemu-monitor-command` (QMP behind libvirt's back:
    queries such as query-balloon, and hang_report()'s registers and
    SysRq keys; never a change libvirt should know of).  VM methods that
    wait on QMP events (wait_actual, balloon_to, guest_stats, device_del)
    do not work here: drive the balloon with virsh.
    .dom                        the domain name
    .xml                        the domain XML it was created from
    .qemu_log                   libvirt's log of this QEMU
    .qemu_pid                   host PID (libvirt's pid file holds the
                                namespace's)
    close()                     virsh destroy, then SIGKILL by PID if QEMU
                                is still there

domain_xml(name, kernel, initrd, cmdline, console, shell_sock, mem_mb=2048,
           smp=2, hugepages=False, stats_period=2, arch="x86_64") -> str
"""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from xml.sax.saxutils import escape

from . import roots
from . import vm as vmlib

QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""
# only with a hugetlbfs there: libvirt refuses a mount point of another type
QEMU_CONF_HUGE = 'hugetlbfs_mount = "/run/hugepages"\n'

LIBVIRTD_CONF = """\
unix_sock_group = "root"
unix_sock_ro_perms = "0777"
unix_sock_rw_perms = "0770"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:stderr"
"""

# The namespace: an overlay of the root, /proc, /dev, /sys, a tmpfs on
# /run, optionally hugetlbfs, then the binds at their host paths; exec
# keeps one PID (libvirtd's).
_NS_SCRIPT = r'''
set -e
r=$1 ovl=$2 huge=$3; shift 3
mount -t overlay overlay -o "lowerdir=$r,upperdir=$ovl/upper,workdir=$ovl/work" "$ovl/merged"
r=$ovl/merged
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$r/dev/pts" 2>/dev/null || true
mount --rbind /sys "$r/sys"
mount -t tmpfs -o mode=0755 tmpfs "$r/run"
mkdir -p "$r/run/lock" "$r/run/hugepages"
if [ "$huge" = 1 ]; then mount -t hugetlbfs -o pagesize=2M hugetlbfs "$r/run/hugepages"; fi
while [ "$1" != -- ]; do
	mkdir -p "$r$1"
	mount --bind "$1" "$r$1"
	shift
done
shift
exec chroot "$r" "$@"
'''

# PID 1 of the daemon's PID namespace: reaps every orphan (libvirt
# daemonizes QEMU, and kills its capability probes; a PID 1 that does not
# reap leaves them zombies, and libvirtd then waits on them for ever) and
# exits with its one child, libvirtd: the kernel then kills the rest.
_REAPER = r'''
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
while True:
    try:
        p, st = os.wait()
    except ChildProcessError:
        sys.exit(1)
    if p == pid:
        sys.exit(os.waitstatus_to_exitcode(st) & 0xff)
'''

ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "HOME": "/root", "LC_ALL": "C.UTF-8"}


class LibvirtError(RuntimeError):
    pass


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(w) for w in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def domain_xml(name, kernel, initrd, cmdline, console, shell_sock, mem_mb=2048,
               smp=2, hugepages=False, stats_period=2, arch="x86_64"):
    e = escape
    backing = "  <memoryBacking><hugepages/></memoryBacking>\n" if hugepages else ""
    if arch == "aarch64":
        # virt (the device tree, no ACPI without firmware); its one PL011
        # is the console, the shell a virtconsole (guest hvc0); QEMU's
        # own pointer authentication algorithm, cheaper under TCG
        machine, features = "virt", ""
        shell = """    <console type='unix'>
      <source mode='bind' path='{shell}'/>
      <target type='virtio' port='1'/>
    </console>
"""
        extra = """  <qemu:commandline>
    <qemu:arg value='-global'/>
    <qemu:arg value='max-arm-cpu.pauth-impdef=on'/>
  </qemu:commandline>
"""
    else:
        machine, features, extra = "q35", "  <features><acpi/></features>\n", ""
        shell = """    <serial type='unix'>
      <source mode='bind' path='{shell}'/>
      <target port='1'/>
    </serial>
"""
    return """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>{mem}</memory>
  <currentMemory unit='MiB'>{mem}</currentMemory>
{backing}  <vcpu>{smp}</vcpu>
  <os>
    <type arch='{arch}' machine='{machine}'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
{features}  <cpu mode='maximum'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-{arch}</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='{console}'/>
      <target port='0'/>
    </serial>
""".format(name=e(name), mem=int(mem_mb), backing=backing, smp=int(smp), arch=arch,
           machine=machine, features=features, kernel=e(kernel), initrd=e(initrd),
           cmdline=e(cmdline), console=e(console)) + shell.format(shell=e(shell_sock)) + \
        """    <memballoon model='virtio'>
      <stats period='{period}'/>
    </memballoon>
  </devices>
{extra}</domain>
""".format(period=int(stats_period), extra=extra)


def _pid_alive(pid, ns=None):
    """pid runs (not a zombie) and, with ns, still in that PID namespace
    (a PID the kernel has handed to someone else since is not ours)."""
    try:
        if ns is not None and os.readlink("/proc/%d/ns/pid" % pid) != ns:
            return False
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


class Daemon:
    def __init__(self, root, binds=(), hugepages=False, name="libvirtd"):
        self.root = root
        self.binds = [os.path.abspath(b) for b in binds]
        self.hugepages = hugepages
        # daemons of earlier runs (their libvirtd.log): keep three days
        top = roots.work_dir("libvirt")
        for e in os.listdir(top):
            p = os.path.join(top, e)
            try:
                if time.time() - os.stat(p).st_mtime > 3 * 86400:
                    shutil.rmtree(p, ignore_errors=True)
            except FileNotFoundError:
                pass
        self.base = tempfile.mkdtemp(prefix=name + "-", dir=roots.work_dir("libvirt"))
        self.ovl = os.path.join(self.base, "ovl")
        self.log_path = os.path.join(self.base, "libvirtd.log")
        self.proc = None        # unshare (our child)
        self.pid = None         # libvirtd, child of the namespace's PID 1 (the reaper)
        self.domains = []

    # files of the daemon's view, read from the host through the overlay's
    # upper layer (what it wrote) or its /proc/PID/root (tmpfs /run)
    def upper(self, path):
        return os.path.join(self.ovl, "upper", path.lstrip("/"))

    def inside(self, path):
        return "/proc/%d/root/%s" % (self.pid, path.lstrip("/"))

    def host_pid(self, nspid):
        """The host PID of the process `nspid` of the daemon's PID namespace."""
        ns = os.readlink("/proc/%d/ns/pid" % self.pid)
        for e in os.listdir("/proc"):
            if not e.isdigit():
                continue
            try:
                if os.readlink("/proc/%s/ns/pid" % e) != ns:
                    continue
                with open("/proc/%s/status" % e) as f:
                    for line in f:
                        if line.startswith("NSpid:"):
                            if int(line.split()[-1]) == nspid:
                                return int(e)
                            break
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        return None

    def start(self):
        for d in ("upper", "work", "merged"):
            os.makedirs(os.path.join(self.ovl, d))
        etc = self.upper("/etc/libvirt")
        os.makedirs(etc)
        for f in ("qemu.conf", "libvirtd.conf"):
            src = os.path.join(self.root, "etc", "libvirt", f)
            dst = os.path.join(etc, f)
            if os.path.exists(src):
                shutil.copy2(src, dst)
            with open(dst, "a") as out:
                out.write("\n# balloon-dkms tests\n" +
                          (LIBVIRTD_CONF if f == "libvirtd.conf" else
                           QEMU_CONF + (QEMU_CONF_HUGE if self.hugepages else "")))
        self._accounts()
        binds = [roots.work_dir("vm")] + self.binds
        seen, bl = set(), []
        for b in binds:
            if b not in seen:
                seen.add(b)
                bl.append(b)
        # a PID namespace of its own, PID 1 the reaper: the QEMUs libvirtd
        # starts (daemonized) become its children, and all of them die with
        # libvirtd; --kill-child and PR_SET_PDEATHSIG take it down with us
        # even if this test process is killed outright
        argv = (["unshare", "--mount", "--propagation", "private",
                 "--pid", "--fork", "--kill-child",
                 sys.executable, "-c", _REAPER,
                 "sh", "-c", _NS_SCRIPT, "vmh-libvirt", self.root, self.ovl,
                 "1" if self.hugepages else "0"] + bl +
                ["--", "/usr/sbin/libvirtd"])
        with open(os.path.join(self.base, "cmdline.json"), "w") as f:
            json.dump(argv, f, indent=1)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=ENV,
                                         preexec_fn=vmlib._pdeathsig)
        deadline = time.monotonic() + 120
        while self.pid is None:
            # unshare -> the reaper -> libvirtd
            kids = [k for r in _children(self.proc.pid) for k in _children(r)]
            if kids:
                self.pid = kids[0]
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                raise LibvirtError("libvirtd never started (rc %s):\n%s" % (
                    self.proc.poll(), self.log_tail()))
            else:
                time.sleep(0.05)
        while True:
            if self.proc.poll() is not None:
                raise LibvirtError("libvirtd exited (rc %s):\n%s" % (
                    self.proc.returncode, self.log_tail()))
            p = self._virsh(["version"], timeout=60)
            if p.returncode == 0 and "hypervisor" in p.stdout.lower():
                self.version_text = p.stdout
                return self
            if time.monotonic() > deadline:
                raise LibvirtError("libvirtd not answering `virsh version` after 120 s:\n"
                                   "%s\n--- libvirtd log:\n%s" % (p.stdout, self.log_tail()))
            time.sleep(0.5)

    def _accounts(self):
        """The QEMU driver resolves its compiled-in user and group
        (Debian: libvirt-qemu, kvm) before it reads qemu.conf; without
        libvirt-daemon-system's postinst nothing made them: add them in
        the overlay (QEMU still runs as root, qemu.conf says so)."""
        for f, lines in (("passwd", ["libvirt-qemu:x:64055:64055:Libvirt Qemu:"
                                     "/var/lib/libvirt:/usr/sbin/nologin"]),
                         ("group", ["libvirt-qemu:x:64055:", "kvm:x:64056:",
                                    "libvirt:x:64057:"])):
            with open(os.path.join(self.root, "etc", f)) as src:
                text = src.read()
            have = {line.split(":")[0] for line in text.splitlines()}
            add = [line for line in lines if line.split(":")[0] not in have]
            if add:
                with open(self.upper("/etc/" + f), "w") as out:
                    out.write(text + "".join(line + "\n" for line in add))

    def log_tail(self, n=60):
        try:
            with open(self.log_path, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def _virsh(self, args, timeout=120):
        argv = ["nsenter", "-t", str(self.pid), "-m", "-r", "-w",
                "virsh", "-c", "qemu:///system"] + list(args)
        try:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=ENV,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(argv, -1, "timed out after %s s: %s" % (
                timeout, e.stdout or ""))

    def virsh(self, *args, timeout=120, check=True):
        p = self._virsh(args, timeout)
        if check and p.returncode != 0:
            raise LibvirtError("virsh %s -> rc %d:\n%s\n--- libvirtd log:\n%s" % (
                " ".join(map(shlex.quote, args)), p.returncode, p.stdout, self.log_tail(20)))
        return p.stdout

    def version(self):
        m = re.search(r"(?:Running against daemon|Using library):(?: libvirt)?\s*([\d.]+)",
                      self.version_text)
        return tuple(int(x) for x in m.group(1).split("."))

    def qemu_version(self):
        m = re.search(r"Running hypervisor: QEMU ([\d.]+)", self.version_text)
        return m.group(1) if m else None

    def dominfo(self, dom):
        out = {}
        for line in self.virsh("dominfo", dom).splitlines():
            k, sep, v = line.partition(":")
            if sep:
                out[k.strip()] = v.strip()
        return out

    def dommemstat(self, dom):
        out = {}
        for line in self.virsh("dommemstat", dom).splitlines():
            w = line.split()
            if len(w) == 2 and w[1].lstrip("-").isdigit():
                out[w[0]] = int(w[1])
        return out

    def domain(self, kernel, initrd, append="", name=None, **kw):
        n = len(self.domains)
        d = Domain(self, kernel, initrd, append,
                   name=name or "lv%d-%d" % (os.getpid(), n), **kw)
        self.domains.append(d)
        return d

    def stop(self):
        for d in self.domains:
            try:
                d.close()
            except Exception as e:      # go on: the daemon must go too
                print("libvirt: closing %s: %s" % (d.dom, e))
        if self.proc is not None and self.proc.poll() is None:
            if self.pid and _pid_alive(self.pid):
                os.kill(self.pid, signal.SIGTERM)       # libvirtd, by PID
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # unshare, our child: --kill-child SIGKILLs libvirtd, and
                # the kernel every other process of its PID namespace
                self.proc.kill()
                self.proc.wait(timeout=30)
        for d in self.domains:
            d.kill_qemu()
        # the namespace (and the overlay mounted in it) went with its last
        # process; libvirt's QEMU logs were copied to the VMs' run directories
        shutil.rmtree(self.ovl, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
        return False


class _LibvirtProc:
    """What lib.vm.VM needs of self.proc: poll(), pid."""

    def __init__(self, pid, ns):
        self.pid, self.ns = pid, ns
        self.returncode = None

    def poll(self):
        if self.returncode is None and not _pid_alive(self.pid, self.ns):
            self.returncode = -1
        return self.returncode


class Domain(vmlib.VM):
    def __init__(self, daemon, kernel, initrd, append="", *, name, mem_mb=2048, smp=2,
                 hugepages=False, stats_period=2, **kw):
        kw.setdefault("boot_timeout", 300)
        if hugepages and not daemon.hugepages:
            raise ValueError("a hugepage-backed domain needs Daemon(hugepages=True)")
        super().__init__(kernel, initrd, append, name=name, mem_mb=mem_mb, smp=smp, **kw)
        self.daemon = daemon
        self.dom = name
        self.hugepages = hugepages
        self.stats_period = stats_period
        self.qemu_pid = self.qemu_ns = None
        self.qemu_log = daemon.upper("/var/log/libvirt/qemu/%s.log" % name)
        if self.arch == "aarch64":
            cmdline = "console=ttyAMA0 panic=-1 vmh.shell=hvc0 " + append
        else:
            cmdline = "console=ttyS0 panic=-1 " + vmlib.BASE_APPEND + " " + append
        # self.kernel: on arm64 the Image lib.vm unpacked
        self.xml = domain_xml(name, os.path.abspath(self.kernel), os.path.abspath(initrd),
                              cmdline.strip(), self.console_path, self.shell_path, mem_mb,
                              smp, hugepages, stats_period, self.arch)

    def start(self):
        path = os.path.join(self.rundir, "domain.xml")
        with open(path, "w") as f:
            f.write(self.xml)
        self.cmdline = ["virsh", "create", path]
        with vmlib._REG_LOCK:
            vmlib._REGISTRY.append(self)
        self.started_at = time.monotonic()
        out = self.daemon.virsh("create", path, timeout=300)
        pidfile = self.daemon.inside("/run/libvirt/qemu/%s.pid" % self.dom)
        with open(pidfile) as f:
            nspid = int(f.read().strip())
        self.qemu_pid = self.daemon.host_pid(nspid)
        if self.qemu_pid is None:
            raise vmlib.VMError("%s: no QEMU with PID %d in libvirtd's namespace\n%s" % (
                self.dom, nspid, self._context()))
        self.qemu_ns = os.readlink("/proc/%d/ns/pid" % self.qemu_pid)
        self.proc = _LibvirtProc(self.qemu_pid, self.qemu_ns)
        with open(os.path.join(self.rundir, "virsh-create.txt"), "w") as f:
            f.write(out)
        return self

    def cmd(self, name, **args):
        self.check()
        out = self.daemon.virsh("qemu-monitor-command", self.dom,
                                json.dumps({"execute": name, "arguments": args}))
        reply = json.loads(out)
        if "error" in reply:
            raise LibvirtError("QMP %s via libvirt: %s" % (name, reply["error"]))
        return reply["return"]

    def kill_qemu(self):
        if self.qemu_pid and _pid_alive(self.qemu_pid, self.qemu_ns):
            os.kill(self.qemu_pid, signal.SIGKILL)      # the QEMU we created, by PID
            deadline = time.monotonic() + 30
            while _pid_alive(self.qemu_pid, self.qemu_ns) and time.monotonic() < deadline:
                time.sleep(0.1)

    def close(self):
        if self.closed_at is not None:
            return
        if self._timer:
            self._timer.cancel()
        if self.started_at is not None and self.daemon.proc is not None \
                and self.daemon.proc.poll() is None:
            self.daemon.virsh("destroy", self.dom, check=False, timeout=60)
        self.kill_qemu()
        if self._shell:
            self._shell.close()
        self._scan_console()
        self.closed_at = time.monotonic()
        if os.path.exists(self.qemu_log):
            shutil.copy(self.qemu_log, os.path.join(self.rundir, "qemu.log"))
            self.qemu_log = os.path.join(self.rundir, "qemu.log")
