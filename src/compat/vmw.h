/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel differences that only vmw_balloon cares about.
 *
 * VMCI doorbells exist only when the kernel was configured with
 * CONFIG_VMWARE_VMCI (module vmw_vmci, which then becomes a dependency of
 * ours) and has its doorbell API (HAVE_VMW_VMCI_DOORBELL).  Without them
 * the stubs below say so (VMW_DOORBELL_AVAILABLE 0, creating a doorbell
 * fails) and the driver polls the host once a second, as it does anyway
 * when the host does not offer signalled wakeups.
 */
#ifndef BALLOON_COMPAT_VMW_H
#define BALLOON_COMPAT_VMW_H

#include "compat/compat.h"

#include <linux/errno.h>
#include <linux/limits.h>
#include <linux/types.h>

#if defined(HAVE_VMW_VMCI_DOORBELL) && IS_REACHABLE(CONFIG_VMWARE_VMCI)
#include <linux/vmw_vmci_api.h>
#include <linux/vmw_vmci_defs.h>

#define VMW_DOORBELL_AVAILABLE	1
/* DOORBELL_SET with this context and resource: no doorbell any more. */
#define VMW_DOORBELL_NONE	VMCI_INVALID_ID

/* A doorbell the host may ring: its VMCI handle, or none. */
struct vmw_doorbell {
	struct vmci_handle handle;
};

static inline void vmw_doorbell_init(struct vmw_doorbell *db)
{
	db->handle = VMCI_INVALID_HANDLE;
}

/* 0, or the VMCI error that kept the doorbell from being made. */
static inline int vmw_doorbell_create(struct vmw_doorbell *db,
				      void (*ring)(void *data), void *data)
{
	int err = vmci_doorbell_create(&db->handle, VMCI_FLAG_DELAYED_CB,
				       VMCI_PRIVILEGE_FLAG_RESTRICTED, ring, data);

	return err == VMCI_SUCCESS ? 0 : err;
}

/* Returns once no callback of the doorbell runs or is queued. */
static inline void vmw_doorbell_destroy(struct vmw_doorbell *db)
{
	if (!vmci_handle_is_invalid(db->handle)) {
		vmci_doorbell_destroy(db->handle);
		db->handle = VMCI_INVALID_HANDLE;
	}
}

/* The two words of DOORBELL_SET naming the doorbell to the host. */
static inline u32 vmw_doorbell_context(const struct vmw_doorbell *db)
{
	return db->handle.context;
}

static inline u32 vmw_doorbell_resource(const struct vmw_doorbell *db)
{
	return db->handle.resource;
}

#else /* no VMCI doorbells */

#define VMW_DOORBELL_AVAILABLE	0
#define VMW_DOORBELL_NONE	(~0)

struct vmw_doorbell {
};

static inline void vmw_doorbell_init(struct vmw_doorbell *db)
{
}

static inline int vmw_doorbell_create(struct vmw_doorbell *db,
				      void (*ring)(void *data), void *data)
{
	return -ENODEV;
}

static inline void vmw_doorbell_destroy(struct vmw_doorbell *db)
{
}

static inline u32 vmw_doorbell_context(const struct vmw_doorbell *db)
{
	return U32_MAX;
}

static inline u32 vmw_doorbell_resource(const struct vmw_doorbell *db)
{
	return U32_MAX;
}

#endif

#endif /* BALLOON_COMPAT_VMW_H */
