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
    /// Set bits of the on-disk bitmap at attach time.
    oos_bits: u64,
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
    /// Reads and validates the superblock of `lower` and counts its bitmap.
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
        let mut md = Metadata {
            sb,
            geo,
            oos_bits: 0,
        };
        md.oos_bits = md.count_bitmap(lower, &mut buf)?;
        Ok(md)
    }

    fn count_bitmap(&self, lower: &LowerDev, buf: &mut KVec<u8>) -> Result<u64> {
        let bytes = self.geo.bm_bytes();
        let mut done = 0u64;
        let mut sector = self.geo.bm_sector();
        let mut bits = 0u64;
        while done < bytes {
            lower.read(sector, buf)?;
            let take =
                usize::try_from((bytes - done).min(MD_BLOCK_SIZE as u64)).map_err(|_| EINVAL)?;
            bits += buf[..take]
                .iter()
                .map(|b| u64::from(b.count_ones()))
                .sum::<u64>();
            done += take as u64;
            sector += (MD_BLOCK_SIZE / 512) as u64;
        }
        // Bits past the end of the device do not count.
        Ok(bits.min(self.geo.bm_bits()))
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

    /// Out-of-sync amount in KiB (4 KiB per bitmap bit).
    pub(crate) fn out_of_sync_kib(&self) -> u64 {
        self.oos_bits * 4
    }

    /// Marks the data UpToDate (`primary --force`) and writes the superblock. A device that
    /// never had data gets its first current UUID, as DRBD does.
    pub(crate) fn force_up_to_date(&mut self, lower: &LowerDev) -> Result {
        self.sb.flags |= fmt::MDF_CONSISTENT | fmt::MDF_WAS_UP_TO_DATE;
        if self.sb.uuids[fmt::UI_CURRENT] == fmt::UUID_JUST_CREATED {
            // SAFETY: `get_random_u64` has no preconditions.
            let uuid = unsafe { kernel::bindings::get_random_u64() };
            // Bit 0 of a current UUID tells whether the node was Primary (DRBD's UUID_PRIMARY).
            self.sb.uuids[fmt::UI_CURRENT] = uuid & !1;
        }
        self.store(lower)
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
