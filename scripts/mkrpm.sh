#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# mkrpm.sh [OUTDIR] - build balloon-dkms-<ver>-1.noarch.rpm and the source
# rpm into OUTDIR (default out/) with rpmbuild, from the release tarball.
# Works on Debian (package "rpm" provides rpmbuild); installs it if missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
top=$(cd "$here/.." && pwd)
out=$(mkdir -p "${1:-$top/out}" && cd "${1:-$top/out}" && pwd)

need_host_pkgs rpm
tarball=$("$here/mkdist.sh" "$out")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/SOURCES"
cp "$tarball" "$work/SOURCES/"
log "mkrpm: rpmbuild $(basename "$tarball")"
if ! rpmbuild -ba --define "_topdir $work" \
	--define "_build_id_links none" \
	"$top/rpm/balloon-dkms.spec" >"$work/build.log" 2>&1; then
	tail -n 30 "$work/build.log" >&2
	die "rpmbuild failed"
fi
rpms=$(find "$work/RPMS" "$work/SRPMS" -name '*.rpm')
[ -n "$rpms" ] || die "rpmbuild made no rpm"
bin=
for f in $rpms; do
	mv -f "$f" "$out/"
	log "mkrpm: $out/$(basename "$f")"
	case $f in *.noarch.rpm) bin=$out/$(basename "$f") ;; esac
done
cp "$work/build.log" "$out/balloon-dkms-rpmbuild.log"
[ -n "$bin" ] || die "rpmbuild made no noarch rpm"
echo "$bin"
