// SPDX-License-Identifier: GPL-2.0

//! DRBD 8.4 on-disk meta data, internal variant ("v08" in `drbdmeta` speak).
//!
//! Internal meta data lives at the end of the lower device:
//!
//! ```text
//!             |------------------- md_size_sect --------------------|
//! [data.....][ bitmap ][ activity log ][ 4 KiB superblock ][pad 0..7 sectors]
//!            ^         ^               ^
//!            |         |               md_offset = last 4 KiB aligned 4 KiB block
//!            |         md_offset + al_offset   (al_offset < 0)
//!            md_offset + bm_offset             (bm_offset < al_offset)
//! ```
//!
//! This module decodes and encodes the superblock (`struct meta_data_on_disk`, drbd_main.c),
//! computes the internal layout like `drbd_md_set_sector_offsets()` (drbd_nl.c) and
//! `drbd_get_max_capacity()` (drbd_int.h), decodes and encodes activity-log transactions
//! (`struct al_transaction_on_disk`, drbd_actlog.c), replays the activity-log ring like
//! `drbdmeta apply-al`, and edits the on-disk bitmap. All multi-byte integers of the superblock
//! and of the activity log are big-endian; the bitmap is a little-endian bit string.
//!
//! Everything is `core`-only, allocation-free and panic-free on any input: the superblock and
//! the log come from a disk that may be corrupt or foreign, so all arithmetic is checked.

#![deny(clippy::arithmetic_side_effects)]

use super::crc32c;

/// Size of one meta-data I/O block: the superblock and each activity-log transaction.
pub const MD_BLOCK_SIZE: usize = 4096;
/// Size of a sector, the unit of every offset and size below.
pub const SECTOR_SIZE: u64 = 512;
/// Sectors in 4 KiB (`MD_4kB_SECT`).
pub const MD_4KB_SECT: u32 = 8;
/// Sectors in 32 KiB (`MD_32kB_SECT`): the classic, minimal activity-log size.
pub const MD_32KB_SECT: u32 = 64;

/// Base magic of DRBD (`DRBD_MAGIC`).
pub const DRBD_MAGIC: u32 = 0x8374_0267;
/// Superblock magic of DRBD 0.7 meta data (`DRBD_MD_MAGIC_07`); not accepted here.
pub const MD_MAGIC_07: u32 = DRBD_MAGIC + 3;
/// Superblock magic of clean 8.x meta data (`DRBD_MD_MAGIC_08`).
pub const MD_MAGIC_08: u32 = DRBD_MAGIC + 4;
/// Superblock magic the 8.4 kernel writes while attached (`DRBD_MD_MAGIC_84_UNCLEAN`);
/// `drbdmeta apply-al` turns it back into [`MD_MAGIC_08`].
pub const MD_MAGIC_84_UNCLEAN: u32 = DRBD_MAGIC + 5;
/// Magic of an activity-log transaction block (`DRBD_AL_MAGIC`).
pub const AL_MAGIC: u32 = 0x69cb_65a2;

/// Index of the current UUID in [`Superblock::uuids`] (`UI_CURRENT`).
pub const UI_CURRENT: usize = 0;
/// Index of the bitmap UUID (`UI_BITMAP`).
pub const UI_BITMAP: usize = 1;
/// Index of the first history UUID (`UI_HISTORY_START`).
pub const UI_HISTORY_START: usize = 2;
/// Index of the last history UUID (`UI_HISTORY_END`).
pub const UI_HISTORY_END: usize = 3;
/// Number of UUIDs stored in the superblock (`UI_SIZE`).
pub const UI_SIZE: usize = 4;
/// Current UUID of freshly created meta data (`UUID_JUST_CREATED`).
pub const UUID_JUST_CREATED: u64 = 4;

/// Meta-data flag: the data is consistent (`MDF_CONSISTENT`).
pub const MDF_CONSISTENT: u32 = 1 << 0;
/// Meta-data flag: the node was Primary (`MDF_PRIMARY_IND`).
pub const MDF_PRIMARY_IND: u32 = 1 << 1;
/// Meta-data flag: the node was connected (`MDF_CONNECTED_IND`).
pub const MDF_CONNECTED_IND: u32 = 1 << 2;
/// Meta-data flag: a full sync is pending (`MDF_FULL_SYNC`).
pub const MDF_FULL_SYNC: u32 = 1 << 3;
/// Meta-data flag: the data was UpToDate (`MDF_WAS_UP_TO_DATE`).
pub const MDF_WAS_UP_TO_DATE: u32 = 1 << 4;
/// Meta-data flag: the peer is known to be Outdated (`MDF_PEER_OUT_DATED`).
pub const MDF_PEER_OUT_DATED: u32 = 1 << 5;
/// Meta-data flag: the node crashed while Primary (`MDF_CRASHED_PRIMARY`).
pub const MDF_CRASHED_PRIMARY: u32 = 1 << 6;
/// Meta-data flag: the activity log has been applied, "AL clean" (`MDF_AL_CLEAN`).
pub const MDF_AL_CLEAN: u32 = 1 << 7;
/// Meta-data flag: activity-log updates are disabled (`MDF_AL_DISABLED`).
pub const MDF_AL_DISABLED: u32 = 1 << 8;

/// log2 of the activity-log extent size (`AL_EXTENT_SHIFT`).
pub const AL_EXTENT_SHIFT: u32 = 22;
/// Bytes of storage covered by one activity-log extent: 4 MiB (`AL_EXTENT_SIZE`).
pub const AL_EXTENT_SIZE: u64 = 1 << AL_EXTENT_SHIFT;
/// Slot updates carried by one transaction (`AL_UPDATES_PER_TRANSACTION`).
pub const AL_UPDATES_PER_TRANSACTION: usize = 64;
/// Context extent numbers carried by one transaction: (4096 - 36 - 6 * 64) / 4
/// (`AL_CONTEXT_PER_TRANSACTION`).
pub const AL_CONTEXT_PER_TRANSACTION: usize = 919;
/// Transaction type of a regular update (`AL_TR_UPDATE`).
pub const AL_TR_UPDATE: u16 = 0;
/// Transaction type of a block written by `drbdmeta` to initialize the ring
/// (`AL_TR_INITIALIZED`).
pub const AL_TR_INITIALIZED: u16 = 0xffff;
/// Largest number of activity-log slots, "al-extents" (`DRBD_AL_EXTENTS_MAX`).
pub const AL_EXTENTS_MAX: usize = 65534;
/// Default number of activity-log slots (`DRBD_AL_EXTENTS_DEF`).
pub const AL_EXTENTS_DEF: u32 = 1237;
/// Slot number of an unused update entry.
pub const AL_SLOT_UNUSED: u16 = 0xffff;
/// Extent number of a free slot (`LC_FREE`).
pub const LC_FREE: u32 = u32::MAX;
/// Default activity-log stripes.
pub const AL_DEFAULT_STRIPES: u32 = 1;
/// Default activity-log stripe size in 4 KiB blocks (32 KiB).
pub const AL_DEFAULT_STRIPE_SIZE_4K: u32 = 8;
/// Smallest activity log, in 4 KiB transaction blocks: 32 KiB = 8 transactions.
pub const AL_MIN_SIZE_4K: u32 = MD_32KB_SECT / MD_4KB_SECT;
/// Largest activity log, in 4 KiB transaction blocks: 16 GiB.
pub const AL_MAX_SIZE_4K: u32 = 16 * 1024 * 1024 / 4;

/// log2 of the bytes of storage tracked by one bitmap bit (`BM_BLOCK_SHIFT`).
pub const BM_BLOCK_SHIFT: u32 = 12;
/// Bytes of storage tracked by one bitmap bit: 4 KiB (`BM_BLOCK_SIZE`).
pub const BM_BLOCK_SIZE: u32 = 1 << BM_BLOCK_SHIFT;
/// Sectors tracked by one bitmap bit (`BM_SECT_PER_BIT`).
pub const BM_SECT_PER_BIT: u64 = 1 << (BM_BLOCK_SHIFT - 9);
/// Bitmap bits covering one activity-log extent: 4 MiB / 4 KiB = 1024.
pub const BM_BITS_PER_AL_EXTENT: u64 = 1 << (AL_EXTENT_SHIFT - BM_BLOCK_SHIFT);
/// log2 of the bytes of storage tracked by one 512-byte bitmap sector: 16 MiB
/// (`BM_EXT_SHIFT`).
pub const BM_EXT_SHIFT: u32 = 24;
/// Storage sectors tracked by one 512-byte bitmap sector (`BM_SECT_PER_EXT`).
pub const BM_SECT_PER_EXT: u64 = 1 << (BM_EXT_SHIFT - 9);
/// Largest data size in sectors with internal meta data on 64-bit hosts
/// (`DRBD_MAX_SECTORS_FLEX`).
pub const MAX_SECTORS_FLEX: u64 = 1 << 51;
/// `al_nr_extents` that `drbdmeta create-md` writes ("arbitrary"; the kernel overwrites it).
pub const CREATE_MD_AL_NR_EXTENTS: u32 = 257;

/// Why meta data was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MdError {
    /// The superblock or transaction magic is not one this module understands.
    BadMagic,
    /// `bm_bytes_per_bit` is not 4096.
    BadBitmapGranularity,
    /// `al_stripes` / `al_stripe_size_4k` are implausible.
    BadAlStripes,
    /// `al_offset`, `bm_offset` and `md_size_sect` do not describe an internal layout.
    BadOffsets,
    /// The device is too small for the meta data plus at least one data sector.
    TooSmall,
    /// The device is too large for internal meta data (offsets would not fit 32 bits).
    TooLarge,
    /// The CRC-32C of an activity-log transaction does not match.
    BadChecksum,
    /// Unknown activity-log transaction type.
    BadTransactionType,
    /// A count is out of range (`n_updates`, `context_size`, or an encoder input length).
    BadCount,
    /// The activity-log ring does not have `al_stripes * al_stripe_size_4k` blocks.
    BadRingSize,
    /// Not a single valid transaction in the activity log.
    NoValidTransaction,
    /// Some transactions are valid, some are corrupt, and none is an update.
    InconsistentLog,
    /// A caller-provided buffer is too small.
    BufferTooSmall,
    /// A bit, sector or extent lies beyond the caller's bitmap.
    OutOfRange,
}

impl MdError {
    /// A short description for log messages.
    pub fn as_str(self) -> &'static str {
        match self {
            MdError::BadMagic => "bad magic",
            MdError::BadBitmapGranularity => "bm_bytes_per_bit is not 4096",
            MdError::BadAlStripes => "invalid activity log striping",
            MdError::BadOffsets => "meta data offsets do not make sense",
            MdError::TooSmall => "device too small",
            MdError::TooLarge => "device too large",
            MdError::BadChecksum => "bad crc32c",
            MdError::BadTransactionType => "unknown activity log transaction type",
            MdError::BadCount => "count out of range",
            MdError::BadRingSize => "activity log ring has the wrong size",
            MdError::NoValidTransaction => "no usable activity log found",
            MdError::InconsistentLog => "no valid activity log update transaction",
            MdError::BufferTooSmall => "buffer too small",
            MdError::OutOfRange => "out of range",
        }
    }
}

// ---- big-endian field access ------------------------------------------------------------------

fn rd_be<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = off.checked_add(N).and_then(|end| b.get(off..end)) {
        a.copy_from_slice(s);
    }
    a
}

fn rd_u16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes(rd_be(b, off))
}

fn rd_u32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(rd_be(b, off))
}

fn rd_u64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(rd_be(b, off))
}

fn wr(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(d) = off.checked_add(v.len()).and_then(|end| b.get_mut(off..end)) {
        d.copy_from_slice(v);
    }
}

// ---- activity-log geometry shared by superblock, layout and replay ---------------------------

/// Normalized activity-log striping: `(al_stripes, al_stripe_size_4k, al_size_4k)`.
///
/// Like `check_activity_log_stripe_size()` (drbd_main.c): both zero means the old fixed 32 KiB
/// log (1 x 8); otherwise both must be set and `8 <= stripes * size <= 4 Mi` blocks (16 GiB).
pub fn al_striping(al_stripes: u32, al_stripe_size_4k: u32) -> Result<(u32, u32, u32), MdError> {
    let (stripes, size) = if al_stripes == 0 && al_stripe_size_4k == 0 {
        (AL_DEFAULT_STRIPES, AL_DEFAULT_STRIPE_SIZE_4K)
    } else {
        (al_stripes, al_stripe_size_4k)
    };
    if stripes == 0 || size == 0 {
        return Err(MdError::BadAlStripes);
    }
    // Two u32: the product fits u64.
    let total = u64::from(stripes).saturating_mul(u64::from(size));
    if total < u64::from(AL_MIN_SIZE_4K) || total > u64::from(AL_MAX_SIZE_4K) {
        return Err(MdError::BadAlStripes);
    }
    let total = u32::try_from(total).map_err(|_| MdError::BadAlStripes)?;
    Ok((stripes, size, total))
}

/// The 4 KiB block inside the activity-log area that holds transaction `tr_number`.
///
/// `al_tr_number_to_on_disk_sector()` (drbd_actlog.c): `t = tr % (stripes * size)`, then
/// `(t % stripes) * size + t / stripes`. Returns `None` for invalid striping.
pub fn al_tr_block(tr_number: u32, al_stripes: u32, al_stripe_size_4k: u32) -> Option<u32> {
    let (stripes, size, total) = al_striping(al_stripes, al_stripe_size_4k).ok()?;
    ring_block(tr_number.checked_rem(total)?, stripes, size)
}

/// Logical ring position `t < stripes * size` to on-disk block; `None` on overflow or zero
/// stripes.
fn ring_block(t: u32, stripes: u32, size: u32) -> Option<u32> {
    t.checked_rem(stripes)?
        .checked_mul(size)?
        .checked_add(t.checked_div(stripes)?)
}

/// Offset of entry `i` of `width` bytes in an array at `base` of a 4 KiB block (`i` is below
/// the array's length, so this is far from saturating).
fn entry(base: usize, width: usize, i: usize) -> usize {
    base.saturating_add(width.saturating_mul(i))
}

// ---- superblock -------------------------------------------------------------------------------

const SB_LA_SIZE_SECT: usize = 0;
const SB_UUID: usize = 8;
const SB_DEVICE_UUID: usize = 40;
// 48..56: reserved_u64_1
const SB_FLAGS: usize = 56;
const SB_MAGIC: usize = 60;
const SB_MD_SIZE_SECT: usize = 64;
const SB_AL_OFFSET: usize = 68;
const SB_AL_NR_EXTENTS: usize = 72;
const SB_BM_OFFSET: usize = 76;
const SB_BM_BYTES_PER_BIT: usize = 80;
const SB_LA_PEER_MAX_BIO_SIZE: usize = 84;
const SB_AL_STRIPES: usize = 88;
const SB_AL_STRIPE_SIZE_4K: usize = 92;

/// The 4 KiB meta-data superblock, `struct meta_data_on_disk` (drbd_main.c), in CPU order.
///
/// The two reserved fields (`reserved_u64_1` and the padding after byte 96) are not kept: the
/// kernel writes them as zero and never reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Last agreed size of the replicated device, in sectors (byte 0).
    pub la_size_sect: u64,
    /// Current, bitmap and two history UUIDs, indexed by `UI_*` (bytes 8..40).
    pub uuids: [u64; UI_SIZE],
    /// Random identifier of the lower device (byte 40).
    pub device_uuid: u64,
    /// `MDF_*` flags (byte 56).
    pub flags: u32,
    /// [`MD_MAGIC_08`] or [`MD_MAGIC_84_UNCLEAN`] (byte 60).
    pub magic: u32,
    /// Sectors of meta data: superblock, activity log and bitmap (byte 64).
    pub md_size_sect: u32,
    /// Activity-log start relative to the superblock, in sectors; negative (byte 68).
    pub al_offset: i32,
    /// Activity-log slots ("al-extents") when last written (byte 72).
    pub al_nr_extents: u32,
    /// Bitmap start relative to the superblock, in sectors; negative (byte 76).
    pub bm_offset: i32,
    /// Bytes per bitmap bit; always [`BM_BLOCK_SIZE`] (byte 80).
    pub bm_bytes_per_bit: u32,
    /// Peer's last max_bio_size (byte 84).
    pub la_peer_max_bio_size: u32,
    /// Activity-log stripes; 0 together with `al_stripe_size_4k` 0 means 1 (byte 88).
    pub al_stripes: u32,
    /// Activity-log stripe size in 4 KiB blocks; 0 together with `al_stripes` 0 means 8
    /// (byte 92).
    pub al_stripe_size_4k: u32,
}

impl Superblock {
    /// A freshly created superblock for `geom`, as `drbdmeta create-md` writes it for v08:
    /// clean magic, `MDF_AL_CLEAN`, current UUID [`UUID_JUST_CREATED`], zero device UUID.
    pub fn new_internal(geom: &InternalGeometry) -> Superblock {
        Superblock {
            la_size_sect: 0,
            uuids: [UUID_JUST_CREATED, 0, 0, 0],
            device_uuid: 0,
            flags: MDF_AL_CLEAN,
            magic: MD_MAGIC_08,
            md_size_sect: geom.md_size_sect,
            al_offset: geom.al_offset,
            al_nr_extents: CREATE_MD_AL_NR_EXTENTS,
            bm_offset: geom.bm_offset,
            bm_bytes_per_bit: BM_BLOCK_SIZE,
            la_peer_max_bio_size: 0,
            al_stripes: geom.al_stripes,
            al_stripe_size_4k: geom.al_stripe_size_4k,
        }
    }

    /// Decodes and validates a superblock block.
    ///
    /// Accepts both the clean and the 8.4 "unclean" magic (see [`Superblock::is_clean`]) and
    /// checks what `drbd_md_read()` and its helpers check that does not need the device size:
    /// `bm_bytes_per_bit == 4096`, the striping ([`al_striping`]), and an internal layout
    /// ([`Superblock::check_layout`]).
    pub fn decode(block: &[u8; MD_BLOCK_SIZE]) -> Result<Superblock, MdError> {
        let b = &block[..];
        let mut uuids = [0u64; UI_SIZE];
        for (i, u) in uuids.iter_mut().enumerate() {
            *u = rd_u64(b, entry(SB_UUID, 8, i));
        }
        let sb = Superblock {
            la_size_sect: rd_u64(b, SB_LA_SIZE_SECT),
            uuids,
            device_uuid: rd_u64(b, SB_DEVICE_UUID),
            flags: rd_u32(b, SB_FLAGS),
            magic: rd_u32(b, SB_MAGIC),
            md_size_sect: rd_u32(b, SB_MD_SIZE_SECT),
            al_offset: i32::from_be_bytes(rd_be(b, SB_AL_OFFSET)),
            al_nr_extents: rd_u32(b, SB_AL_NR_EXTENTS),
            bm_offset: i32::from_be_bytes(rd_be(b, SB_BM_OFFSET)),
            bm_bytes_per_bit: rd_u32(b, SB_BM_BYTES_PER_BIT),
            la_peer_max_bio_size: rd_u32(b, SB_LA_PEER_MAX_BIO_SIZE),
            al_stripes: rd_u32(b, SB_AL_STRIPES),
            al_stripe_size_4k: rd_u32(b, SB_AL_STRIPE_SIZE_4K),
        };
        sb.check_layout()?;
        Ok(sb)
    }

    /// Writes the superblock big-endian into `block`, zeroing every reserved byte.
    pub fn encode(&self, block: &mut [u8; MD_BLOCK_SIZE]) {
        block.fill(0);
        let b = &mut block[..];
        wr(b, SB_LA_SIZE_SECT, &self.la_size_sect.to_be_bytes());
        for (i, u) in self.uuids.iter().enumerate() {
            wr(b, entry(SB_UUID, 8, i), &u.to_be_bytes());
        }
        wr(b, SB_DEVICE_UUID, &self.device_uuid.to_be_bytes());
        wr(b, SB_FLAGS, &self.flags.to_be_bytes());
        wr(b, SB_MAGIC, &self.magic.to_be_bytes());
        wr(b, SB_MD_SIZE_SECT, &self.md_size_sect.to_be_bytes());
        wr(b, SB_AL_OFFSET, &self.al_offset.to_be_bytes());
        wr(b, SB_AL_NR_EXTENTS, &self.al_nr_extents.to_be_bytes());
        wr(b, SB_BM_OFFSET, &self.bm_offset.to_be_bytes());
        wr(b, SB_BM_BYTES_PER_BIT, &self.bm_bytes_per_bit.to_be_bytes());
        wr(
            b,
            SB_LA_PEER_MAX_BIO_SIZE,
            &self.la_peer_max_bio_size.to_be_bytes(),
        );
        wr(b, SB_AL_STRIPES, &self.al_stripes.to_be_bytes());
        wr(
            b,
            SB_AL_STRIPE_SIZE_4K,
            &self.al_stripe_size_4k.to_be_bytes(),
        );
    }

    /// True if the kernel would attach without `drbdmeta apply-al`: magic [`MD_MAGIC_08`] and
    /// [`MDF_AL_CLEAN`] set (`drbd_md_read()`).
    pub fn is_clean(&self) -> bool {
        self.magic == MD_MAGIC_08 && self.flags & MDF_AL_CLEAN != 0
    }

    /// Activity-log size in 4 KiB transaction blocks (normalized, see [`al_striping`]).
    pub fn al_size_4k(&self) -> Result<u32, MdError> {
        al_striping(self.al_stripes, self.al_stripe_size_4k).map(|(_, _, n)| n)
    }

    /// Sectors of the on-disk bitmap area: `al_offset - bm_offset`.
    pub fn bm_sectors(&self) -> Result<u32, MdError> {
        let s = self.al_offset.checked_sub(self.bm_offset);
        s.and_then(|s| u32::try_from(s).ok())
            .ok_or(MdError::BadOffsets)
    }

    /// Checks everything but the device size, in this order: magic, `bm_bytes_per_bit`,
    /// striping, then the internal layout as `check_offsets_and_sizes()` (drbd_main.c):
    /// `al_offset < 0`, `bm_offset <= al_offset`, `-al_offset` is a multiple of 8, at least 64
    /// and equal to `al_size_4k * 8`, `bm_offset` is a multiple of 8, and the bitmap covers
    /// `la_size_sect` (`bm_sectors >= ((la_size_sect + 7) / 8) / 4096`). In addition
    /// `md_size_sect == 8 - bm_offset` ([bitmap][AL][superblock] with nothing in between),
    /// which is what both `drbd_md_set_sector_offsets()` and `drbdmeta` write; the kernel
    /// itself would tolerate up to 7 more sectors there.
    pub fn check_layout(&self) -> Result<(), MdError> {
        if self.magic != MD_MAGIC_08 && self.magic != MD_MAGIC_84_UNCLEAN {
            return Err(MdError::BadMagic);
        }
        if self.bm_bytes_per_bit != BM_BLOCK_SIZE {
            return Err(MdError::BadBitmapGranularity);
        }
        let al_size_4k = self.al_size_4k()?;
        let al_offset = i64::from(self.al_offset);
        let bm_offset = i64::from(self.bm_offset);
        if al_offset >= 0 || bm_offset > al_offset {
            return Err(MdError::BadOffsets);
        }
        // i32 and u32 values in i64: these cannot saturate.
        let al_sect = al_offset.saturating_neg();
        if al_sect & 7 != 0
            || al_sect < i64::from(MD_32KB_SECT)
            || al_sect != i64::from(al_size_4k).saturating_mul(i64::from(MD_4KB_SECT))
        {
            return Err(MdError::BadOffsets);
        }
        if bm_offset & 7 != 0 {
            return Err(MdError::BadOffsets);
        }
        if i64::from(self.md_size_sect) != i64::from(MD_4KB_SECT).saturating_sub(bm_offset) {
            return Err(MdError::BadOffsets);
        }
        let bm_sect = al_offset.saturating_sub(bm_offset).unsigned_abs();
        if bm_sect < self.la_size_sect.div_ceil(8) / (8 * 512) {
            return Err(MdError::BadOffsets);
        }
        Ok(())
    }

    /// The layout this superblock describes on a lower device of `dev_sectors` sectors.
    ///
    /// Uses the stored offsets (as the kernel does right after `drbd_md_read()`), not ones
    /// recomputed from the device size, so it also works before a pending resize. Fails like
    /// `check_offsets_and_sizes()` when the meta data does not fit the device, and with
    /// [`MdError::TooSmall`] when no data sector would be left.
    pub fn geometry(&self, dev_sectors: u64) -> Result<InternalGeometry, MdError> {
        self.check_layout()?;
        let (stripes, size, _) = al_striping(self.al_stripes, self.al_stripe_size_4k)?;
        if dev_sectors < u64::from(self.md_size_sect) {
            return Err(MdError::TooSmall);
        }
        let md_offset = md_offset(dev_sectors)?;
        let first = md_offset
            .checked_sub(u64::from(self.bm_offset.unsigned_abs()))
            .ok_or(MdError::TooSmall)?;
        if first == 0 {
            return Err(MdError::TooSmall);
        }
        Ok(InternalGeometry {
            dev_sectors,
            md_offset,
            md_size_sect: self.md_size_sect,
            al_offset: self.al_offset,
            bm_offset: self.bm_offset,
            al_stripes: stripes,
            al_stripe_size_4k: size,
            bm_sectors: self.bm_sectors()?,
            max_capacity: first.min(MAX_SECTORS_FLEX),
        })
    }
}

// ---- internal layout --------------------------------------------------------------------------

/// Superblock position of internal meta data: the last 4 KiB aligned 4 KiB block
/// (`drbd_md_ss()`, drbd_int.h): `(dev_sectors & !7) - 8`.
fn md_offset(dev_sectors: u64) -> Result<u64, MdError> {
    (dev_sectors & !7).checked_sub(8).ok_or(MdError::TooSmall)
}

/// Layout of internal meta data on a lower device, with one peer (8.4 has exactly one).
///
/// Offsets are in sectors; `al_offset` and `bm_offset` are relative to `md_offset`, as DRBD
/// stores them in the superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InternalGeometry {
    /// Size of the lower device.
    pub dev_sectors: u64,
    /// Absolute sector of the superblock.
    pub md_offset: u64,
    /// Sectors of meta data: bitmap + activity log + 4 KiB superblock.
    pub md_size_sect: u32,
    /// Activity-log start relative to `md_offset` (negative).
    pub al_offset: i32,
    /// Bitmap start relative to `md_offset` (negative).
    pub bm_offset: i32,
    /// Activity-log stripes (normalized, never 0).
    pub al_stripes: u32,
    /// Activity-log stripe size in 4 KiB blocks (normalized, never 0).
    pub al_stripe_size_4k: u32,
    /// Sectors of the on-disk bitmap area (a multiple of 8).
    pub bm_sectors: u32,
    /// Usable data size: `min(md_offset + bm_offset, MAX_SECTORS_FLEX)`
    /// (`drbd_get_max_capacity()`).
    pub max_capacity: u64,
}

impl InternalGeometry {
    /// Computes the internal layout for a lower device of `dev_sectors` sectors, exactly as
    /// `drbd_md_set_sector_offsets()` (drbd_nl.c) and `drbd_get_max_capacity()` (drbd_int.h)
    /// do for `DRBD_MD_INDEX_FLEX_INT`:
    ///
    /// ```text
    /// al_sect      = al_stripes * al_stripe_size_4k * 8
    /// md_offset    = (dev_sectors & !7) - 8
    /// bm_sect      = ALIGN(ceil(dev_sectors / 32768), 8)   // 1 bitmap sector per 16 MiB
    /// md_size_sect = bm_sect + 8 + al_sect
    /// al_offset    = -al_sect
    /// bm_offset    = 8 - md_size_sect                      // = -(bm_sect + al_sect)
    /// max_capacity = min(md_offset + bm_offset, 2^51)
    /// ```
    ///
    /// `drbdmeta` (`re_initialize_md_offsets()` with `bm_bytes()`) arrives at the same
    /// `bm_sect`. Errors: [`MdError::BadAlStripes`] for invalid striping,
    /// [`MdError::TooSmall`] if the meta data does not fit or leaves no data sector,
    /// [`MdError::TooLarge`] if `md_size_sect` would not fit the signed 32-bit offsets.
    pub fn new(
        dev_sectors: u64,
        al_stripes: u32,
        al_stripe_size_4k: u32,
    ) -> Result<InternalGeometry, MdError> {
        let (stripes, size, al_size_4k) = al_striping(al_stripes, al_stripe_size_4k)?;
        // At most 4 Mi blocks of 8 sectors (al_striping).
        let al_sect = u64::from(al_size_4k).saturating_mul(u64::from(MD_4KB_SECT));
        let md_offset = md_offset(dev_sectors)?;
        // dev_sectors / 2^15 rounded up to 8: far below u64::MAX.
        let bm_sect = dev_sectors
            .div_ceil(BM_SECT_PER_EXT)
            .div_ceil(8)
            .saturating_mul(8);
        let md_size = bm_sect
            .checked_add(al_sect)
            .and_then(|s| s.checked_add(u64::from(MD_4KB_SECT)))
            .ok_or(MdError::TooLarge)?;
        let md_size_sect = i32::try_from(md_size).map_err(|_| MdError::TooLarge)?;
        let al_offset = i32::try_from(al_sect).map_err(|_| MdError::TooLarge)?;
        let bm_sectors = u32::try_from(bm_sect).map_err(|_| MdError::TooLarge)?;
        // Bitmap and log: md_size less the superblock's 8 sectors.
        let first = md_offset
            .checked_sub(bm_sect.saturating_add(al_sect))
            .ok_or(MdError::TooSmall)?;
        if first == 0 {
            return Err(MdError::TooSmall);
        }
        Ok(InternalGeometry {
            dev_sectors,
            md_offset,
            md_size_sect: md_size_sect.unsigned_abs(),
            // Both fit i32 (checked above) and are positive: no overflow.
            al_offset: al_offset.saturating_neg(),
            bm_offset: 8i32.saturating_sub(md_size_sect),
            al_stripes: stripes,
            al_stripe_size_4k: size,
            bm_sectors,
            max_capacity: first.min(MAX_SECTORS_FLEX),
        })
    }

    /// Activity-log size in 4 KiB transaction blocks.
    pub fn al_size_4k(&self) -> u32 {
        self.al_stripes.saturating_mul(self.al_stripe_size_4k)
    }

    /// Absolute first sector of the activity log: `md_offset + al_offset`.
    pub fn al_sector(&self) -> u64 {
        self.md_offset
            .saturating_sub(u64::from(self.al_offset.unsigned_abs()))
    }

    /// Absolute first sector of the bitmap: `md_offset + bm_offset`.
    pub fn bm_sector(&self) -> u64 {
        self.md_offset
            .saturating_sub(u64::from(self.bm_offset.unsigned_abs()))
    }

    /// Absolute sector of the block that holds activity-log transaction `tr_number`
    /// (`al_tr_number_to_on_disk_sector()`).
    pub fn al_tr_sector(&self, tr_number: u32) -> Option<u64> {
        let blk = al_tr_block(tr_number, self.al_stripes, self.al_stripe_size_4k)?;
        self.al_sector()
            .checked_add(u64::from(blk).checked_mul(u64::from(MD_4KB_SECT))?)
    }

    /// Bits tracking the usable data: `ceil(max_capacity / 8)` (`drbd_bm_resize()`).
    pub fn bm_bits(&self) -> u64 {
        bm_bits_for_sectors(self.max_capacity)
    }

    /// Bytes of the on-disk bitmap in use: bits rounded up to 64-bit words.
    pub fn bm_bytes(&self) -> u64 {
        bm_bytes_for_sectors(self.max_capacity)
    }
}

// ---- activity-log transactions ----------------------------------------------------------------

const AL_MAGIC_OFF: usize = 0;
const AL_TR_NUMBER: usize = 4;
const AL_CRC32C: usize = 8;
const AL_TYPE: usize = 12;
const AL_N_UPDATES: usize = 14;
const AL_CONTEXT_SIZE: usize = 16;
const AL_CONTEXT_START: usize = 18;
// 20..36: __reserved[4]
const AL_UPDATE_SLOT: usize = 36;
const AL_UPDATE_EXTENT: usize = AL_UPDATE_SLOT + 2 * AL_UPDATES_PER_TRANSACTION;
const AL_CONTEXT: usize = AL_UPDATE_EXTENT + 4 * AL_UPDATES_PER_TRANSACTION;
const _: () = assert!(AL_CONTEXT + 4 * AL_CONTEXT_PER_TRANSACTION == MD_BLOCK_SIZE);

/// CRC-32C of a transaction block as DRBD computes it: the kernel's raw `crc32c(0, block, 4096)`
/// (seed 0, no inversion) with the `crc32c` field (bytes 8..12) taken as zero
/// (`__al_write_transaction()` in drbd_actlog.c; `v84_al_disk_to_cpu()` in drbdmeta).
pub fn al_crc32c(block: &[u8; MD_BLOCK_SIZE]) -> u32 {
    let (head, rest) = block.split_at(AL_CRC32C);
    let tail = rest.get(4..).unwrap_or(&[]);
    let crc = crc32c::update(0, head);
    let crc = crc32c::update(crc, &[0u8; 4]);
    crc32c::update(crc, tail)
}

/// One slot update of a transaction: slot `slot` now holds extent `extent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlUpdate {
    /// Slot number (`update_slot_nr`), [`AL_SLOT_UNUSED`] for an unused entry.
    pub slot: u16,
    /// Extent number (`update_extent_nr`), [`LC_FREE`] for "slot now empty".
    pub extent: u32,
}

/// Header fields of a transaction that a writer chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlHeader {
    /// Sequence number identifying the newest block of the ring (`tr_number`).
    pub tr_number: u32,
    /// [`AL_TR_UPDATE`] or [`AL_TR_INITIALIZED`].
    pub transaction_type: u16,
    /// Number of slots, "al-extents" (`context_size`).
    pub context_size: u16,
    /// Slot number of `context[0]` (`context_start_slot_nr`).
    pub context_start_slot_nr: u16,
}

/// A verified view of one activity-log transaction block, `struct al_transaction_on_disk`
/// (drbd_actlog.c). Borrowing instead of copying keeps 4 KiB off the (kernel) stack.
#[derive(Debug, Clone, Copy)]
pub struct AlTransaction<'a> {
    block: &'a [u8; MD_BLOCK_SIZE],
    header: AlHeader,
    n_updates: u16,
    crc32c: u32,
}

impl<'a> AlTransaction<'a> {
    /// Verifies magic, CRC-32C ([`al_crc32c`]), transaction type, `n_updates <= 64` and
    /// `context_size <= AL_EXTENTS_MAX`.
    pub fn decode(block: &'a [u8; MD_BLOCK_SIZE]) -> Result<AlTransaction<'a>, MdError> {
        let b = &block[..];
        if rd_u32(b, AL_MAGIC_OFF) != AL_MAGIC {
            return Err(MdError::BadMagic);
        }
        let crc = rd_u32(b, AL_CRC32C);
        if crc != al_crc32c(block) {
            return Err(MdError::BadChecksum);
        }
        let header = AlHeader {
            tr_number: rd_u32(b, AL_TR_NUMBER),
            transaction_type: rd_u16(b, AL_TYPE),
            context_size: rd_u16(b, AL_CONTEXT_SIZE),
            context_start_slot_nr: rd_u16(b, AL_CONTEXT_START),
        };
        if header.transaction_type != AL_TR_UPDATE && header.transaction_type != AL_TR_INITIALIZED {
            return Err(MdError::BadTransactionType);
        }
        let n_updates = rd_u16(b, AL_N_UPDATES);
        if usize::from(n_updates) > AL_UPDATES_PER_TRANSACTION
            || usize::from(header.context_size) > AL_EXTENTS_MAX
        {
            return Err(MdError::BadCount);
        }
        Ok(AlTransaction {
            block,
            header,
            n_updates,
            crc32c: crc,
        })
    }

    /// Builds a transaction block the way `__al_write_transaction()` does: `updates` fill the
    /// first entries (at most 64), the rest get slot [`AL_SLOT_UNUSED`] and extent
    /// [`LC_FREE`]; `context` fills `context[0..]` (at most 919), the rest [`LC_FREE`];
    /// reserved bytes are zero; the CRC-32C is computed last.
    pub fn encode(
        header: &AlHeader,
        updates: &[AlUpdate],
        context: &[u32],
        block: &mut [u8; MD_BLOCK_SIZE],
    ) -> Result<(), MdError> {
        if updates.len() > AL_UPDATES_PER_TRANSACTION || context.len() > AL_CONTEXT_PER_TRANSACTION
        {
            return Err(MdError::BadCount);
        }
        let n_updates = u16::try_from(updates.len()).map_err(|_| MdError::BadCount)?;
        block.fill(0);
        let b = &mut block[..];
        wr(b, AL_MAGIC_OFF, &AL_MAGIC.to_be_bytes());
        wr(b, AL_TR_NUMBER, &header.tr_number.to_be_bytes());
        wr(b, AL_TYPE, &header.transaction_type.to_be_bytes());
        wr(b, AL_N_UPDATES, &n_updates.to_be_bytes());
        wr(b, AL_CONTEXT_SIZE, &header.context_size.to_be_bytes());
        wr(
            b,
            AL_CONTEXT_START,
            &header.context_start_slot_nr.to_be_bytes(),
        );
        for i in 0..AL_UPDATES_PER_TRANSACTION {
            let u = updates.get(i).copied().unwrap_or(AlUpdate {
                slot: AL_SLOT_UNUSED,
                extent: LC_FREE,
            });
            wr(b, entry(AL_UPDATE_SLOT, 2, i), &u.slot.to_be_bytes());
            wr(b, entry(AL_UPDATE_EXTENT, 4, i), &u.extent.to_be_bytes());
        }
        for i in 0..AL_CONTEXT_PER_TRANSACTION {
            let e = context.get(i).copied().unwrap_or(LC_FREE);
            wr(b, entry(AL_CONTEXT, 4, i), &e.to_be_bytes());
        }
        let crc = al_crc32c(block);
        wr(&mut block[..], AL_CRC32C, &crc.to_be_bytes());
        Ok(())
    }

    /// The header fields.
    pub fn header(&self) -> AlHeader {
        self.header
    }

    /// `tr_number`.
    pub fn tr_number(&self) -> u32 {
        self.header.tr_number
    }

    /// Number of meaningful update entries (`n_updates`, at most 64).
    pub fn n_updates(&self) -> u16 {
        self.n_updates
    }

    /// The stored (and verified) CRC-32C.
    pub fn crc32c(&self) -> u32 {
        self.crc32c
    }

    /// Raw update entry `i` (`i < 64`), including entries past `n_updates`.
    pub fn update(&self, i: usize) -> Option<AlUpdate> {
        if i >= AL_UPDATES_PER_TRANSACTION {
            return None;
        }
        Some(AlUpdate {
            slot: rd_u16(self.block, entry(AL_UPDATE_SLOT, 2, i)),
            extent: rd_u32(self.block, entry(AL_UPDATE_EXTENT, 4, i)),
        })
    }

    /// The first `n_updates` update entries.
    pub fn updates(&self) -> impl Iterator<Item = AlUpdate> + '_ {
        (0..usize::from(self.n_updates)).filter_map(move |i| self.update(i))
    }

    /// Context entry `i` (`i < 919`): the extent in slot `context_start_slot_nr + i`.
    pub fn context(&self, i: usize) -> Option<u32> {
        if i >= AL_CONTEXT_PER_TRANSACTION {
            return None;
        }
        Some(rd_u32(self.block, entry(AL_CONTEXT, 4, i)))
    }
}

/// Position of a transaction in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlPos {
    /// Logical ring position (`tr_number % al_size_4k` for transactions the kernel wrote).
    pub index: u32,
    /// On-disk 4 KiB block inside the activity-log area (after striping).
    pub block: u32,
    /// The transaction's `tr_number`.
    pub tr_number: u32,
}

/// Outcome of [`al_replay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlReplay {
    /// Valid blocks (magic and CRC-32C), updates and initialized ones.
    pub valid: u32,
    /// Blocks that failed to decode.
    pub corrupt: u32,
    /// Valid update transactions; 0 means "nothing to apply, just mark clean".
    pub valid_updates: u32,
    /// Oldest valid update transaction (wrap-aware).
    pub oldest: Option<AlPos>,
    /// Newest valid update transaction (wrap-aware): the state the replay reconstructs.
    pub newest: Option<AlPos>,
    /// Entries ignored because their slot number was `>= AL_EXTENTS_MAX`.
    pub skipped: u32,
}

/// Replays the activity-log ring like `drbdmeta apply-al` (`replay_al_84()`) and leaves the
/// active set at the time of the newest transaction in `slots` (`slots[s]` = extent in slot
/// `s`, [`LC_FREE`] if empty). Every extent in `slots` (see [`al_active_extents`]) may have had
/// writes in flight at a crash and must be marked out of sync ([`bm_mark_al_extent`]).
///
/// `ring` is the whole activity-log area as read from disk (block `i` at
/// `md_offset + al_offset + 8 * i`); it must have exactly `al_stripes * al_stripe_size_4k`
/// blocks. `slots` should have [`AL_EXTENTS_MAX`] entries (or at least the `context_size`
/// in use); it is cleared first.
///
/// Algorithm: decode logical position `b` from on-disk block `(b % stripes) * size +
/// b / stripes`; among the valid [`AL_TR_UPDATE`] transactions find the oldest and the newest by
/// wrap-aware comparison (`(a - b) as i32`); then, from the oldest to the newest position
/// (wrapping around the ring), apply each valid update transaction: first its context
/// (`slots[start + i] = context[i]`, skipping free entries past `context_size`), then its
/// updates (skipping unused entries past `n_updates`).
///
/// Errors: [`MdError::BadRingSize`]/[`MdError::BadAlStripes`] for a ring that does not match
/// the striping, [`MdError::NoValidTransaction`] if no block is valid (`-ENODATA`),
/// [`MdError::InconsistentLog`] if some blocks are valid but none is an update and the
/// corruption is not confined to block 0 (`-EINVAL`), [`MdError::BufferTooSmall`] if a slot
/// below [`AL_EXTENTS_MAX`] does not fit `slots`.
pub fn al_replay(
    ring: &[[u8; MD_BLOCK_SIZE]],
    al_stripes: u32,
    al_stripe_size_4k: u32,
    slots: &mut [u32],
) -> Result<AlReplay, MdError> {
    let (stripes, size, mx) = al_striping(al_stripes, al_stripe_size_4k)?;
    if u32::try_from(ring.len()) != Ok(mx) {
        return Err(MdError::BadRingSize);
    }
    slots.fill(LC_FREE);

    let decode_at = |b: u32| decode_ring_pos(ring, b, stripes, size);

    let mut out = AlReplay {
        valid: 0,
        corrupt: 0,
        valid_updates: 0,
        oldest: None,
        newest: None,
        skipped: 0,
    };
    let mut first_valid = false;
    // The counts stay at most `mx` (a u32).
    for b in 0..mx {
        let Some((o, t)) = decode_at(b) else {
            out.corrupt = out.corrupt.saturating_add(1);
            continue;
        };
        out.valid = out.valid.saturating_add(1);
        if b == 0 {
            first_valid = true;
        }
        if t.header.transaction_type != AL_TR_UPDATE {
            continue;
        }
        out.valid_updates = out.valid_updates.saturating_add(1);
        let pos = AlPos {
            index: b,
            block: o,
            tr_number: t.tr_number(),
        };
        // Like drbdmeta: replace only on a strictly older / newer number.
        let older = match out.oldest {
            Some(old) => tr_before(pos.tr_number, old.tr_number),
            None => true,
        };
        if older {
            out.oldest = Some(pos);
        }
        let newer = match out.newest {
            Some(new) => tr_before(new.tr_number, pos.tr_number),
            None => true,
        };
        if newer {
            out.newest = Some(pos);
        }
    }

    if out.valid == 0 {
        return Err(MdError::NoValidTransaction);
    }
    let (Some(oldest), Some(newest)) = (out.oldest, out.newest) else {
        // No update transaction: fine if all blocks are valid INITIALIZED ones, or only the
        // very first write failed.
        if out.valid == mx || (!first_valid && out.valid.saturating_add(1) == mx) {
            return Ok(out);
        }
        return Err(MdError::InconsistentLog);
    };

    replay_span(
        ring,
        (stripes, size, mx),
        oldest.index,
        newest.index,
        slots,
        &mut out.skipped,
    )?;
    Ok(out)
}

/// Applies the update transactions of ring positions `oldest..=newest` (cyclically, both
/// below `mx`) to `slots`.
fn replay_span(
    ring: &[[u8; MD_BLOCK_SIZE]],
    (stripes, size, mx): (u32, u32, u32),
    oldest: u32,
    newest: u32,
    slots: &mut [u32],
    skipped: &mut u32,
) -> Result<(), MdError> {
    // Both indexes are below `mx`: the positions `oldest..` then `..=newest` of the ring.
    let wrapped = if newest >= oldest {
        0..0
    } else {
        0..newest.saturating_add(1)
    };
    let tail = if newest >= oldest {
        oldest..newest.saturating_add(1)
    } else {
        oldest..mx
    };
    for b in tail.chain(wrapped) {
        let Some((_, t)) = decode_ring_pos(ring, b, stripes, size) else {
            continue;
        };
        if t.header.transaction_type != AL_TR_UPDATE {
            continue;
        }
        let start = u32::from(t.header.context_start_slot_nr);
        let ctx_size = u32::from(t.header.context_size);
        for i in 0..AL_CONTEXT_PER_TRANSACTION {
            let e = t.context(i).unwrap_or(LC_FREE);
            // A u16 plus i < 919: no saturation.
            let slot = start.saturating_add(i as u32);
            if e == LC_FREE && slot >= ctx_size {
                continue;
            }
            put_slot(slots, slot, e, skipped)?;
        }
        for i in 0..AL_UPDATES_PER_TRANSACTION {
            let Some(u) = t.update(i) else { continue };
            if i >= usize::from(t.n_updates) && u.slot == AL_SLOT_UNUSED {
                continue;
            }
            put_slot(slots, u32::from(u.slot), u.extent, skipped)?;
        }
    }
    Ok(())
}

/// Decodes logical ring position `b`; returns its on-disk block and the transaction if valid.
fn decode_ring_pos(
    ring: &[[u8; MD_BLOCK_SIZE]],
    b: u32,
    stripes: u32,
    size: u32,
) -> Option<(u32, AlTransaction<'_>)> {
    let o = ring_block(b, stripes, size)?;
    let blk = ring.get(usize::try_from(o).ok()?)?;
    AlTransaction::decode(blk).ok().map(|t| (o, t))
}

/// True if transaction number `a` is older than `b`, modulo 2^32.
fn tr_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn put_slot(slots: &mut [u32], slot: u32, extent: u32, skipped: &mut u32) -> Result<(), MdError> {
    let s = usize::try_from(slot).map_err(|_| MdError::BufferTooSmall)?;
    if s >= AL_EXTENTS_MAX {
        *skipped = skipped.saturating_add(1);
        return Ok(());
    }
    let d = slots.get_mut(s).ok_or(MdError::BufferTooSmall)?;
    *d = extent;
    Ok(())
}

/// The extents held by `slots` after [`al_replay`]: every entry that is not [`LC_FREE`].
pub fn al_active_extents(slots: &[u32]) -> impl Iterator<Item = u32> + '_ {
    slots.iter().copied().filter(|&e| e != LC_FREE)
}

// ---- bitmap -----------------------------------------------------------------------------------

/// Bitmap bits needed for `sectors` of data: `ceil(sectors / 8)` (`drbd_bm_resize()`).
pub fn bm_bits_for_sectors(sectors: u64) -> u64 {
    sectors.div_ceil(BM_SECT_PER_BIT)
}

/// Bitmap bytes in use for `sectors` of data: bits rounded up to 64-bit words, times 8.
pub fn bm_bytes_for_sectors(sectors: u64) -> u64 {
    // At most 2^58 words of 8 bytes.
    bm_bits_for_sectors(sectors).div_ceil(64).saturating_mul(8)
}

/// Byte index and mask of `bit` in a little-endian bit string, if inside `len` bytes.
///
/// DRBD keeps the bitmap as `unsigned long` words stored little-endian (`cpu_to_lel`,
/// `*_bit_le`), so bit `n` is bit `n % 8` of byte `n / 8` whatever the word size.
fn bit_pos(len: usize, bit: u64) -> Result<(usize, u8), MdError> {
    let byte = usize::try_from(bit / 8).map_err(|_| MdError::OutOfRange)?;
    if byte >= len {
        return Err(MdError::OutOfRange);
    }
    Ok((byte, 1u8 << (bit % 8)))
}

/// Tests bit `bit`.
pub fn bm_test_bit(bm: &[u8], bit: u64) -> Result<bool, MdError> {
    let (i, m) = bit_pos(bm.len(), bit)?;
    Ok(bm.get(i).is_some_and(|&v| v & m != 0))
}

/// Sets bit `bit`; returns whether it was clear before.
pub fn bm_set_bit(bm: &mut [u8], bit: u64) -> Result<bool, MdError> {
    let (i, m) = bit_pos(bm.len(), bit)?;
    let v = bm.get_mut(i).ok_or(MdError::OutOfRange)?;
    let was_clear = *v & m == 0;
    *v |= m;
    Ok(was_clear)
}

/// Clears bit `bit`; returns whether it was set before.
pub fn bm_clear_bit(bm: &mut [u8], bit: u64) -> Result<bool, MdError> {
    let (i, m) = bit_pos(bm.len(), bit)?;
    let v = bm.get_mut(i).ok_or(MdError::OutOfRange)?;
    let was_set = *v & m != 0;
    *v &= !m;
    Ok(was_set)
}

/// Sets bits `first..end` of `bm` (bits past its end are ignored) and returns how many were
/// clear before. Word-wise: a run costs one step per 64 bits, not one per bit (a peer's
/// bitmap may set 2^28 bits in one packet).
pub fn bm_set_range(bm: &mut [u8], first: u64, end: u64) -> u64 {
    // Bits of a slice: below 2^64.
    let end = end.min((bm.len() as u64).saturating_mul(8));
    let mut newly = 0u64;
    let mut bit = first;
    while bit < end {
        let Ok(byte) = usize::try_from(bit / 8) else {
            break;
        };
        // A whole little-endian 64-bit word from a word boundary.
        if bit % 64 == 0 && end.saturating_sub(bit) >= 64 {
            let Some(w) = bm.get_mut(byte..byte.saturating_add(8)) else {
                break;
            };
            let mut old = [0u8; 8];
            old.copy_from_slice(w);
            // At most 64 per word of a slice: no saturation.
            newly = newly.saturating_add(u64::from(u64::from_le_bytes(old).count_zeros()));
            w.fill(0xff);
            bit = bit.saturating_add(64);
            continue;
        }
        let Some(v) = bm.get_mut(byte) else { break };
        let lo = bit % 8;
        // bit < end, lo < 8: hi = lo + (end - bit) capped at 8.
        let hi = end.saturating_sub(bit).saturating_add(lo).min(8);
        // lo < hi <= 8: the bits lo..hi of this byte.
        let m = ((0xffu16 << lo) & (0xffu16 >> 8u64.saturating_sub(hi))) as u8;
        // At most 8 a byte of a slice: no saturation.
        newly = newly.saturating_add(u64::from((m & !*v).count_ones()));
        *v |= m;
        bit = bit.saturating_add(hi.saturating_sub(lo));
    }
    newly
}

/// Marks `nr_sectors` sectors starting at `sector` out of sync: every bit the range touches,
/// like `drbd_set_out_of_sync()` (partial 4 KiB blocks count). Returns the number of bits that
/// were clear. Fails without changing anything if the range leaves the bitmap.
pub fn bm_set_sectors(bm: &mut [u8], sector: u64, nr_sectors: u64) -> Result<u64, MdError> {
    if nr_sectors == 0 {
        return Ok(0);
    }
    let last = sector
        .checked_add(nr_sectors.saturating_sub(1))
        .ok_or(MdError::OutOfRange)?;
    let first_bit = sector / BM_SECT_PER_BIT;
    let last_bit = last / BM_SECT_PER_BIT;
    bit_pos(bm.len(), last_bit)?;
    // last_bit is below 2^61.
    Ok(bm_set_range(bm, first_bit, last_bit.saturating_add(1)))
}

/// Sectors whose bits share one on-disk bitmap block ([`MD_BLOCK_SIZE`] bytes).
pub const BM_SECT_PER_BLOCK: u64 = MD_BLOCK_SIZE as u64 * 8 * BM_SECT_PER_BIT;

/// Indexes of the on-disk bitmap blocks holding the bits of `nr_sectors` from `sector` (at
/// least the block of `sector`); `None` when the range ends past sector `u64::MAX`.
pub fn bm_blocks(sector: u64, nr_sectors: u64) -> Option<core::ops::RangeInclusive<u64>> {
    let last = sector.checked_add(nr_sectors.saturating_sub(1))?;
    Some(sector / BM_SECT_PER_BLOCK..=last / BM_SECT_PER_BLOCK)
}

/// Number of set bits.
pub fn bm_count(bm: &[u8]) -> u64 {
    bm.iter().map(|b| u64::from(b.count_ones())).sum()
}

/// Marks all 1024 bits of activity-log extent `extent` (4 MiB) out of sync, as `apply-al` does;
/// bits past the end of `bm` are cut off (the last extent of a device may be partial). Returns
/// the number of bits that were clear; [`MdError::OutOfRange`] if the extent starts beyond
/// `bm`.
pub fn bm_mark_al_extent(bm: &mut [u8], extent: u32) -> Result<u64, MdError> {
    let first = u64::from(extent) * BM_BITS_PER_AL_EXTENT;
    bit_pos(bm.len(), first)?;
    let len_bits = (bm.len() as u64).saturating_mul(8);
    let end = first.saturating_add(BM_BITS_PER_AL_EXTENT).min(len_bits);
    Ok(bm_set_range(bm, first, end))
}

#[cfg(test)]
// Host tests: their arithmetic is on known values, and an overflow fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    const MIB: u64 = 2048; // sectors
    const GIB: u64 = 1024 * MIB;
    const TIB: u64 = 1024 * GIB;

    fn put(b: &mut [u8], off: usize, v: &[u8]) {
        b[off..off + v.len()].copy_from_slice(v);
    }

    /// Superblock of 1 GiB internal meta data, laid out by hand per `struct meta_data_on_disk`.
    fn hand_built_sb() -> [u8; MD_BLOCK_SIZE] {
        let mut b = [0u8; MD_BLOCK_SIZE];
        put(&mut b, 0, &2_097_016u64.to_be_bytes()); // la_size_sect
        put(&mut b, 8, &0x1111_2222_3333_4445u64.to_be_bytes()); // uuid[UI_CURRENT]
        put(&mut b, 16, &0x5555_6666_7777_8888u64.to_be_bytes()); // uuid[UI_BITMAP]
        put(&mut b, 24, &0x9999_aaaa_bbbb_ccccu64.to_be_bytes()); // uuid[UI_HISTORY_START]
        put(&mut b, 32, &0xdddd_eeee_ffff_0000u64.to_be_bytes()); // uuid[UI_HISTORY_END]
        put(&mut b, 40, &0x0123_4567_89ab_cdefu64.to_be_bytes()); // device_uuid
        put(&mut b, 48, &0xdead_beef_dead_beefu64.to_be_bytes()); // reserved_u64_1: ignored
        put(&mut b, 56, &(MDF_CONSISTENT | MDF_AL_CLEAN).to_be_bytes()); // flags
        put(&mut b, 60, &[0x83, 0x74, 0x02, 0x6b]); // magic 08
        put(&mut b, 64, &136u32.to_be_bytes()); // md_size_sect
        put(&mut b, 68, &[0xff, 0xff, 0xff, 0xc0]); // al_offset = -64
        put(&mut b, 72, &1237u32.to_be_bytes()); // al_nr_extents
        put(&mut b, 76, &[0xff, 0xff, 0xff, 0x80]); // bm_offset = -128
        put(&mut b, 80, &4096u32.to_be_bytes()); // bm_bytes_per_bit
        put(&mut b, 84, &(1u32 << 20).to_be_bytes()); // la_peer_max_bio_size
        put(&mut b, 88, &1u32.to_be_bytes()); // al_stripes
        put(&mut b, 92, &8u32.to_be_bytes()); // al_stripe_size_4k
        b
    }

    #[test]
    fn constants() {
        assert_eq!(MD_MAGIC_08, 0x8374_026b);
        assert_eq!(MD_MAGIC_84_UNCLEAN, 0x8374_026c);
        assert_eq!(AL_CONTEXT, 420);
        assert_eq!(AL_EXTENT_SIZE, 4 << 20);
        assert_eq!(BM_BITS_PER_AL_EXTENT, 1024);
        assert_eq!(AL_MIN_SIZE_4K, 8);
        assert_eq!(MDF_AL_DISABLED, 0x100);
    }

    #[test]
    fn superblock_decode_hand_built() {
        let b = hand_built_sb();
        let sb = Superblock::decode(&b).unwrap();
        assert_eq!(sb.la_size_sect, 2_097_016);
        assert_eq!(sb.uuids[UI_CURRENT], 0x1111_2222_3333_4445);
        assert_eq!(sb.uuids[UI_BITMAP], 0x5555_6666_7777_8888);
        assert_eq!(sb.uuids[UI_HISTORY_START], 0x9999_aaaa_bbbb_cccc);
        assert_eq!(sb.uuids[UI_HISTORY_END], 0xdddd_eeee_ffff_0000);
        assert_eq!(sb.device_uuid, 0x0123_4567_89ab_cdef);
        assert_eq!(sb.flags, MDF_CONSISTENT | MDF_AL_CLEAN);
        assert_eq!(sb.magic, MD_MAGIC_08);
        assert_eq!(sb.md_size_sect, 136);
        assert_eq!(sb.al_offset, -64);
        assert_eq!(sb.al_nr_extents, 1237);
        assert_eq!(sb.bm_offset, -128);
        assert_eq!(sb.bm_bytes_per_bit, 4096);
        assert_eq!(sb.la_peer_max_bio_size, 1 << 20);
        assert_eq!((sb.al_stripes, sb.al_stripe_size_4k), (1, 8));
        assert!(sb.is_clean());
        assert_eq!(sb.bm_sectors(), Ok(64));
        // Re-encoding zeroes the reserved field, nothing else changes.
        let mut out = [0xaau8; MD_BLOCK_SIZE];
        sb.encode(&mut out);
        let mut expect = b;
        expect[48..56].fill(0);
        assert_eq!(out[..], expect[..]);
        assert!(out[96..].iter().all(|&x| x == 0));
        // The geometry it describes equals the computed one for a 1 GiB device.
        assert_eq!(sb.geometry(GIB), InternalGeometry::new(GIB, 1, 8));
    }

    #[test]
    fn superblock_round_trip() {
        for &(dev, st, sz) in &[
            (64 * MIB, 1, 8),
            (GIB, 0, 0),
            (TIB, 4, 64),
            (3 * TIB + 5, 2, 4),
        ] {
            let g = InternalGeometry::new(dev, st, sz).unwrap();
            let mut sb = Superblock::new_internal(&g);
            sb.la_size_sect = g.max_capacity;
            sb.uuids = [1, 2, 3, 4];
            sb.device_uuid = dev ^ 0x5a5a;
            sb.flags = MDF_CONSISTENT | MDF_WAS_UP_TO_DATE;
            sb.magic = MD_MAGIC_84_UNCLEAN;
            sb.la_peer_max_bio_size = 128 << 10;
            let mut b = [0u8; MD_BLOCK_SIZE];
            sb.encode(&mut b);
            assert_eq!(Superblock::decode(&b), Ok(sb));
            assert!(!sb.is_clean());
            assert_eq!(sb.geometry(dev), Ok(g));
        }
        // Old-style zero striping decodes and round-trips unchanged.
        let g = InternalGeometry::new(GIB, 1, 8).unwrap();
        let mut sb = Superblock::new_internal(&g);
        sb.al_stripes = 0;
        sb.al_stripe_size_4k = 0;
        let mut b = [0u8; MD_BLOCK_SIZE];
        sb.encode(&mut b);
        assert_eq!(Superblock::decode(&b), Ok(sb));
        assert_eq!(sb.al_size_4k(), Ok(8));
    }

    #[test]
    fn superblock_rejects_corruption() {
        let good = hand_built_sb();
        let with = |off: usize, v: &[u8]| {
            let mut b = good;
            put(&mut b, off, v);
            Superblock::decode(&b)
        };
        assert_eq!(with(60, &0u32.to_be_bytes()), Err(MdError::BadMagic));
        assert_eq!(with(60, &MD_MAGIC_07.to_be_bytes()), Err(MdError::BadMagic));
        assert_eq!(
            with(60, &(DRBD_MAGIC + 6).to_be_bytes()),
            Err(MdError::BadMagic)
        );
        assert_eq!(
            with(80, &512u32.to_be_bytes()),
            Err(MdError::BadBitmapGranularity)
        );
        assert_eq!(
            with(80, &0u32.to_be_bytes()),
            Err(MdError::BadBitmapGranularity)
        );
        // Striping: one of the two zero, too small, too large, overflowing product.
        assert_eq!(with(88, &0u32.to_be_bytes()), Err(MdError::BadAlStripes));
        assert_eq!(with(92, &0u32.to_be_bytes()), Err(MdError::BadAlStripes));
        assert_eq!(with(92, &7u32.to_be_bytes()), Err(MdError::BadAlStripes));
        assert_eq!(
            with(92, &(AL_MAX_SIZE_4K + 1).to_be_bytes()),
            Err(MdError::BadAlStripes)
        );
        let mut b = good;
        put(&mut b, 88, &u32::MAX.to_be_bytes());
        put(&mut b, 92, &u32::MAX.to_be_bytes());
        assert_eq!(Superblock::decode(&b), Err(MdError::BadAlStripes));
        // Offsets: external-style al_offset, AL size mismatch, unaligned/positive bm_offset,
        // md_size_sect mismatch, bitmap too small for la_size_sect.
        assert_eq!(with(68, &8i32.to_be_bytes()), Err(MdError::BadOffsets));
        assert_eq!(with(68, &(-72i32).to_be_bytes()), Err(MdError::BadOffsets));
        assert_eq!(with(76, &(-132i32).to_be_bytes()), Err(MdError::BadOffsets));
        assert_eq!(with(76, &(-56i32).to_be_bytes()), Err(MdError::BadOffsets));
        assert_eq!(with(76, &8i32.to_be_bytes()), Err(MdError::BadOffsets));
        assert_eq!(with(76, &i32::MIN.to_be_bytes()), Err(MdError::BadOffsets));
        assert_eq!(with(64, &137u32.to_be_bytes()), Err(MdError::BadOffsets));
        assert_eq!(with(64, &u32::MAX.to_be_bytes()), Err(MdError::BadOffsets));
        // Kernel test: bm_sect >= ((la + 7) / 8) / 8 / 512. 64 sectors = 262144 bits = 1 GiB;
        // the floor division tolerates up to 65 * 4096 - 1 = 266239 bits = 2129912 sectors.
        assert!(with(0, &GIB.to_be_bytes()).is_ok());
        assert!(with(0, &2_129_912u64.to_be_bytes()).is_ok());
        assert_eq!(
            with(0, &2_129_913u64.to_be_bytes()),
            Err(MdError::BadOffsets)
        );
        assert_eq!(with(0, &u64::MAX.to_be_bytes()), Err(MdError::BadOffsets));
        // Geometry against a device that is too small for the stored layout.
        let sb = Superblock::decode(&good).unwrap();
        assert_eq!(sb.geometry(135), Err(MdError::TooSmall));
        assert_eq!(sb.geometry(136), Err(MdError::TooSmall));
        assert!(sb.geometry(144).is_ok()); // md_offset 136, data 136 - 128 = 8 sectors
    }

    #[test]
    fn geometry_64mib() {
        // dev = 64 MiB = 131072 sectors, default AL 1 x 8 x 4 KiB = 64 sectors.
        // md_offset = (131072 & !7) - 8 = 131064
        // bm_sect   = ALIGN(ceil(131072 / 32768), 8) = ALIGN(4, 8) = 8
        // md_size   = 8 + 8 + 64 = 80; al_offset = -64; bm_offset = 8 - 80 = -72
        // max_cap   = 131064 - 72 = 130992 sectors; bm_bits = 130992 / 8 = 16374
        let g = InternalGeometry::new(64 * MIB, 1, 8).unwrap();
        assert_eq!(g.md_offset, 131_064);
        assert_eq!(g.md_size_sect, 80);
        assert_eq!(g.al_offset, -64);
        assert_eq!(g.bm_offset, -72);
        assert_eq!(g.bm_sectors, 8);
        assert_eq!(g.max_capacity, 130_992);
        assert_eq!(g.al_sector(), 131_000);
        assert_eq!(g.bm_sector(), 130_992);
        assert_eq!(g.bm_bits(), 16_374);
        assert_eq!(g.bm_bytes(), 2048); // ceil(16374 / 64) = 256 words
        assert_eq!(g.al_size_4k(), 8);
    }

    #[test]
    fn geometry_1gib() {
        // dev = 2097152 sectors: md_offset = 2097144
        // bm_sect = ALIGN(2097152 / 32768 = 64, 8) = 64 (the "1 GiB -> 32 KiB bitmap")
        // md_size = 64 + 8 + 64 = 136; al_offset = -64; bm_offset = -128
        // max_cap = 2097144 - 128 = 2097016
        let g = InternalGeometry::new(GIB, 0, 0).unwrap();
        assert_eq!(
            (g.md_offset, g.md_size_sect, g.al_offset, g.bm_offset),
            (2_097_144, 136, -64, -128)
        );
        assert_eq!((g.bm_sectors, g.max_capacity), (64, 2_097_016));
        assert_eq!((g.al_stripes, g.al_stripe_size_4k), (1, 8));
        // Unaligned size: dev = 2097155 -> md_offset = 2097152 - 8 = 2097144 (3 sectors pad);
        // bm_sect = ALIGN(ceil(2097155 / 32768) = 65, 8) = 72; md_size = 72 + 72 = 144;
        // bm_offset = -136; max_cap = 2097144 - 136 = 2097008.
        let g = InternalGeometry::new(GIB + 3, 1, 8).unwrap();
        assert_eq!(
            (g.md_offset, g.md_size_sect, g.bm_offset, g.max_capacity),
            (2_097_144, 144, -136, 2_097_008)
        );
    }

    #[test]
    fn geometry_1tib() {
        // dev = 2^31 sectors: md_offset = 2147483640
        // bm_sect = ALIGN(2^31 / 2^15 = 65536, 8) = 65536 (32 MiB)
        // md_size = 65536 + 8 + 64 = 65608; bm_offset = 8 - 65608 = -65600
        // max_cap = 2147483640 - 65600 = 2147418040
        let g = InternalGeometry::new(TIB, 1, 8).unwrap();
        assert_eq!(
            (g.md_offset, g.md_size_sect, g.al_offset, g.bm_offset),
            (2_147_483_640, 65_608, -64, -65_600)
        );
        assert_eq!(g.max_capacity, 2_147_418_040);
        // Striped AL 4 x 64 blocks = 1 MiB = 2048 sectors:
        // md_size = 65536 + 8 + 2048 = 67592; al_offset = -2048; bm_offset = -67584
        let g = InternalGeometry::new(TIB, 4, 64).unwrap();
        assert_eq!(
            (g.md_size_sect, g.al_offset, g.bm_offset),
            (67_592, -2048, -67_584)
        );
        assert_eq!(g.max_capacity, 2_147_483_640 - 67_584);
        // Transaction 5 of 256: t = 5 -> (5 % 4) * 64 + 5 / 4 = 65 -> sector al + 520.
        assert_eq!(al_tr_block(5, 4, 64), Some(65));
        assert_eq!(g.al_tr_sector(5), Some(g.al_sector() + 520));
        assert_eq!(g.al_tr_sector(256 + 5), g.al_tr_sector(5));
    }

    #[test]
    fn geometry_limits() {
        // 80 sectors: md_offset 72, md_size 80 -> first data sector 0: nothing left.
        assert_eq!(InternalGeometry::new(80, 1, 8), Err(MdError::TooSmall));
        assert_eq!(InternalGeometry::new(87, 1, 8), Err(MdError::TooSmall));
        assert_eq!(InternalGeometry::new(88, 1, 8).unwrap().max_capacity, 8);
        for dev in 0..8 {
            assert_eq!(InternalGeometry::new(dev, 1, 8), Err(MdError::TooSmall));
        }
        assert_eq!(InternalGeometry::new(GIB, 1, 7), Err(MdError::BadAlStripes));
        assert_eq!(InternalGeometry::new(GIB, 0, 8), Err(MdError::BadAlStripes));
        // 2^46 sectors need 2^31 bitmap sectors: offsets no longer fit 32 bits.
        assert_eq!(InternalGeometry::new(1 << 46, 1, 8), Err(MdError::TooLarge));
        assert_eq!(
            InternalGeometry::new(u64::MAX, 1, 8),
            Err(MdError::TooLarge)
        );
        // 2^46 - 2^22 sectors: bm_sect = 2^31 - 128, md_size = 2^31 - 56 still fits.
        let g = InternalGeometry::new((1 << 46) - (1 << 22), 1, 8).unwrap();
        assert_eq!(g.md_size_sect, (1 << 31) - 56);
        assert_eq!(i64::from(g.bm_offset), 8 - ((1i64 << 31) - 56));
        assert!(g.max_capacity < MAX_SECTORS_FLEX);
    }

    fn al_block(hdr: AlHeader, updates: &[AlUpdate], ctx: &[u32]) -> [u8; MD_BLOCK_SIZE] {
        let mut b = [0u8; MD_BLOCK_SIZE];
        AlTransaction::encode(&hdr, updates, ctx, &mut b).unwrap();
        b
    }

    fn upd(slot: u16, extent: u32) -> AlUpdate {
        AlUpdate { slot, extent }
    }

    fn hdr(tr: u32, size: u16, start: u16) -> AlHeader {
        AlHeader {
            tr_number: tr,
            transaction_type: AL_TR_UPDATE,
            context_size: size,
            context_start_slot_nr: start,
        }
    }

    #[test]
    fn al_crc_known_answers() {
        // What `drbdmeta create-md` writes into each AL block: magic, type INITIALIZED, zeroes.
        // Reference value from an independent bitwise CRC-32C (seed 0, no inversion).
        let mut b = [0u8; MD_BLOCK_SIZE];
        put(&mut b, 0, &[0x69, 0xcb, 0x65, 0xa2]);
        put(&mut b, 12, &[0xff, 0xff]);
        assert_eq!(al_crc32c(&b), 0x709c_c651);
        put(&mut b, 8, &0x709c_c651u32.to_be_bytes());
        let t = AlTransaction::decode(&b).unwrap();
        assert_eq!(t.header().transaction_type, AL_TR_INITIALIZED);
        assert_eq!(t.n_updates(), 0);
        // The CRC field's content does not enter the CRC.
        let mut c = b;
        put(&mut c, 8, &[1, 2, 3, 4]);
        assert_eq!(al_crc32c(&c), 0x709c_c651);
    }

    #[test]
    fn al_decode_hand_built() {
        // tr 7, one update (slot 5 := extent 1000), 67 slots, context[i] = 3 i for i < 67.
        let mut b = [0u8; MD_BLOCK_SIZE];
        put(&mut b, 0, &AL_MAGIC.to_be_bytes());
        put(&mut b, 4, &7u32.to_be_bytes());
        put(&mut b, 12, &0u16.to_be_bytes());
        put(&mut b, 14, &1u16.to_be_bytes());
        put(&mut b, 16, &67u16.to_be_bytes());
        put(&mut b, 18, &0u16.to_be_bytes());
        for i in 0..64 {
            let (s, e) = if i == 0 {
                (5u16, 1000u32)
            } else {
                (0xffff, u32::MAX)
            };
            put(&mut b, 36 + 2 * i, &s.to_be_bytes());
            put(&mut b, 164 + 4 * i, &e.to_be_bytes());
        }
        for i in 0..919 {
            let e = if i < 67 { 3 * i as u32 } else { u32::MAX };
            put(&mut b, 420 + 4 * i, &e.to_be_bytes());
        }
        put(&mut b, 8, &0xaa6f_8c4eu32.to_be_bytes()); // independently computed
        let t = AlTransaction::decode(&b).unwrap();
        assert_eq!(t.header(), hdr(7, 67, 0));
        assert_eq!(
            (t.tr_number(), t.n_updates(), t.crc32c()),
            (7, 1, 0xaa6f_8c4e)
        );
        assert_eq!(t.update(0), Some(upd(5, 1000)));
        assert_eq!(t.update(1), Some(upd(0xffff, LC_FREE)));
        assert_eq!(t.update(64), None);
        assert_eq!(t.updates().count(), 1);
        assert_eq!(
            (t.context(66), t.context(67), t.context(919)),
            (Some(198), Some(LC_FREE), None)
        );
        // encode() produces the very same bytes.
        let ctx: [u32; 67] = core::array::from_fn(|i| 3 * i as u32);
        assert_eq!(al_block(hdr(7, 67, 0), &[upd(5, 1000)], &ctx)[..], b[..]);
    }

    #[test]
    fn al_round_trip() {
        let ups: [AlUpdate; 64] = core::array::from_fn(|i| upd(i as u16 * 3, 70_000 + i as u32));
        let ctx: [u32; 919] = core::array::from_fn(|i| i as u32 ^ 0x5555);
        let h = hdr(0xffff_fffe, 65534, 919);
        let b = al_block(h, &ups, &ctx);
        let t = AlTransaction::decode(&b).unwrap();
        assert_eq!(t.header(), h);
        assert!(t.updates().eq(ups.iter().copied()));
        assert!((0..919)
            .map(|i| t.context(i).unwrap())
            .eq(ctx.iter().copied()));
        let mut out = [0u8; MD_BLOCK_SIZE];
        assert_eq!(
            AlTransaction::encode(&h, &[upd(0, 0); 65], &[], &mut out),
            Err(MdError::BadCount)
        );
        assert_eq!(
            AlTransaction::encode(&h, &[], &[0; 920], &mut out),
            Err(MdError::BadCount)
        );
    }

    #[test]
    fn al_rejects_corruption() {
        let good = al_block(hdr(9, 100, 0), &[upd(1, 2)], &[1, 2, 3]);
        // Patch bytes, then re-seal the CRC so the later checks are reached.
        let sealed = |off: usize, v: &[u8]| {
            let mut b = good;
            put(&mut b, off, v);
            let crc = al_crc32c(&b);
            put(&mut b, 8, &crc.to_be_bytes());
            b
        };
        let mut b = good;
        b[0] ^= 1;
        assert_eq!(AlTransaction::decode(&b).err(), Some(MdError::BadMagic));
        for off in [4, 8, 13, 100, 420, 4095] {
            let mut b = good;
            b[off] ^= 0x10;
            assert_eq!(AlTransaction::decode(&b).err(), Some(MdError::BadChecksum));
        }
        let b = sealed(12, &1u16.to_be_bytes());
        assert_eq!(
            AlTransaction::decode(&b).err(),
            Some(MdError::BadTransactionType)
        );
        let b = sealed(14, &65u16.to_be_bytes());
        assert_eq!(AlTransaction::decode(&b).err(), Some(MdError::BadCount));
        let b = sealed(14, &0xffffu16.to_be_bytes());
        assert_eq!(AlTransaction::decode(&b).err(), Some(MdError::BadCount));
        let b = sealed(16, &0xffffu16.to_be_bytes());
        assert_eq!(AlTransaction::decode(&b).err(), Some(MdError::BadCount));
        let b = sealed(14, &64u16.to_be_bytes());
        assert!(AlTransaction::decode(&b).is_ok());
    }

    fn initialized_block() -> [u8; MD_BLOCK_SIZE] {
        let h = AlHeader {
            tr_number: 0,
            transaction_type: AL_TR_INITIALIZED,
            context_size: 0,
            context_start_slot_nr: 0,
        };
        let mut b = [0u8; MD_BLOCK_SIZE];
        AlTransaction::encode(&h, &[], &[], &mut b).unwrap();
        // drbdmeta leaves update and context entries zero, not 0xff.
        b[AL_UPDATE_SLOT..].fill(0);
        let crc = al_crc32c(&b);
        put(&mut b, 8, &crc.to_be_bytes());
        b
    }

    #[test]
    fn al_replay_clean_and_errors() {
        let mut slots = [0u32; 128];
        let ring = [initialized_block(); 8];
        let r = al_replay(&ring, 1, 8, &mut slots).unwrap();
        assert_eq!((r.valid, r.valid_updates, r.newest), (8, 0, None));
        assert_eq!(al_active_extents(&slots).count(), 0);
        // First block torn: still clean.
        let mut torn = ring;
        torn[0][100] ^= 1;
        assert_eq!(al_replay(&torn, 1, 8, &mut slots).unwrap().corrupt, 1);
        // Another block torn: inconsistent.
        let mut torn = ring;
        torn[3][100] ^= 1;
        assert_eq!(
            al_replay(&torn, 1, 8, &mut slots),
            Err(MdError::InconsistentLog)
        );
        assert_eq!(
            al_replay(&[[0u8; MD_BLOCK_SIZE]; 8], 1, 8, &mut slots),
            Err(MdError::NoValidTransaction)
        );
        assert_eq!(
            al_replay(&ring[..7], 1, 8, &mut slots),
            Err(MdError::BadRingSize)
        );
        assert_eq!(
            al_replay(&ring, 2, 8, &mut slots),
            Err(MdError::BadRingSize)
        );
        assert_eq!(
            al_replay(&ring, 0, 8, &mut slots),
            Err(MdError::BadAlStripes)
        );
        // Slot beyond the caller's buffer.
        let mut r2 = ring;
        r2[0] = al_block(hdr(0, 67, 0), &[upd(200, 1)], &[]);
        assert_eq!(
            al_replay(&r2, 1, 8, &mut slots),
            Err(MdError::BufferTooSmall)
        );
        // Slot >= AL_EXTENTS_MAX is skipped, like drbdmeta does.
        r2[0] = al_block(hdr(0, 67, 0), &[upd(0xfffe, 1), upd(0xffff, 2)], &[]);
        let r = al_replay(&r2, 1, 8, &mut slots).unwrap();
        assert_eq!((r.valid_updates, r.skipped), (1, 2));
    }

    /// Simulates `__al_write_transaction()`: 80 slots, `al_tr_cycle`, one transaction per
    /// call; the context shows the slots before the updates (they commit afterwards).
    struct Writer {
        slots: [u32; 80],
        cycle: usize,
        tr: u32,
    }

    impl Writer {
        fn write(&mut self, ring: &mut [[u8; MD_BLOCK_SIZE]], st: u32, sz: u32, ups: &[AlUpdate]) {
            let n = self.slots.len();
            let ctx = &self.slots[self.cycle..n.min(self.cycle + AL_CONTEXT_PER_TRANSACTION)];
            let blk = al_tr_block(self.tr, st, sz).unwrap() as usize;
            let h = hdr(self.tr, n as u16, self.cycle as u16);
            AlTransaction::encode(&h, ups, ctx, &mut ring[blk]).unwrap();
            for u in ups {
                self.slots[u.slot as usize] = u.extent;
            }
            self.cycle += AL_CONTEXT_PER_TRANSACTION;
            if self.cycle >= n {
                self.cycle = 0;
            }
            self.tr = self.tr.wrapping_add(1);
        }
    }

    fn sorted_active(slots: &[u32]) -> ([u32; 80], usize) {
        let mut v = [0u32; 80];
        let mut n = 0;
        for e in al_active_extents(slots) {
            v[n] = e;
            n += 1;
        }
        v[..n].sort_unstable();
        (v, n)
    }

    #[test]
    fn al_replay_wraps_transaction_numbers() {
        for &(st, sz) in &[(1u32, 8u32), (2, 4), (4, 4)] {
            let mx = (st * sz) as usize;
            let mut ring = [initialized_block(); 16];
            let ring = &mut ring[..mx];
            // Start a few transactions before 2^32 so the numbers wrap to 0 mid-log.
            let mut w = Writer {
                slots: [LC_FREE; 80],
                cycle: 0,
                tr: 0u32.wrapping_sub(5),
            };
            let mut x = 0x2545_f491u32;
            for step in 0..(3 * mx as u32 + 3) {
                let mut ups = [upd(0, 0); 3];
                for u in ups.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    *u = upd((x % 80) as u16, if x & 8 == 0 { LC_FREE } else { x >> 8 });
                }
                w.write(ring, st, sz, &ups[..(step % 4) as usize]);
            }
            let mut slots = [0u32; AL_EXTENTS_MAX];
            let r = al_replay(ring, st, sz, &mut slots).unwrap();
            let newest = w.tr.wrapping_sub(1);
            assert_eq!(r.newest.unwrap().tr_number, newest);
            assert_eq!(
                r.oldest.unwrap().tr_number,
                newest.wrapping_sub(mx as u32 - 1)
            );
            assert_eq!(
                r.newest.unwrap().block,
                al_tr_block(newest, st, sz).unwrap()
            );
            assert_eq!(
                (r.valid, r.valid_updates, r.corrupt),
                (mx as u32, mx as u32, 0)
            );
            assert_eq!(&slots[..80], &w.slots[..]);
            assert!(slots[80..].iter().all(|&e| e == LC_FREE));
            assert_eq!(sorted_active(&slots), sorted_active(&w.slots));
            // A torn newest block: the replay ends one transaction earlier.
            let nb = r.newest.unwrap().block as usize;
            ring[nb][500] ^= 0xff;
            let r2 = al_replay(ring, st, sz, &mut slots).unwrap();
            assert_eq!(r2.newest.unwrap().tr_number, newest.wrapping_sub(1));
            assert_eq!(r2.corrupt, 1);
        }
    }

    #[test]
    fn al_replay_partial_ring_after_init() {
        // Ring of 8 initialized blocks; the kernel wrote transactions 0..3 only.
        let mut ring = [initialized_block(); 8];
        let mut w = Writer {
            slots: [LC_FREE; 80],
            cycle: 0,
            tr: 0,
        };
        w.write(&mut ring, 1, 8, &[upd(0, 10), upd(1, 11)]);
        w.write(&mut ring, 1, 8, &[upd(2, 12)]);
        w.write(&mut ring, 1, 8, &[upd(0, LC_FREE), upd(3, 99)]);
        let mut slots = [0u32; 80];
        let r = al_replay(&ring, 1, 8, &mut slots).unwrap();
        assert_eq!((r.valid, r.valid_updates), (8, 3));
        assert_eq!(r.newest.unwrap().tr_number, 2);
        let (v, n) = sorted_active(&slots);
        assert_eq!(&v[..n], &[11, 12, 99]);
        // Crash recovery: mark every active extent in a bitmap for 1 GiB (32 KiB bitmap
        // covers extents 0..=255).
        let mut bm = [0u8; 32768];
        let mut set = 0;
        for e in al_active_extents(&slots) {
            set += bm_mark_al_extent(&mut bm, e).unwrap();
        }
        assert_eq!(set, 3 * 1024);
        assert_eq!(bm_count(&bm), 3 * 1024);
        assert!(bm_test_bit(&bm, 11 * 1024).unwrap());
        assert!(bm_test_bit(&bm, 12 * 1024 - 1).unwrap());
        assert!(!bm_test_bit(&bm, 10 * 1024 + 5).unwrap());
    }

    #[test]
    fn bitmap_bits() {
        let mut bm = [0u8; 16];
        assert_eq!(bm_set_bit(&mut bm, 0), Ok(true));
        assert_eq!(bm_set_bit(&mut bm, 0), Ok(false));
        assert_eq!(bm_set_bit(&mut bm, 9), Ok(true));
        assert_eq!(bm_set_bit(&mut bm, 127), Ok(true));
        // Little-endian bit string: bit n is bit n % 8 of byte n / 8; as LE u64 words the
        // same bits are word n / 64, bit n % 64.
        assert_eq!(bm[0], 0x01);
        assert_eq!(bm[1], 0x02);
        assert_eq!(bm[15], 0x80);
        let w0 = u64::from_le_bytes(bm[..8].try_into().unwrap());
        let w1 = u64::from_le_bytes(bm[8..].try_into().unwrap());
        assert_eq!((w0, w1), (1 | (1 << 9), 1 << 63));
        assert_eq!(bm_test_bit(&bm, 9), Ok(true));
        assert_eq!(bm_test_bit(&bm, 10), Ok(false));
        assert_eq!(bm_count(&bm), 3);
        assert_eq!(bm_clear_bit(&mut bm, 9), Ok(true));
        assert_eq!(bm_clear_bit(&mut bm, 9), Ok(false));
        assert_eq!(bm_set_bit(&mut bm, 128), Err(MdError::OutOfRange));
        assert_eq!(bm_clear_bit(&mut bm, u64::MAX), Err(MdError::OutOfRange));
        assert_eq!(bm_test_bit(&bm, 1 << 60), Err(MdError::OutOfRange));
        assert_eq!(bm_count(&bm), 2);
    }

    #[test]
    fn bitmap_sectors() {
        let mut bm = [0u8; 16]; // 128 bits = 1024 sectors
                                // Sectors 3..=20 touch bits 0, 1, 2.
        assert_eq!(bm_set_sectors(&mut bm, 3, 18), Ok(3));
        assert_eq!(bm[0], 0b111);
        assert_eq!(bm_set_sectors(&mut bm, 0, 24), Ok(0));
        assert_eq!(bm_set_sectors(&mut bm, 0, 0), Ok(0));
        // Crossing bytes: bits 6..=17.
        assert_eq!(bm_set_sectors(&mut bm, 48, 96), Ok(12));
        assert_eq!((bm[0], bm[1], bm[2]), (0xc7, 0xff, 0x03));
        assert_eq!(bm_count(&bm), 15);
        // Whole map, then beyond the end (nothing changes).
        let mut full = [0u8; 16];
        assert_eq!(bm_set_sectors(&mut full, 0, 1024), Ok(128));
        let mut e = [0u8; 16];
        assert_eq!(bm_set_sectors(&mut e, 1000, 25), Err(MdError::OutOfRange));
        assert_eq!(
            bm_set_sectors(&mut e, u64::MAX, 2),
            Err(MdError::OutOfRange)
        );
        assert_eq!(bm_count(&e), 0);
        assert_eq!(bm_bits_for_sectors(130_992), 16_374);
        assert_eq!(bm_bits_for_sectors(9), 2);
        assert_eq!(bm_bytes_for_sectors(9), 8);
    }

    #[test]
    fn bitmap_blocks_past_sector_max_are_none() {
        // One block holds 32768 bits of 8 sectors.
        assert_eq!(BM_SECT_PER_BLOCK, 262_144);
        assert_eq!(bm_blocks(0, 0), Some(0..=0));
        assert_eq!(bm_blocks(262_143, 2), Some(0..=1));
        assert_eq!(
            bm_blocks(u64::MAX, 1),
            Some(u64::MAX / 262_144..=u64::MAX / 262_144)
        );
        assert_eq!(bm_blocks(u64::MAX, 2), None);
        assert_eq!(bm_blocks(2, u64::MAX), None);
    }

    #[test]
    fn bitmap_al_extent() {
        let mut bm = [0u8; 300]; // 2400 bits: extents 0, 1 whole, extent 2 partial (352 bits)
        assert_eq!(bm_mark_al_extent(&mut bm, 1), Ok(1024));
        assert!(bm[..128].iter().all(|&b| b == 0));
        assert!(bm[128..256].iter().all(|&b| b == 0xff));
        assert_eq!(bm_mark_al_extent(&mut bm, 1), Ok(0));
        assert_eq!(bm_mark_al_extent(&mut bm, 2), Ok(352));
        assert_eq!(bm_mark_al_extent(&mut bm, 3), Err(MdError::OutOfRange));
        assert_eq!(
            bm_mark_al_extent(&mut bm, u32::MAX),
            Err(MdError::OutOfRange)
        );
        assert_eq!(bm_count(&bm), 1376);
        bm_set_bit(&mut bm, 5).unwrap();
        assert_eq!(bm_mark_al_extent(&mut bm, 0), Ok(1023));
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn fuzz_never_panics() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let good_sb = hand_built_sb();
        let good_al = al_block(hdr(3, 67, 0), &[upd(1, 1)], &[5; 67]);
        let mut ring = [[0u8; MD_BLOCK_SIZE]; 8];
        let mut slots = [0u32; 256];
        let mut bm = [0u8; 64];
        let mut accepted = 0;
        for round in 0..3000 {
            let mut b = [0u8; MD_BLOCK_SIZE];
            match round % 3 {
                // Fully random header area.
                0 => {
                    for c in b[..128].chunks_mut(8) {
                        c.copy_from_slice(&rng.next().to_be_bytes()[..c.len()]);
                    }
                }
                // Valid superblock with a few random bytes in the used area.
                1 => {
                    b = good_sb;
                    for _ in 0..1 + rng.next() % 4 {
                        b[(rng.next() % 96) as usize] = rng.next() as u8;
                    }
                }
                // Valid AL block with random bytes, CRC re-sealed half the time.
                _ => {
                    b = good_al;
                    for _ in 0..1 + rng.next() % 4 {
                        b[(rng.next() % 4096) as usize] = rng.next() as u8;
                    }
                    if rng.next() & 1 == 0 {
                        let crc = al_crc32c(&b);
                        b[8..12].copy_from_slice(&crc.to_be_bytes());
                    }
                }
            }
            if let Ok(sb) = Superblock::decode(&b) {
                accepted += 1;
                let mut out = [0u8; MD_BLOCK_SIZE];
                sb.encode(&mut out);
                assert_eq!(Superblock::decode(&out), Ok(sb));
                let _ = sb.geometry(rng.next() >> (rng.next() % 64));
            }
            if let Ok(t) = AlTransaction::decode(&b) {
                accepted += 1;
                let _ = t.updates().count();
            }
            ring[(rng.next() % 8) as usize] = b;
            let st = [0, 1, 2, 4, 8][(rng.next() % 5) as usize];
            let _ = al_replay(&ring, st, 8 / st.max(1), &mut slots);
            let _ =
                InternalGeometry::new(rng.next() >> (rng.next() % 64), rng.next() as u32 % 9, 8)
                    .map(|g| (g.al_tr_sector(rng.next() as u32), g.bm_bytes()));
            let bit = rng.next() >> (rng.next() % 64);
            let _ = bm_set_bit(&mut bm, bit);
            let _ = bm_set_sectors(&mut bm, bit, rng.next() >> (rng.next() % 64));
            let _ = bm_mark_al_extent(&mut bm, rng.next() as u32 >> (rng.next() % 32));
        }
        assert!(
            accepted > 100,
            "mutations should sometimes stay valid: {accepted}"
        );
    }
}
