# SPDX-License-Identifier: GPL-2.0
"""Helpers for the repository, autopkgtest and Secure Boot fallback tests.

make_key(dir, name) -> Key       a passphrase-less RSA signing key made in a
                                 private GNUPGHOME under dir: .secret (path of
                                 the armored secret key, what BALLOON_GPG_KEY
                                 takes), .fpr, .public (armored public key)
publish(repodir, packages, key, url) -> CompletedProcess
                                 scripts/mkrepo.sh REPODIR PACKAGES... with
                                 BALLOON_GPG_KEY=key.secret and
                                 BALLOON_REPO_URL=url (key=None: unset, so
                                 mkrepo makes a throwaway key)
HttpServer(directory)            context manager: `python3 -m http.server`
                                 on 127.0.0.1 and an ephemeral port, serving
                                 directory; .url; stopped by its PID on exit
readme_block(name) -> [str]      the command lines of the README code block
                                 that follows <!-- test: NAME --> (comments
                                 and blank lines dropped)
run_block(root, lines, repo_url) -> [(cmd, rc, output)]
                                 those lines run one by one in a pkg.Root
                                 (the REPO=... line gets repo_url), each
                                 with its own result
autopkgtest(root, source_tree, deb) -> CompletedProcess
                                 Debian's autopkgtest (host) on the source
                                 tree and .deb, with the chroot virt server
                                 on the overlay of a pkg.Root (with /proc,
                                 /dev, /sys mounted in a private namespace)
"""
import os
import re
import shlex
import signal
import subprocess
import time

from lib import roots

REPO = roots.REPO


class Key:
    def __init__(self, home, fpr, secret, public):
        self.home, self.fpr, self.secret, self.public = home, fpr, secret, public


def _gpg(home, args, **kw):
    return subprocess.run(["gpg", "--homedir", home, "--batch", "-q"] + args,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=True, timeout=300, **kw)


def make_key(directory, name):
    home = os.path.join(directory, "gnupg-" + name)
    os.makedirs(home, mode=0o700)
    try:
        _gpg(home, ["--pinentry-mode", "loopback", "--passphrase", "",
                    "--quick-gen-key", "balloon-dkms test key %s" % name,
                    "rsa3072", "sign", "never"])
        out = _gpg(home, ["--with-colons", "--list-secret-keys"], text=True).stdout
        fpr = re.search(r"^fpr:+([0-9A-F]{40}):", out, re.M).group(1)
        secret = os.path.join(directory, name + ".secret.asc")
        public = os.path.join(directory, name + ".public.asc")
        with open(secret, "wb") as f:
            f.write(_gpg(home, ["--pinentry-mode", "loopback", "--passphrase", "",
                                "--armor", "--export-secret-keys", fpr]).stdout)
        with open(public, "wb") as f:
            f.write(_gpg(home, ["--armor", "--export", fpr]).stdout)
    finally:
        # the agent of this private home, by its home directory
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Key(home, fpr, secret, public)


def publish(repodir, packages, key, url, check=True):
    env = dict(os.environ, BALLOON_REPO_URL=url)
    env.pop("BALLOON_GPG_KEY", None)
    if key is not None:
        env["BALLOON_GPG_KEY"] = key.secret
    p = subprocess.run([os.path.join(REPO, "scripts", "mkrepo.sh"), repodir] + list(packages),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=env, timeout=900, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise RuntimeError("mkrepo.sh %s -> rc %d\n%s" % (repodir, p.returncode, p.stdout[-4000:]))
    return p


class HttpServer:
    """A static web server as a user would run one (README), on an
    ephemeral port of 127.0.0.1 only."""

    def __init__(self, directory, timeout=30):
        self.directory = directory
        self.timeout = timeout
        self.proc = None
        self.url = None

    def __enter__(self):
        self.proc = subprocess.Popen(
            ["python3", "-u", "-m", "http.server", "--bind", "127.0.0.1",
             "--directory", self.directory, "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.timeout
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            m = re.search(r"Serving HTTP on 127\.0\.0\.1 port (\d+)", line)
            if m:
                self.url = "http://127.0.0.1:%s" % m.group(1)
                # drain its request log so the pipe never fills
                self._drain = subprocess.Popen(["cat"], stdin=self.proc.stdout,
                                               stdout=subprocess.DEVNULL)
                return self
            if self.proc.poll() is not None:
                break
        self.__exit__()
        raise RuntimeError("python3 -m http.server did not start: %r" % line)

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)      # our own child, by PID
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        drain = getattr(self, "_drain", None)
        if drain:
            drain.wait(timeout=10)
        return False


def readme_block(name):
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    m = re.search(r"<!-- test: %s -->\s*\n```sh\n(.*?)\n```" % re.escape(name), text, re.S)
    if not m:
        raise AssertionError("README.md has no ```sh block after <!-- test: %s -->" % name)
    lines = []
    for line in m.group(1).splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def run_block(r, lines, repo_url, timeout=1800):
    results = []
    env = "REPO=%s; " % shlex.quote(repo_url)
    for line in lines:
        if line.startswith("REPO="):
            continue
        p = r.run(env + line, check=False, timeout=timeout)
        print("# %s -> rc %d\n%s" % (line, p.returncode, p.stdout[-3000:]))
        results.append((line, p.returncode, p.stdout))
    return results


_AUTOPKGTEST_NS = r'''
set -e
r=$1 cache=$2; shift 2
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
mount --rbind /sys "$r/sys"
mkdir -p "$r$cache"
mount --bind "$cache" "$r$cache"
exec "$@"
'''


def autopkgtest(r, source_tree, deb, timeout=1800):
    """The .deb's autopkgtests (autodep8 makes them from debian/control's
    Testsuite: autopkgtest-pkg-dkms) run by the host's autopkgtest with the
    `chroot` virt server in the overlay of pkg.Root r.  That overlay is
    thrown away afterwards, which is the revert that breaks-testbed tests
    ask for: hence --ignore-restrictions=breaks-testbed.  apt in the root
    keeps its downloads in the shared per-suite archive cache."""
    with open(os.path.join(r.path, "etc/apt/apt.conf.d/99balloon-cache"), "w") as f:
        f.write('Dir::Cache::Archives "%s/";\nAPT::Keep-Downloaded-Packages "true";\n'
                % r.archives)
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _AUTOPKGTEST_NS,
            "autopkgtest-ns", r.path, r.archives,
            "autopkgtest", "--ignore-restrictions=breaks-testbed", "--no-built-binaries",
            deb, source_tree.rstrip("/") + "/", "--", "chroot", r.path]
    with r.archive_lock():
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

