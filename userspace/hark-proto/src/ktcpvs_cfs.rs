// SPDX-License-Identifier: GPL-2.0

//! Names of the `ktcpvs` configfs tree, shared by `ktcpvs_rs` and `rtcpvsadm`.

use core::ffi::CStr;

/// Name of the subsystem directory under the configfs mount point.
pub const SUBSYS: &CStr = c"ktcpvs";
/// Default configfs mount point.
pub const CONFIGFS_MOUNT: &str = "/sys/kernel/config";
/// Read-only attribute of the subsystem: module and IPVS versions, one line.
pub const ATTR_VERSION: &str = "version";
