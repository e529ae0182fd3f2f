#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# install-deb.sh DEB - install a built balloon-dkms .deb on this machine
# with apt (which pulls dkms and the other dependencies); dkms then builds
# and installs the modules for every kernel that has its headers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

deb=${1:?usage: install-deb.sh path/to/balloon-dkms_VER_all.deb}
[ -f "$deb" ] || die "no such package: $deb"
[ "$(id -u)" = 0 ] || die "installing a package needs root (try: sudo make install)"
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")

k=$(uname -r)
[ -e "/lib/modules/$k/build/include" ] ||
	log "note: no headers for the running kernel $k; dkms will skip it (apt-get install linux-headers-$k)"
DEBIAN_FRONTEND=noninteractive apt-get install -y "$deb"
dkms status -m balloon
