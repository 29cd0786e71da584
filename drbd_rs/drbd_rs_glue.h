/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers linked into drbd_rs.ko, for kernel functions and macros that kernel::bindings does
 * not carry. drbd_rs/glue.rs declares the same signatures in its extern "C" block.
 */
#ifndef HARK_DRBD_RS_GLUE_H
#define HARK_DRBD_RS_GLUE_H

#include <linux/types.h>

/* The kernel's crc32c() (include/linux/crc32.h is not in bindings_helper.h). */
u32 drbd_rs_crc32c(u32 crc, const void *p, size_t len);

#endif
