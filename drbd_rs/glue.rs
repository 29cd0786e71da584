// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the C helpers in `drbd_rs_glue.c`.
//!
//! C header: `drbd_rs/drbd_rs_glue.h`. Each declaration below must match it exactly.

use kernel::ffi::c_void;

mod ffi {
    use super::c_void;

    extern "C" {
        pub(super) fn drbd_rs_crc32c(crc: u32, p: *const c_void, len: usize) -> u32;
    }
}

/// The kernel's raw CRC-32C of `data` continued from `crc` (no pre- or post-inversion).
#[cfg_attr(not(CONFIG_KUNIT), expect(dead_code))]
pub(crate) fn kernel_crc32c(crc: u32, data: &[u8]) -> u32 {
    // SAFETY: `data` is a valid slice, so its pointer is readable for `data.len()` bytes for the
    // duration of the call; `crc32c()` only reads that range and keeps no reference to it.
    unsafe { ffi::drbd_rs_crc32c(crc, data.as_ptr().cast(), data.len()) }
}
