# SPDX-License-Identifier: GPL-2.0
# hark top-level targets. Kernel modules are built by Kbuild (see ./Kbuild) against KDIR: the
# cached test kernel by default, or any built Rust-enabled kernel tree (KDIR=/path/to/build,
# checked by scripts/kdir-check.sh). When Kbuild itself includes this file (M= builds), only
# Kbuild is used.

ifneq ($(KERNELRELEASE),)
include $(src)/Kbuild
else

SHELL := /bin/bash
HARK_CACHE ?= $(HOME)/.cache/hark
export HARK_CACHE
HARK_KDIR = $(abspath $(HARK_CACHE)/kbuild-current)
# The kernel build tree the modules are built against: a source tree, an O= build directory
# (whose `source` link points at the sources), or /lib/modules/$(uname -r)/build.
KDIR ?= $(HARK_KDIR)
override KDIR := $(abspath $(KDIR))
KSRC = $(if $(wildcard $(KDIR)/source),$(KDIR)/source,$(KDIR))
KRELEASE = $(shell cat $(KDIR)/include/config/kernel.release 2>/dev/null)
# LLVM (1, or -N for clang-N) may be given; by default scripts/kdir-check.sh picks the clang
# that KDIR was built with.
LLVM ?=

# Installation (make install DESTDIR=... for a staging tree).
DESTDIR ?=
prefix ?= /usr
sbindir ?= $(prefix)/sbin
mandir ?= $(prefix)/share/man
docdir ?= $(prefix)/share/doc/hark
ocfdir ?= $(prefix)/lib/ocf/resource.d/hark
# drbd_rs fence-peer / unfence-peer handlers (ha/).
handlerdir ?= $(prefix)/lib/drbd_rs
HANDLERS = drbd-fence-peer.sh drbd-unfence-peer.sh
OCF_AGENTS = drbd_rs ktcpvs
MODS = ipvs_glue drbd_rs ktcpvs_rs
TOOLS = rdrbdadm rtcpvsadm
MAN8 = $(TOOLS:%=Documentation/man/%.8)
DOCS = README.md $(wildcard Documentation/*.md)

# Runs the kernel's make for this directory with $(1), after scripts/kdir-check.sh has checked
# KDIR (options, build state, toolchain) and chosen the LLVM= argument.
define kmake
set -e; tc=$$(scripts/kdir-check.sh "$(KDIR)" "$(LLVM)"); \
$(MAKE) -C "$(KDIR)" M="$(CURDIR)" $$tc $(1)
endef

# The default KDIR is built by `make kernel`; a half-built one is not used.
define need-cached-kernel
$(if $(filter $(HARK_KDIR),$(KDIR)),@test -f $(KDIR)/.hark-built || { echo "no cached kernel build: run 'make kernel' first (or pass KDIR=)"; exit 1; })
endef

.PHONY: all setup kernel modules userspace host-test vm-test test soak fuzz demo clippy fmt clean help
.PHONY: install install-modules install-tools install-man install-doc install-ocf uninstall

all: modules userspace ## Build the modules and the userspace tools (needs `make kernel` once).

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | sed -e 's/:.*## /\t/'

setup: ## Install packages, toolchain pieces and the kernel source (idempotent).
	@scripts/setup.sh

kernel: setup ## Configure and build the test kernel, cached outside the repository.
	@scripts/kernel-build.sh >/dev/null

modules: ## Build ipvs_glue.ko, drbd_rs.ko and ktcpvs_rs.ko (KDIR=/path/to/kernel/build).
	$(need-cached-kernel)
	@$(call kmake,modules)

userspace: ## Build rdrbdadm and rtcpvsadm (release).
	cd userspace && cargo build --release --locked

host-test: ## Host unit tests: cargo test (shared no_std logic, CLIs) and the harness's own tests.
	@scripts/host-test.sh

vm-test: ## Run every QEMU scenario (or SCENARIO=name).
	@tests-qemu/harness.py $(SCENARIO)

test: ## Everything: setup, kernel (cached), modules, host tests, VM scenarios.
	@scripts/test.sh

soak: ## Long repetitions (scenarios with "# suite: soak"); not part of make test.
	@scripts/test.sh --suite soak

fuzz: ## Coverage-guided fuzzing (cargo-fuzz), FUZZ_SECONDS (60) per target or TARGET=name; not part of test.
	@FUZZ_TARGETS="$(TARGET)" scripts/fuzz.sh

demo: ## Boot a VM, load the modules and show them.
	@scripts/demo.sh

clippy: ## Clippy on userspace and on the kernel modules (CLIPPY=1).
	cd userspace && cargo clippy --release --locked --all-targets -- -D warnings
	$(need-cached-kernel)
	@$(call kmake,CLIPPY=1 modules)

fmt: ## rustfmt everything (kernel style for the modules).
	cd userspace && cargo fmt
	rustfmt --edition 2021 userspace/fuzz/fuzz_targets/*.rs
	rustfmt --edition 2021 --config-path $(KSRC)/.rustfmt.toml drbd_rs/*.rs ktcpvs_rs/*.rs ipvs_glue/*.rs

install: install-modules install-tools install-man install-doc install-ocf install-handlers ## Install modules, tools, man pages, docs (DESTDIR=, KDIR=).

install-modules: modules
	@$(call kmake,INSTALL_MOD_PATH=$(if $(DESTDIR),$(abspath $(DESTDIR))) INSTALL_MOD_DIR=extra DEPMOD=true modules_install)
	$(if $(DESTDIR),,depmod -a $(KRELEASE))

install-tools: userspace
	install -d $(DESTDIR)$(sbindir)
	install -m 755 $(TOOLS:%=userspace/target/release/%) $(DESTDIR)$(sbindir)/

install-man:
	install -d $(DESTDIR)$(mandir)/man8
	install -m 644 $(MAN8) $(DESTDIR)$(mandir)/man8/

install-doc:
	install -d $(DESTDIR)$(docdir)
	install -m 644 $(DOCS) $(DESTDIR)$(docdir)/

install-ocf:
	install -d $(DESTDIR)$(ocfdir)
	install -m 755 $(OCF_AGENTS:%=ha/ocf/%) $(DESTDIR)$(ocfdir)/

install-handlers:
	install -d $(DESTDIR)$(handlerdir)
	install -m 755 $(HANDLERS:%=ha/%) $(DESTDIR)$(handlerdir)/

uninstall: ## Remove what `make install` installed (same DESTDIR=, KDIR=).
	@test -n "$(KRELEASE)" || { echo "no $(KDIR)/include/config/kernel.release: pass the KDIR that was installed from"; exit 1; }
	rm -f $(foreach m,$(MODS),$(DESTDIR)/lib/modules/$(KRELEASE)/extra/$(m)/$(m).ko*)
	-rmdir $(MODS:%=$(DESTDIR)/lib/modules/$(KRELEASE)/extra/%) $(DESTDIR)/lib/modules/$(KRELEASE)/extra 2>/dev/null
	rm -f $(TOOLS:%=$(DESTDIR)$(sbindir)/%) $(TOOLS:%=$(DESTDIR)$(mandir)/man8/%.8)
	rm -rf $(DESTDIR)$(docdir)
	rm -f $(OCF_AGENTS:%=$(DESTDIR)$(ocfdir)/%)
	-rmdir $(DESTDIR)$(ocfdir) 2>/dev/null
	$(if $(DESTDIR),,depmod -a $(KRELEASE))

clean:
	-@{ $(call kmake,clean); } 2>/dev/null
	cd userspace && cargo clean
	rm -rf artifacts

endif
