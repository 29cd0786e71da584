// SPDX-License-Identifier: GPL-2.0

//! ktcpvs_rs: hark's in-kernel layer-7 TCP switch.
//!
//! Registers the `ktcpvs` configfs subsystem, where virtual services, their real servers and
//! their content rules are configured (`cfs`, `config`; see `Documentation/ktcpvs-config.md`),
//! checks the IPVS bridge, and runs the data path (`relay`, `net`; see
//! `Documentation/ktcpvs-relay.md`): listening sockets of the enabled services and a small pool
//! of worker threads relaying client connections to the real servers.

// Overflow checks are on in the kernel (`CONFIG_RUST_OVERFLOW_CHECKS`): an overflow is an
// oops, so `make clippy` refuses unchecked arithmetic here and in the shared files.
#![deny(clippy::arithmetic_side_effects)]

use kernel::configfs;
use kernel::prelude::*;

#[path = "../userspace/hark-proto/src/http1.rs"]
pub mod http1;
#[path = "../userspace/hark-proto/src/ktcpvs_cfs.rs"]
pub mod ktcpvs_cfs;
#[path = "../userspace/hark-proto/src/l7_rules.rs"]
pub mod l7_rules;
#[path = "../userspace/hark-proto/src/l7_sched.rs"]
pub mod l7_sched;

mod cfs;
mod config;
mod ipvs;
#[path = "../kcommon/kthread.rs"]
mod kthread;
mod net;
mod pool;
mod relay;

use cfs::{Registry, Root, ServiceDir};

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

#[pin_data(PinnedDrop)]
struct KtcpvsModule {
    /// Declared first: initialised before the configfs tree, so that a failure there stops
    /// the workers again.
    relay: relay::RelayHandle,
    #[pin]
    config: configfs::Subsystem<Root>,
}

impl kernel::InPlaceModule for KtcpvsModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let max = module_parameters::max_services.value();
        let ipvs_version = ipvs::version();
        let item_type = kernel::configfs_attrs! {
            container: configfs::Subsystem<Root>,
            data: Root,
            child: ServiceDir,
            attributes: [
                version: 0,
            ],
        };
        try_pin_init!(Self {
            _: {
                if !(1..=ktcpvs_cfs::MAX_SERVICES_LIMIT).contains(&max) {
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
            relay: relay::RelayHandle(relay::Relay::start()?),
            config <- configfs::Subsystem::new(
                ktcpvs_cfs::SUBSYS,
                item_type,
                Ok::<_, Error>(Root {
                    ipvs_version,
                    registry: Registry::new(max, relay.0.clone())?,
                }),
            ),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for KtcpvsModule {
    fn drop(self: Pin<&mut Self>) {
        // configfs pins the module while a service exists, so no listener is left; this stops
        // the workers and closes the connections of deleted services still running.
        self.relay.0.stop();
        pr_info!("unloaded\n");
    }
}
