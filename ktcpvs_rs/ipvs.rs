// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the functions exported by the `ipvs_glue` C module.
//!
//! C header: `ipvs_glue/ipvs_glue.h`. Each declaration below must match it exactly.

mod ffi {
    extern "C" {
        pub(super) fn ipvs_glue_ipvs_version() -> u32;
    }
}

/// Returns IPVS's `IP_VS_VERSION_CODE` (`0x010201` for 1.2.1).
pub(crate) fn version() -> u32 {
    // SAFETY: `ipvs_glue_ipvs_version` takes no arguments, touches no shared state and is
    // exported by `ipvs_glue`, which the module loader has resolved (and pinned) before this
    // module's init runs.
    unsafe { ffi::ipvs_glue_ipvs_version() }
}
