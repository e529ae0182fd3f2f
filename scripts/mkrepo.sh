#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# mkrepo.sh [REPODIR] [PACKAGE...] - publish balloon-dkms as a signed apt
# repository and a signed dnf/yum repository under REPODIR (default
# out/repo; `make repo`):
#
#   REPODIR/apt/  dists/stable/{InRelease,Release,Release.gpg},
#                 dists/stable/main/binary-<arch>/Packages{,.gz}, pool/,
#                 balloon-dkms.sources (deb822, with Signed-By:) and
#                 balloon-dkms-archive-keyring.gpg (binary public keyring)
#   REPODIR/rpm/  the rpm signed with rpmsign, repodata/ (createrepo_c, with
#                 repomd.xml.asc), balloon-dkms.repo (gpgcheck=1,
#                 repo_gpgcheck=1) and RPM-GPG-KEY-balloon-dkms
#
# With no PACKAGE it builds the .deb and the .rpm of this tree first
# (scripts/mkdeb.sh, scripts/mkrpm.sh, into the parent of REPODIR); with
# PACKAGEs (.deb and .rpm files) it publishes those.  Packages published
# earlier stay in the repository when it is signed with the same key, so
# publishing version N+1 offers an upgrade; a different key starts the
# repository afresh.
#
# Environment:
#   BALLOON_GPG_KEY   the signing key: a key id or fingerprint of a secret
#                     key in $GNUPGHOME (or ~/.gnupg), or the path of an
#                     armored secret-key file.  Unset: a throwaway key is
#                     made in a temporary GNUPGHOME and deleted at the end
#                     (said in one line); only its public half is published.
#   BALLOON_REPO_URL  where REPODIR will be served (default
#                     http://127.0.0.1:8000); it goes into the .sources and
#                     .repo files as <url>/apt and <url>/rpm.
#
# Why apt-ftparchive (apt-utils) and gpg, not reprepro or aptly: the
# repository is one package in one suite, regenerated from the files in
# its pool on every run.  apt-ftparchive writes Packages and Release from
# the directory as it is and keeps no database next to it, so the
# published directory is the whole state: it can be copied, served by any
# static web server, and rebuilt from its pool.  reprepro and aptly keep a
# package database that would have to be carried along with it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
top=$(cd "$here/.." && pwd)

repo=${1:-$top/out/repo}
[ $# -gt 0 ] && shift
case $repo in
*.deb | *.rpm) die "mkrepo.sh: the first argument is the repository directory, not a package ($repo)" ;;
esac
mkdir -p "$repo"
repo=$(cd "$repo" && pwd)
url=${BALLOON_REPO_URL:-http://127.0.0.1:8000}
url=${url%/}
suite=stable
archs="amd64 arm64 armhf i386 ppc64el riscv64 s390x"

need_host_pkgs apt-utils gnupg createrepo-c rpm

work=$(mktemp -d)
cleanup() {
	# the gpg-agent of our temporary GNUPGHOME, by its home directory
	[ -d "$work/gnupg" ] && gpgconf --homedir "$work/gnupg" --kill gpg-agent 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

# ----------------------------------------------------------- the packages
debs=() rpms=()
if [ $# -eq 0 ]; then
	pkgout=$(dirname "$repo")
	debs+=("$("$here/mkdeb.sh" "$pkgout" | tail -n 1)")
	rpms+=("$("$here/mkrpm.sh" "$pkgout" | tail -n 1)")
fi
for p in "$@"; do
	[ -f "$p" ] || die "mkrepo.sh: no such package: $p"
	case $p in
	*.deb) debs+=("$(cd "$(dirname "$p")" && pwd)/$(basename "$p")") ;;
	*.noarch.rpm | *.x86_64.rpm) rpms+=("$(cd "$(dirname "$p")" && pwd)/$(basename "$p")") ;;
	*.src.rpm) ;;
	*) die "mkrepo.sh: not a .deb or binary .rpm: $p" ;;
	esac
done

# ----------------------------------------------------------- the key
sel=()
sign=(gpg --batch -q --yes)
if [ -z "${BALLOON_GPG_KEY:-}" ]; then
	export GNUPGHOME=$work/gnupg
	mkdir -m 700 "$GNUPGHOME"
	gpg --batch -q --pinentry-mode loopback --passphrase '' \
		--quick-gen-key "balloon-dkms throwaway repository key" rsa3072 sign never 2>/dev/null ||
		die "mkrepo.sh: could not make a throwaway gpg key"
	sign+=(--pinentry-mode loopback --passphrase '')
	throwaway=1
elif [ -f "$BALLOON_GPG_KEY" ]; then
	export GNUPGHOME=$work/gnupg
	mkdir -m 700 "$GNUPGHOME"
	gpg --batch -q --import "$BALLOON_GPG_KEY" 2>/dev/null ||
		die "mkrepo.sh: BALLOON_GPG_KEY=$BALLOON_GPG_KEY: not a readable armored secret key"
	throwaway=
else
	sel=("$BALLOON_GPG_KEY")
	throwaway=
fi
fpr=$(gpg --batch --with-colons --list-secret-keys "${sel[@]}" 2>/dev/null |
	awk -F: '$1 == "fpr" { print $10; exit }') || true
[ -n "$fpr" ] || die "mkrepo.sh: BALLOON_GPG_KEY=$BALLOON_GPG_KEY: no such secret key in ${GNUPGHOME:-~/.gnupg}"
if [ -n "$throwaway" ]; then
	echo "balloon-dkms: BALLOON_GPG_KEY is not set: signed with a throwaway key $fpr (its secret half is deleted now; set BALLOON_GPG_KEY to publish upgrades with the same key)" >&2
fi
sign+=(--local-user "$fpr" --digest-algo SHA512)

# A repository signed with another key starts afresh: its clients trust
# only that other key.
keyring=$repo/apt/balloon-dkms-archive-keyring.gpg
if [ -e "$repo/apt" ] || [ -e "$repo/rpm" ]; then
	old=$(gpg --batch --with-colons --show-keys "$keyring" 2>/dev/null | awk -F: '$1 == "fpr" { print $10; exit }') || true
	if [ "$old" != "$fpr" ]; then
		[ -n "$old" ] && log "mkrepo: $repo was signed with key $old; starting it afresh"
		rm -rf "$repo/apt" "$repo/rpm"
	fi
fi

# ----------------------------------------------------------- apt
log "mkrepo: apt repository in $repo/apt"
pool=$repo/apt/pool/main/b/balloon-dkms
mkdir -p "$pool"
for d in "${debs[@]}"; do
	cp -f "$d" "$pool/"
done
gpg --batch --export "$fpr" >"$keyring.tmp"
mv "$keyring.tmp" "$keyring"
(
	cd "$repo/apt"
	for a in $archs; do
		bin=dists/$suite/main/binary-$a
		mkdir -p "$bin"
		apt-ftparchive --arch "$a" packages pool/main >"$bin/Packages"
		gzip -9nkf "$bin/Packages"
	done
	apt-ftparchive \
		-o APT::FTPArchive::Release::Origin=balloon-dkms \
		-o APT::FTPArchive::Release::Label=balloon-dkms \
		-o APT::FTPArchive::Release::Suite=$suite \
		-o APT::FTPArchive::Release::Codename=$suite \
		-o "APT::FTPArchive::Release::Architectures=$archs" \
		-o APT::FTPArchive::Release::Components=main \
		-o "APT::FTPArchive::Release::Description=balloon-dkms: memory balloon drivers (DKMS)" \
		release "dists/$suite" >"$work/Release"
	mv "$work/Release" "dists/$suite/Release"
	"${sign[@]}" --clearsign -o "dists/$suite/InRelease" "dists/$suite/Release"
	"${sign[@]}" --armor --detach-sign -o "dists/$suite/Release.gpg" "dists/$suite/Release"
)
cat >"$repo/apt/balloon-dkms.sources" <<EOF
Types: deb
URIs: $url/apt
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/balloon-dkms-archive-keyring.gpg
EOF

# ----------------------------------------------------------- rpm
if [ ${#rpms[@]} -gt 0 ] || [ -d "$repo/rpm" ]; then
	log "mkrepo: rpm repository in $repo/rpm"
	mkdir -p "$repo/rpm/packages"
	gpg --batch --armor --export "$fpr" >"$repo/rpm/RPM-GPG-KEY-balloon-dkms"
	for r in "${rpms[@]}"; do
		dest=$repo/rpm/packages/$(basename "$r")
		cp -f "$r" "$dest"
		# rpm's idea of where gpg lives differs between distributions
		# (Debian's rpm says /usr/bin/gpg2): name it
		rpmsign --addsign --define "__gpg $(command -v gpg)" --define "_gpg_name $fpr" \
			--define "_gpg_path ${GNUPGHOME:-$HOME/.gnupg}" "$dest" >"$work/rpmsign.log" 2>&1 || {
			cat "$work/rpmsign.log" >&2
			die "mkrepo.sh: rpmsign $dest failed"
		}
	done
	createrepo_c -q --update "$repo/rpm" >/dev/null
	"${sign[@]}" --armor --detach-sign -o "$repo/rpm/repodata/repomd.xml.asc" "$repo/rpm/repodata/repomd.xml"
	cat >"$repo/rpm/balloon-dkms.repo" <<EOF
[balloon-dkms]
name=balloon-dkms: memory balloon drivers (DKMS)
baseurl=$url/rpm
enabled=1
gpgcheck=1
repo_gpgcheck=1
gpgkey=$url/rpm/RPM-GPG-KEY-balloon-dkms
EOF
fi

log "mkrepo: $repo signed with $fpr"
echo "$repo"
