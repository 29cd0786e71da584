// SPDX-License-Identifier: GPL-2.0
/*
 * C part of drbd_rs: module metadata that Rust's module! macro cannot express, and wrappers
 * for kernel functions, static inlines and macros that kernel::bindings does not carry.
 * Linked into the same drbd_rs.ko.
 */
#include <linux/module.h>
#include <linux/crc32.h>

#include "drbd_rs_glue.h"

u32 drbd_rs_crc32c(u32 crc, const void *p, size_t len)
{
	return crc32c(crc, p, len);
}

MODULE_VERSION("0.1.0");
