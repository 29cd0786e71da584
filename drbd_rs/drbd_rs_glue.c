// SPDX-License-Identifier: GPL-2.0
/*
 * C part of drbd_rs: module metadata that Rust's module! macro cannot express, and (as the
 * block and netlink layers are bound) wrappers for static inline kernel functions such as
 * blk_rq_pos(), req_op() or genlmsg_reply(). Linked into the same drbd_rs.ko.
 */
#include <linux/module.h>

MODULE_VERSION("0.1.0");
