#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# in-root.sh ROOT DIR CMD [ARG...] - run CMD chrooted in ROOT (the sid
# vmwhost root) with DIR visible inside it at /mnt.
#
# Everything is mounted in a private mount namespace (unshare -m): /proc, a
# recursive bind of /dev, a fresh tmpfs on /tmp and DIR on /mnt.  The mounts
# exist only for CMD and vanish with it, however it ends, so the cached
# root is never changed and concurrent runs do not see each other.
# unshare, sh and chroot all exec, so CMD keeps this script's PID: a caller
# can signal or wait for it directly.
set -eu
[ $# -ge 3 ] || { echo "usage: in-root.sh ROOT DIR CMD [ARG...]" >&2; exit 2; }
root=$1 dir=$2
shift 2
[ -x "$root/usr/bin/env" ] || { echo "in-root.sh: $root is not a root" >&2; exit 2; }
[ -d "$root/mnt" ] || { echo "in-root.sh: $root has no /mnt" >&2; exit 2; }
[ -d "$dir" ] || { echo "in-root.sh: no directory $dir" >&2; exit 2; }
if [ "${VMWB_IN_NS:-}" != 1 ]; then
	VMWB_IN_NS=1 exec unshare --mount --propagation private "$0" "$root" "$dir" "$@"
fi
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o size=64m,mode=1777 tmpfs "$root/tmp"
mount --bind "$dir" "$root/mnt"
exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/mnt TMPDIR=/tmp LANG=C.UTF-8 "$@"
