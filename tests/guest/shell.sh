# SPDX-License-Identifier: GPL-2.0
# Sourced by the guest inits (busybox sh or dash).  serve_shell TTY runs the
# host's commands from tests/lib/qmp.py GuestShell: each request is one line
# "<token> <base64 command>"; the reply is the command's output framed by
#   \n__VMH_BEGIN_<token>__\n ... \n__VMH_END_<token>_<rc>__\n
# Commands run in a subshell (so `exit` or `cd` cannot break the loop) with
# stdin from /dev/null and stderr merged into stdout.

serve_shell() {
	tty=$1
	stty -F "$tty" raw -echo 2>/dev/null
	echo "VMH-READY $(cut -d' ' -f1 /proc/uptime)" >/dev/console
	while :; do
		while IFS=' ' read -r tok b64; do
			[ -n "$tok" ] || continue
			printf '\n__VMH_BEGIN_%s__\n' "$tok"
			cmd=$(printf '%s\n' "$b64" | base64 -d 2>/dev/null)
			(eval "$cmd") </dev/null 2>&1
			rc=$?
			printf '\n__VMH_END_%s_%d__\n' "$tok" "$rc"
		done <"$tty" >"$tty" 2>&1
		# the tty hung up: reopen it, without spinning
		sleep 1
		stty -F "$tty" raw -echo 2>/dev/null
	done
}
