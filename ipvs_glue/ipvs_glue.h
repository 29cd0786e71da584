/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ipvs_glue: the C bridge between IPVS (the kernel's L4 balancer) and hark's Rust modules.
 * Every function here is EXPORT_SYMBOL_GPL and declared with the same signature in the Rust
 * callers' `extern "C"` blocks (ktcpvs_rs/ipvs.rs).
 */
#ifndef HARK_IPVS_GLUE_H
#define HARK_IPVS_GLUE_H

#include <linux/types.h>

/* IP_VS_VERSION_CODE of the running kernel's IPVS, e.g. 0x010201 for 1.2.1. */
u32 ipvs_glue_ipvs_version(void);

#endif
