/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The VMware balloon protocol as the host speaks it: the backdoor call,
 * the capabilities START negotiates, the commands, the statuses and the
 * batch page format.  Nothing here is a choice of this driver.
 *
 * A command is one "in" from the balloon port with the magic in eax, the
 * command in ecx and its arguments in ebx and esi.  The hypervisor traps
 * it and answers in registers: status in eax, capabilities in ecx
 * (START), the target in ebx.
 */
#ifndef VMW_PROTOCOL_H
#define VMW_PROTOCOL_H

#include <linux/bits.h>
#include <linux/mm.h>
#include <linux/types.h>

/* The balloon's own backdoor, distinct from the general VMware one. */
#define VMW_BALLOON_HV_PORT		0x5670
#define VMW_BALLOON_HV_MAGIC		0x456c6d6f
#define VMW_BALLOON_GUEST_ID		1	/* Linux */

/* Capabilities negotiated by START; bit 0 is reserved. */
#define VMW_BALLOON_BASIC_CMDS		BIT(1)
#define VMW_BALLOON_BATCHED_CMDS	BIT(2)
#define VMW_BALLOON_BATCHED_2M_CMDS	BIT(3)
#define VMW_BALLOON_SIGNALLED_WAKEUP_CMD BIT(4)
#define VMW_BALLOON_64_BIT_TARGET	BIT(5)

enum vmballoon_cmd {
	VMW_BALLOON_CMD_START,
	VMW_BALLOON_CMD_GET_TARGET,
	VMW_BALLOON_CMD_LOCK,
	VMW_BALLOON_CMD_UNLOCK,
	VMW_BALLOON_CMD_GUEST_ID,
	/* 5 is not used */
	VMW_BALLOON_CMD_BATCHED_LOCK = 6,
	VMW_BALLOON_CMD_BATCHED_UNLOCK,
	VMW_BALLOON_CMD_BATCHED_2M_LOCK,
	VMW_BALLOON_CMD_BATCHED_2M_UNLOCK,
	VMW_BALLOON_CMD_VMCI_DOORBELL_SET,
	VMW_BALLOON_CMD_NUM
};

/* Commands that return the current target in ebx when they succeed. */
#define VMW_BALLOON_CMDS_WITH_TARGET	(BIT(VMW_BALLOON_CMD_GET_TARGET) |	\
					 BIT(VMW_BALLOON_CMD_LOCK) |		\
					 BIT(VMW_BALLOON_CMD_UNLOCK) |		\
					 BIT(VMW_BALLOON_CMD_BATCHED_LOCK) |	\
					 BIT(VMW_BALLOON_CMD_BATCHED_UNLOCK) |	\
					 BIT(VMW_BALLOON_CMD_BATCHED_2M_LOCK) |	\
					 BIT(VMW_BALLOON_CMD_BATCHED_2M_UNLOCK))

/* Status codes, for a whole command and for one batch entry. */
enum vmballoon_status {
	VMW_BALLOON_SUCCESS,
	VMW_BALLOON_ERROR_CMD_INVALID,
	VMW_BALLOON_ERROR_PPN_INVALID,
	VMW_BALLOON_ERROR_PPN_LOCKED,
	VMW_BALLOON_ERROR_PPN_UNLOCKED,
	VMW_BALLOON_ERROR_PPN_PINNED,
	VMW_BALLOON_ERROR_PPN_NOTNEEDED,
	VMW_BALLOON_ERROR_RESET,
	VMW_BALLOON_ERROR_BUSY,
	VMW_BALLOON_STATUS_NUM
};

/* START's answer when it also returns capabilities in ecx. */
#define VMW_BALLOON_SUCCESS_WITH_CAPABILITIES	0x03000000

/*
 * A batch page holds u64 entries: the page frame number from bit
 * PAGE_SHIFT up, written by us, and a status in bits 0-4, written by the
 * host.
 */
#define VMW_BALLOON_ENTRY_STATUS	GENMASK_ULL(4, 0)
#define VMW_BALLOON_BATCH_MAX_PAGES	(PAGE_SIZE / sizeof(u64))

/* Pages a 2 MiB balloon page stands for. */
#define VMW_BALLOON_2M_ORDER		(PMD_SHIFT - PAGE_SHIFT)

/* The backdoor call; returns the status. */
static inline unsigned long vmballoon_hv(unsigned long cmd, unsigned long arg1,
					 unsigned long arg2, unsigned long *ebx,
					 unsigned long *ecx)
{
	unsigned long ax = VMW_BALLOON_HV_MAGIC, bx = arg1, cx = cmd;
	unsigned long dx = VMW_BALLOON_HV_PORT, si = arg2;

	asm volatile("inl %%dx"
		     : "+a" (ax), "+b" (bx), "+c" (cx), "+d" (dx), "+S" (si)
		     :
		     : "memory");
	*ebx = bx;
	*ecx = cx;
	return ax;
}

#endif /* VMW_PROTOCOL_H */
