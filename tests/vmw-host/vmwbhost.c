// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmwbhost.c - the host side of the VMware balloon protocol, as a QEMU TCG
 * plugin, so that a balloon driver can be tested under plain QEMU.
 *
 * The guest driver calls its "monitor" with
 *	eax = 0x456c6d6f (magic), ecx = command, edx = 0x5670 (port),
 *	rbx = argument 1, rsi = argument 2;  inl (%dx), %eax
 * and reads the status from eax, a result (the target) from rbx and, after
 * START, the capabilities from rcx.  QEMU has no device behind port 0x5670.
 * The plugin puts a callback on every one-byte "in eax,dx" (0xED) when a
 * block is translated; when eax and dx carry the balloon magic and port,
 * the callback runs the command.  The IN then runs as QEMU's own (nothing
 * listens on port 0x5670), and a second callback, on the instruction
 * after it, writes the results to rax/rbx/rcx.  The guest never leaves
 * the translation block for it: qemu_plugin_set_pc() would, and QEMU's
 * x86 translator does not write its lazily computed flags back at that
 * exit, so the guest would resume with wrong EFLAGS (the rogue "flags"
 * test shows it on every call).  See "Answering a call" below.
 * Batch pages and ballooned pages are read and written in guest-physical
 * memory.
 *
 * Every deviation from the protocol by the guest is counted in
 * protocol_errors, with a text in last_error.  Tests drive faults and read
 * the host's accounting over a line-based unix control socket (ctl=PATH),
 * served by one thread; README.md in this directory documents it.
 *
 * Plugin arguments (-plugin vmwbhost.so,key=value,...):
 *	ctl=PATH	control socket (created, removed at exit)
 *	ram_mb=N	guest RAM size as given to -m (pc machine layout);
 *			enables the "pfn beyond guest RAM" checks
 *	target=N	initial target in 4 KiB pages (default 0)
 *	caps=N		capabilities offered at START (default 0x2e)
 *	poison=on|off	fill locked pages with 0x5a and check the pattern when
 *			they are unlocked (default on)
 *	clamp=on|off	clamp GET_TARGET to the guest's limit (default on)
 *	start_reply=and|host  START answers the requested caps AND the host's
 *			(default) or the host's caps whatever was requested
 *	state_file=P	rewrite the state dump to P after every command
 *	verbose=on	log every command on stderr
 *	cpuid=on	answer CPUID 0x400000xx with "VMwareVMware" (ESXi-like
 *			detection with the CPUID hypervisor bit left on)
 */
#define _GNU_SOURCE		/* accept4 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <sys/un.h>
#include <unistd.h>

#include "qemu-plugin-api7.h"

/* The one plugin API version whose ABI qemu-plugin-api7.h describes. */
#define VMWB_API 7
/*
 * The API version qemu_plugin_install() insists on.  Only a test build
 * changes it, to check that a mismatch is refused with our message.
 */
#ifndef VMWB_API_EXPECTED
#define VMWB_API_EXPECTED VMWB_API
#endif
/* The version QEMU reads before it calls us; a test build changes it too. */
#ifndef VMWB_API_DECLARED
#define VMWB_API_DECLARED VMWB_API
#endif
QEMU_PLUGIN_EXPORT int qemu_plugin_version = VMWB_API_DECLARED;

#define BD_MAGIC	0x456c6d6fu
#define BD_PORT		0x5670u

enum cmd {
	CMD_START,
	CMD_GET_TARGET,
	CMD_LOCK,
	CMD_UNLOCK,
	CMD_GUEST_ID,
	CMD_UNUSED5,
	CMD_BATCHED_LOCK,
	CMD_BATCHED_UNLOCK,
	CMD_BATCHED_2M_LOCK,
	CMD_BATCHED_2M_UNLOCK,
	CMD_DOORBELL_SET,
	CMD_NUM,
	CMD_UNKNOWN = CMD_NUM,	/* counter slot for commands >= CMD_NUM */
};

static const char *const cmd_name[CMD_NUM + 1] = {
	"start", "get_target", "lock", "unlock", "guest_id", "cmd5",
	"batched_lock", "batched_unlock", "batched_2m_lock",
	"batched_2m_unlock", "doorbell_set", "unknown",
};

enum status {
	ST_SUCCESS,
	ST_CMD_INVALID,
	ST_PPN_INVALID,
	ST_PPN_LOCKED,
	ST_PPN_UNLOCKED,
	ST_PPN_PINNED,
	ST_PPN_NOTNEEDED,
	ST_RESET,
	ST_BUSY,
	ST_NUM,
};
#define ST_SUCCESS_WITH_CAPS	0x03000000u

static const char *const st_name[ST_NUM] = {
	"success", "cmd_invalid", "ppn_invalid", "ppn_locked", "ppn_unlocked",
	"ppn_pinned", "ppn_notneeded", "reset", "busy",
};

#define CAP_BASIC	(1u << 1)
#define CAP_BATCHED	(1u << 2)
#define CAP_BATCHED_2M	(1u << 3)
#define CAP_SIGNALLED	(1u << 4)
#define CAP_64BIT_TGT	(1u << 5)
#define CAP_DEFAULT	(CAP_BASIC | CAP_BATCHED | CAP_BATCHED_2M | CAP_64BIT_TGT)

#define PAGE_SHIFT	12
#define PAGE_SIZE	(1u << PAGE_SHIFT)
#define ORDER_2M	9
#define BATCH_MAX	(PAGE_SIZE / 8)	/* u64 entries in one batch page */
#define ENTRY_ST_MASK	0x1fULL		/* status: bits 0-4 of an entry */
#define POISON		0x5a
#define LOG_LEN		256
#define CTL_MAX_ARGS	513	/* command + up to 512 PFNs */
#define MAX_CLIENTS	8

struct log_entry {
	uint64_t seq, usec, a1, a2, res;
	uint32_t cmd, st, errs;		/* errs: protocol errors it caused */
};

/* Everything below is protected by mu, taken by vCPUs and the ctl thread. */
static struct host {
	pthread_mutex_t mu;
	bool started;
	uint32_t host_caps, guest_caps, requested_caps;
	bool reply_host_caps;		/* START answers host caps, not the AND */
	uint64_t guest_id;
	uint64_t target;		/* set by the test, 4k pages */
	uint64_t last_limit;		/* guest's limit in its last GET_TARGET */
	uint64_t last_reported;		/* value GET_TARGET last returned */
	bool clamp, poison, verbose;
	uint64_t ram_mb, low_pages, high_pages;	/* 0: unknown, no checks */

	GHashTable *locked;		/* pfn -> order + 1 */
	uint64_t locked_pages, locked_4k, locked_2m;

	/* fault injection */
	GHashTable *pinned, *notneeded;	/* pfn -> 1 */
	uint64_t busy_left;
	uint64_t busy_entry_left;	/* 0: off; K: the K-th lock/unlock entry */
	int busy_entry_dir;		/* -1: either; 1: lock; 0: unlock */
	uint64_t busy_entries;		/* entries answered BUSY that way */
	uint64_t refuse_left;
	uint32_t refuse_status;
	uint64_t accept_every;		/* 0: off; N: only every N-th lock entry */
	uint64_t accept_seen;		/* lock entries met since it was set */
	uint32_t accept_status;		/* what the others answer */
	bool reset_pending;
	bool mid_batch_pending;
	uint64_t mid_batch_keep;	/* entries processed; 0 = half */

	/* accounting */
	uint64_t commands;
	uint64_t ops[CMD_NUM + 1], fails[CMD_NUM + 1];
	uint64_t status_count[ST_NUM + 1];	/* last: any other value */
	uint64_t protocol_errors, host_errors, poison_violations, refused_entries;
	uint64_t resets_injected, starts, before_start;
	/* lock/unlock commands and entries between two GET_TARGETs (a tick) */
	uint64_t tick_cmds, tick_entries, tick_cmds_max, tick_entries_max;
	char last_error[256];
	struct log_entry log[LOG_LEN];

	const char *state_file;
} h = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.host_caps = CAP_DEFAULT,
	.clamp = true,
	.poison = true,
};

static bool fake_cpuid;
static uint64_t t0_usec;
static struct qemu_plugin_register *r_rax, *r_rbx, *r_rcx, *r_rdx, *r_rsi;
static struct qemu_plugin_register *r_rsp;
static GByteArray *poison_4k, *poison_2m;

/* control thread */
static const char *ctl_path;
static int ctl_fd = -1, wake_pipe[2] = { -1, -1 };
static pthread_t ctl_thread;
static bool ctl_running;

/* ---------------------------------------------------------------- */
/* host state helpers, called with h.mu held                         */

static void vrecord(uint64_t *counter, const char *kind, const char *fmt,
		    va_list ap)
{
	(*counter)++;
	vsnprintf(h.last_error, sizeof(h.last_error), fmt, ap);
	if (h.verbose)
		fprintf(stderr, "vmwbhost: %s: %s\n", kind, h.last_error);
}

/* The guest broke the protocol. */
static void __attribute__((format(printf, 1, 2))) proto_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vrecord(&h.protocol_errors, "protocol error", fmt, ap);
	va_end(ap);
}

/* The host itself failed (a guest-memory access QEMU refused). */
static void __attribute__((format(printf, 1, 2))) host_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vrecord(&h.host_errors, "host error", fmt, ap);
	va_end(ap);
}

/*
 * Guest RAM as QEMU's pc machine lays it out: everything below 4 GiB when
 * it fits under the PCI hole (which starts at 3 GiB once RAM reaches
 * 3.5 GiB), the rest from 4 GiB up.  The legacy VGA/ROM window
 * 640 KiB - 1 MiB is not RAM.
 */
static void set_ram_layout(uint64_t mb)
{
	uint64_t bytes = mb << 20, low = bytes;

	if (bytes >= 0xe0000000ULL)
		low = 0xc0000000ULL;
	h.ram_mb = mb;
	h.low_pages = low >> PAGE_SHIFT;
	h.high_pages = (bytes - low) >> PAGE_SHIFT;
}

static bool pfn_is_ram(uint64_t pfn)
{
	if (!h.ram_mb)
		return true;
	if (pfn >= 0xa0 && pfn < 0x100)
		return false;
	if (pfn < h.low_pages)
		return true;
	return pfn >= (1ULL << (32 - PAGE_SHIFT)) &&
	       pfn - (1ULL << (32 - PAGE_SHIFT)) < h.high_pages;
}

static bool range_is_ram(uint64_t pfn, unsigned int order)
{
	uint64_t last = pfn + (1ULL << order) - 1;

	if (last < pfn)
		return false;
	return pfn_is_ram(pfn) && pfn_is_ram(last) &&
	       (pfn >= 0x100 || last < 0xa0) &&
	       (pfn >= (1ULL << (32 - PAGE_SHIFT)) ||
		last < (1ULL << (32 - PAGE_SHIFT)));
}

static void forget_locked(void)
{
	g_hash_table_remove_all(h.locked);
	h.locked_pages = h.locked_4k = h.locked_2m = 0;
}

/* The host drops the balloon: locked pages are forgotten until START. */
static void host_reset(void)
{
	forget_locked();
	h.started = false;
	h.resets_injected++;
}

static int locked_order(uint64_t pfn)
{
	gpointer v = g_hash_table_lookup(h.locked, GSIZE_TO_POINTER(pfn));

	return v ? (int)GPOINTER_TO_UINT(v) - 1 : -1;
}

/* Is any 4k page of [pfn, pfn + 2^order) locked, in any page size? */
static bool overlaps_locked(uint64_t pfn, unsigned int order)
{
	uint64_t base2m = pfn & ~((1ULL << ORDER_2M) - 1);

	if (locked_order(base2m) == ORDER_2M)
		return true;
	if (order == 0)
		return locked_order(pfn) >= 0;
	for (uint64_t i = 0; i < (1ULL << order); i++)
		if (locked_order(pfn + i) >= 0)
			return true;
	return false;
}

static bool set_hits(GHashTable *set, uint64_t pfn, unsigned int order)
{
	if (!g_hash_table_size(set))
		return false;
	for (uint64_t i = 0; i < (1ULL << order); i++)
		if (g_hash_table_contains(set, GSIZE_TO_POINTER(pfn + i)))
			return true;
	return false;
}

static void poison_range(uint64_t pfn, unsigned int order)
{
	GByteArray *pat = order ? poison_2m : poison_4k;

	if (qemu_plugin_write_memory_hwaddr(pfn << PAGE_SHIFT, pat) != 0)
		host_err("cannot poison pfn 0x%" PRIx64, pfn);
}

/* Did the guest write to a page while the host owned it? */
static void check_poison(const char *op, uint64_t pfn, unsigned int order)
{
	g_autoptr(GByteArray) b = g_byte_array_new();
	size_t len = (size_t)PAGE_SIZE << order;

	if (qemu_plugin_read_memory_hwaddr(pfn << PAGE_SHIFT, b, len) != 0 ||
	    b->len < len) {
		host_err("%s: cannot read pfn 0x%" PRIx64 " back", op, pfn);
		return;
	}
	for (size_t i = 0; i < len; i++) {
		if (b->data[i] != POISON) {
			h.poison_violations++;
			snprintf(h.last_error, sizeof(h.last_error),
				 "%s: pfn 0x%" PRIx64 " was written while locked (byte 0x%zx = 0x%02x)",
				 op, pfn, i, b->data[i]);
			return;
		}
	}
}

/* Lock or unlock one 4k (order 0) or 2M (order 9) page; returns its status. */
static uint32_t page_op(const char *op, uint64_t pfn, unsigned int order,
			bool lock)
{
	gpointer key = GSIZE_TO_POINTER(pfn);

	if (order && (pfn & ((1ULL << order) - 1))) {
		proto_err("%s: 2M pfn 0x%" PRIx64 " is not 2M aligned", op, pfn);
		return ST_PPN_INVALID;
	}
	if (!range_is_ram(pfn, order)) {
		proto_err("%s: pfn 0x%" PRIx64 " is beyond guest RAM", op, pfn);
		return ST_PPN_INVALID;
	}
	if (h.busy_entry_left &&
	    (h.busy_entry_dir < 0 || h.busy_entry_dir == lock) &&
	    !--h.busy_entry_left) {
		h.busy_entries++;
		return ST_BUSY;
	}
	if (!lock) {
		if (locked_order(pfn) != (int)order) {
			proto_err("%s: pfn 0x%" PRIx64 " is not locked as %s",
				  op, pfn, order ? "2M" : "4k");
			return ST_PPN_UNLOCKED;
		}
		if (h.poison)
			check_poison(op, pfn, order);
		g_hash_table_remove(h.locked, key);
		h.locked_pages -= 1ULL << order;
		if (order)
			h.locked_2m--;
		else
			h.locked_4k--;
		return ST_SUCCESS;
	}
	if (overlaps_locked(pfn, order)) {
		proto_err("%s: pfn 0x%" PRIx64 " is already locked (double lock)",
			  op, pfn);
		return ST_PPN_LOCKED;
	}
	if (set_hits(h.pinned, pfn, order)) {
		h.refused_entries++;
		return ST_PPN_PINNED;
	}
	if (set_hits(h.notneeded, pfn, order)) {
		h.refused_entries++;
		return ST_PPN_NOTNEEDED;
	}
	if (h.refuse_left) {
		h.refuse_left--;
		h.refused_entries++;
		return h.refuse_status;
	}
	if (h.accept_every && ++h.accept_seen % h.accept_every) {
		h.refused_entries++;
		return h.accept_status;
	}
	g_hash_table_insert(h.locked, key, GUINT_TO_POINTER(order + 1));
	h.locked_pages += 1ULL << order;
	if (order)
		h.locked_2m++;
	else
		h.locked_4k++;
	if (h.poison)
		poison_range(pfn, order);
	return ST_SUCCESS;
}

static uint32_t batch_op(uint32_t cmd, uint64_t batch_pfn, uint64_t n)
{
	const char *op = cmd_name[cmd];
	unsigned int order = cmd >= CMD_BATCHED_2M_LOCK ? ORDER_2M : 0;
	bool lock = cmd == CMD_BATCHED_LOCK || cmd == CMD_BATCHED_2M_LOCK;
	g_autoptr(GByteArray) b = g_byte_array_new();
	uint64_t todo = n, *e;
	bool mid_reset = false;

	if (n == 0 || n > BATCH_MAX) {
		proto_err("%s: batch of %" PRIu64 " entries (1..%u allowed)",
			  op, n, BATCH_MAX);
		return ST_CMD_INVALID;
	}
	if (!range_is_ram(batch_pfn, 0)) {
		proto_err("%s: batch page pfn 0x%" PRIx64 " is beyond guest RAM",
			  op, batch_pfn);
		return ST_PPN_INVALID;
	}
	if (qemu_plugin_read_memory_hwaddr(batch_pfn << PAGE_SHIFT, b, n * 8) ||
	    b->len < n * 8) {
		host_err("%s: cannot read batch page pfn 0x%" PRIx64, op,
			  batch_pfn);
		return ST_PPN_INVALID;
	}
	if (h.mid_batch_pending) {
		h.mid_batch_pending = false;
		mid_reset = true;
		todo = h.mid_batch_keep ? MIN(h.mid_batch_keep, n) : n / 2;
	}
	e = (uint64_t *)b->data;
	for (uint64_t i = 0; i < todo; i++) {
		uint32_t st = page_op(op, e[i] >> PAGE_SHIFT, order, lock);

		e[i] = (e[i] & ~ENTRY_ST_MASK) | st;
	}
	/* only the entries processed get a status, the rest stay as they were */
	g_byte_array_set_size(b, todo * 8);
	if (todo && qemu_plugin_write_memory_hwaddr(batch_pfn << PAGE_SHIFT, b)) {
		host_err("%s: cannot write batch page pfn 0x%" PRIx64, op,
			  batch_pfn);
		return ST_PPN_INVALID;
	}
	if (mid_reset) {
		host_reset();
		return ST_RESET;
	}
	return ST_SUCCESS;
}

/* Commands that need a capability the guest did not get at START. */
static bool cmd_allowed(uint32_t cmd)
{
	switch (cmd) {
	case CMD_LOCK:
	case CMD_UNLOCK:
		return h.guest_caps & CAP_BASIC;
	case CMD_BATCHED_LOCK:
	case CMD_BATCHED_UNLOCK:
		return h.guest_caps & CAP_BATCHED;
	case CMD_BATCHED_2M_LOCK:
	case CMD_BATCHED_2M_UNLOCK:
		return (h.guest_caps & CAP_BATCHED) &&
		       (h.guest_caps & CAP_BATCHED_2M);
	default:
		return true;
	}
}

/*
 * GET_TARGET: the guest passes its limit (totalram pages).  The target is
 * clamped to it.  A guest without the 64-bit-target capability must send a
 * 32-bit limit and can only take a 32-bit result: like a host that writes
 * ebx only, we return at most 0xffffffff (saturated, never truncated), so
 * such a guest sees "as much as you can" rather than a wrapped small
 * number.  With clamp=off (fault injection) the raw 64-bit target goes
 * into rbx whatever the capabilities.
 */
static uint64_t reported_target(uint64_t limit)
{
	uint64_t t = h.target;

	if (!h.clamp)
		return t;
	if (t > limit)
		t = limit;
	if (!(h.guest_caps & CAP_64BIT_TGT) && t > UINT32_MAX)
		t = UINT32_MAX;
	return t;
}

/*
 * The guest's work runs once a tick, each time after a GET_TARGET: keep the
 * most lock/unlock commands and entries a completed tick carried.
 */
static void tick_count(uint32_t cmd, uint64_t n)
{
	switch (cmd) {
	case CMD_GET_TARGET:
		h.tick_cmds_max = MAX(h.tick_cmds_max, h.tick_cmds);
		h.tick_entries_max = MAX(h.tick_entries_max, h.tick_entries);
		h.tick_cmds = h.tick_entries = 0;
		break;
	case CMD_LOCK:
	case CMD_UNLOCK:
		n = 1;
		/* fall through */
	case CMD_BATCHED_LOCK:
	case CMD_BATCHED_UNLOCK:
	case CMD_BATCHED_2M_LOCK:
	case CMD_BATCHED_2M_UNLOCK:
		h.tick_cmds++;
		h.tick_entries += MIN(n, (uint64_t)BATCH_MAX);
		break;
	default:
		break;
	}
}

/* Run one command; *rbx and *rcx carry results, *set_rcx says if rcx changes */
static uint32_t run_cmd(uint32_t cmd, uint64_t a1, uint64_t a2, uint64_t *rbx,
			uint64_t *rcx, bool *set_rcx)
{
	uint32_t slot = cmd < CMD_NUM ? cmd : CMD_UNKNOWN;
	const char *op = cmd_name[slot];

	h.ops[slot]++;
	tick_count(cmd, a2);
	if (cmd >= CMD_NUM || cmd == CMD_UNUSED5) {
		proto_err("unknown command %u", cmd);
		return ST_CMD_INVALID;
	}
	/*
	 * Setting or clearing the doorbell is valid in any state: the Linux
	 * driver clears it before every START.  It needs SIGNALLED_WAKEUP,
	 * which this host does not offer by default (QEMU has no VMCI device
	 * to ring it with); without it the answer is CMD_INVALID, as from a
	 * host without the capability, and that is no protocol error.
	 */
	if (cmd == CMD_DOORBELL_SET)
		return (h.started && (h.guest_caps & CAP_SIGNALLED)) ?
		       ST_SUCCESS : ST_CMD_INVALID;
	if (h.busy_left) {
		h.busy_left--;
		return ST_BUSY;
	}
	if (cmd != CMD_START && h.reset_pending) {
		h.reset_pending = false;
		host_reset();
		return ST_RESET;
	}
	if (cmd != CMD_START && !h.started) {
		/*
		 * Linux asks for the target on every tick even while its START
		 * fails (BUSY, no host), so that one is tolerated; anything
		 * else before START is a protocol error.
		 */
		h.before_start++;
		if (cmd != CMD_GET_TARGET)
			proto_err("%s before START", op);
		return ST_RESET;
	}
	if (!cmd_allowed(cmd)) {
		proto_err("%s without the capability (guest caps 0x%x)", op,
			  h.guest_caps);
		return ST_CMD_INVALID;
	}

	switch (cmd) {
	case CMD_START:
		/* (re)start: the guest drops its pages without unlocking */
		forget_locked();
		h.started = true;
		h.starts++;
		h.requested_caps = (uint32_t)a1;
		h.guest_caps = h.reply_host_caps ? h.host_caps :
			       (uint32_t)a1 & h.host_caps;
		*rcx = h.guest_caps;
		*set_rcx = true;
		return ST_SUCCESS_WITH_CAPS;
	case CMD_GUEST_ID:
		h.guest_id = a1;
		return ST_SUCCESS;
	case CMD_GET_TARGET:
		if (!(h.guest_caps & CAP_64BIT_TGT) && a1 > UINT32_MAX)
			proto_err("get_target: 64-bit limit %" PRIu64
				  " without the 64-bit-target capability", a1);
		h.last_limit = a1;
		h.last_reported = reported_target(a1);
		*rbx = h.last_reported;
		return ST_SUCCESS;
	case CMD_LOCK:
	case CMD_UNLOCK: {
		uint32_t st;

		if (a1 > UINT32_MAX) {
			proto_err("%s: pfn 0x%" PRIx64 " does not fit 32 bits",
				  op, a1);
			st = ST_PPN_INVALID;
		} else {
			st = page_op(op, a1, 0, cmd == CMD_LOCK);
		}
		*rbx = h.target;
		return st;
	}
	default:	/* the four batched commands */
		*rbx = h.target;
		return batch_op(cmd, a1, a2);
	}
}

/* ---------------------------------------------------------------- */
/* state dump, shared by the "state" command and state_file          */

static void dump_state(FILE *f)
{
	fprintf(f, "api %d\n", VMWB_API);
	fprintf(f, "started %d\n", h.started);
	fprintf(f, "host_caps 0x%x\n", h.host_caps);
	fprintf(f, "guest_caps 0x%x\n", h.guest_caps);
	fprintf(f, "requested_caps 0x%x\n", h.requested_caps);
	fprintf(f, "start_reply %s\n", h.reply_host_caps ? "host" : "and");
	fprintf(f, "guest_id %" PRIu64 "\n", h.guest_id);
	fprintf(f, "target %" PRIu64 "\n", h.target);
	fprintf(f, "reported_target %" PRIu64 "\n", h.last_reported);
	fprintf(f, "guest_limit %" PRIu64 "\n", h.last_limit);
	fprintf(f, "clamp %d\n", h.clamp);
	fprintf(f, "poison %d\n", h.poison);
	fprintf(f, "ram_mb %" PRIu64 "\n", h.ram_mb);
	fprintf(f, "locked_pages %" PRIu64 "\n", h.locked_pages);
	fprintf(f, "locked_entries %u\n", g_hash_table_size(h.locked));
	fprintf(f, "locked_4k %" PRIu64 "\n", h.locked_4k);
	fprintf(f, "locked_2m %" PRIu64 "\n", h.locked_2m);
	fprintf(f, "protocol_errors %" PRIu64 "\n", h.protocol_errors);
	fprintf(f, "host_errors %" PRIu64 "\n", h.host_errors);
	fprintf(f, "poison_violations %" PRIu64 "\n", h.poison_violations);
	fprintf(f, "refused_entries %" PRIu64 "\n", h.refused_entries);
	fprintf(f, "resets_injected %" PRIu64 "\n", h.resets_injected);
	fprintf(f, "starts %" PRIu64 "\n", h.starts);
	fprintf(f, "before_start %" PRIu64 "\n", h.before_start);
	fprintf(f, "commands %" PRIu64 "\n", h.commands);
	fprintf(f, "tick_lock_cmds_max %" PRIu64 "\n", h.tick_cmds_max);
	fprintf(f, "tick_lock_entries_max %" PRIu64 "\n", h.tick_entries_max);
	fprintf(f, "busy_left %" PRIu64 "\n", h.busy_left);
	fprintf(f, "busy_entry_left %" PRIu64 "\n", h.busy_entry_left);
	fprintf(f, "busy_entries %" PRIu64 "\n", h.busy_entries);
	fprintf(f, "refuse_left %" PRIu64 "\n", h.refuse_left);
	fprintf(f, "accept_every %" PRIu64 "\n", h.accept_every);
	fprintf(f, "reset_pending %d\n", h.reset_pending);
	fprintf(f, "mid_batch_pending %d\n", h.mid_batch_pending);
	fprintf(f, "pinned %u\n", g_hash_table_size(h.pinned));
	fprintf(f, "notneeded %u\n", g_hash_table_size(h.notneeded));
	for (int i = 0; i <= CMD_NUM; i++) {
		if (i == CMD_UNUSED5)
			continue;
		fprintf(f, "op_%s %" PRIu64 "\n", cmd_name[i], h.ops[i]);
		fprintf(f, "fail_%s %" PRIu64 "\n", cmd_name[i], h.fails[i]);
	}
	for (int i = 0; i < ST_NUM; i++)
		fprintf(f, "status_%s %" PRIu64 "\n", st_name[i],
			h.status_count[i]);
	fprintf(f, "status_other %" PRIu64 "\n", h.status_count[ST_NUM]);
	fprintf(f, "last_error %s\n", h.last_error[0] ? h.last_error : "-");
}

static void write_state_file(void)
{
	char tmp[4096];
	FILE *f;

	if (!h.state_file)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", h.state_file);
	f = fopen(tmp, "w");
	if (!f)
		return;
	dump_state(f);
	if (fclose(f) == 0)
		rename(tmp, h.state_file);
}

/* ---------------------------------------------------------------- */
/* vCPU side                                                         */

/* Microseconds since the plugin was loaded (host clock). */
static uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000 -
	       t0_usec;
}

static uint64_t reg_read(struct qemu_plugin_register *r)
{
	g_autoptr(GByteArray) b = g_byte_array_new();
	uint64_t v = 0;

	if (qemu_plugin_read_register(r, b))
		memcpy(&v, b->data, MIN(b->len, sizeof(v)));
	return v;
}

static void reg_write(struct qemu_plugin_register *r, uint64_t v)
{
	g_autoptr(GByteArray) b = g_byte_array_new();

	g_byte_array_append(b, (const guint8 *)&v, sizeof(v));	/* LE host */
	if (!qemu_plugin_write_register(r, b)) {
		fprintf(stderr, "vmwbhost: cannot write a guest register\n");
		abort();
	}
}

/*
 * Answering a call
 *
 * The host runs a command in the callback before the IN (or CPUID) and
 * parks the register results in a pending answer, keyed by the address
 * of the next instruction and the guest's stack pointer.  A callback on
 * that next instruction delivers them.  The stack pointer, not the vCPU,
 * names the caller: if the IN ends a block, an interrupt can come in
 * between, and the task can even resume on another vCPU; its stack stays
 * its own.  Every instruction whose address follows a trigger
 * instruction gets the delivery callback when it is translated (the
 * trigger is then either earlier in the same block or was translated
 * before, because execution only reaches that address through it).  An
 * answer still pending when the same caller calls again is a host error.
 */
#define MAX_PENDING	64

struct pending {
	uint64_t next_pc, rsp;		/* next_pc 0: free */
	uint64_t val[4];		/* rax, rbx, rcx, rdx */
	unsigned int mask;		/* bit i: write val[i] */
};

static struct {
	pthread_mutex_t mu;		/* protects everything below */
	struct pending slot[MAX_PENDING];
	unsigned int used;		/* read without mu as a fast check */
	GHashTable *next_pcs;		/* addresses after triggers -> 1 */
} ans = { .mu = PTHREAD_MUTEX_INITIALIZER };

static struct qemu_plugin_register **const ans_reg[4] = {
	&r_rax, &r_rbx, &r_rcx, &r_rdx,
};

/* Park an answer for the caller now at the trigger just before next_pc. */
static void answer_later(uint64_t next_pc, const uint64_t *val,
			 unsigned int mask)
{
	uint64_t rsp = reg_read(r_rsp);
	struct pending *free_slot = NULL, *p = NULL;

	pthread_mutex_lock(&ans.mu);
	for (unsigned int i = 0; i < MAX_PENDING; i++) {
		struct pending *s = &ans.slot[i];

		if (s->next_pc == next_pc && s->rsp == rsp)
			p = s;
		else if (!s->next_pc && !free_slot)
			free_slot = s;
	}
	if (p || !free_slot) {
		pthread_mutex_lock(&h.mu);
		if (p)
			host_err("the answer to the call before 0x%" PRIx64
				 " (rsp 0x%" PRIx64 ") was never delivered",
				 next_pc, rsp);
		else
			host_err("more than %d answers pending", MAX_PENDING);
		pthread_mutex_unlock(&h.mu);
	}
	if (!p)
		p = free_slot;
	if (p) {
		if (!p->next_pc)
			__atomic_add_fetch(&ans.used, 1, __ATOMIC_RELEASE);
		p->next_pc = next_pc;
		p->rsp = rsp;
		p->mask = mask;
		memcpy(p->val, val, sizeof(p->val));
	}
	pthread_mutex_unlock(&ans.mu);
}

/* Runs before every instruction that follows a trigger; udata: its address */
static void on_next(unsigned int vcpu, void *udata)
{
	uint64_t pc = GPOINTER_TO_SIZE(udata), rsp, val[4];
	unsigned int mask = 0;

	(void)vcpu;
	if (!__atomic_load_n(&ans.used, __ATOMIC_ACQUIRE))
		return;
	rsp = reg_read(r_rsp);
	pthread_mutex_lock(&ans.mu);
	for (unsigned int i = 0; i < MAX_PENDING; i++) {
		struct pending *s = &ans.slot[i];

		if (s->next_pc == pc && s->rsp == rsp) {
			mask = s->mask;
			memcpy(val, s->val, sizeof(val));
			s->next_pc = 0;
			__atomic_sub_fetch(&ans.used, 1, __ATOMIC_RELEASE);
			break;
		}
	}
	pthread_mutex_unlock(&ans.mu);
	for (unsigned int i = 0; i < 4; i++)
		if (mask & (1u << i))
			reg_write(*ans_reg[i], val[i]);
}

static void backdoor_call(uint64_t next_pc)
{
	uint32_t cmd = (uint32_t)reg_read(r_rcx), st, slot;
	uint64_t a1 = reg_read(r_rbx), a2 = reg_read(r_rsi);
	uint64_t rbx = a1, rcx = 0, errs;
	bool set_rcx = false;
	struct log_entry *le;

	pthread_mutex_lock(&h.mu);
	errs = h.protocol_errors;
	st = run_cmd(cmd, a1, a2, &rbx, &rcx, &set_rcx);
	slot = cmd < CMD_NUM ? cmd : CMD_UNKNOWN;
	if (st != ST_SUCCESS && st != ST_SUCCESS_WITH_CAPS)
		h.fails[slot]++;
	h.status_count[st == ST_SUCCESS_WITH_CAPS ? ST_SUCCESS :
		       MIN(st, (uint32_t)ST_NUM)]++;
	le = &h.log[h.commands % LOG_LEN];
	*le = (struct log_entry){ h.commands, now_usec(), a1, a2, rbx, cmd, st,
				  (uint32_t)(h.protocol_errors - errs) };
	h.commands++;
	if (h.verbose)
		fprintf(stderr, "vmwbhost: %s a1=0x%" PRIx64 " a2=0x%" PRIx64
			" -> 0x%x rbx=%" PRIu64 " locked=%" PRIu64 "\n",
			cmd_name[slot], a1, a2, st, rbx, h.locked_pages);
	write_state_file();
	pthread_mutex_unlock(&h.mu);

	/* status in eax, result in rbx; rcx only after START */
	answer_later(next_pc, (uint64_t[4]){ st, rbx, rcx, 0 },
		     set_rcx ? 0x7 : 0x3);
}

/* Runs before every "in eax,dx"; udata is the instruction's address. */
static void on_in(unsigned int vcpu, void *udata)
{
	(void)vcpu;
	if ((uint32_t)reg_read(r_rax) != BD_MAGIC ||
	    (uint16_t)reg_read(r_rdx) != BD_PORT)
		return;		/* another port: an ordinary IN */
	backdoor_call(GPOINTER_TO_SIZE(udata) + 1);
}

/* CPUID leaves 0x400000xx, answered like VMware ESXi (cpuid=on). */
static void on_cpuid(unsigned int vcpu, void *udata)
{
	uint32_t leaf = (uint32_t)reg_read(r_rax);
	/* highest leaf, then "VMwareVMware" in ebx, ecx, edx */
	static const uint64_t vmware[4] = {
		0x40000000u, 0x61774d56u, 0x4d566572u, 0x65726177u,
	};
	static const uint64_t none[4];

	(void)vcpu;
	if ((leaf & 0xffffff00u) != 0x40000000u)
		return;
	answer_later(GPOINTER_TO_SIZE(udata) + 2,
		     leaf == 0x40000000u ? vmware : none, 0xf);
}

/* Is pc the address after a trigger instruction seen so far? */
static bool is_next_pc(uint64_t pc)
{
	return g_hash_table_contains(ans.next_pcs, GSIZE_TO_POINTER(pc));
}

static void tb_trans(struct qemu_plugin_tb *tb, void *udata)
{
	size_t n = qemu_plugin_tb_n_insns(tb);

	(void)udata;
	pthread_mutex_lock(&ans.mu);
	for (size_t i = 0; i < n; i++) {
		struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
		size_t len = qemu_plugin_insn_size(insn);
		uint64_t vaddr = qemu_plugin_insn_vaddr(insn);
		void *pc = GSIZE_TO_POINTER(vaddr);
		qemu_plugin_vcpu_udata_cb_t trigger = NULL;
		uint8_t op[2] = { 0, 0 };

		/* delivery first: the instruction may be a trigger itself */
		if (is_next_pc(vaddr))
			qemu_plugin_register_vcpu_insn_exec_cb(insn, on_next,
					QEMU_PLUGIN_CB_RW_REGS, pc);
		if (len == 1 && qemu_plugin_insn_data(insn, op, 1) == 1 &&
		    op[0] == 0xed)
			trigger = on_in;
		else if (fake_cpuid && len == 2 &&
			 qemu_plugin_insn_data(insn, op, 2) == 2 &&
			 op[0] == 0x0f && op[1] == 0xa2)
			trigger = on_cpuid;
		if (!trigger)
			continue;
		qemu_plugin_register_vcpu_insn_exec_cb(insn, trigger,
				QEMU_PLUGIN_CB_R_REGS, pc);
		g_hash_table_add(ans.next_pcs, GSIZE_TO_POINTER(vaddr + len));
	}
	pthread_mutex_unlock(&ans.mu);
}

static void vcpu_init(unsigned int vcpu, void *udata)
{
	g_autoptr(GArray) regs = NULL;

	(void)vcpu;
	(void)udata;
	pthread_mutex_lock(&h.mu);
	if (r_rax) {
		pthread_mutex_unlock(&h.mu);
		return;
	}
	regs = qemu_plugin_get_registers();
	for (guint i = 0; i < regs->len; i++) {
		qemu_plugin_reg_descriptor *d = (qemu_plugin_reg_descriptor *)
			(regs->data + i * g_array_get_element_size(regs));

		if (!strcmp(d->name, "rax"))
			r_rax = d->handle;
		else if (!strcmp(d->name, "rbx"))
			r_rbx = d->handle;
		else if (!strcmp(d->name, "rcx"))
			r_rcx = d->handle;
		else if (!strcmp(d->name, "rdx"))
			r_rdx = d->handle;
		else if (!strcmp(d->name, "rsi"))
			r_rsi = d->handle;
		else if (!strcmp(d->name, "rsp"))
			r_rsp = d->handle;
	}
	if (!r_rax || !r_rbx || !r_rcx || !r_rdx || !r_rsi || !r_rsp) {
		fprintf(stderr, "vmwbhost: rax/rbx/rcx/rdx/rsi/rsp not found among the vCPU registers\n");
		abort();
	}
	pthread_mutex_unlock(&h.mu);
}

/* ---------------------------------------------------------------- */
/* control socket                                                    */

struct client {
	int fd;
	size_t len;
	char buf[4096];
	GString *out;
};

static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;
	int base = 10;

	if (!s || !*s || *s == '-')
		return false;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	errno = 0;
	*v = strtoull(s, &end, base);
	return !errno && end != s && !*end;
}

static bool parse_status(const char *s, uint32_t *st)
{
	uint64_t v;

	for (uint32_t i = 0; i < ST_NUM; i++) {
		if (s && !strcmp(s, st_name[i])) {
			*st = i;
			return true;
		}
	}
	if (!parse_u64(s, &v) || v > ENTRY_ST_MASK)
		return false;
	*st = (uint32_t)v;
	return true;
}

static bool parse_onoff(const char *s, bool *v)
{
	if (s && !strcmp(s, "on"))
		*v = true;
	else if (s && !strcmp(s, "off"))
		*v = false;
	else
		return false;
	return true;
}

static gint cmp_u64(gconstpointer a, gconstpointer b)
{
	uint64_t x = GPOINTER_TO_SIZE(*(void *const *)a);
	uint64_t y = GPOINTER_TO_SIZE(*(void *const *)b);

	return x < y ? -1 : x > y;
}

static void list_locked(GString *out)
{
	GPtrArray *keys = g_ptr_array_new();
	GHashTableIter it;
	gpointer k;

	g_hash_table_iter_init(&it, h.locked);
	while (g_hash_table_iter_next(&it, &k, NULL))
		g_ptr_array_add(keys, k);
	g_ptr_array_sort(keys, cmp_u64);
	for (guint i = 0; i < keys->len; i++) {
		uint64_t pfn = GPOINTER_TO_SIZE(keys->pdata[i]);

		g_string_append_printf(out, "0x%" PRIx64 " %d\n", pfn,
				       locked_order(pfn));
	}
	g_ptr_array_free(keys, TRUE);
}

static void show_log(GString *out, uint64_t n)
{
	uint64_t first = h.commands > n ? h.commands - n : 0;

	if (h.commands - first > LOG_LEN)
		first = h.commands - LOG_LEN;
	for (uint64_t s = first; s < h.commands; s++) {
		const struct log_entry *e = &h.log[s % LOG_LEN];

		g_string_append_printf(out, "%" PRIu64 " %" PRIu64 " %s 0x%"
				       PRIx64 " 0x%" PRIx64 " 0x%x %" PRIu64
				       " %u\n", e->seq, e->usec,
				       cmd_name[MIN(e->cmd, (uint32_t)CMD_UNKNOWN)],
				       e->a1, e->a2, e->st, e->res, e->errs);
	}
}

static const char ctl_help[] =
	"target N | caps N | start-reply and|host | reset | reset-mid-batch [K] | busy N | "
	"busy-entry K [lock|unlock] | "
	"pin PFN... | unpin PFN... | notneeded PFN... | refuse-next N STATUS | "
	"accept-every N [STATUS] | clear-faults | clear-stats | clamp on|off | poison on|off | "
	"verbose on|off | state | locked | log [N] | help | quit";

/*
 * Execute one control line; output lines go to out.  Returns NULL on
 * success or an error text.  "quit" sets *quit.
 */
static const char *ctl_exec(char *line, GString *out, bool *quit)
{
	char *arg[CTL_MAX_ARGS], *save = NULL, *cmd, *a, *b;
	int argc = 0;
	uint64_t v = 0, w = 0;
	bool on;

	for (char *t = strtok_r(line, " \t", &save); t;
	     t = strtok_r(NULL, " \t", &save)) {
		if (argc == CTL_MAX_ARGS)
			return "too many arguments";
		arg[argc++] = t;
	}
	if (!argc)
		return "empty command";
	cmd = arg[0];
	a = argc > 1 ? arg[1] : NULL;
	b = argc > 2 ? arg[2] : NULL;
#define NOARG() do { if (argc > 1) return "this command takes no argument"; } while (0)
#define ONEARG() do { if (argc > 2) return "too many arguments"; } while (0)
	if (!strcmp(cmd, "target")) {
		ONEARG();
		if (!parse_u64(a, &v))
			return "usage: target N (pages, decimal or 0x hex, < 2^64)";
		h.target = v;
	} else if (!strcmp(cmd, "caps")) {
		ONEARG();
		if (!parse_u64(a, &v) || v > UINT32_MAX)
			return "usage: caps N (32-bit mask, used at the next START)";
		h.host_caps = (uint32_t)v;
	} else if (!strcmp(cmd, "start-reply")) {
		ONEARG();
		if (a && !strcmp(a, "and"))
			h.reply_host_caps = false;
		else if (a && !strcmp(a, "host"))
			h.reply_host_caps = true;
		else
			return "usage: start-reply and|host";
	} else if (!strcmp(cmd, "reset")) {
		NOARG();
		h.reset_pending = true;
	} else if (!strcmp(cmd, "reset-mid-batch")) {
		ONEARG();
		if (a && (!parse_u64(a, &v) || v == 0 || v > BATCH_MAX))
			return "usage: reset-mid-batch [K] (1..512 entries; default half)";
		h.mid_batch_pending = true;
		h.mid_batch_keep = a ? v : 0;
	} else if (!strcmp(cmd, "busy")) {
		ONEARG();
		if (!parse_u64(a, &v))
			return "usage: busy N";
		h.busy_left = v;
	} else if (!strcmp(cmd, "busy-entry")) {
		int dir = -1;

		if (argc > 3 || !parse_u64(a, &v) ||
		    (b && strcmp(b, "lock") && strcmp(b, "unlock")))
			return "usage: busy-entry K [lock|unlock] (K-th entry from now; 0: off)";
		if (b)
			dir = !strcmp(b, "lock");
		h.busy_entry_left = v;
		h.busy_entry_dir = dir;
	} else if (!strcmp(cmd, "pin") || !strcmp(cmd, "notneeded") ||
		   !strcmp(cmd, "unpin")) {
		/* all PFNs are checked before any is taken */
		if (argc < 2)
			return "usage: pin|unpin|notneeded PFN...";
		for (int i = 1; i < argc; i++)
			if (!parse_u64(arg[i], &v))
				return "usage: pin|unpin|notneeded PFN...";
		for (int i = 1; i < argc; i++) {
			gpointer k;

			parse_u64(arg[i], &v);
			k = GSIZE_TO_POINTER(v);
			if (!strcmp(cmd, "pin")) {
				g_hash_table_add(h.pinned, k);
			} else if (!strcmp(cmd, "notneeded")) {
				g_hash_table_add(h.notneeded, k);
			} else {
				g_hash_table_remove(h.pinned, k);
				g_hash_table_remove(h.notneeded, k);
			}
		}
	} else if (!strcmp(cmd, "refuse-next")) {
		uint32_t st;

		if (argc > 3 || !parse_u64(a, &v) || !parse_status(b, &st) || !st)
			return "usage: refuse-next N STATUS (name or 1..31)";
		h.refuse_left = v;
		h.refuse_status = st;
	} else if (!strcmp(cmd, "accept-every")) {
		uint32_t st = ST_PPN_NOTNEEDED;

		if (argc > 3 || !parse_u64(a, &v) ||
		    (b && (!parse_status(b, &st) || !st)))
			return "usage: accept-every N [STATUS] (0: off; default ppn_notneeded)";
		h.accept_every = v;
		h.accept_seen = 0;
		h.accept_status = st;
	} else if (!strcmp(cmd, "clear-faults")) {
		NOARG();
		g_hash_table_remove_all(h.pinned);
		g_hash_table_remove_all(h.notneeded);
		h.busy_left = h.refuse_left = h.accept_every = 0;
		h.busy_entry_left = 0;
		h.reset_pending = h.mid_batch_pending = false;
	} else if (!strcmp(cmd, "clear-stats")) {
		NOARG();
		memset(h.ops, 0, sizeof(h.ops));
		memset(h.fails, 0, sizeof(h.fails));
		memset(h.status_count, 0, sizeof(h.status_count));
		h.protocol_errors = h.poison_violations = h.host_errors = 0;
		h.refused_entries = h.resets_injected = h.starts = 0;
		h.before_start = h.busy_entries = 0;
		h.tick_cmds = h.tick_entries = 0;
		h.tick_cmds_max = h.tick_entries_max = 0;
		h.last_error[0] = 0;
	} else if (!strcmp(cmd, "clamp") || !strcmp(cmd, "poison") ||
		   !strcmp(cmd, "verbose")) {
		ONEARG();
		if (!parse_onoff(a, &on))
			return "usage: clamp|poison|verbose on|off";
		if (cmd[0] == 'c')
			h.clamp = on;
		else if (cmd[0] == 'p')
			h.poison = on;
		else
			h.verbose = on;
	} else if (!strcmp(cmd, "state")) {
		char *txt = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&txt, &len);

		NOARG();
		if (!f)
			return "out of memory";
		dump_state(f);
		fclose(f);
		g_string_append_len(out, txt, len);
		free(txt);
	} else if (!strcmp(cmd, "locked")) {
		NOARG();
		list_locked(out);
	} else if (!strcmp(cmd, "log")) {
		ONEARG();
		if (a && !parse_u64(a, &w))
			return "usage: log [N]";
		show_log(out, a ? w : 32);
	} else if (!strcmp(cmd, "help")) {
		NOARG();
		g_string_append_printf(out, "%s\n", ctl_help);
	} else if (!strcmp(cmd, "quit")) {
		NOARG();
		*quit = true;
	} else {
		return "unknown command (try: help)";
	}
#undef NOARG
#undef ONEARG
	return NULL;
}

/* Handle every complete line in c->buf; false when the client is done. */
static bool client_lines(struct client *c)
{
	char *nl;

	while ((nl = memchr(c->buf, '\n', c->len))) {
		size_t used = (size_t)(nl - c->buf) + 1;
		bool quit = false;
		const char *err;

		*nl = 0;
		if (nl > c->buf && nl[-1] == '\r')
			nl[-1] = 0;
		g_string_truncate(c->out, 0);
		pthread_mutex_lock(&h.mu);
		err = ctl_exec(c->buf, c->out, &quit);
		pthread_mutex_unlock(&h.mu);
		if (err)
			g_string_append_printf(c->out, "err %s\n", err);
		else
			g_string_append(c->out, "ok\n");
		for (size_t off = 0; off < c->out->len;) {
			ssize_t r = send(c->fd, c->out->str + off,
					 c->out->len - off, MSG_NOSIGNAL);

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return false;
			off += (size_t)r;
		}
		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
		if (quit)
			return false;
	}
	if (c->len == sizeof(c->buf)) {
		static const char msg[] = "err line too long\n";

		send(c->fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL);
		return false;
	}
	return true;
}

static void *ctl_main(void *arg)
{
	struct client cl[MAX_CLIENTS];
	int ncl = 0;

	(void)arg;
	for (;;) {
		struct pollfd p[MAX_CLIENTS + 2];
		int np = 0;

		p[np++] = (struct pollfd){ .fd = wake_pipe[0], .events = POLLIN };
		p[np++] = (struct pollfd){ .fd = ctl_fd, .events = POLLIN };
		for (int i = 0; i < ncl; i++)
			p[np++] = (struct pollfd){ .fd = cl[i].fd, .events = POLLIN };
		if (poll(p, (nfds_t)np, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents)
			break;
		for (int i = ncl - 1; i >= 0; i--) {
			struct client *c = &cl[i];
			ssize_t r;

			if (!p[2 + i].revents)
				continue;
			r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
			if (r > 0) {
				c->len += (size_t)r;
				if (client_lines(c))
					continue;
			} else if (r < 0 && errno == EINTR) {
				continue;
			}
			close(c->fd);
			g_string_free(c->out, TRUE);
			cl[i] = cl[--ncl];
		}
		if (p[1].revents & POLLIN) {
			int fd = accept4(ctl_fd, NULL, NULL, SOCK_CLOEXEC);
			/* a client that stops reading must not block us forever */
			struct timeval tv = { .tv_sec = 5 };

			if (fd >= 0 && ncl == MAX_CLIENTS) {
				static const char msg[] = "err too many clients\n";

				send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL);
				close(fd);
			} else if (fd >= 0) {
				setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv,
					   sizeof(tv));
				cl[ncl].fd = fd;
				cl[ncl].len = 0;
				cl[ncl].out = g_string_new(NULL);
				ncl++;
			}
		}
	}
	for (int i = 0; i < ncl; i++) {
		close(cl[i].fd);
		g_string_free(cl[i].out, TRUE);
	}
	return NULL;
}

static int ctl_start(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (strlen(ctl_path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "vmwbhost: ctl path too long (max %zu bytes): %s\n",
			sizeof(sa.sun_path) - 1, ctl_path);
		return -1;
	}
	strcpy(sa.sun_path, ctl_path);
	unlink(ctl_path);
	ctl_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ctl_fd < 0 || bind(ctl_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(ctl_fd, 4) || pipe(wake_pipe)) {
		fprintf(stderr, "vmwbhost: control socket %s: %s\n", ctl_path,
			strerror(errno));
		return -1;
	}
	if (pthread_create(&ctl_thread, NULL, ctl_main, NULL)) {
		fprintf(stderr, "vmwbhost: cannot start the control thread\n");
		return -1;
	}
	ctl_running = true;
	return 0;
}

static void at_exit(void *udata)
{
	(void)udata;
	if (ctl_running) {
		if (write(wake_pipe[1], "x", 1) == 1)
			pthread_join(ctl_thread, NULL);
		ctl_running = false;
		close(ctl_fd);
		unlink(ctl_path);
	}
	pthread_mutex_lock(&h.mu);
	write_state_file();
	fprintf(stderr, "vmwbhost: exit: commands=%" PRIu64 " target=%" PRIu64
		" locked_pages=%" PRIu64 " protocol_errors=%" PRIu64
		" poison_violations=%" PRIu64 " host_errors=%" PRIu64 "\n",
		h.commands, h.target, h.locked_pages, h.protocol_errors,
		h.poison_violations, h.host_errors);
	pthread_mutex_unlock(&h.mu);
}

/* ---------------------------------------------------------------- */

static bool parse_arg(char *arg)
{
	char *eq = strchr(arg, '=');
	const char *k = arg, *v;
	uint64_t n;

	if (!eq)
		return false;
	*eq = 0;
	v = eq + 1;
	if (!strcmp(k, "ctl") && *v)
		ctl_path = v;
	else if (!strcmp(k, "state_file") && *v)
		h.state_file = v;
	else if (!strcmp(k, "target") && parse_u64(v, &n))
		h.target = n;
	else if (!strcmp(k, "caps") && parse_u64(v, &n) && n <= UINT32_MAX)
		h.host_caps = (uint32_t)n;
	else if (!strcmp(k, "ram_mb") && parse_u64(v, &n) && n && n < (1ULL << 40))
		set_ram_layout(n);
	else if (!strcmp(k, "poison"))
		return parse_onoff(v, &h.poison);
	else if (!strcmp(k, "clamp"))
		return parse_onoff(v, &h.clamp);
	else if (!strcmp(k, "verbose"))
		return parse_onoff(v, &h.verbose);
	else if (!strcmp(k, "cpuid"))
		return parse_onoff(v, &fake_cpuid);
	else if (!strcmp(k, "start_reply") && !strcmp(v, "and"))
		h.reply_host_caps = false;
	else if (!strcmp(k, "start_reply") && !strcmp(v, "host"))
		h.reply_host_caps = true;
	else
		return false;
	return true;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id,
					   const qemu_info_t *info,
					   int argc, char **argv)
{
	if (info->version.cur != VMWB_API_EXPECTED ||
	    info->version.min > VMWB_API_EXPECTED) {
		fprintf(stderr, "vmwbhost: supports QEMU plugin API %d only (QEMU 11.1), this QEMU has API %d (min %d); rebuild against the pinned QEMU\n",
			VMWB_API_EXPECTED, info->version.cur, info->version.min);
		return -1;
	}
	if (!info->system_emulation || strcmp(info->target_name, "x86_64")) {
		fprintf(stderr, "vmwbhost: needs qemu-system-x86_64 (got %s%s)\n",
			info->target_name,
			info->system_emulation ? "" : ", user mode");
		return -1;
	}
	t0_usec = now_usec();
	for (int i = 0; i < argc; i++) {
		char *copy = g_strdup(argv[i]);

		if (!parse_arg(copy)) {
			fprintf(stderr, "vmwbhost: bad plugin argument '%s'\n",
				argv[i]);
			return -1;
		}
	}
	h.locked = g_hash_table_new(g_direct_hash, g_direct_equal);
	h.pinned = g_hash_table_new(g_direct_hash, g_direct_equal);
	h.notneeded = g_hash_table_new(g_direct_hash, g_direct_equal);
	ans.next_pcs = g_hash_table_new(g_direct_hash, g_direct_equal);
	poison_4k = g_byte_array_sized_new(PAGE_SIZE);
	g_byte_array_set_size(poison_4k, PAGE_SIZE);
	memset(poison_4k->data, POISON, PAGE_SIZE);
	poison_2m = g_byte_array_sized_new(PAGE_SIZE << ORDER_2M);
	g_byte_array_set_size(poison_2m, PAGE_SIZE << ORDER_2M);
	memset(poison_2m->data, POISON, PAGE_SIZE << ORDER_2M);
	if (ctl_path && ctl_start())
		return -1;
	fprintf(stderr, "vmwbhost: ready (plugin API %d, host caps 0x%x, target %" PRIu64 ", ram %" PRIu64 " MiB, ctl %s)\n",
		VMWB_API, h.host_caps, h.target, h.ram_mb,
		ctl_path ? ctl_path : "none");
	qemu_plugin_register_vcpu_init_cb(id, vcpu_init, NULL);
	qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans, NULL);
	qemu_plugin_register_atexit_cb(id, at_exit, NULL);
	return 0;
}
