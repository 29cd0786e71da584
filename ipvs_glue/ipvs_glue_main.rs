// SPDX-License-Identifier: GPL-2.0

//! ipvs_glue: hark's bridge to IPVS, the kernel's layer-4 balancer.
//!
//! - Exports `ipvs_glue_ipvs_version()` (C, `ipvs_glue_sched.c`) for ktcpvs_rs.
//! - Registers IPVS schedulers whose choice is hark-proto's `l7_sched`, the code the layer-7
//!   switch uses (`sched`): `ipvsadm -A -t VIP:PORT -s swrr` balances layer-4 connections with
//!   nginx's smooth weighted round robin. See `Documentation/ipvs-glue.md`.

// Overflow checks are on in the kernel (`CONFIG_RUST_OVERFLOW_CHECKS`): an overflow is an
// oops, so `make clippy` refuses unchecked arithmetic here and in the shared files.
#![deny(clippy::arithmetic_side_effects)]

use kernel::prelude::*;

#[path = "../userspace/hark-proto/src/http1.rs"]
pub mod http1;
#[path = "../userspace/hark-proto/src/l7_sched.rs"]
pub mod l7_sched;

mod sched;

module! {
    type: IpvsGlue,
    name: "ipvs_glue",
    authors: ["The hark authors"],
    description: "hark: C bridge to IPVS and IPVS schedulers from hark's scheduling code",
    license: "GPL",
}

struct IpvsGlue;

impl kernel::Module for IpvsGlue {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        sched::register()?;
        pr_info!("loaded: IPVS schedulers swrr\n");
        Ok(IpvsGlue)
    }
}

impl Drop for IpvsGlue {
    fn drop(&mut self) {
        sched::unregister();
        pr_info!("unloaded\n");
    }
}
