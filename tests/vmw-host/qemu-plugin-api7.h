/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qemu-plugin-api7.h - declarations of the few QEMU TCG plugin API entry
 * points that vmwbhost.c uses, written by hand because Debian ships no
 * qemu-plugin.h in any package.
 *
 * Valid for plugin API version 7 exactly, as exported by Debian sid's
 * qemu-system-x86 1:11.1.x (min = cur = 7).  The layouts and callback
 * conventions below were established by experiment against that binary
 * (see shared/research/vmware-host.md); the plugin refuses to run on any
 * other API version, and these declarations must be re-checked before the
 * pinned QEMU version is changed.
 *
 * The symbols are resolved against the qemu-system-x86_64 executable when
 * QEMU dlopen()s the plugin; nothing is linked in.
 */
#ifndef VMWB_QEMU_PLUGIN_API7_H
#define VMWB_QEMU_PLUGIN_API7_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;

/* Handed to qemu_plugin_install(); only the leading members are used. */
typedef struct {
	const char *target_name;
	struct {
		int min;
		int cur;
	} version;
	bool system_emulation;
	union {
		struct {
			int smp_vcpus;
			int max_vcpus;
		} system;
	};
} qemu_info_t;

enum qemu_plugin_cb_flags {
	QEMU_PLUGIN_CB_NO_REGS,
	QEMU_PLUGIN_CB_R_REGS,
	QEMU_PLUGIN_CB_RW_REGS,
	QEMU_PLUGIN_CB_RW_REGS_PC,	/* not used: see vmwbhost.c */
};

struct qemu_plugin_tb;
struct qemu_plugin_insn;
struct qemu_plugin_register;

/*
 * One element of the GArray from qemu_plugin_get_registers(): 32 bytes in
 * API 7 (24 before).  Index the array with g_array_get_element_size().
 */
typedef struct {
	struct qemu_plugin_register *handle;
	const char *name;
	const char *feature;
	bool is_readonly;
} qemu_plugin_reg_descriptor;

/* API 7: no callback receives the plugin id; all take a userdata pointer. */
typedef void (*qemu_plugin_udata_cb_t)(void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index,
					    void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(struct qemu_plugin_tb *tb,
					       void *userdata);

void qemu_plugin_register_vcpu_init_cb(qemu_plugin_id_t id,
				       qemu_plugin_vcpu_udata_cb_t cb,
				       void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
					   qemu_plugin_vcpu_tb_trans_cb_t cb,
					   void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id,
				    qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
					    qemu_plugin_vcpu_udata_cb_t cb,
					    enum qemu_plugin_cb_flags flags,
					    void *userdata);

size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb,
						 size_t idx);
/* Copies up to len bytes of the instruction; returns the count copied. */
size_t qemu_plugin_insn_data(const struct qemu_plugin_insn *insn,
			     void *dest, size_t len);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);

GArray *qemu_plugin_get_registers(void);
/* API 7: both return true on success. */
bool qemu_plugin_read_register(struct qemu_plugin_register *handle,
			       GByteArray *buf);
bool qemu_plugin_write_register(struct qemu_plugin_register *handle,
				GByteArray *buf);

/* Guest-physical accesses; 0 means success. */
int qemu_plugin_read_memory_hwaddr(uint64_t addr, GByteArray *data,
				   size_t len);
int qemu_plugin_write_memory_hwaddr(uint64_t addr, GByteArray *data);

#endif
