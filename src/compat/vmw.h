/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel differences that only vmw_balloon cares about.
 *
 * VMCI doorbells exist only when the kernel was configured with
 * CONFIG_VMWARE_VMCI (module vmw_vmci, which then becomes a dependency of
 * ours); VMW_BALLOON_HAVE_DOORBELL says whether to use them.  Without
 * them the driver polls the host once a second, as it does anyway when
 * the host does not offer signalled wakeups.
 */
#ifndef BALLOON_COMPAT_VMW_H
#define BALLOON_COMPAT_VMW_H

#include "compat/compat.h"

#if defined(HAVE_VMW_VMCI_DOORBELL) && IS_REACHABLE(CONFIG_VMWARE_VMCI)
#define VMW_BALLOON_HAVE_DOORBELL 1
#endif

#endif /* BALLOON_COMPAT_VMW_H */
