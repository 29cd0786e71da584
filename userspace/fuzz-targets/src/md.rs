// SPDX-License-Identifier: GPL-2.0

//! DRBD's on-disk meta data (`hark_proto::drbd_md`): the superblock, activity-log transaction
//! blocks and the activity-log replay, all read from a lower device that may be corrupt.

use crate::Input;
use hark_proto::drbd_md::{
    al_crc32c, al_replay, AlHeader, AlTransaction, AlUpdate, InternalGeometry, Superblock,
    AL_CONTEXT_PER_TRANSACTION, AL_EXTENTS_MAX, AL_MAGIC, AL_TR_INITIALIZED, AL_TR_UPDATE,
    AL_UPDATES_PER_TRANSACTION, LC_FREE, MD_BLOCK_SIZE,
};

/// A block from up to 4096 input bytes (zero-padded).
fn block(b: &[u8]) -> Box<[u8; MD_BLOCK_SIZE]> {
    let mut blk = Box::new([0u8; MD_BLOCK_SIZE]);
    let n = b.len().min(MD_BLOCK_SIZE);
    blk[..n].copy_from_slice(&b[..n]);
    blk
}

fn check_geometry(g: &InternalGeometry, sb: &Superblock, dev: u64) {
    assert_eq!(g.dev_sectors, dev);
    assert_eq!(
        (g.md_size_sect, g.al_offset, g.bm_offset),
        (sb.md_size_sect, sb.al_offset, sb.bm_offset)
    );
    assert!(g.md_offset < dev && g.max_capacity > 0 && g.max_capacity <= g.md_offset);
    assert!(g.bm_sector() <= g.al_sector() && g.al_sector() < g.md_offset);
    let n = g.al_size_4k();
    for tr in [0, 1, n.wrapping_sub(1), n, u32::MAX] {
        let s = g.al_tr_sector(tr).expect("transaction sector");
        assert!(
            s >= g.al_sector() && s + 8 <= g.md_offset,
            "AL block {tr} at {s}"
        );
    }
    assert!(g.bm_bytes() * 8 >= g.bm_bits());
}

/// A superblock: decoded from the input, or (first byte odd) built for a geometry from the
/// input. A decoded superblock encodes to a block that decodes to it; its geometry on a
/// device keeps the activity log and bitmap inside the meta data; a built one round-trips and
/// gives back its geometry.
fn superblock(inp: &mut Input<'_>, built: bool) {
    let dev = inp.le(8);
    if built {
        let (stripes, size) = (inp.le(4) as u32, inp.le(4) as u32);
        let Ok(g) = InternalGeometry::new(dev, stripes, size) else {
            return;
        };
        let sb = Superblock::new_internal(&g);
        let mut b = Box::new([0u8; MD_BLOCK_SIZE]);
        sb.encode(&mut b);
        assert_eq!(Superblock::decode(&b), Ok(sb));
        assert_eq!(sb.geometry(dev), Ok(g));
        check_geometry(&g, &sb, dev);
        return;
    }
    let b = block(inp.rest());
    let Ok(sb) = Superblock::decode(&b) else {
        return;
    };
    let mut again = Box::new([0u8; MD_BLOCK_SIZE]);
    sb.encode(&mut again);
    assert_eq!(Superblock::decode(&again), Ok(sb));
    assert!(sb.bm_sectors().is_ok() && sb.al_size_4k().is_ok());
    if let Ok(g) = sb.geometry(dev) {
        check_geometry(&g, &sb, dev);
    }
}

/// One transaction block; with bit 1 of the first byte the magic and CRC are made right so
/// that the fields behind them are reached. A decoded block encodes back from its fields to a
/// block that decodes to the same fields.
fn transaction(inp: &mut Input<'_>, fix: bool) {
    let mut b = block(inp.rest());
    if fix {
        b[0..4].copy_from_slice(&AL_MAGIC.to_be_bytes());
        let crc = al_crc32c(&b);
        b[8..12].copy_from_slice(&crc.to_be_bytes());
    }
    let Ok(t) = AlTransaction::decode(&b) else {
        return;
    };
    assert_eq!(t.crc32c(), al_crc32c(&b));
    let updates: Vec<AlUpdate> = t.updates().collect();
    assert_eq!(updates.len(), usize::from(t.n_updates()));
    assert!(updates.len() <= AL_UPDATES_PER_TRANSACTION);
    assert!(usize::from(t.header().context_size) <= AL_EXTENTS_MAX);
    let context: Vec<u32> = (0..AL_CONTEXT_PER_TRANSACTION)
        .map(|i| t.context(i).expect("context entry"))
        .collect();
    assert!(t.context(AL_CONTEXT_PER_TRANSACTION).is_none());
    let mut again = Box::new([0u8; MD_BLOCK_SIZE]);
    AlTransaction::encode(&t.header(), &updates, &context, &mut again).expect("encode");
    let u = AlTransaction::decode(&again).expect("own block decodes");
    assert_eq!(u.header(), t.header());
    assert!(u.updates().eq(updates.iter().copied()));
    assert!((0..AL_CONTEXT_PER_TRANSACTION).all(|i| u.context(i) == t.context(i)));
}

/// The replay of a ring of 8 to 16 blocks, each a valid transaction built from the input
/// (type, `tr_number`, a few updates and context entries) or a corrupt block. Valid and
/// corrupt blocks add up to the ring; positions lie in the ring; every extent left in a slot
/// came from some transaction.
fn replay(inp: &mut Input<'_>) {
    let (stripes, size) = match inp.byte() % 4 {
        0 => (1, 8),
        1 => (2, 4),
        2 => (4, 4),
        _ => (0, 0),
    };
    let n = if stripes == 0 { 8 } else { stripes * size } as usize;
    let mut ring = vec![[0u8; MD_BLOCK_SIZE]; n];
    let mut extents = vec![LC_FREE];
    for blk in ring.iter_mut() {
        let kind = inp.byte();
        if kind & 3 == 3 {
            let junk = inp.take(usize::from(kind >> 2));
            blk[..junk.len()].copy_from_slice(junk);
            continue;
        }
        let header = AlHeader {
            tr_number: inp.le(4) as u32,
            transaction_type: if kind & 3 == 2 {
                AL_TR_INITIALIZED
            } else {
                AL_TR_UPDATE
            },
            context_size: inp.le(2) as u16,
            context_start_slot_nr: inp.le(2) as u16,
        };
        let updates: Vec<AlUpdate> = (0..kind >> 5)
            .map(|_| AlUpdate {
                slot: inp.le(2) as u16,
                extent: inp.le(4) as u32,
            })
            .collect();
        let context: Vec<u32> = (0..(kind >> 2) & 7).map(|_| inp.le(4) as u32).collect();
        extents.extend(updates.iter().map(|u| u.extent));
        extents.extend(&context);
        let _ = AlTransaction::encode(&header, &updates, &context, blk);
    }
    let mut slots = vec![0u32; AL_EXTENTS_MAX];
    let Ok(r) = al_replay(&ring, stripes, size, &mut slots) else {
        return;
    };
    assert_eq!((r.valid + r.corrupt) as usize, n);
    assert!(r.valid_updates <= r.valid);
    for p in [r.oldest, r.newest].into_iter().flatten() {
        assert!((p.index as usize) < n && (p.block as usize) < n);
    }
    assert_eq!(r.oldest.is_some(), r.valid_updates > 0);
    for (s, e) in slots.iter().enumerate() {
        assert!(
            extents.contains(e),
            "slot {s} holds extent {e} nobody wrote"
        );
    }
}

/// DRBD meta data. First byte: 0 superblock decoded, 1 superblock built, 2 transaction as
/// given, 3 transaction with magic and CRC fixed, 4 activity-log replay (modulo 5).
pub fn drbd_md(data: &[u8]) {
    let mut inp = Input::new(data);
    match inp.byte() % 5 {
        0 => superblock(&mut inp, false),
        1 => superblock(&mut inp, true),
        2 => transaction(&mut inp, false),
        3 => transaction(&mut inp, true),
        _ => replay(&mut inp),
    }
}
