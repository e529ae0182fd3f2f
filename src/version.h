/* SPDX-License-Identifier: GPL-2.0 */
/* Stamped from the top-level Makefile by scripts/stamp-version.sh. */
#ifndef BALLOON_VERSION_H
#define BALLOON_VERSION_H
#define BALLOON_VERSION "2.0.0"
#endif
