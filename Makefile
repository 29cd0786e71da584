# SPDX-License-Identifier: GPL-2.0
# hark top-level targets. Kernel modules are built by Kbuild (see ./Kbuild) against the
# cached test kernel; when Kbuild itself includes this file (M= builds), only Kbuild is used.

ifneq ($(KERNELRELEASE),)
include $(src)/Kbuild
else

SHELL := /bin/bash
LLVM ?= -19
HARK_CACHE ?= $(HOME)/.cache/hark
export HARK_CACHE
KBUILD = $(HARK_CACHE)/kbuild-current
KSRC = $(KBUILD)/source

.PHONY: all setup kernel modules userspace host-test vm-test test fuzz demo clippy fmt clean help

all: modules userspace ## Build the modules and the userspace tools (needs `make kernel` once).

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | sed -e 's/:.*## /\t/'

setup: ## Install packages, toolchain pieces and the kernel source (idempotent).
	@scripts/setup.sh

kernel: setup ## Configure and build the test kernel, cached outside the repository.
	@scripts/kernel-build.sh >/dev/null

modules: ## Build ipvs_glue.ko, drbd_rs.ko and ktcpvs_rs.ko.
	@test -f $(KBUILD)/.hark-built || { echo "no cached kernel build: run 'make kernel' first"; exit 1; }
	$(MAKE) -C $(KBUILD) M=$(CURDIR) LLVM=$(LLVM) modules

userspace: ## Build rdrbdadm and rtcpvsadm (release).
	cd userspace && cargo build --release --locked

host-test: ## Host unit tests: cargo test (shared no_std logic, CLIs) and the harness's own tests.
	@scripts/host-test.sh

vm-test: ## Run every QEMU scenario (or SCENARIO=name).
	@tests-qemu/harness.py $(SCENARIO)

test: ## Everything: setup, kernel (cached), modules, host tests, VM scenarios.
	@scripts/test.sh

fuzz: ## Coverage-guided fuzzing (cargo-fuzz), FUZZ_SECONDS (60) per target or TARGET=name; not part of test.
	@FUZZ_TARGETS="$(TARGET)" scripts/fuzz.sh

demo: ## Boot a VM, load the modules and show them.
	@scripts/demo.sh

clippy: ## Clippy on userspace and on the kernel modules (CLIPPY=1).
	cd userspace && cargo clippy --release --locked --all-targets -- -D warnings
	$(MAKE) -C $(KBUILD) M=$(CURDIR) LLVM=$(LLVM) CLIPPY=1 modules

fmt: ## rustfmt everything (kernel style for the modules).
	cd userspace && cargo fmt
	rustfmt --edition 2021 userspace/fuzz/fuzz_targets/*.rs
	rustfmt --edition 2021 --config-path $(KSRC)/.rustfmt.toml drbd_rs/*.rs ktcpvs_rs/*.rs

clean:
	-$(MAKE) -C $(KBUILD) M=$(CURDIR) LLVM=$(LLVM) clean 2>/dev/null
	cd userspace && cargo clean
	rm -rf artifacts

endif
