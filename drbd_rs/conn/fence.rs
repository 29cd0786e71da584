// SPDX-License-Identifier: GPL-2.0

//! Fencing (C DRBD's `conn_try_outdate_peer()` and `conn_khelper()`, `drbd_nl.c`): a Primary
//! (or a node being promoted) without its peer runs the `fence-peer` handler and records the
//! peer's disk as its exit code says; after a resync as source, `unfence-peer` runs.
//!
//! The handlers run in the thread that needs them (the receiver between sessions, the
//! `primary` request, the resync worker) with no lock held.

use super::state::wire_disk;
use super::{reached, volume0, Connection};
use crate::device::Device;
use crate::drbd_fence::{self as fence, FenceResult, Fencing};
use crate::drbd_genl::Role;
use crate::drbd_state::{self as ws, Conn};
use crate::helper;
use crate::net::Ip;
use kernel::c_str;
use kernel::prelude::*;
use kernel::str::{CStr, CString};

impl Connection {
    /// The session ended (receiver, between sessions, no lock held): a Primary with fencing
    /// runs `fence-peer` unless the peer's disk is known to be Outdated. Not on `disconnect`.
    pub(super) fn fence_after_loss(&self) {
        if self.stopping() || self.conf.fencing == Fencing::DontCare {
            return;
        }
        // The peer's disk as last known; then the peer is gone, no longer shown as connected.
        let last = self.view().disk;
        self.set_cstate(Conn::NetworkFailure);
        if let Some(dev) = volume0(self) {
            if self.needs_fencing(&dev, false, last) {
                self.try_outdate_peer(&dev);
            }
        }
    }

    /// Before promoting `dev` while not connected: runs `fence-peer` if needed. `Err` (the
    /// handler's verdict) refuses the promotion unless `force` (8.4's `SS_PRIMARY_NOP`).
    pub(crate) fn fence_for_promotion(
        &self,
        dev: &Device,
        force: bool,
    ) -> core::result::Result<(), FenceResult> {
        if !self.needs_fencing(dev, true, self.view().disk) {
            return Ok(());
        }
        let ours = wire_disk(dev.lock().disk_state);
        let r = self.try_outdate_peer(dev);
        if r.peer_fenced(ours) {
            return Ok(());
        }
        if force {
            pr_warn!(
                "resource {}: Forced into split brain situation!\n",
                self.name()
            );
            return Ok(());
        }
        Err(r)
    }

    /// Whether `dev` (`promoting`, or Primary) must fence a peer whose disk was `pdsk`.
    fn needs_fencing(&self, dev: &Device, promoting: bool, pdsk: ws::Disk) -> bool {
        let (role, disk) = {
            let st = dev.lock();
            (st.role, st.disk_state)
        };
        let v = self.view();
        fence::must_fence(
            self.conf.fencing,
            promoting || role == Role::Primary,
            reached(v.cstate, Conn::WFReportParams),
            pdsk,
            wire_disk(disk),
        )
    }

    /// Runs `fence-peer` and records the peer's disk state it reports, unless a session came
    /// (and maybe went) meanwhile.
    fn try_outdate_peer(&self, dev: &Device) -> FenceResult {
        let connects = self.info.lock().connects;
        let ours = wire_disk(dev.lock().disk_state);
        let code = self.run_handler(dev, c_str!("fence-peer"), &self.conf.fence_peer);
        let r = FenceResult::from_exit(code);
        if let FenceResult::Broken(code) = r {
            pr_err!(
                "resource {}: fence-peer helper broken, returned {}\n",
                self.name(),
                code
            );
            return r;
        }
        if r == FenceResult::PeerStonithed && self.conf.fencing != Fencing::ResourceAndStonith {
            pr_err!(
                "resource {}: fence-peer() = 7 && fencing != Stonith !!!\n",
                self.name()
            );
        }
        pr_info!(
            "resource {}: fence-peer helper returned {} ({})\n",
            self.name(),
            code,
            r.text()
        );
        if let Some(pdsk) = r.peer_disk(ours) {
            self.record_peer_disk(connects, pdsk);
        }
        r
    }

    /// Records the peer's disk state `pdsk` unless session `connects` is no longer the last.
    fn record_peer_disk(&self, connects: u32, pdsk: ws::Disk) {
        let applied = {
            let mut i = self.info.lock();
            let still = i.connects == connects && !reached(i.view.cstate, Conn::WFReportParams);
            if still {
                i.view.disk = pdsk;
            }
            still
        };
        if applied {
            self.publish();
        } else {
            pr_info!("resource {}: Ignoring fence-peer exit code\n", self.name());
        }
    }

    /// A resync in which we were the source ended: `unfence-peer` if both disks are
    /// UpToDate and fencing is on (`drbd_resync_finished()`). The exit code is only logged.
    pub(super) fn unfence_after_resync(&self, dev: &Device) {
        let ours = wire_disk(dev.lock().disk_state);
        if fence::must_unfence(self.conf.fencing, true, ours, self.view().disk)
            && self.conf.unfence_peer[0] != 0
        {
            let code = self.run_handler(dev, c_str!("unfence-peer"), &self.conf.unfence_peer);
            pr_info!(
                "resource {}: unfence-peer helper returned {}\n",
                self.name(),
                code
            );
        }
    }

    /// Runs handler `what` (`cmd`, NUL-padded) as `/bin/sh -c 'CMD "$@"' what RESOURCE` with
    /// DRBD 8.4's environment; returns its exit code, -1 if it could not run or was killed.
    fn run_handler(&self, dev: &Device, what: &CStr, cmd: &[u8]) -> i32 {
        let end = cmd.iter().position(|&b| b == 0).unwrap_or(cmd.len());
        let cmd = core::str::from_utf8(&cmd[..end]).unwrap_or("");
        if cmd.is_empty() {
            pr_err!("resource {}: no {} handler configured\n", self.name(), what);
            return -1;
        }
        pr_info!(
            "resource {}: helper command: {} {}\n",
            self.name(),
            cmd,
            self.name()
        );
        let ret = match self.exec_handler(dev, what, cmd) {
            Ok(ret) => ret,
            Err(e) => {
                pr_err!("resource {}: cannot run {}: {:?}\n", self.name(), what, e);
                return -1;
            }
        };
        let code = FenceResult::exit_code_of_umh(ret);
        pr_info!(
            "resource {}: helper command: {} exit code {} (0x{:x})\n",
            self.name(),
            what,
            code,
            ret
        );
        code
    }

    fn exec_handler(&self, dev: &Device, what: &CStr, cmd: &str) -> Result<i32> {
        let (me, peer) = (Ip(&self.conf.local), Ip(&self.conf.peer));
        let script = CString::try_from_fmt(fmt!("{} \"$@\"", cmd))?;
        let res = CString::try_from_fmt(fmt!("{}", self.name()))?;
        let env = [
            CString::try_from_fmt(fmt!("DRBD_RESOURCE={}", self.name()))?,
            CString::try_from_fmt(fmt!("DRBD_MINOR={}", dev.minor))?,
            CString::try_from_fmt(fmt!("DRBD_PEER_ADDRESS={}", peer))?,
            CString::try_from_fmt(fmt!("DRBD_PEER_AF={}", peer.af_name()))?,
            CString::try_from_fmt(fmt!("DRBD_MY_ADDRESS={}", me))?,
            CString::try_from_fmt(fmt!("DRBD_MY_AF={}", me.af_name()))?,
        ];
        let envp = [
            c_str!("HOME=/"),
            c_str!("TERM=linux"),
            c_str!("PATH=/sbin:/usr/sbin:/bin:/usr/bin"),
            c_str!("DRBD_VOLUME=0"),
            &env[0],
            &env[1],
            &env[2],
            &env[3],
            &env[4],
            &env[5],
        ];
        let argv = [c_str!("/bin/sh"), c_str!("-c"), &script, what, &res];
        helper::run(&argv, &envp)
    }
}
