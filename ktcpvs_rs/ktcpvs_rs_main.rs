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
#[path = "../userspace/hark-proto/src/timer_wheel.rs"]
pub mod timer_wheel;

mod cfs;
mod config;
mod ipvs;
#[path = "../kcommon/kthread.rs"]
mod kthread;
mod net;
mod pool;
mod relay;
mod table;

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

#[kunit_tests(ktcpvs_rs_config)]
mod tests {
    use super::config::{Name, SchedState, Service};
    use super::l7_sched::PassiveHealth;
    use kernel::prelude::*;
    use kernel::sync::Arc;

    fn service() -> Option<Arc<Service>> {
        Service::new(Name::new(b"kunit")?, 1).ok()
    }

    /// The scheduler state is rebuilt for a snapshot taken after a change even when it lies
    /// in the memory of the snapshot the change freed (the state was keyed by the snapshot's
    /// address, so it was then kept: a stale Maglev table gave a new server nothing); a
    /// snapshot older than the state leaves it alone.
    #[test]
    fn sched_state_follows_generation_not_address() {
        let svc = service();
        assert!(svc.is_some());
        let Some(svc) = svc else { return };
        let mut st = SchedState::new();
        let s1 = svc.snapshot();
        assert!(s1.is_ok());
        let Ok(s1) = s1 else { return };
        // One piece of memory holds a snapshot, then the next one: what the allocator does
        // when it gives a freed snapshot's memory to the next (not seen under KASAN, whose
        // quarantine delays reuse).
        let at = s1.try_clone().and_then(|c| Ok(KBox::new(c, GFP_KERNEL)?));
        assert!(at.is_ok());
        let Ok(mut at) = at else { return };
        let mut same_address = 0u32;
        for _ in 0..16 {
            st.follow(&at);
            // A table built for this configuration.
            assert!(st.maglev.resize(7, 1, GFP_KERNEL).is_ok());
            let before = svc.snapshot();
            assert!(before.is_ok());
            let Ok(before) = before else { return };
            let a1 = Arc::as_ptr(&before) as usize;
            drop(before);
            // A change: the service drops its snapshot, freed unless a test reference holds
            // it (`s1`, the first time).
            let r = svc.update(|cfg| {
                cfg.xff = !cfg.xff;
                Ok(())
            });
            assert!(r.is_ok());
            let s2 = svc.snapshot();
            assert!(s2.is_ok());
            let Ok(s2) = s2 else { return };
            if Arc::as_ptr(&s2) as usize == a1 {
                same_address = same_address.saturating_add(1);
            }
            // The new configuration in the old one's memory.
            let c = s2.try_clone();
            assert!(c.is_ok());
            let Ok(c) = c else { return };
            let old_gen = at.gen;
            *at = c;
            assert!(at.gen > old_gen);
            st.follow(&at);
            assert!(st.maglev.is_empty());
        }
        pr_info!("kunit: {same_address} of 16 snapshots had the address of the one freed before\n");
        // Older than the state: left alone.
        let new = svc.snapshot();
        assert!(new.is_ok());
        let Ok(new) = new else { return };
        st.follow(&new);
        assert!(st.maglev.resize(7, 1, GFP_KERNEL).is_ok());
        st.follow(&s1);
        assert_eq!(st.maglev.len(), 7);
        assert_eq!(st.gen, new.gen);
    }

    /// A server added in the slot of a removed one starts with zero counters and no passive
    /// failure, and the removed server's connections ending later do not touch them.
    #[test]
    fn reused_slot_starts_fresh() {
        let svc = service();
        assert!(svc.is_some());
        let Some(svc) = svc else { return };
        let (Some(a), Some(n)) = (Name::new(b"a"), Name::new(b"n")) else {
            return;
        };
        let id = svc.add_server(a);
        assert!(id.is_ok());
        let Ok(id) = id else { return };
        let cfg = svc.snapshot();
        assert!(cfg.is_ok());
        let Ok(cfg) = cfg else { return };
        let old = cfg.server(id).map(|s| (s.slot, s.rt.clone()));
        assert!(old.is_some());
        let Some((slot, old)) = old else { return };
        drop(cfg);
        // Two connections in flight, a failure counted.
        old.stats.add(super::config::Stat::ActiveConns, 2);
        assert!(old.health.lock().failed(1000, 1, 60_000));
        svc.remove_server(id);
        let id2 = svc.add_server(n);
        assert!(id2.is_ok());
        let Ok(id2) = id2 else { return };
        // The connections of the removed server end.
        old.stats.dec_active();
        old.stats.dec_active();
        let cfg = svc.snapshot();
        assert!(cfg.is_ok());
        let Ok(cfg) = cfg else { return };
        let new = cfg.server(id2);
        assert!(new.is_some());
        let Some(new) = new else { return };
        assert_eq!(new.slot, slot);
        assert_eq!(new.rt.stats.line().values, [0; 8]);
        assert!(new.rt.health.lock().available(1000));
        assert!(*new.rt.health.lock() == PassiveHealth::new());
    }
}
