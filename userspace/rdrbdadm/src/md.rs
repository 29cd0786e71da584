// SPDX-License-Identifier: GPL-2.0

//! `create-md` and `dump-md`: DRBD 8.4 internal metadata on a lower device, written and read
//! from userspace with the shared `drbd_md` codec (what `drbdmeta` does for DRBD).

use hark_proto::drbd_md::{
    self as fmt, AlHeader, AlTransaction, InternalGeometry, Superblock, MD_BLOCK_SIZE,
};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Size of a block device or regular file in 512-byte sectors.
fn size_sectors(f: &mut File) -> std::io::Result<u64> {
    Ok(f.seek(SeekFrom::End(0))? / 512)
}

fn read_block(f: &mut File, sector: u64) -> std::io::Result<[u8; MD_BLOCK_SIZE]> {
    let mut b = [0u8; MD_BLOCK_SIZE];
    f.seek(SeekFrom::Start(sector * 512))?;
    f.read_exact(&mut b)?;
    Ok(b)
}

fn write_at(f: &mut File, sector: u64, data: &[u8]) -> std::io::Result<()> {
    f.seek(SeekFrom::Start(sector * 512))?;
    f.write_all(data)
}

/// Reads the superblock of `dev`'s internal metadata.
pub fn read(dev: &Path) -> Result<(Superblock, InternalGeometry), String> {
    let mut f = File::open(dev).map_err(|e| format!("{}: {e}", dev.display()))?;
    let sectors = size_sectors(&mut f).map_err(|e| format!("{}: {e}", dev.display()))?;
    let probe = InternalGeometry::new(sectors, fmt::AL_DEFAULT_STRIPES, 8)
        .map_err(|e| format!("{}: {}", dev.display(), e.as_str()))?;
    let block =
        read_block(&mut f, probe.md_offset).map_err(|e| format!("{}: {e}", dev.display()))?;
    let sb = Superblock::decode(&block)
        .map_err(|e| format!("{}: no valid v08 metadata: {}", dev.display(), e.as_str()))?;
    let geo = sb
        .geometry(sectors)
        .map_err(|e| format!("{}: metadata does not fit: {}", dev.display(), e.as_str()))?;
    Ok((sb, geo))
}

/// Writes fresh internal metadata to `dev`: superblock, an initialised activity log, and a
/// cleared bitmap. Refuses to overwrite valid metadata unless `force`.
pub fn create(dev: &Path, force: bool) -> Result<InternalGeometry, String> {
    if !force && read(dev).is_ok() {
        return Err(format!(
            "{}: valid metadata exists; use --force to overwrite it",
            dev.display()
        ));
    }
    let err = |e: std::io::Error| format!("{}: {e}", dev.display());
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_EXCL)
        .open(dev)
        .or_else(|_| OpenOptions::new().read(true).write(true).open(dev))
        .map_err(err)?;
    let sectors = size_sectors(&mut f).map_err(err)?;
    let geo = InternalGeometry::new(sectors, fmt::AL_DEFAULT_STRIPES, 8)
        .map_err(|e| format!("{}: {}", dev.display(), e.as_str()))?;

    // Bitmap: all clear.
    let zeroes = vec![0u8; geo.bm_sectors as usize * 512];
    write_at(&mut f, geo.bm_sector(), &zeroes).map_err(err)?;

    // Activity log: every ring block an initialised, empty transaction.
    let mut block = [0u8; MD_BLOCK_SIZE];
    for tr in 0..geo.al_size_4k() {
        let header = AlHeader {
            tr_number: tr,
            transaction_type: fmt::AL_TR_INITIALIZED,
            context_size: 0,
            context_start_slot_nr: 0,
        };
        AlTransaction::encode(&header, &[], &[], &mut block)
            .map_err(|e| format!("activity log: {}", e.as_str()))?;
        let sector = geo
            .al_tr_sector(tr)
            .ok_or_else(|| "activity log: bad layout".to_string())?;
        write_at(&mut f, sector, &block).map_err(err)?;
    }

    // Superblock last, so that a failed create-md leaves no valid metadata behind.
    let sb = Superblock::new_internal(&geo);
    sb.encode(&mut block);
    write_at(&mut f, geo.md_offset, &block).map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(geo)
}

/// Counts the set bits of the on-disk bitmap.
pub fn bitmap_count(dev: &Path, geo: &InternalGeometry) -> Result<u64, String> {
    let mut f = File::open(dev).map_err(|e| format!("{}: {e}", dev.display()))?;
    let mut bm = vec![0u8; geo.bm_bytes() as usize];
    f.seek(SeekFrom::Start(geo.bm_sector() * 512))
        .and_then(|_| f.read_exact(&mut bm))
        .map_err(|e| format!("{}: {e}", dev.display()))?;
    Ok(fmt::bm_count(&bm).min(geo.bm_bits()))
}

/// `dump-md` output, in the spirit of `drbdmeta dump-md`.
pub fn dump(dev: &Path) -> Result<String, String> {
    let (sb, geo) = read(dev)?;
    let oos = bitmap_count(dev, &geo)?;
    let u = &sb.uuids;
    Ok(format!(
        "# DRBD 8.4 (v08) internal metadata on {dev}\n\
         version \"v08\";\n\
         uuid {{\n    0x{:016X}; 0x{:016X}; 0x{:016X}; 0x{:016X};\n    flags 0x{:08X};\n}}\n\
         magic 0x{:08X}; # {}\n\
         la-size-sect {};\n\
         md-size-sect {}; al-offset {}; bm-offset {};\n\
         al-stripes {}; al-stripe-size-4k {};\n\
         device-uuid 0x{:016X};\n\
         bm-bytes-per-bit {};\n\
         # max capacity {} sectors; bitmap {} bits, {} set ({} KiB out of sync)\n",
        u[0],
        u[1],
        u[2],
        u[3],
        sb.flags,
        sb.magic,
        if sb.is_clean() { "clean" } else { "unclean" },
        sb.la_size_sect,
        sb.md_size_sect,
        sb.al_offset,
        sb.bm_offset,
        geo.al_stripes,
        geo.al_stripe_size_4k,
        sb.device_uuid,
        sb.bm_bytes_per_bit,
        geo.max_capacity,
        geo.bm_bits(),
        oos,
        oos * 4,
        dev = dev.display(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_read_a_file() {
        let dir = std::env::temp_dir().join(format!("rdrbdadm-md-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("disk.img");
        let f = File::create(&path).unwrap();
        f.set_len(64 << 20).unwrap();
        drop(f);
        assert!(read(&path).is_err(), "a zeroed device has no metadata");
        let geo = create(&path, false).unwrap();
        assert_eq!(geo.max_capacity, 130992);
        let (sb, geo2) = read(&path).unwrap();
        assert_eq!(geo, geo2);
        assert_eq!(sb.uuids[fmt::UI_CURRENT], fmt::UUID_JUST_CREATED);
        assert_eq!(bitmap_count(&path, &geo).unwrap(), 0);
        assert!(create(&path, false).is_err(), "refuses to overwrite");
        create(&path, true).unwrap();
        let text = dump(&path).unwrap();
        assert!(text.contains("la-size-sect 0;"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
