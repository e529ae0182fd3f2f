// SPDX-License-Identifier: GPL-2.0
/*
 * vb_break: a test helper, never installed.  Loading it marks every queue
 * of the guest's virtio balloon device broken, exactly as the virtio PCI
 * transport does when a device vanishes under its driver (surprise
 * removal: virtio_break_device()), while the device itself stays: the
 * host still reads what the driver writes to the config space (actual),
 * but takes no more requests and hands none back.
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/string.h>
#include <linux/virtio.h>

/* QEMU's virtio-balloon-pci: transitional and modern device IDs. */
#define VB_PCI_TRANSITIONAL	0x1002
#define VB_PCI_MODERN		0x1045

static int vb_break_child(struct device *dev, void *unused)
{
	if (!dev->bus || strcmp(dev->bus->name, "virtio"))
		return 0;
	virtio_break_device(dev_to_virtio(dev));
	dev_info(dev, "vb_break: all queues marked broken\n");
	return 1;
}

static int __init vb_break_init(void)
{
	struct pci_dev *pdev = NULL;
	int found = 0;

	while (!found &&
	       (pdev = pci_get_device(PCI_VENDOR_ID_REDHAT_QUMRANET, PCI_ANY_ID, pdev)))
		if (pdev->device == VB_PCI_TRANSITIONAL || pdev->device == VB_PCI_MODERN)
			found = device_for_each_child(&pdev->dev, NULL, vb_break_child);
	pci_dev_put(pdev);
	return found ? 0 : -ENODEV;
}

static void __exit vb_break_exit(void)
{
}

module_init(vb_break_init);
module_exit(vb_break_exit);
MODULE_DESCRIPTION("Test helper: break the virtio balloon's queues");
MODULE_LICENSE("GPL");
