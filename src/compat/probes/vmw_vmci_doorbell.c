// SPDX-License-Identifier: GPL-2.0
/* symbol: vmci_doorbell_create (VMCI doorbells need CONFIG_VMWARE_VMCI) */
#include <linux/vmw_vmci_api.h>

int vmw_probe_vmci_doorbell;
