#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# mkdist.sh [OUTDIR] - the release tarball OUTDIR/balloon-dkms-<ver>.tar.gz
# (default OUTDIR: out/), with the whole source tree under
# balloon-dkms-<ver>/.
#
# In a git checkout the tarball holds every file git would not ignore
# (tracked files and new ones), as they are in the working tree, so build
# products (*.ko, compat/autoconf.h, out/ ...) never leak into a package.
# Outside git, the tree is taken as it is minus the .gitignore patterns.
# The tarball is reproducible: sorted names, owner 0, the mtime of the
# last debian/changelog entry, gzip without a timestamp.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
top=$(cd "$here/.." && pwd)
out=$(mkdir -p "${1:-$top/out}" && cd "${1:-$top/out}" && pwd)

"$here/stamp-version.sh" --check
ver=$(sed -n 's/^VERSION[[:space:]]*:=[[:space:]]*//p' "$top/Makefile")
name=balloon-dkms-$ver
tarball=$out/$name.tar.gz

need_host_pkgs tar gzip
epoch=$(date -d "$(sed -n 's/^ -- .*>  //p' "$top/debian/changelog" | head -n1)" +%s)

list=$(mktemp)
trap 'rm -f "$list"' EXIT
if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
	git -C "$top" ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do
			# Deleted but still tracked files are not part of the tree.
			[ -e "$top/$f" ] || [ -L "$top/$f" ] || continue
			printf '%s\0' "$f"
		done >"$list"
	tar -C "$top" --sort=name --owner=0 --group=0 --numeric-owner \
		--mtime="@$epoch" --transform "s,^,$name/," \
		--null --no-recursion -T "$list" -cf - | gzip -n -9 >"$tarball.tmp"
else
	tar -C "$top" --exclude-vcs --exclude-vcs-ignores --exclude=./out \
		--sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
		--transform "s,^\.,$name," -cf - . | gzip -n -9 >"$tarball.tmp"
fi
mv "$tarball.tmp" "$tarball"
log "mkdist: $tarball ($(tar -tzf "$tarball" | grep -vc '/$') files)"
echo "$tarball"
