// SPDX-License-Identifier: GPL-2.0
/*
 * ipvs_glue: C bridge between IPVS and hark's Rust modules.
 *
 * IPVS's API is C macros, inline functions and structures that Rust cannot use directly; this
 * module wraps what hark needs behind small exported functions.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <net/ip_vs.h>

#include "ipvs_glue.h"

u32 ipvs_glue_ipvs_version(void)
{
	return IP_VS_VERSION_CODE;
}
EXPORT_SYMBOL_GPL(ipvs_glue_ipvs_version);

static int __init ipvs_glue_init(void)
{
	pr_info("loaded (IPVS %u.%u.%u)\n", NVERSION(IP_VS_VERSION_CODE));
	return 0;
}

static void __exit ipvs_glue_exit(void)
{
	pr_info("unloaded\n");
}

module_init(ipvs_glue_init);
module_exit(ipvs_glue_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hark: C bridge between IPVS and the Rust modules");
MODULE_AUTHOR("The hark authors");
MODULE_VERSION("0.1.0");
