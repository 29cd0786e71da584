// SPDX-License-Identifier: GPL-2.0

//! Replicated devices (`/dev/rdrbdN`): the registry, roles, disk states and the I/O policy.
//!
//! Locking: the registry [`DEVICES`] is a global mutex taken by the netlink handlers only.
//! Each device's [`State`] is a mutex taken by netlink handlers, `open`/`release`, and
//! `queue_rq` (a `BLK_MQ_F_BLOCKING` queue, so process context), which therefore runs one at a
//! time and writes activity-log transactions one at a time. The in-memory activity log and
//! bitmap ([`Activity`]) sit behind an interrupt-safe spinlock, nested inside the state mutex:
//! completions (softirq context) take only that lock.

use crate::activity::{self, Activity, Tracked};
use crate::drbd_genl::{DiskState, Role};
use crate::drbd_md::{MD_BLOCK_SIZE, UI_BITMAP, UI_CURRENT};
use crate::drbd_resync;
use crate::glue::{Disk, LowerDev, PendingRq, RqRef};
use crate::md;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::bindings;
use kernel::ffi::c_void;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex, SpinLock, SpinLockIrq};
use kernel::{new_mutex, new_spinlock};

kernel::sync::global_lock! {
    // SAFETY: Initialised in the module initializer before any netlink handler can run.
    pub(crate) unsafe(uninit) static DEVICES: Mutex<KVec<Arc<Device>>> = KVec::new();
}

/// What the I/O path needs of the resource's connection (`conn::Connection` implements it;
/// the device layer does not depend on the connection layer).
pub(crate) trait Replication: Send + Sync {
    /// Whether application writes go to the peer now.
    fn replicates(&self) -> bool;
    /// Whether application writes are only announced to the peer as out of sync now.
    fn sends_out_of_sync(&self) -> bool;
    /// Whether a peer shares our data now (a new current UUID is not needed to promote).
    fn peer_has_data(&self) -> bool;
    /// Sends a write to the peer; `held` keeps the request from completing until the
    /// protocol's acknowledgement (or a failure, which marks the range out of sync).
    fn send_data(&self, dev: &Device, held: RqRef, data: &[u8], sector: u64, fua: bool);
    /// Tells the peer that `bytes` at `sector` stay local for now (already marked).
    fn send_out_of_sync(&self, sector: u64, bytes: u64);
}

/// Mutable state of a device.
pub(crate) struct State {
    /// Current role.
    pub(crate) role: Role,
    /// Current disk state.
    pub(crate) disk_state: DiskState,
    /// The attached lower device and its metadata, if any.
    pub(crate) backing: Option<Backing>,
    /// The block device is being destroyed: refuse opens.
    dying: bool,
    /// Number of current openers of the block device.
    pub(crate) open_count: u32,
    /// Number of current openers with write access.
    pub(crate) open_writers: u32,
}

/// An attached lower device.
pub(crate) struct Backing {
    /// The lower device, opened exclusively.
    pub(crate) lower: LowerDev,
    /// Its metadata.
    pub(crate) md: md::Metadata,
    /// A 4 KiB kmalloc buffer for metadata I/O on the write path (no allocation there).
    pub(crate) io: KVec<u8>,
}

/// Bitmap blocks written per hold of the state lock by [`Device::flush_bitmap_sliced`].
const BM_FLUSH_SLICE: usize = 256;

/// One replicated device.
#[pin_data]
pub(crate) struct Device {
    /// Minor number, the N of `/dev/rdrbdN`.
    pub(crate) minor: u32,
    /// Name of the resource it belongs to.
    pub(crate) resource: KVec<u8>,
    #[pin]
    state: Mutex<State>,
    /// The block device; `None` once destroyed. Taken by netlink handlers only (which the
    /// genetlink core serialises), never by block-device callbacks, so that dropping the
    /// disk (which waits for openers and I/O) cannot deadlock with them.
    #[pin]
    disk: Mutex<Option<Disk>>,
    /// Activity log and bitmap while attached.
    #[pin]
    act: Tracked,
    /// The resource's connection, for the I/O path (which must not take the registries).
    /// Set by `connect`/`new-minor`, cleared by `disconnect`.
    #[pin]
    conn: SpinLock<Option<Arc<dyn Replication>>>,
    /// Writes (of any kind) submitted to the lower device and not completed there yet.
    lower_writes: AtomicU64,
    /// Completed application writes (statistics).
    writes_done: AtomicU64,
    /// Application I/O that completed with an error (statistics).
    io_errors: AtomicU64,
}

impl Device {
    /// Creates the device and its `/dev/rdrbd<minor>` (diskless, Secondary).
    pub(crate) fn create(minor: u32, resource: &[u8]) -> Result<Arc<Device>> {
        let mut name = KVec::with_capacity(resource.len(), GFP_KERNEL)?;
        name.extend_from_slice(resource, GFP_KERNEL)?;
        let dev = Arc::pin_init(
            pin_init!(Device {
                minor,
                resource: name,
                state <- new_mutex!(State {
                    role: Role::Secondary,
                    disk_state: DiskState::Diskless,
                    backing: None,
                    dying: false,
                    open_count: 0,
                    open_writers: 0,
                }),
                disk <- new_mutex!(None),
                act <- Tracked::new(),
                conn <- new_spinlock!(None),
                lower_writes: AtomicU64::new(0),
                writes_done: AtomicU64::new(0),
                io_errors: AtomicU64::new(0),
            }),
            GFP_KERNEL,
        )?;
        let owner = Arc::as_ptr(&dev).cast_mut().cast::<c_void>();
        // SAFETY: `owner` points into `dev`, which the registry keeps alive until `destroy`
        // has dropped the `Disk` (see `destroy`); the callbacks below accept a `Device`.
        let disk = unsafe { Disk::create(minor, owner) }?;
        *dev.disk.lock() = Some(disk);
        Ok(dev)
    }

    /// Removes the block device. Fails with `EBUSY` while it is open or attached.
    pub(crate) fn destroy(&self) -> Result {
        {
            let mut st = self.state.lock();
            if st.open_count > 0 || st.backing.is_some() {
                return Err(EBUSY);
            }
            // From here on `open` refuses.
            st.dying = true;
        }
        // Dropping the disk deletes the gendisk; no callback can reach `self` afterwards.
        let disk = self.disk.lock().take();
        drop(disk);
        Ok(())
    }

    /// Locks and returns the state.
    pub(crate) fn lock(&self) -> kernel::sync::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Attaches the lower device at `path`, reading its metadata.
    ///
    /// The lower device is opened and closed without holding the state lock: opening takes
    /// the lower disk's `open_mutex`, and our own `open` takes the state lock under ours.
    pub(crate) fn attach(&self, path: &CStr) -> Result {
        {
            let st = self.state.lock();
            if st.backing.is_some() {
                return Err(EALREADY);
            }
            // Without a lower device the role is Secondary, so nobody can open us meanwhile.
            if st.open_count > 0 {
                return Err(EBUSY);
            }
        }
        let holder = core::ptr::from_ref(self).cast_mut().cast::<c_void>();
        let lower = LowerDev::open(path, holder)?;
        let mut md = md::Metadata::load(&lower)?;
        let mut io = KVec::with_capacity(MD_BLOCK_SIZE, GFP_KERNEL)?;
        io.resize(MD_BLOCK_SIZE, 0, GFP_KERNEL)?;
        let (act, replay) = Activity::load(&lower, md.geometry(), md.al_clean(), &mut io)?;
        if let Some(r) = replay {
            if r.whole_device {
                pr_warn!(
                    "rdrbd{}: unclean shutdown, activity log unusable: full resync needed\n",
                    self.minor
                );
            } else {
                pr_info!(
                    "rdrbd{}: unclean shutdown{}: applied the activity log, {} extents, {} KiB newly out of sync\n",
                    self.minor,
                    if md.was_primary() { " of a Primary" } else { "" },
                    r.extents,
                    r.new_bits.saturating_mul(4)
                );
            }
        }
        md.mark_in_use(&lower, u32::try_from(act.nr_slots())?)?;
        {
            let disk = self.disk.lock();
            disk.as_ref()
                .ok_or(ENODEV)?
                .set_lower(Some(&lower), md.capacity_sectors())?;
        }
        *self.act.lock.lock() = Some(act);
        let mut st = self.state.lock();
        st.disk_state = md.disk_state();
        st.backing = Some(Backing { lower, md, io });
        Ok(())
    }

    /// Detaches the lower device, writing its metadata back.
    pub(crate) fn detach(&self) -> Result {
        let mut backing = {
            let mut st = self.state.lock();
            if st.open_count > 0 || st.role == Role::Primary {
                return Err(EBUSY);
            }
            st.disk_state = DiskState::Diskless;
            st.backing.take().ok_or(ENODEV)?
        };
        if let Some(disk) = self.disk.lock().as_ref() {
            disk.set_lower(None, 0)?;
        }
        // No opener, so no I/O: the activity log is idle.
        let act = self.act.lock.lock().take();
        let b = &mut backing;
        let res = match act {
            Some(mut act) => act
                .write_dirty_bitmap(&b.lower, b.md.geometry(), &mut b.io)
                .and_then(|()| b.md.mark_clean(&b.lower)),
            None => Err(EIO),
        };
        drop(backing);
        res
    }

    /// Becomes Primary. Needs UpToDate data unless `force`, which makes the data UpToDate.
    ///
    /// Generation UUIDs as in DRBD 8.4's `drbd_set_role()`: a new current UUID when the data
    /// was forced UpToDate, or when no peer shares our data and the bitmap UUID is unused (the
    /// bitmap then records what a peer will miss). Returns whether the data was forced.
    pub(crate) fn primary(&self, force: bool) -> Result<bool> {
        let peer_has_data = self.connection().is_some_and(|c| c.peer_has_data());
        let mut st = self.state.lock();
        if st.role == Role::Primary {
            return Ok(false);
        }
        Self::may_promote(&st, force)?;
        let up_to_date = st.disk_state == DiskState::UpToDate;
        let Some(backing) = st.backing.as_mut() else {
            return Err(ENODEV);
        };
        let forced = !up_to_date;
        let md = &mut backing.md;
        if forced {
            md.set_disk_state(DiskState::UpToDate);
        }
        if forced || (!peer_has_data && md.uuids()[UI_BITMAP] == 0) {
            // SAFETY: `get_random_u64` has no preconditions.
            let random = unsafe { bindings::get_random_u64() };
            drbd_resync::new_current(md.uuids_mut(), random, true);
        } else {
            let cur = md.uuids()[UI_CURRENT];
            drbd_resync::uuid_set_raw(md.uuids_mut(), UI_CURRENT, cur, true);
        }
        md.set_primary(true);
        md.store(&backing.lower)?;
        if forced {
            st.disk_state = DiskState::UpToDate;
        }
        st.role = Role::Primary;
        Ok(forced)
    }

    /// Whether a Secondary in state `st` may become Primary: `ENODEV` without a lower device,
    /// `EROFS` without UpToDate data unless `force`.
    fn may_promote(st: &State, force: bool) -> Result {
        if st.backing.is_none() {
            return Err(ENODEV);
        }
        if st.disk_state != DiskState::UpToDate && !force {
            return Err(EROFS);
        }
        Ok(())
    }

    /// Whether promoting needs anything: `Ok(false)` if already Primary, `Ok(true)` if
    /// [`Self::primary`] would go ahead, else its error.
    pub(crate) fn check_primary(&self, force: bool) -> Result<bool> {
        let st = self.state.lock();
        if st.role == Role::Primary {
            return Ok(false);
        }
        Self::may_promote(&st, force).map(|()| true)
    }

    /// Becomes Secondary. Refused while someone has the device open for writing. Returns whether
    /// the role changed (it was Primary).
    pub(crate) fn secondary(&self) -> Result<bool> {
        let mut st = self.state.lock();
        if st.open_writers > 0 {
            return Err(EBUSY);
        }
        let was = st.role;
        if was == Role::Primary {
            if let Some(b) = st.backing.as_mut() {
                let cur = b.md.uuids()[UI_CURRENT];
                drbd_resync::uuid_set_raw(b.md.uuids_mut(), UI_CURRENT, cur, false);
                b.md.set_primary(false);
                b.md.store(&b.lower)?;
            }
        }
        st.role = Role::Secondary;
        Ok(was != Role::Secondary)
    }

    /// The peer lost contact to our data while we are a Primary with UpToDate data: a new
    /// current UUID, so that the bitmap's changes can be told apart (`lost_contact_to_peer_data`
    /// in `after_state_ch()`). Best effort: a metadata write error is logged.
    pub(crate) fn lost_peer(&self) {
        let mut st = self.state.lock();
        let primary = st.role == Role::Primary;
        if !primary || st.disk_state != DiskState::UpToDate {
            return;
        }
        let Some(b) = st.backing.as_mut() else {
            return;
        };
        if b.md.uuids()[UI_BITMAP] != 0 {
            return;
        }
        // SAFETY: `get_random_u64` has no preconditions.
        let random = unsafe { bindings::get_random_u64() };
        drbd_resync::new_current(b.md.uuids_mut(), random, true);
        if let Err(e) = b.md.store(&b.lower) {
            pr_err!(
                "rdrbd{}: writing the new current UUID failed: {:?}\n",
                self.minor,
                e
            );
        } else {
            pr_info!("rdrbd{}: new current UUID (peer lost)\n", self.minor);
        }
    }

    /// Sets (or clears) the connection writes are replicated to.
    pub(crate) fn set_connection(&self, c: Option<Arc<dyn Replication>>) {
        let old = core::mem::replace(&mut *self.conn.lock(), c);
        // A last reference is dropped outside the spinlock.
        drop(old);
    }

    /// The connection writes are replicated to, if any.
    pub(crate) fn connection(&self) -> Option<Arc<dyn Replication>> {
        self.conn.lock().clone()
    }

    /// The activity log and bitmap (see the module's locking notes).
    pub(crate) fn activity(&self) -> &SpinLockIrq<Option<Activity>> {
        &self.act.lock
    }

    /// The activity log, the bitmap and the writers waiting for a slot.
    pub(crate) fn tracked(&self) -> &Tracked {
        &self.act
    }

    /// Writes the bitmap's dirty blocks to the lower device, holding the state lock (which
    /// keeps the lower device attached) for [`BM_FLUSH_SLICE`] blocks at a time: a full sync
    /// marks a 1 TiB device's 8,192 blocks dirty, and status or netlink callers must not wait
    /// for all of them (a 61-s hung-task report under TCG). Runs of dirty blocks go out as
    /// writes of up to [`activity::BM_IO_BYTES`].
    pub(crate) fn flush_bitmap_sliced(&self) -> Result {
        let mut buf = KVec::with_capacity(activity::BM_IO_BYTES, GFP_KERNEL)?;
        buf.resize(activity::BM_IO_BYTES, 0u8, GFP_KERNEL)?;
        let mut next = Some(0);
        while let Some(start) = next {
            let mut st = self.lock();
            let b = st.backing.as_mut().ok_or(ENODEV)?;
            let geo = *b.md.geometry();
            next = activity::flush_bitmap_range(
                self.tracked(),
                &b.lower,
                &geo,
                &mut buf,
                start,
                BM_FLUSH_SLICE,
            )?;
        }
        Ok(())
    }

    /// Marks a range out of sync (a write the peer did not get).
    pub(crate) fn mark_out_of_sync(&self, sector: u64, nr_sectors: u64) {
        let mut g = self.act.lock.lock();
        if let Some(a) = (*g).as_mut() {
            a.mark(sector, nr_sectors);
        }
    }

    /// Marks the whole blocks of a range in sync (the peer has them now).
    pub(crate) fn mark_in_sync(&self, sector: u64, nr_sectors: u64) {
        if let Some(a) = (*self.act.lock.lock()).as_mut() {
            a.clear(sector, nr_sectors);
        }
    }

    /// Out-of-sync amount in KiB (4 KiB per bitmap bit), 0 when detached.
    pub(crate) fn out_of_sync_kib(&self) -> u64 {
        self.act
            .lock
            .lock()
            .as_ref()
            .map_or(0, |a| a.oos_bits().saturating_mul(4))
    }

    /// Waits until every write submitted to the lower device so far has completed there (not
    /// necessarily at the peer), polling each millisecond while `go_on` allows; false if it
    /// gave up. The caller holds the state lock, so no new write is submitted meanwhile.
    pub(crate) fn wait_lower_writes(&self, mut go_on: impl FnMut() -> bool) -> bool {
        while self.lower_writes.load(Ordering::SeqCst) > 0 {
            if !go_on() {
                return false;
            }
            crate::net::sleep_interruptible(1);
        }
        true
    }

    /// Statistics: completed application writes and failed application I/O.
    pub(crate) fn stats(&self) -> (u64, u64) {
        (
            self.writes_done.load(Ordering::Relaxed),
            self.io_errors.load(Ordering::Relaxed),
        )
    }
}

/// Finds the device with `minor`.
pub(crate) fn find(devices: &KVec<Arc<Device>>, minor: u32) -> Option<Arc<Device>> {
    devices.iter().find(|d| d.minor == minor).cloned()
}

/// Recovers the device behind a C callback's `owner` cookie.
///
/// # Safety
///
/// `owner` must be the cookie passed to [`Disk::create`] by [`Device::create`], and the disk
/// must not have been destroyed yet.
unsafe fn owner_device<'a>(owner: *mut c_void) -> &'a Device {
    // SAFETY: Guaranteed by the caller: the registry holds an `Arc<Device>` for as long as the
    // disk exists.
    unsafe { &*owner.cast::<Device>() }
}

const REQ_OP_WRITE: u32 = bindings::req_op_REQ_OP_WRITE;
const REQ_FUA: u32 = 1 << bindings::req_flag_bits___REQ_FUA;

/// `open()` of `/dev/rdrbdN`: DRBD's rules (a Secondary refuses write opens with `EROFS` and
/// read-only opens with `EMEDIUMTYPE`).
#[no_mangle]
extern "C" fn drbd_rs_rust_open(owner: *mut c_void, write: bool) -> c_int {
    // SAFETY: The C side passes the cookie of a live disk (the gendisk calls `open` only
    // before `del_gendisk` returns).
    let dev = unsafe { owner_device(owner) };
    let mut st = dev.state.lock();
    if st.dying {
        return ENXIO.to_errno();
    }
    if st.role != Role::Primary {
        return if write { EROFS } else { EMEDIUMTYPE }.to_errno();
    }
    let (Some(opens), Some(writers)) = (
        st.open_count.checked_add(1),
        st.open_writers.checked_add(u32::from(write)),
    ) else {
        return EMFILE.to_errno();
    };
    st.open_count = opens;
    st.open_writers = writers;
    0
}

/// `release()` of `/dev/rdrbdN`.
#[no_mangle]
extern "C" fn drbd_rs_rust_release(owner: *mut c_void) {
    // SAFETY: The C side passes the cookie of a live disk; `destroy` refuses while open.
    let dev = unsafe { owner_device(owner) };
    let mut st = dev.state.lock();
    st.open_count = st.open_count.saturating_sub(1);
    // The block layer does not tell which opener leaves; writers are counted down with the
    // last opener, which errs on the side of refusing a demotion.
    if st.open_count == 0 {
        st.open_writers = 0;
    }
}

/// `queue_rq` of `/dev/rdrbdN` (process context: the queue is `BLK_MQ_F_BLOCKING`).
///
/// `nested`: blk-mq called us inside the submitter's `submit_bio()`, where a bio we submit
/// waits on `current->bio_list` until we return. Then nothing here may wait for I/O, nor for
/// the state lock (its holder may wait for our lower writes): a request that would
/// (an activity-log transaction, a busy lock) gets `EAGAIN`, and blk-mq dispatches it again
/// from kblockd.
#[no_mangle]
extern "C" fn drbd_rs_rust_queue_rq(
    owner: *mut c_void,
    rq: *mut bindings::request,
    op: u32,
    sector: u64,
    bytes: u32,
    flags: u32,
    nested: bool,
) -> c_int {
    // SAFETY: The C side passes the cookie of a live disk with one of its requests.
    let dev = unsafe { owner_device(owner) };
    // Plain writes are replicated while connected (discards and write-zeroes are not); while
    // our bitmap is on its way to the peer they are only marked, and the peer is told.
    let (conn, oos_to) = if op == REQ_OP_WRITE && bytes > 0 {
        match dev.connection() {
            Some(c) if c.replicates() => (Some(c), None),
            Some(c) if c.sends_out_of_sync() => (None, Some(c)),
            _ => (None, None),
        }
    } else {
        (None, None)
    };
    let mut st = if nested {
        match dev.state.try_lock() {
            Some(st) => st,
            None => return EAGAIN.to_errno(),
        }
    } else {
        dev.state.lock()
    };
    let is_write = op & 1 == REQ_OP_WRITE & 1;
    if is_write && st.role != Role::Primary {
        return EROFS.to_errno();
    }
    let Some(backing) = st.backing.as_mut() else {
        // Diskless: I/O is not served from the peer (as DRBD would), so it fails.
        return EIO.to_errno();
    };
    let nr = u64::from(bytes) >> 9;
    let begun = if is_write && bytes > 0 {
        let b = &mut *backing;
        let geo = b.md.geometry();
        let mark = conn.is_none();
        if nested {
            match activity::begin_write_hot(&dev.act, sector, nr, mark) {
                Ok(true) => Some(Ok(())),
                // Nothing was taken: blk-mq dispatches the request again, not nested.
                Ok(false) => return EAGAIN.to_errno(),
                Err(e) => Some(Err(e)),
            }
        } else {
            Some(activity::begin_write(
                &dev.act, &b.lower, geo, &mut b.io, sector, nr, mark,
            ))
        }
    } else {
        None
    };
    // SAFETY: `rq` is a started request that C passed to us; we return 0 below, so it is ours.
    let Some(pending) = (unsafe { PendingRq::new(rq) }) else {
        if let Some(Ok(())) = begun {
            activity::end_write(&dev.act, sector, nr);
        }
        return EINVAL.to_errno();
    };
    if let Some(begun) = begun {
        let b = backing;
        if begun.is_err() {
            // Dropping `pending` ends the request with an I/O error; nothing is held.
            drop(pending);
            return 0;
        }
        let Some(conn) = conn else {
            pending.submit_lower(&b.lower);
            drop(st);
            if let Some(c) = oos_to {
                c.send_out_of_sync(sector, u64::from(bytes));
            }
            return 0;
        };
        let data = pending.copy_data(bytes);
        let held = pending.submit_lower_held(&b.lower);
        drop(st);
        match data {
            Ok(data) => conn.send_data(dev, held, data.as_slice(), sector, flags & REQ_FUA != 0),
            // Without memory for the copy the write stays local: the peer is out of date there.
            Err(_) => {
                dev.mark_out_of_sync(sector, nr);
                drop(held);
            }
        }
        return 0;
    }
    pending.submit_lower(&backing.lower);
    0
}

/// A write goes to the lower device (`done` false) or completed there (any context: atomics
/// only).
#[no_mangle]
extern "C" fn drbd_rs_rust_lower_write(owner: *mut c_void, done: bool) {
    // SAFETY: The C side passes the cookie of a live disk: `del_gendisk` waits for requests.
    let dev = unsafe { owner_device(owner) };
    if done {
        // Paired with the start of the same request, counted first.
        dev.lower_writes.fetch_sub(1, Ordering::SeqCst);
    } else {
        dev.lower_writes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Completion of a request that `queue_rq` took over (any context: atomics only).
#[no_mangle]
extern "C" fn drbd_rs_rust_rq_done(
    owner: *mut c_void,
    op: u32,
    sector: u64,
    bytes: u32,
    error: c_int,
) {
    // SAFETY: The C side passes the cookie of a live disk: `del_gendisk` waits for requests.
    let dev = unsafe { owner_device(owner) };
    if op & 1 == REQ_OP_WRITE & 1 && bytes > 0 {
        // Every write that reached here went through `activity::begin_write`.
        activity::end_write(&dev.act, sector, u64::from(bytes) >> 9);
    }
    if error != 0 {
        dev.io_errors.fetch_add(1, Ordering::Relaxed);
    } else if op & 1 == REQ_OP_WRITE & 1 {
        dev.writes_done.fetch_add(1, Ordering::Relaxed);
    }
}
