/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Tracepoints of the balloon drivers, in the trace system "balloon":
 *
 *	trace-cmd record -e balloon
 *	echo 1 > /sys/kernel/tracing/events/balloon/enable
 *
 * Both drivers share the event classes; each names its events after
 * itself (virtio_balloon_*, vmw_balloon_*), so that both modules can be
 * loaded at once.  A driver defines BALLOON_TRACE_VIRTIO or
 * BALLOON_TRACE_VMW before including this header, and one of its files
 * defines CREATE_TRACE_POINTS.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM balloon

#if !defined(BALLOON_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define BALLOON_TRACE_H

#include <linux/tracepoint.h>

/* Why the balloon's size or target moved. */
#define BALLOON_SOURCE_HOST	0
#define BALLOON_SOURCE_OOM	1
#define BALLOON_SOURCE_PRESSURE	2
#define balloon_show_source(s)						\
	__print_symbolic(s, { BALLOON_SOURCE_HOST, "host" },		\
			 { BALLOON_SOURCE_OOM, "oom" },			\
			 { BALLOON_SOURCE_PRESSURE, "pressure" })

DECLARE_EVENT_CLASS(balloon_target_class,
		    TP_PROTO(unsigned long old_frames, unsigned long new_frames,
			     int source),
		    TP_ARGS(old_frames, new_frames, source),
		    TP_STRUCT__entry(__field(unsigned long, old_frames)
				     __field(unsigned long, new_frames)
				     __field(int, source)),
		    TP_fast_assign(__entry->old_frames = old_frames;
				   __entry->new_frames = new_frames;
				   __entry->source = source;),
		    TP_printk("old=%lu new=%lu source=%s", __entry->old_frames,
			      __entry->new_frames,
			      balloon_show_source(__entry->source))
);

DECLARE_EVENT_CLASS(balloon_batch_class,
		    TP_PROTO(bool inflate, unsigned int frames_4k,
			     unsigned int frames_2m, u64 ns, int err),
		    TP_ARGS(inflate, frames_4k, frames_2m, ns, err),
		    TP_STRUCT__entry(__field(bool, inflate)
				     __field(unsigned int, frames_4k)
				     __field(unsigned int, frames_2m)
				     __field(u64, ns)
				     __field(int, err)),
		    TP_fast_assign(__entry->inflate = inflate;
				   __entry->frames_4k = frames_4k;
				   __entry->frames_2m = frames_2m;
				   __entry->ns = ns;
				   __entry->err = err;),
		    TP_printk("%s frames_4k=%u frames_2m=%u us=%llu err=%d",
			      __entry->inflate ? "inflate" : "deflate",
			      __entry->frames_4k, __entry->frames_2m,
			      div_u64(__entry->ns, NSEC_PER_USEC), __entry->err)
);

/* Only virtio_balloon has these two; a class without events warns (W=1). */
#ifdef BALLOON_TRACE_VIRTIO
DECLARE_EVENT_CLASS(balloon_stats_class,
		    TP_PROTO(unsigned int tags),
		    TP_ARGS(tags),
		    TP_STRUCT__entry(__field(unsigned int, tags)),
		    TP_fast_assign(__entry->tags = tags;),
		    TP_printk("tags=%u", __entry->tags)
);

DECLARE_EVENT_CLASS(balloon_give_back_class,
		    TP_PROTO(int source, unsigned long wanted,
			     unsigned long frames, unsigned int hold_ms),
		    TP_ARGS(source, wanted, frames, hold_ms),
		    TP_STRUCT__entry(__field(int, source)
				     __field(unsigned long, wanted)
				     __field(unsigned long, frames)
				     __field(unsigned int, hold_ms)),
		    TP_fast_assign(__entry->source = source;
				   __entry->wanted = wanted;
				   __entry->frames = frames;
				   __entry->hold_ms = hold_ms;),
		    TP_printk("source=%s wanted=%lu frames=%lu hold_ms=%u",
			      balloon_show_source(__entry->source),
			      __entry->wanted, __entry->frames, __entry->hold_ms)
);
#endif

DECLARE_EVENT_CLASS(balloon_backoff_class,
		    TP_PROTO(unsigned long held, long long missing,
			     unsigned int retry_ms),
		    TP_ARGS(held, missing, retry_ms),
		    TP_STRUCT__entry(__field(unsigned long, held)
				     __field(long long, missing)
				     __field(unsigned int, retry_ms)),
		    TP_fast_assign(__entry->held = held;
				   __entry->missing = missing;
				   __entry->retry_ms = retry_ms;),
		    TP_printk("held=%lu missing=%lld retry_ms=%u", __entry->held,
			      __entry->missing, __entry->retry_ms)
);

#ifdef BALLOON_TRACE_VIRTIO
DEFINE_EVENT(balloon_target_class, virtio_balloon_target,
	     TP_PROTO(unsigned long old_frames, unsigned long new_frames,
		      int source),
	     TP_ARGS(old_frames, new_frames, source));
DEFINE_EVENT(balloon_batch_class, virtio_balloon_batch,
	     TP_PROTO(bool inflate, unsigned int frames_4k,
		      unsigned int frames_2m, u64 ns, int err),
	     TP_ARGS(inflate, frames_4k, frames_2m, ns, err));
DEFINE_EVENT(balloon_give_back_class, virtio_balloon_give_back,
	     TP_PROTO(int source, unsigned long wanted, unsigned long frames,
		      unsigned int hold_ms),
	     TP_ARGS(source, wanted, frames, hold_ms));
DEFINE_EVENT(balloon_backoff_class, virtio_balloon_backoff,
	     TP_PROTO(unsigned long held, long long missing,
		      unsigned int retry_ms),
	     TP_ARGS(held, missing, retry_ms));
DEFINE_EVENT(balloon_stats_class, virtio_balloon_stats,
	     TP_PROTO(unsigned int tags),
	     TP_ARGS(tags));
#endif

#ifdef BALLOON_TRACE_VMW
DEFINE_EVENT(balloon_target_class, vmw_balloon_target,
	     TP_PROTO(unsigned long old_frames, unsigned long new_frames,
		      int source),
	     TP_ARGS(old_frames, new_frames, source));
DEFINE_EVENT(balloon_batch_class, vmw_balloon_batch,
	     TP_PROTO(bool inflate, unsigned int frames_4k,
		      unsigned int frames_2m, u64 ns, int err),
	     TP_ARGS(inflate, frames_4k, frames_2m, ns, err));
DEFINE_EVENT(balloon_backoff_class, vmw_balloon_backoff,
	     TP_PROTO(unsigned long held, long long missing,
		      unsigned int retry_ms),
	     TP_ARGS(held, missing, retry_ms));

/* What happened to the pages of a refused event. */
#define BALLOON_VMW_LOCK	0
#define BALLOON_VMW_UNLOCK	1
#define BALLOON_VMW_RESET	2

/*
 * Pages of one batch the host refused to lock or unlock (status: the
 * last refused entry's), or pages freed without telling the host after
 * it forgot them all (reset).
 */
TRACE_EVENT(vmw_balloon_refused,
	    TP_PROTO(int op, unsigned int pages, bool huge,
		     unsigned long status),
	    TP_ARGS(op, pages, huge, status),
	    TP_STRUCT__entry(__field(int, op)
			     __field(unsigned int, pages)
			     __field(bool, huge)
			     __field(unsigned long, status)),
	    TP_fast_assign(__entry->op = op;
			   __entry->pages = pages;
			   __entry->huge = huge;
			   __entry->status = status;),
	    TP_printk("%s pages=%u size=%s status=%lu",
		      __print_symbolic(__entry->op,
				       { BALLOON_VMW_LOCK, "lock" },
				       { BALLOON_VMW_UNLOCK, "unlock" },
				       { BALLOON_VMW_RESET, "reset" }),
		      __entry->pages, __entry->huge ? "2M" : "4k",
		      __entry->status)
);

/*
 * One backdoor command: its arguments, the host's status and its result
 * (the target, or for START the granted capabilities).  The names are
 * those of the vmmemctl debugfs file.
 */
#define balloon_vmw_show_cmd(c)						\
	__print_symbolic(c, { 0, "start" }, { 1, "target" },		\
			 { 2, "lock" }, { 3, "unlock" },		\
			 { 4, "guestType" }, { 6, "batchLock" },	\
			 { 7, "batchUnlock" }, { 8, "2m-lock" },	\
			 { 9, "2m-unlock" }, { 10, "doorbellSet" })

TRACE_EVENT(vmw_balloon_cmd,
	    TP_PROTO(unsigned int cmd, unsigned long arg1, unsigned long arg2,
		     unsigned long status, unsigned long result),
	    TP_ARGS(cmd, arg1, arg2, status, result),
	    TP_STRUCT__entry(__field(unsigned int, cmd)
			     __field(unsigned long, arg1)
			     __field(unsigned long, arg2)
			     __field(unsigned long, status)
			     __field(unsigned long, result)),
	    TP_fast_assign(__entry->cmd = cmd;
			   __entry->arg1 = arg1;
			   __entry->arg2 = arg2;
			   __entry->status = status;
			   __entry->result = result;),
	    TP_printk("%s arg1=%#lx arg2=%lu status=%#lx result=%lu",
		      balloon_vmw_show_cmd(__entry->cmd), __entry->arg1,
		      __entry->arg2, __entry->status, __entry->result)
);
#endif

#endif /* BALLOON_TRACE_H */

/* This part must be outside the include guard. */
#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE balloon_trace
#include <trace/define_trace.h>
