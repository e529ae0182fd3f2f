/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one place that knows how kernels differ.
 *
 * Every difference between the kernels we support (5.10 to 7.2) is
 * answered by a probe in compat/probes/ (see conftest.sh), which yields a
 * HAVE_* macro in the generated autoconf.h.  This header and its siblings
 * turn those answers into static inlines named after the newest API, so
 * the drivers read like current upstream code.  No kernel version numbers
 * are compared anywhere: distribution kernels carry backports.
 */
#ifndef BALLOON_COMPAT_H
#define BALLOON_COMPAT_H

#if !__has_include("compat/autoconf.h")
#error "balloon-dkms: no compat/autoconf.h: build with make -C src (it probes the kernel)"
#endif
#include "compat/autoconf.h"
#include "version.h"

#endif /* BALLOON_COMPAT_H */
