# SPDX-License-Identifier: GPL-2.0
"""Installed the way users install it: signed repositories (make repo).

- `make repo` with no key: the throwaway key is said in one line; the apt
  repository's InRelease and Release.gpg verify with the published keyring
  (and with no other key), the .sources file has Signed-By:, the rpm and
  repomd.xml are signed; BALLOON_GPG_KEY as a key id works as well.
- In each suite root, the repository is served over HTTP on 127.0.0.1 (a
  python3 web server started by the test) and the README's apt commands
  run in the root, with that suite's apt and dkms:
    a copy of the repository whose Release was changed after signing is
    refused (apt reports the bad signature, nothing gets installed);
    `apt install balloon-dkms` by name -> our modules for the root's kernel;
    version N+1 (a stamped copy of the tree, built and published into the
    same repository) -> `apt update && apt upgrade` -> only N+1 in dkms,
    rebuilt modules of version N+1 (dkms 2.8, 3.0 and 3.2 across the
    four suites);
    `apt purge balloon-dkms` -> the kernel's drivers are back, nothing of
    ours is left (the Secure Boot fallback rule neither).
- The RPM repository: Debian's dnf reads it (repoquery: name, version,
  Requires: dkms; signed metadata, a tampered repomd.xml is refused);
  rpm --checksig passes with the published key and fails with another.
"""
import glob
import os
import re
import shutil
import subprocess

import pytest

from lib import pkg, repo, roots
from test_packaging import MODULES, assert_intree, assert_ours

VERSION = pkg.VERSION
NEW = VERSION + ".1"


def sh(cmd, **kw):
    return pkg.sh(cmd, **kw)


@pytest.fixture(scope="module", autouse=True)
def host_tools():
    sh(". %s/scripts/lib.sh && need_host_pkgs apt-utils gnupg gpgv createrepo-c rpm dnf" % pkg.REPO)


@pytest.fixture(scope="module")
def keys():
    d = os.path.join(roots.work_dir("tests"), "repo-keys-%d" % os.getpid())
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    yield repo.make_key(d, "ours"), repo.make_key(d, "other")
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    """One web server for the module; each test publishes below it."""
    d = os.path.join(roots.work_dir("tests"), "repo-served-%d" % os.getpid())
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with repo.HttpServer(d) as s:
        s.root = d
        yield s
    shutil.rmtree(d, ignore_errors=True)


def gpgv(keyring, *files):
    return subprocess.run(["gpgv", "--keyring", keyring] + list(files),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.quick
def test_make_repo(work, keys, timing):
    """`make repo` with no key, then again from BALLOON_GPG_KEY as a key id
    of a keyring: layout, signatures, the one line about the throwaway key."""
    out = os.path.join(work, "out")
    env = dict(os.environ)
    env.pop("BALLOON_GPG_KEY", None)
    env.pop("BALLOON_REPO_URL", None)
    with pkg.timed(timing, "make repo (builds .deb and .rpm)"):
        p = subprocess.run(["make", "-s", "-C", pkg.REPO, "repo", "OUT=" + out], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=900, stdin=subprocess.DEVNULL)
    print(p.stdout)
    assert p.returncode == 0, p.stdout
    said = [l for l in p.stdout.splitlines() if "throwaway" in l]
    assert len(said) == 1 and said[0].startswith("balloon-dkms: BALLOON_GPG_KEY is not set"), said
    r = os.path.join(out, "repo")
    apt, rpmd = os.path.join(r, "apt"), os.path.join(r, "rpm")
    dist = os.path.join(apt, "dists", "stable")
    keyring = os.path.join(apt, "balloon-dkms-archive-keyring.gpg")
    deb = os.path.join(apt, "pool/main/b/balloon-dkms/balloon-dkms_%s_all.deb" % VERSION)
    rpm = os.path.join(rpmd, "packages", "balloon-dkms-%s-1.noarch.rpm" % VERSION)
    for f in (deb, rpm, keyring, os.path.join(dist, "main/binary-amd64/Packages.gz")):
        assert os.path.isfile(f), f
    # the keyring is a binary OpenPGP keyring (what Signed-By: takes) with
    # one public key and no secret one
    with open(keyring, "rb") as f:
        assert f.read(1)[0] & 0x80, "keyring is not binary OpenPGP"
    shown = sh("gpg --batch --with-colons --show-keys %s" % keyring).stdout
    assert len(re.findall(r"^pub:", shown, re.M)) == 1 and "\nsec:" not in shown, shown
    assert gpgv(keyring, os.path.join(dist, "InRelease")).returncode == 0
    assert gpgv(keyring, os.path.join(dist, "Release.gpg"), os.path.join(dist, "Release")).returncode == 0
    # ... and not with another key
    other = os.path.join(work, "other.gpg")
    sh("gpg --batch --dearmor -o %s %s" % (other, keys[1].public))
    assert gpgv(other, os.path.join(dist, "InRelease")).returncode != 0
    release = open(os.path.join(dist, "Release")).read()
    assert re.search(r"^Suite: stable$", release, re.M) and "main/binary-amd64/Packages" in release
    pk = sh("zcat %s/main/binary-amd64/Packages.gz" % dist).stdout
    assert re.search(r"^Package: balloon-dkms$", pk, re.M), pk
    assert re.search(r"^Version: %s$" % re.escape(VERSION), pk, re.M), pk
    sources = open(os.path.join(apt, "balloon-dkms.sources")).read()
    assert "Signed-By: /usr/share/keyrings/balloon-dkms-archive-keyring.gpg\n" in sources
    assert "URIs: http://127.0.0.1:8000/apt\n" in sources, sources
    conf = open(os.path.join(rpmd, "balloon-dkms.repo")).read()
    assert re.search(r"^gpgcheck=1$", conf, re.M) and re.search(r"^baseurl=http://127.0.0.1:8000/rpm$",
                                                                  conf, re.M), conf
    db = os.path.join(work, "rpmdb")
    os.makedirs(db)
    sh("rpm --dbpath %s --import %s/RPM-GPG-KEY-balloon-dkms" % (db, rpmd))
    assert "signatures OK" in sh("rpm --dbpath %s --checksig %s" % (db, rpm)).stdout
    asc = os.path.join(rpmd, "repodata", "repomd.xml.asc")
    assert gpgv(keyring, asc, os.path.join(rpmd, "repodata", "repomd.xml")).returncode == 0
    assert not [f for f in sh("find %s -type f" % r).stdout.split()
                if re.search(r"secret|private|\.key$|/gnupg", f)], "key material published"

    # BALLOON_GPG_KEY as a key id of the signer's own keyring; a second run
    # with the same key keeps the package published earlier
    home = os.path.join(work, "gnupg")
    os.makedirs(home, mode=0o700)
    sh("gpg --homedir %s --batch -q --import %s" % (home, keys[0].secret))
    env.update(GNUPGHOME=home, BALLOON_GPG_KEY=keys[0].fpr,
               BALLOON_REPO_URL="https://repo.example.org/balloon-dkms")
    r2 = os.path.join(work, "repo2")
    for _ in range(2):
        p = subprocess.run([os.path.join(pkg.REPO, "scripts/mkrepo.sh"), r2, deb, rpm], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
        print(p.stdout)
        assert p.returncode == 0 and "throwaway" not in p.stdout, p.stdout
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"])
    shown = sh("gpg --batch --with-colons --show-keys %s/apt/balloon-dkms-archive-keyring.gpg" % r2).stdout
    assert keys[0].fpr in shown, shown
    assert "URIs: https://repo.example.org/balloon-dkms/apt\n" in open(
        os.path.join(r2, "apt", "balloon-dkms.sources")).read()
    # a key id that is not there is refused with one line
    env["BALLOON_GPG_KEY"] = "0123456789ABCDEF0123456789ABCDEF01234567"
    p = subprocess.run([os.path.join(pkg.REPO, "scripts/mkrepo.sh"), r2, deb], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert p.returncode != 0 and re.search(r"^balloon-dkms: .*no such secret key", p.stdout, re.M), p.stdout


def tamper(src, dst, url, new_url):
    """A copy of the apt repository, served at new_url, whose Release (and
    the text InRelease signs) was changed after signing."""
    shutil.copytree(src, dst)
    sources = os.path.join(dst, "apt", "balloon-dkms.sources")
    with open(sources) as f:
        text = f.read()
    with open(sources, "w") as f:
        f.write(text.replace("URIs: %s/apt\n" % url, "URIs: %s/apt\n" % new_url))
    dist = os.path.join(dst, "apt", "dists", "stable")
    for name in ("InRelease", "Release"):
        path = os.path.join(dist, name)
        text = open(path).read()
        changed = text.replace("Label: balloon-dkms\n", "Label: balloon-dkms-changed\n", 1)
        assert changed != text, name
        with open(path, "w") as f:
            f.write(changed)


def installed(r):
    return r.run("dpkg-query -W -f='${Status}' balloon-dkms 2>/dev/null", check=False).stdout


def upgrade_to_new(r, suite, base, url, key, deb, deb2, upgrade, timing):
    """Version N+1 published into the same repository; the README's
    upgrade commands; only N+1 is left in dkms, its modules rebuilt."""
    repo.publish(base, [deb2], key, url)
    pool = os.listdir(os.path.join(base, "apt/pool/main/b/balloon-dkms"))
    assert sorted(pool) == sorted(os.path.basename(d) for d in (deb, deb2)), pool
    with pkg.timed(timing, "%s apt upgrade from the repository" % suite):
        res = repo.run_block(r, upgrade, url)
    for cmd, rc, out in res:
        assert rc == 0, "%s -> rc %d\n%s" % (cmd, rc, out[-3000:])
    assert "balloon-dkms" in res[-1][2], res[-1][2]
    assert_ours(r, version=NEW)
    st = r.dkms_status()
    assert re.search(r"%s, %s, x86_64: installed" % (re.escape(NEW), re.escape(r.kver)), st), st
    assert not re.search(r"\b%s[,:/]" % re.escape(VERSION), st.replace(NEW, "NEW")), st
    assert not os.path.exists(os.path.join(r.path, "usr/src/balloon-" + VERSION))
    # rebuilt: the installed modules are fresh builds of N+1
    for m in MODULES:
        assert r.run("modinfo -k %s -F version %s" % (r.kver, m)).stdout.strip() == NEW


@pytest.mark.parametrize("suite", roots.suites_quick_on_bookworm())
def test_apt_repository(suite, server, keys, work, timing):
    """The README's apt commands against the served repository, in the
    suite's root: tampered Release refused, install by name, upgrade to
    N+1 through apt, purge.  See the module docstring."""
    deb = pkg.build_deb()
    deb2 = pkg.build_deb(NEW)
    base = os.path.join(server.root, suite)
    shutil.rmtree(base, ignore_errors=True)
    url = "%s/%s" % (server.url, suite)
    repo.publish(base, [deb], keys[0], url)
    tamper(base, base + "-tampered", url, url + "-tampered")
    install = repo.readme_block("apt-install")
    upgrade = repo.readme_block("apt-upgrade")
    with pkg.Root(suite) as r:
        assert_intree(r)
        r.apt("install curl")
        # Only our repository from here on: `apt upgrade` must not pull
        # whatever the Debian mirror has newer than the cached root.
        r.run("mkdir -p /etc/apt/sources.off && mv /etc/apt/sources.list* /etc/apt/sources.off/ "
              "&& mkdir /etc/apt/sources.list.d")
        with open(os.path.join(r.path, "etc/apt/apt.conf.d/99balloon-test"), "w") as f:
            f.write('APT::Get::Assume-Yes "true";\n')

        # 1. a Release changed after signing: refused, nothing installed
        res = repo.run_block(r, install, url + "-tampered")
        upd = [x for x in res if x[0] == "apt update"][0]
        assert re.search(r"BADSIG|signatures? (?:were|was) invalid|[Bb]ad signature|"
                         r"not signed|verification failed|invalid signature", upd[2]), upd[2]
        assert res[-1][0] == "apt install balloon-dkms" and res[-1][1] != 0, res[-1]
        assert "install ok installed" not in installed(r)
        assert r.leftovers() == []

        # 2. install by name from the good repository
        with pkg.timed(timing, "%s apt install from the repository" % suite):
            res = repo.run_block(r, install, url)
        for cmd, rc, out in res:
            assert rc == 0, "%s -> rc %d\n%s" % (cmd, rc, out[-3000:])
        assert "install ok installed" in installed(r)
        assert "%s/apt" % url in r.run("apt-cache policy balloon-dkms").stdout
        assert_ours(r)
        st = r.dkms_status()
        assert re.search(r"balloon[/,] ?%s, %s, x86_64: installed" % (re.escape(VERSION),
                                                                     re.escape(r.kver)), st), st
        assert os.path.exists(os.path.join(r.path, "lib/modprobe.d/balloon-dkms-fallback.conf"))

        # 3. version N+1 published into the same repository -> apt upgrade
        upgrade_to_new(r, suite, base, url, keys[0], deb, deb2, upgrade, timing)

        # 4. purge: the kernel's drivers back, nothing of ours left
        with pkg.timed(timing, "%s apt purge" % suite):
            p = r.run("apt purge balloon-dkms", check=False)
        print(p.stdout[-2000:])
        assert p.returncode == 0, p.stdout
        assert "no packages found" in r.run("dpkg-query -W balloon-dkms 2>&1", check=False).stdout
        assert_intree(r)
        assert r.leftovers() == [], r.leftovers()
        for f in ("lib/modprobe.d/balloon-dkms-fallback.conf", "usr/libexec/balloon-dkms"):
            assert not os.path.lexists(os.path.join(r.path, f)), f
        assert "balloon-dkms-fallback" not in r.run("modprobe -c").stdout


def test_rpm_repository(server, keys, work, timing):
    """Debian's dnf reads the published RPM repository with the README's
    .repo file and key (metadata signature checked: repo_gpgcheck=1);
    rpm --checksig passes with the published key, fails with another."""
    rpm = pkg.build_rpm()
    base = os.path.join(server.root, "rpm-test")
    shutil.rmtree(base, ignore_errors=True)
    url = "%s/rpm-test" % server.url
    repo.publish(base, [rpm], keys[0], url)
    lines = repo.readme_block("dnf-install")
    assert len(lines) == 4 and lines[-1] == "dnf install balloon-dkms", lines
    reposd = os.path.join(work, "yum.repos.d")
    db = os.path.join(work, "rpmdb")
    os.makedirs(reposd)
    os.makedirs(db)
    # the README's lines, into a scratch directory and rpm database
    env = "REPO=%s; " % url
    sh(env + lines[1].replace("/etc/yum.repos.d", reposd))
    assert lines[2].startswith("rpm --import ")
    sh(env + lines[2].replace("rpm --import", "rpm --dbpath %s --import" % db, 1))

    def dnf(args, check=True, quiet="-q"):
        cmd = ("timeout 300 dnf " + quiet + " -y --installroot=%s/dnfroot --releasever=1 "
               "--setopt=reposdir=%s --setopt=cachedir=%s/dnfcache %s" % (work, reposd, work, args))
        return sh(cmd, check=check)

    def stop_dnf_agents():
        # dnf (librepo) checks repomd.xml.asc with a gpg-agent per repository
        # keyring in its cache and leaves it running: stop ours by home
        for home in glob.glob(os.path.join(work, "dnfcache", "*", "pubring")):
            subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    try:
        dnf_checks(dnf, stop_dnf_agents, rpm, base, db, keys, work, timing)
    finally:
        stop_dnf_agents()


def dnf_checks(dnf, stop_dnf_agents, rpm, base, db, keys, work, timing):
    with pkg.timed(timing, "dnf repoquery"):
        q = dnf("repoquery --qf '%{name} %{version}-%{release} %{arch}' balloon-dkms").stdout
    assert "balloon-dkms %s-1 noarch" % VERSION in q.splitlines(), q
    req = dnf("repoquery --requires balloon-dkms").stdout.split()
    assert "dkms" in req, req

    # rpm --checksig: the published key vs another one
    pub = os.path.join(base, "rpm", "packages", os.path.basename(rpm))
    p = sh("rpm --dbpath %s --checksig %s" % (db, pub), check=False)
    assert p.returncode == 0 and "signatures OK" in p.stdout, p.stdout
    db2 = os.path.join(work, "rpmdb-other")
    os.makedirs(db2)
    sh("rpm --dbpath %s --import %s" % (db2, keys[1].public))
    p = sh("rpm --dbpath %s --checksig %s" % (db2, pub), check=False)
    assert p.returncode != 0 and "SIGNATURES NOT OK" in p.stdout, p.stdout
    # the build itself carries no signature: the one above is rpmsign's
    p = sh("rpm --dbpath %s --checksig %s" % (db, rpm), check=False)
    assert "signatures" not in p.stdout.lower(), p.stdout

    # metadata changed after signing: dnf refuses the repository
    repomd = os.path.join(base, "rpm", "repodata", "repomd.xml")
    with open(repomd) as f:
        text = f.read()
    with open(repomd, "w") as f:
        f.write(text.replace("<revision>", "<revision>1", 1))
    stop_dnf_agents()
    shutil.rmtree(os.path.join(work, "dnfcache"))
    p = dnf("--setopt=skip_if_unavailable=False repoquery balloon-dkms", check=False, quiet="")
    print(p.stdout)
    assert p.returncode != 0 and "GPG signature verification error" in p.stdout, p.stdout
    assert "balloon-dkms-0:" not in p.stdout, p.stdout
