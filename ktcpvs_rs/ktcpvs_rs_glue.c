// SPDX-License-Identifier: GPL-2.0
/*
 * C part of ktcpvs_rs: module metadata that Rust's module! macro cannot express. The socket
 * helpers are in ktcpvs_rs_net.c. Linked into the same ktcpvs_rs.ko.
 */
#include <linux/module.h>

MODULE_VERSION("0.1.0");
