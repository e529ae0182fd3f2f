# SPDX-License-Identifier: GPL-2.0
#
# balloon-dkms front door.  See README.md.
#
#   make [KVER=<release>]   build both modules for a kernel (default: running)
#   make install            build the .deb and install it with apt (dkms builds
#                           and installs the modules for every kernel with headers)
#   make check              the whole test suite (root, QEMU; see README)
#   make check-quick        one kernel only, for the inner loop
#   make deb | rpm | dist   packages and the release tarball
#   make repo               signed apt and dnf repositories in out/repo (README)
#   make bench              ours vs in-tree, side by side
#   make stamp              write VERSION into every file that carries it

# The one place the version lives.  `make stamp` copies it everywhere else;
# `make check` verifies that all copies agree.
VERSION := 2.0.0

KVER ?= $(shell uname -r)
KDIR ?= /lib/modules/$(KVER)/build
OUT  ?= $(CURDIR)/out

.PHONY: all modules clean install check check-quick deb rpm dist repo bench stamp

all: modules

modules:
	$(MAKE) -C src KVER=$(KVER) KDIR=$(KDIR)

clean:
	$(MAKE) -C src clean KVER=$(KVER) KDIR=$(KDIR) || true
	rm -rf $(OUT)

install: deb
	scripts/install-deb.sh $(OUT)/balloon-dkms_$(VERSION)_all.deb

check:
	tests/run

check-quick:
	tests/run --quick

deb:
	scripts/mkdeb.sh $(OUT)

rpm:
	scripts/mkrpm.sh $(OUT)

dist:
	scripts/mkdist.sh $(OUT)

repo:
	scripts/mkrepo.sh $(OUT)/repo

bench:
	tests/bench/run

stamp:
	scripts/stamp-version.sh $(VERSION)
