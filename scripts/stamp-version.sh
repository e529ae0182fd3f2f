#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# stamp-version.sh [--check] [VERSION]
#
# The version lives in one place, `VERSION :=` in the top-level Makefile
# (the default when no VERSION is given).  This script writes it into every
# file that has to carry a copy:
#   dkms.conf              PACKAGE_VERSION="..."
#   debian/changelog       a new top entry when the top version differs
#   rpm/balloon-dkms.spec  Version:, and a new %changelog entry
#   src/version.h          #define BALLOON_VERSION "..."  (MODULE_VERSION)
# With --check it changes nothing, lists every copy that differs and exits
# 1 if any does (the package builds run it first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
top=$(cd "$here/.." && pwd)

check=
if [ "${1:-}" = --check ]; then
	check=1
	shift
fi
ver=${1:-$(sed -n 's/^VERSION[[:space:]]*:=[[:space:]]*//p' "$top/Makefile")}
[ -n "$ver" ] || die "no VERSION := line in $top/Makefile"
# dkms, dpkg and rpm all accept this; a '-' would be read as a Debian
# revision by dpkg and is not allowed in an RPM Version.
echo "$ver" | grep -Eq '^[0-9]+(\.[0-9]+)*([~+.][0-9A-Za-z.]+)?$' ||
	die "version '$ver' is not of the form N.N.N[~rc1|+tag]"

conf=$top/dkms.conf
chlog=$top/debian/changelog
spec=$top/rpm/balloon-dkms.spec
vh=$top/src/version.h

# What each file says now.
v_conf=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"$/\1/p' "$conf")
v_chlog=$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' "$chlog")
v_spec=$(sed -n 's/^Version:[[:space:]]*//p' "$spec")
v_spec_log=$(sed -n '/^%changelog/{n;s/.* - \([^ ]*\)$/\1/p;q}' "$spec")
v_vh=$(sed -n 's/^#define BALLOON_VERSION "\(.*\)"$/\1/p' "$vh")
# The spec's Release is 1 for each new version; its changelog names V-1.
rel=$(sed -n 's/^Release:[[:space:]]*\([0-9]*\).*/\1/p' "$spec")

if [ -n "$check" ]; then
	bad=0
	for pair in "dkms.conf:$v_conf" "debian/changelog:$v_chlog" \
		"rpm/balloon-dkms.spec Version:$v_spec" \
		"rpm/balloon-dkms.spec %changelog:${v_spec_log%-*}" \
		"src/version.h:$v_vh"; do
		if [ "${pair##*:}" != "$ver" ]; then
			echo "balloon-dkms: ${pair%:*} says '${pair##*:}', Makefile says '$ver' (run: make stamp)" >&2
			bad=1
		fi
	done
	exit $bad
fi

[ "$v_conf" = "$ver" ] ||
	sed -i "s/^PACKAGE_VERSION=\".*\"\$/PACKAGE_VERSION=\"$ver\"/" "$conf"

[ "$v_vh" = "$ver" ] ||
	sed -i "s/^#define BALLOON_VERSION \".*\"\$/#define BALLOON_VERSION \"$ver\"/" "$vh"

# The new entries take their author from the previous debian/changelog
# entry, so a release does not depend on who runs the script.
who=$(sed -n 's/^ -- \(.*>\)  .*/\1/p' "$chlog" | head -n1)
if [ "$v_chlog" != "$ver" ]; then
	tmp=$(mktemp)
	{
		echo "balloon-dkms ($ver) unstable; urgency=medium"
		echo
		echo "  * Release $ver."
		echo
		echo " -- $who  $(LC_ALL=C date -R)"
		echo
		cat "$chlog"
	} >"$tmp"
	cat "$tmp" >"$chlog"
	rm -f "$tmp"
fi

if [ "$v_spec" != "$ver" ]; then
	sed -i "s/^Version:\([[:space:]]*\).*/Version:\1$ver/" "$spec"
	sed -i "s/^Release:\([[:space:]]*\)[0-9]*/Release:\11/" "$spec"
fi
if [ "${v_spec_log%-*}" != "$ver" ]; then
	entry="* $(LC_ALL=C date '+%a %b %d %Y') $who - $ver-${rel:-1}"
	[ "$v_spec" != "$ver" ] && entry="* $(LC_ALL=C date '+%a %b %d %Y') $who - $ver-1"
	sed -i "/^%changelog/a $entry\\
- Release $ver.\\
" "$spec"
fi

log "stamped version $ver"
"$0" --check "$ver"
