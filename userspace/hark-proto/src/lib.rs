// SPDX-License-Identifier: GPL-2.0

//! Logic shared by hark's kernel modules and its userspace tools.
//!
//! Everything here is `no_std` and allocation-free so that the kernel modules compile the very
//! same files (they include them with `#[path = "..."] mod ...;`, see `drbd_rs/drbd_rs_main.rs`)
//! and the host tests them with `cargo test`. Each file is a flat module without submodules and
//! without crate-level attributes, because a kernel module includes it as a plain module.

#![no_std]

pub mod crc32c;
pub mod drbd_al;
pub mod drbd_fence;
pub mod drbd_genl;
pub mod drbd_md;
pub mod drbd_resync;
pub mod drbd_state;
pub mod drbd_state_chg;
pub mod drbd_sync;
pub mod drbd_wire;
pub mod http1;
pub mod ipvs_follow;
pub mod ktcpvs_cfs;
pub mod l7_rules;
pub mod l7_sched;
pub mod nla;
pub mod timer_wheel;
