/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kzalloc_obj(), the typed allocation helper of newer kernels, for the
 * kernels without it.  Callers always pass the gfp flags.
 */
#ifndef BALLOON_COMPAT_SLAB_H
#define BALLOON_COMPAT_SLAB_H

#include "compat/compat.h"

#include <linux/slab.h>

#ifndef HAVE_KZALLOC_OBJ
#define kzalloc_obj(obj, gfp) kzalloc(sizeof(obj), gfp)
#endif

#endif /* BALLOON_COMPAT_SLAB_H */
