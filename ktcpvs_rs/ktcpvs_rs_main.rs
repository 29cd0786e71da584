// SPDX-License-Identifier: GPL-2.0

//! ktcpvs_rs: hark's in-kernel layer-7 TCP switch (skeleton).
//!
//! Registers the `ktcpvs` configfs subsystem with a read-only `version` attribute and checks the
//! IPVS bridge. Services, rules, schedulers and the relay arrive with later work.

use core::fmt::Write;
use kernel::configfs;
use kernel::configfs_attrs;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;

#[path = "../userspace/hark-proto/src/ktcpvs_cfs.rs"]
pub mod ktcpvs_cfs;

mod ipvs;

module! {
    type: KtcpvsModule,
    name: "ktcpvs_rs",
    authors: ["The hark authors"],
    description: "hark: in-kernel layer-7 TCP switch (KTCPVS)",
    license: "GPL",
    params: {
        max_services: u32 {
            default: 64,
            description: "Upper bound on the number of virtual services (1..4096)",
        },
    },
}

/// Data behind the configfs subsystem directory.
struct Root {
    /// IPVS version as reported by `ipvs_glue`, `0x010201` for 1.2.1.
    ipvs_version: u32,
}

#[pin_data(PinnedDrop)]
struct KtcpvsModule {
    #[pin]
    config: configfs::Subsystem<Root>,
}

impl kernel::InPlaceModule for KtcpvsModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let max = module_parameters::max_services.value();
        let ipvs_version = ipvs::version();
        let item_type = configfs_attrs! {
            container: configfs::Subsystem<Root>,
            data: Root,
            attributes: [
                version: 0,
            ],
        };
        try_pin_init!(Self {
            _: {
                if !(1..=4096).contains(&max) {
                    pr_err!("max_services={} is out of range 1..4096\n", max);
                    return Err(EINVAL);
                }
                pr_info!(
                    "loaded: max_services={}, IPVS {}.{}.{} via ipvs_glue\n",
                    max,
                    (ipvs_version >> 16) & 0xff,
                    (ipvs_version >> 8) & 0xff,
                    ipvs_version & 0xff
                );
            },
            config <- configfs::Subsystem::new(
                ktcpvs_cfs::SUBSYS,
                item_type,
                Ok::<_, Error>(Root { ipvs_version }),
            ),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for KtcpvsModule {
    fn drop(self: Pin<&mut Self>) {
        pr_info!("unloaded\n");
    }
}

/// Formats into a configfs page, failing with `EINVAL` if the text does not fit.
struct PageWriter<'a> {
    page: &'a mut [u8; PAGE_SIZE],
    len: usize,
}

impl Write for PageWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(core::fmt::Error)?;
        self.page
            .get_mut(self.len..end)
            .ok_or(core::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[vtable]
impl configfs::AttributeOperations<0> for Root {
    type Data = Root;

    fn show(container: &Root, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
        let v = container.ipvs_version;
        let mut w = PageWriter { page, len: 0 };
        writeln!(
            w,
            "ktcpvs_rs 0.1.0 ipvs {}.{}.{}",
            (v >> 16) & 0xff,
            (v >> 8) & 0xff,
            v & 0xff
        )
        .map_err(|_| EINVAL)?;
        Ok(w.len)
    }
}
