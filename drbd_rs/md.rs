// SPDX-License-Identifier: GPL-2.0

//! DRBD 8.4 internal metadata of an attached lower device: read on attach, written on role
//! changes and on detach. The format itself is the shared `drbd_md` module.

use crate::drbd_genl::DiskState;
use crate::drbd_md::{self as fmt, InternalGeometry, Superblock, MD_BLOCK_SIZE};
use crate::glue::LowerDev;
use kernel::prelude::*;

/// Metadata of an attached device.
pub(crate) struct Metadata {
    sb: Superblock,
    geo: InternalGeometry,
}

fn block() -> Result<KVec<u8>> {
    let mut buf = KVec::with_capacity(MD_BLOCK_SIZE, GFP_KERNEL)?;
    buf.resize(MD_BLOCK_SIZE, 0, GFP_KERNEL)?;
    Ok(buf)
}

fn as_block(buf: &KVec<u8>) -> Result<&[u8; MD_BLOCK_SIZE]> {
    buf.as_slice().try_into().map_err(|_| EINVAL)
}

impl Metadata {
    /// Reads and validates the superblock of `lower`.
    ///
    /// Fails with `EMEDIUMTYPE` when there is no valid DRBD 8.4 metadata (run `create-md`).
    pub(crate) fn load(lower: &LowerDev) -> Result<Self> {
        let dev_sectors = lower.sectors();
        // Where the superblock of internal metadata sits depends only on the device size.
        let probe =
            InternalGeometry::new(dev_sectors, fmt::AL_DEFAULT_STRIPES, 8).map_err(|_| ENOSPC)?;
        let mut buf = block()?;
        lower.read(probe.md_offset, &mut buf)?;
        let sb = Superblock::decode(as_block(&buf)?).map_err(|e| {
            pr_info!("no valid metadata: {}\n", e.as_str());
            EMEDIUMTYPE
        })?;
        let geo = sb.geometry(dev_sectors).map_err(|e| {
            pr_info!("metadata does not fit the device: {}\n", e.as_str());
            EMEDIUMTYPE
        })?;
        Ok(Metadata { sb, geo })
    }

    /// The generation UUIDs: current, bitmap, two history.
    pub(crate) fn uuids(&self) -> [u64; fmt::UI_SIZE] {
        self.sb.uuids
    }

    /// Exposed size in 512-byte sectors.
    pub(crate) fn capacity_sectors(&self) -> u64 {
        self.geo.max_capacity
    }

    /// The disk state the flags give at attach, as DRBD 8.4 decides it (`drbd_adm_attach`,
    /// with the default fencing policy `dont-care`).
    pub(crate) fn disk_state(&self) -> DiskState {
        if self.sb.flags & fmt::MDF_CONSISTENT == 0 {
            DiskState::Inconsistent
        } else if self.sb.flags & fmt::MDF_WAS_UP_TO_DATE == 0 {
            DiskState::Outdated
        } else {
            DiskState::UpToDate
        }
    }

    /// Where everything is on the lower device.
    pub(crate) fn geometry(&self) -> &InternalGeometry {
        &self.geo
    }

    /// The activity log was cleanly shut down (no replay needed).
    pub(crate) fn al_clean(&self) -> bool {
        self.sb.magic == fmt::MD_MAGIC_08 && self.sb.flags & fmt::MDF_AL_CLEAN != 0
    }

    /// The device was Primary when its metadata was last written in use (a crash, if the
    /// activity log is not clean either).
    pub(crate) fn was_primary(&self) -> bool {
        self.sb.flags & fmt::MDF_PRIMARY_IND != 0
    }

    /// Records the attach: the activity log is in use (not clean) with `al_extents` slots, and
    /// a crash from now on must replay it. Writes the superblock.
    pub(crate) fn mark_in_use(&mut self, lower: &LowerDev, al_extents: u32) -> Result {
        // As DRBD 8.4 does while attached: the "unclean" magic makes drbdmeta (and 8.4's
        // attach) insist on `apply-al` after a crash.
        self.sb.flags &= !fmt::MDF_AL_CLEAN;
        self.sb.magic = fmt::MD_MAGIC_84_UNCLEAN;
        self.sb.al_nr_extents = al_extents;
        self.store(lower)
    }

    /// Records a clean detach (bitmap written): the activity log is clean, the device is not
    /// Primary. Writes the superblock.
    pub(crate) fn mark_clean(&mut self, lower: &LowerDev) -> Result {
        self.sb.flags |= fmt::MDF_AL_CLEAN;
        self.sb.flags &= !fmt::MDF_PRIMARY_IND;
        self.sb.magic = fmt::MD_MAGIC_08;
        self.store(lower)
    }

    /// Records the role (DRBD's `MDF_PRIMARY_IND`) for the next [`Self::store`].
    pub(crate) fn set_primary(&mut self, primary: bool) {
        if primary {
            self.sb.flags |= fmt::MDF_PRIMARY_IND;
        } else {
            self.sb.flags &= !fmt::MDF_PRIMARY_IND;
        }
    }

    /// The generation UUIDs for an update (see `drbd_resync`); [`Self::store`] writes them.
    pub(crate) fn uuids_mut(&mut self) -> &mut [u64; fmt::UI_SIZE] {
        &mut self.sb.uuids
    }

    /// Records the disk state in the flags as DRBD does (`drbd_md_sync` after a state change):
    /// consistent above Inconsistent, "was up to date" above Outdated. For the next
    /// [`Self::store`].
    pub(crate) fn set_disk_state(&mut self, d: DiskState) {
        self.sb.flags &= !(fmt::MDF_CONSISTENT | fmt::MDF_WAS_UP_TO_DATE);
        if d as u8 > DiskState::Inconsistent as u8 {
            self.sb.flags |= fmt::MDF_CONSISTENT;
        }
        if d as u8 > DiskState::Outdated as u8 {
            self.sb.flags |= fmt::MDF_WAS_UP_TO_DATE;
        }
    }

    /// Writes the superblock (FUA).
    pub(crate) fn store(&mut self, lower: &LowerDev) -> Result {
        self.sb.la_size_sect = self.geo.max_capacity;
        let mut buf = block()?;
        let blk: &mut [u8; MD_BLOCK_SIZE] = buf.as_mut_slice().try_into().map_err(|_| EINVAL)?;
        self.sb.encode(blk);
        lower.write_fua(self.geo.md_offset, &mut buf)
    }
}
