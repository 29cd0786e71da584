// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the C helpers in `drbd_rs_glue.c`.
//!
//! C header: `drbd_rs/drbd_rs_glue.h`. Each declaration below must match it exactly. Every raw
//! pointer that crosses the boundary is owned by exactly one wrapper type here.

use core::ptr::NonNull;
use kernel::bindings;
use kernel::error::from_err_ptr;
use kernel::ffi::{c_char, c_int, c_void};
use kernel::prelude::*;

/// Opaque C type `struct drbd_rs_disk`.
#[repr(C)]
pub(crate) struct RawDisk {
    _private: [u8; 0],
}

#[allow(improper_ctypes)]
mod ffi {
    use super::*;

    extern "C" {
        pub(super) fn drbd_rs_crc32c(crc: u32, p: *const c_void, len: usize) -> u32;
        pub(super) fn drbd_rs_disk_create(minor: u32, owner: *mut c_void) -> *mut RawDisk;
        pub(super) fn drbd_rs_disk_destroy(d: *mut RawDisk);
        pub(super) fn drbd_rs_disk_set_lower(
            d: *mut RawDisk,
            lower: *mut bindings::file,
            capacity: u64,
        ) -> c_int;
        pub(super) fn drbd_rs_rq_submit_lower(
            rq: *mut bindings::request,
            lower: *mut bindings::file,
            extra: c_int,
        );
        pub(super) fn drbd_rs_rq_put(rq: *mut bindings::request);
        pub(super) fn drbd_rs_rq_copy_data(rq: *mut bindings::request) -> *mut c_void;
        pub(super) fn drbd_rs_buf_free(buf: *mut c_void);
        pub(super) fn drbd_rs_rq_end(rq: *mut bindings::request, error: c_int);
        pub(super) fn drbd_rs_lower_open(
            path: *const c_char,
            holder: *mut c_void,
        ) -> *mut bindings::file;
        pub(super) fn drbd_rs_lower_close(lower: *mut bindings::file);
        pub(super) fn drbd_rs_lower_sectors(lower: *mut bindings::file) -> u64;
        pub(super) fn drbd_rs_lower_rw(
            lower: *mut bindings::file,
            sector: u64,
            buf: *mut c_void,
            len: u32,
            write: bool,
            fua: bool,
        ) -> c_int;
        pub(super) fn drbd_rs_module_get();
        pub(super) fn drbd_rs_module_put();
        pub(super) fn drbd_rs_genl_reply(
            skb: *mut bindings::sk_buff,
            info: *mut bindings::genl_info,
        ) -> c_int;
        pub(super) fn drbd_rs_genl_set_err(info: *mut bindings::genl_info, msg: *const c_char);
        pub(super) fn drbd_rs_genl_mcast_cap_net_admin() -> u8;
    }
}

/// The kernel's raw CRC-32C of `data` continued from `crc` (no pre- or post-inversion).
#[cfg_attr(not(CONFIG_KUNIT), expect(dead_code))]
pub(crate) fn kernel_crc32c(crc: u32, data: &[u8]) -> u32 {
    // SAFETY: `data` is a valid slice, so its pointer is readable for `data.len()` bytes for the
    // duration of the call; `crc32c()` only reads that range and keeps no reference to it.
    unsafe { ffi::drbd_rs_crc32c(crc, data.as_ptr().cast(), data.len()) }
}

/// A lower block device, opened read-write and exclusively.
///
/// # Invariants
///
/// `file` is a valid `struct file` returned by `drbd_rs_lower_open()` and not yet closed; this
/// object owns that reference.
pub(crate) struct LowerDev {
    file: NonNull<bindings::file>,
}

// SAFETY: A block device file may be used and closed from any thread.
unsafe impl Send for LowerDev {}
// SAFETY: All methods take `&self` and the C functions they call are safe to use concurrently.
unsafe impl Sync for LowerDev {}

impl LowerDev {
    /// Opens `path` exclusively, with `holder` as the exclusive holder cookie.
    pub(crate) fn open(path: &CStr, holder: *mut c_void) -> Result<Self> {
        // SAFETY: `path` is a valid NUL-terminated string for the duration of the call; the
        // holder is only compared by address.
        let file = from_err_ptr(unsafe { ffi::drbd_rs_lower_open(path.as_char_ptr(), holder) })?;
        let file = NonNull::new(file).ok_or(ENODEV)?;
        // INVARIANT: `file` was just returned by `drbd_rs_lower_open()` and is not an error.
        Ok(Self { file })
    }

    /// Size of the device in 512-byte sectors.
    pub(crate) fn sectors(&self) -> u64 {
        // SAFETY: By the type invariant, `self.file` is a valid open block device file.
        unsafe { ffi::drbd_rs_lower_sectors(self.file.as_ptr()) }
    }

    fn rw(&self, sector: u64, buf: &mut [u8], write: bool, fua: bool) -> Result {
        let len = u32::try_from(buf.len()).map_err(|_| EINVAL)?;
        // SAFETY: By the type invariant `self.file` is valid; `buf` comes from a `KVec` (see the
        // callers), i.e. from kmalloc and thus in the direct mapping, and stays borrowed until
        // the synchronous I/O has completed.
        let ret = unsafe {
            ffi::drbd_rs_lower_rw(
                self.file.as_ptr(),
                sector,
                buf.as_mut_ptr().cast(),
                len,
                write,
                fua,
            )
        };
        kernel::error::to_result(ret)
    }

    /// Reads `buf.len()` bytes (a multiple of 512) at `sector`, synchronously.
    pub(crate) fn read(&self, sector: u64, buf: &mut KVec<u8>) -> Result {
        self.rw(sector, buf, false, false)
    }

    /// Reads into `buf` (from kmalloc, a multiple of 512 bytes) at `sector`, synchronously.
    pub(crate) fn read_into(&self, sector: u64, buf: &mut [u8]) -> Result {
        self.rw(sector, buf, false, false)
    }

    /// Writes `buf` (from kmalloc) at `sector`, synchronously, with FUA if `fua`.
    pub(crate) fn write(&self, sector: u64, buf: &mut [u8], fua: bool) -> Result {
        self.rw(sector, buf, true, fua)
    }

    /// Writes `buf` at `sector` with FUA, synchronously.
    pub(crate) fn write_fua(&self, sector: u64, buf: &mut KVec<u8>) -> Result {
        self.rw(sector, buf, true, true)
    }
}

impl Drop for LowerDev {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `self.file` is valid and owned by us; it is not used
        // after this.
        unsafe { ffi::drbd_rs_lower_close(self.file.as_ptr()) };
    }
}

/// A live `/dev/rdrbdN` block device.
///
/// # Invariants
///
/// `raw` was returned by `drbd_rs_disk_create()` and is destroyed only by `Drop`.
pub(crate) struct Disk {
    raw: NonNull<RawDisk>,
}

// SAFETY: The C disk object may be used and destroyed from any thread.
unsafe impl Send for Disk {}
// SAFETY: `set_lower` serialises itself by freezing the queue; nothing else mutates.
unsafe impl Sync for Disk {}

impl Disk {
    /// Creates and adds `/dev/rdrbd<minor>` with capacity 0.
    ///
    /// # Safety
    ///
    /// `owner` must stay valid for the callbacks of `drbd_rs_glue.h` until the returned `Disk`
    /// has been dropped, and the callbacks must accept it.
    pub(crate) unsafe fn create(minor: u32, owner: *mut c_void) -> Result<Self> {
        // SAFETY: The caller guarantees `owner`'s validity; the function has no other
        // requirements.
        let raw = from_err_ptr(unsafe { ffi::drbd_rs_disk_create(minor, owner) })?;
        let raw = NonNull::new(raw).ok_or(ENOMEM)?;
        // INVARIANT: `raw` was just returned by `drbd_rs_disk_create()`.
        Ok(Self { raw })
    }

    /// Sets the capacity and copies `lower`'s limits (or clears them for `None`).
    pub(crate) fn set_lower(&self, lower: Option<&LowerDev>, capacity: u64) -> Result {
        let file = lower.map_or(core::ptr::null_mut(), |l| l.file.as_ptr());
        // SAFETY: By the type invariants `self.raw` is valid and `file` is null or valid.
        kernel::error::to_result(unsafe {
            ffi::drbd_rs_disk_set_lower(self.raw.as_ptr(), file, capacity)
        })
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `self.raw` is valid and owned by us. The C side deletes
        // the gendisk, which waits for in-flight requests, before freeing.
        unsafe { ffi::drbd_rs_disk_destroy(self.raw.as_ptr()) };
    }
}

/// A request handed to Rust by `queue_rq`; must be consumed by [`Self::submit_lower`]
/// (dropping it ends it with `EIO`).
///
/// # Invariants
///
/// `rq` is a started blk-mq request of one of our disks that nobody else will end.
pub(crate) struct PendingRq {
    rq: NonNull<bindings::request>,
}

impl PendingRq {
    /// Takes over `rq`.
    ///
    /// # Safety
    ///
    /// `rq` must be a started request of a drbd_rs disk, passed to `drbd_rs_rust_queue_rq`,
    /// which returns 0 after this, and no other `PendingRq` may exist for it.
    pub(crate) unsafe fn new(rq: *mut bindings::request) -> Option<Self> {
        // INVARIANT: Guaranteed by the caller.
        NonNull::new(rq).map(|rq| Self { rq })
    }

    /// Remaps the request 1:1 to `lower` and submits it; it ends when the lower I/O does.
    pub(crate) fn submit_lower(self, lower: &LowerDev) {
        self.submit(lower, 0);
    }

    /// A copy of a write request's `bytes` of data.
    pub(crate) fn copy_data(&self, bytes: u32) -> Result<IoBuf> {
        // SAFETY: By the type invariant the request is ours and not ended.
        let p = unsafe { ffi::drbd_rs_rq_copy_data(self.rq.as_ptr()) };
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(ENOMEM)?;
        // INVARIANT: The C side allocated `blk_rq_bytes()` = `bytes` bytes and filled them.
        Ok(IoBuf {
            ptr,
            len: bytes as usize,
        })
    }

    /// Like [`Self::submit_lower`], but the request also waits for the returned reference to be
    /// dropped (the peer's acknowledgement).
    pub(crate) fn submit_lower_held(self, lower: &LowerDev) -> RqRef {
        let rq = self.rq;
        self.submit(lower, 1);
        // INVARIANT: `submit` took exactly one extra reference for this `RqRef`.
        RqRef { rq }
    }

    fn submit(self, lower: &LowerDev, extra: c_int) {
        let rq = self.rq.as_ptr();
        core::mem::forget(self);
        // SAFETY: By the type invariant `rq` is ours to end, and it is handed over exactly once
        // (`self` was forgotten); `lower.file` is valid by `LowerDev`'s invariant, and stays so
        // until the request ends because detaching requires the device to be closed.
        unsafe { ffi::drbd_rs_rq_submit_lower(rq, lower.file.as_ptr(), extra) };
    }
}

/// A kvmalloc'd copy of a request's data.
///
/// # Invariants
///
/// `ptr` was returned by `drbd_rs_rq_copy_data()`, holds `len` initialised bytes, and is
/// freed only by `Drop`.
pub(crate) struct IoBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: Plain memory, freed from any thread.
unsafe impl Send for IoBuf {}

impl IoBuf {
    /// The data.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: By the type invariant `ptr` holds `len` initialised bytes owned by us.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the buffer came from `drbd_rs_rq_copy_data()`.
        unsafe { ffi::drbd_rs_buf_free(self.ptr.as_ptr().cast()) };
    }
}

/// A reference that keeps a submitted request from ending (e.g. until the peer acknowledged
/// the write); dropping it releases the request.
///
/// # Invariants
///
/// `rq` is a request submitted by [`PendingRq::submit_lower_held`] that holds one extra
/// reference owned by this object.
pub(crate) struct RqRef {
    rq: NonNull<bindings::request>,
}

// SAFETY: Dropping the reference is allowed in any context and from any thread.
unsafe impl Send for RqRef {}

impl Drop for RqRef {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we own one reference of a live request.
        unsafe { ffi::drbd_rs_rq_put(self.rq.as_ptr()) };
    }
}

impl Drop for PendingRq {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `rq` is ours to end, and `drop` runs at most once.
        unsafe { ffi::drbd_rs_rq_end(self.rq.as_ptr(), EIO.to_errno()) };
    }
}

/// Takes a reference on this module (one per existing minor: `rmmod` is refused meanwhile).
pub(crate) fn module_get() {
    // SAFETY: `__module_get` on our own, live module has no requirements.
    unsafe { ffi::drbd_rs_module_get() };
}

/// Drops a reference taken by [`module_get`].
pub(crate) fn module_put() {
    // SAFETY: Called once per earlier `module_get`, so the count stays balanced.
    unsafe { ffi::drbd_rs_module_put() };
}

/// Sends a finished reply message for the request `info`. Consumes `skb`.
///
/// # Safety
///
/// `skb` must be a finished generic netlink message owned by the caller, `info` the request
/// being handled by the current `doit`.
pub(crate) unsafe fn genl_reply(
    skb: *mut bindings::sk_buff,
    info: *mut bindings::genl_info,
) -> Result {
    // SAFETY: Guaranteed by the caller.
    kernel::error::to_result(unsafe { ffi::drbd_rs_genl_reply(skb, info) })
}

/// Sets the extended-ack error message of the request `info` (copied).
///
/// # Safety
///
/// `info` must be the request being handled by the current `doit`.
pub(crate) unsafe fn genl_set_err(info: *mut bindings::genl_info, msg: &CStr) {
    // SAFETY: Guaranteed by the caller; `msg` is NUL-terminated and only read during the call.
    unsafe { ffi::drbd_rs_genl_set_err(info, msg.as_char_ptr()) };
}

/// The multicast-group flag that makes joining the group need `CAP_NET_ADMIN` in the
/// network namespace's user namespace (`GENL_MCAST_CAP_NET_ADMIN`).
pub(crate) fn genl_mcast_cap_net_admin() -> u8 {
    // SAFETY: Returns a constant; no preconditions.
    unsafe { ffi::drbd_rs_genl_mcast_cap_net_admin() }
}
