#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# conftest.sh check KDIR
#   Before Kbuild (src/Makefile): checks the kernel configuration; anything
#   a driver cannot live without stops the build with one clear line.
#
# conftest.sh answer KDIR RELEASE COMPATDIR OUT CC [FLAGS...]
#   Inside the Kbuild pass that builds the modules (src/Kbuild), before any
#   driver object: answers every kernel API question in COMPATDIR/probes/
#   and writes OUT (compat/autoconf.h).  CC and FLAGS are the kernel's own
#   compiler and the flags of one of our module objects, so a probe sees
#   exactly what the drivers will see.
#
# Each probes/<name>.c is a tiny translation unit; it compiles exactly when
# the kernel has the API it asks about, and then defines HAVE_<NAME>.  Only
# the compiler's front end runs (-fsyntax-only): no object, no assembler,
# and no second Kbuild pass, which is what made the probes the slow half of
# a build (most of all where the toolchain runs under emulation).  A probe
# whose first line after the SPDX tag is "/* symbol: SYM ... */" instead
# asks whether SYM is exported to modules (Module.symvers); it is not
# compiled.
#
# Parsing the kernel's headers is nearly all of a probe's cost, so probes
# whose preprocessor lines (all at the top) are the same are asked in one
# run: the shared lines once, then each probe's code behind a #line marker
# naming its own file.  An error reported in <name>.c, or in a macro that
# <name>.c expanded, is that probe's answer; the others in the run are
# present.  An error the compiler puts anywhere else (a kernel header, the
# command line) names no single probe, and then each probe of that run is
# asked alone.
# So the names a probe declares must be its own (balloon_probe_<name>...).
set -eu

fail() {
	echo "balloon-dkms: $*" >&2
	exit 1
}

[ $# -ge 2 ] || fail "usage: conftest.sh check KDIR | answer KDIR RELEASE COMPATDIR OUT CC [FLAGS...]"
mode=$1
kdir=$2
shift 2

[ -f "$kdir/Makefile" ] ||
	fail "no kernel build tree at $kdir (install the headers package for this kernel, e.g. linux-headers-<release>)"

krel=$(cat "$kdir/include/config/kernel.release" 2>/dev/null || echo unknown)

if [ "$mode" = check ]; then
	config=$kdir/include/config/auto.conf
	[ -f "$config" ] || config=$kdir/.config
	[ -f "$config" ] || fail "$kdir has no kernel configuration (include/config/auto.conf); the headers look incomplete"
	has() {
		grep -q "^$1=[ym]" "$config"
	}
	has CONFIG_MODULES || fail "kernel $krel was built without loadable module support (CONFIG_MODULES)"
	has CONFIG_MEMORY_BALLOON || has CONFIG_BALLOON ||
		fail "kernel $krel has no memory balloon support (CONFIG_MEMORY_BALLOON / CONFIG_BALLOON is not set); the balloon drivers cannot be built for it"
	exit 0
fi

if [ "$mode" != answer ] || [ $# -lt 4 ]; then
	fail "conftest.sh: unknown mode or missing arguments: $mode"
fi
# The release the build was asked for (Debian's kernel.release holds the
# upstream version, not the package's).
[ -z "$1" ] || krel=$1
compat=$2
out=$3
shift 3
probes=$compat/probes
work=$compat/.probes

# Ask again only when the kernel, the compiler command or the probes changed.
sig=$( (echo "$krel"; echo "$*"; cat "$kdir/include/generated/autoconf.h" 2>/dev/null
	cat "$probes"/*.c "$0") | cksum)
if [ -f "$out" ] && head -n 3 "$out" | grep -qF "sig: $sig"; then
	exit 0
fi

rm -rf "$work"
mkdir -p "$work"

# The plan: one line per compiler run, "solo NAME" (a probe on its own)
# or "group FILE NAME...", FILE holding the shared preprocessor lines and
# each NAME's code after a #line marker.  A probe with a preprocessor line
# among its code runs on its own, and so does the baseline.
awk -v work="$work" '
FNR == 1 {
	n = FILENAME
	sub(/.*\//, "", n)
	sub(/\.c$/, "", n)
	names[++np] = n
	code = 0
}
FNR == 2 && /^\/\* *symbol:/ { sym[n] = 1 }
{
	if (!code) {
		if ($0 ~ /^[ \t]*#/) {
			key[n] = key[n] $0 "\n"
			next
		}
		if ($0 ~ /^[ \t]*$/ || $0 ~ /^[ \t]*\/\// || $0 ~ /^[ \t]*\/\*.*\*\/[ \t]*$/)
			next
		code = 1
		first[n] = FNR
	}
	if ($0 ~ /^[ \t]*#/)
		alone[n] = 1
	body[n] = body[n] $0 "\n"
}
END {
	for (i = 1; i <= np; i++) {
		n = names[i]
		if (n in sym)
			continue
		if (n == "baseline" || (n in alone) || !(n in first)) {
			print "solo " n
			continue
		}
		if (!(key[n] in gid)) {
			gid[key[n]] = ++ng
			members[ng] = n
		} else {
			members[gid[key[n]]] = members[gid[key[n]]] " " n
		}
		size[gid[key[n]]]++
	}
	for (g = 1; g <= ng; g++) {
		if (size[g] == 1) {
			print "solo " members[g]
			continue
		}
		f = work "/group" g ".c"
		split(members[g], m, " ")
		printf "%s", key[m[1]] >f
		for (j = 1; j <= size[g]; j++)
			printf "#line %d \"%s.c\"\n%s", first[m[j]], m[j], body[m[j]] >f
		close(f)
		print "group " f " " members[g]
	}
}' "$probes"/*.c >"$work/plan"

# One probe on its own: NAME.yes when it compiles.
solo() {
	if "$@" -fsyntax-only "$probes/$name.c" >"$work/$name.log" 2>&1; then
		: >"$work/$name.yes"
	fi
}

# One run for a group; its answers from the errors, else each one alone.
group() {
	if "$@" -fsyntax-only "$file" >"$file.log" 2>&1; then
		for name in $members; do
			: >"$work/$name.yes"
		done
		return
	fi
	# Each error goes to the probe whose file it is in, or, for an error
	# inside a macro's definition, the probe whose code expanded the macro
	# (gcc's "in expansion of macro" note).  "?" when one goes to none.
	where=$(awk -v members=" $members " '
	/^[^:]*:[0-9:]* (fatal |internal compiler )?error: / {
		if (open)
			print "?"
		f = substr($0, 1, index($0, ":") - 1)
		n = f
		sub(/\.c$/, "", n)
		open = !(n != f && index(members, " " n " "))
		if (!open)
			print f
		next
	}
	open && /^[^:]*:[0-9:]* note: in expansion of macro / {
		f = substr($0, 1, index($0, ":") - 1)
		n = f
		sub(/\.c$/, "", n)
		if (n != f && index(members, " " n " ")) {
			print f
			open = 0
		}
	}
	END {
		if (open)
			print "?"
	}' "$file.log" | sort -u)
	case "
$where
" in
	*"
?
"* | "

") where= ;;
	esac
	for name in $members; do
		if [ -z "$where" ]; then
			solo "$@"
		else
			case "
$where
" in
			*"
$name.c
"*) cp "$file.log" "$work/$name.log" ;;
			*) : >"$work/$name.yes" ;;
			esac
		fi
	done
}

# As many compiler runs at a time as there are CPUs (at most 8): each is
# one front-end run.
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=2
[ "$jobs" -le 8 ] || jobs=8
i=0
while read -r kind file members; do
	if [ "$kind" = solo ]; then
		name=$file
		solo "$@" &
	else
		group "$@" &
	fi
	i=$((i + 1))
	[ $((i % jobs)) -ne 0 ] || wait
done <"$work/plan"
wait

[ -f "$work/baseline.yes" ] || {
	tail -n 15 "$work/baseline.log" >&2
	fail "cannot compile even a trivial module against $kdir (compiler or headers broken; log: $work/baseline.log)"
}

# One line per probe (name, answer, why) for one awk, which writes the
# header: few processes, for toolchains that run under emulation.
lines=
total=0
for p in "$probes"/*.c; do
	n=${p##*/}
	n=${n%.c}
	[ "$n" = baseline ] && continue
	{
		read -r _ || :
		read -r why || :
	} <"$p"
	why=${why#/\*}
	why=${why%\*/}
	why=${why#"${why%%[! ]*}"}
	why=${why%"${why##*[! ]}"}
	case $why in
	symbol:*)
		sym=${why#symbol:}
		sym=${sym#"${sym%%[! ]*}"}
		sym=${sym%% *}
		ans=no
		if grep -q "[[:space:]]${sym}[[:space:]]" "$kdir/Module.symvers" 2>/dev/null; then
			ans=yes
		fi
		;;
	*)
		ans=no
		[ ! -f "$work/$n.yes" ] || ans=yes
		;;
	esac
	lines="$lines$n	$ans	$why
"
	total=$((total + 1))
done

tmp=$out.tmp
printf '%s' "$lines" | awk -F '	' -v krel="$krel" -v sig="$sig" '
BEGIN {
	print "/* Generated by compat/conftest.sh - do not edit."
	print " * kernel: " krel
	print " * sig: " sig " */"
	print "#ifndef BALLOON_COMPAT_AUTOCONF_H"
	print "#define BALLOON_COMPAT_AUTOCONF_H"
}
{
	m = "HAVE_" toupper($1)
	print ""
	print "/* " $3 " */"
	if ($2 == "yes") {
		print "#define " m " 1"
	} else {
		print "/* #undef " m " */"
	}
}
END {
	print ""
	print "#endif"
}' >"$tmp"
mv "$tmp" "$out"
echo "balloon-dkms: compat probes for $krel: $(grep -c '^#define HAVE_' "$out") of $total present"
