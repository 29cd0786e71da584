// SPDX-License-Identifier: GPL-2.0

//! Kernel threads that run a function on shared data, for hark's modules (`drbd_rs` and
//! `ktcpvs_rs` both compile this file: `#[path = "../kcommon/kthread.rs"] mod kthread;`).
//!
//! - [`KThread::spawn`] starts a kernel thread running `f(&data)`; dropping the [`KThread`]
//!   asks the thread to stop and waits until `f` returned.
//! - [`thread_should_stop`] tells `f` that it was asked to stop.
//!
//! Everything goes through exported kernel functions (`kthread_create_on_node`,
//! `wake_up_process`, `kthread_stop_put`, `kthread_should_stop`) and the `get_task_struct`
//! helper, so no C glue is needed.

use core::ptr::NonNull;
use kernel::bindings;
use kernel::error::from_err_ptr;
use kernel::ffi::{c_int, c_void};
use kernel::prelude::*;
use kernel::sync::Arc;

/// Whether the current kernel thread was asked to stop (by dropping its [`KThread`]).
///
/// Call it only from a function a [`KThread`] runs.
pub(crate) fn thread_should_stop() -> bool {
    // SAFETY: Called from a thread started by `KThread::spawn`, i.e. a kthread, which is what
    // `kthread_should_stop` requires.
    unsafe { bindings::kthread_should_stop() }
}

/// What a [`KThread`] runs.
struct ThreadCtx<T> {
    data: Arc<T>,
    f: fn(&Arc<T>),
}

/// A kernel thread running `f(&data)`.
///
/// # Invariants
///
/// `task` is a kthread created by [`KThread::spawn`], on which we hold a task reference; the
/// thread reads `*_ctx` until it has been stopped, which `Drop` does before `_ctx` is freed.
pub(crate) struct KThread<T: Send + Sync + 'static> {
    task: NonNull<bindings::task_struct>,
    /// Owned only to outlive the thread, which reads it through a raw pointer.
    _ctx: KBox<ThreadCtx<T>>,
}

// SAFETY: The handle only stops the thread; `T` is `Send + Sync`.
unsafe impl<T: Send + Sync + 'static> Send for KThread<T> {}
// SAFETY: `&KThread` gives no access to anything.
unsafe impl<T: Send + Sync + 'static> Sync for KThread<T> {}

/// The function every [`KThread`] starts in.
///
/// # Safety
///
/// `p` must be the `ctx` of a live `KThread<T>`.
unsafe extern "C" fn thread_main<T: Send + Sync + 'static>(p: *mut c_void) -> c_int {
    // SAFETY: `p` is the `ctx` of a `KThread`, which stays allocated until the thread was
    // stopped, i.e. until after this function returned (see the type invariant).
    let ctx = unsafe { &*p.cast::<ThreadCtx<T>>() };
    (ctx.f)(&ctx.data);
    0
}

impl<T: Send + Sync + 'static> KThread<T> {
    /// Starts a kernel thread called `name` running `f(&data)`. `f` should return soon after
    /// [`thread_should_stop`] becomes true (dropping the `KThread` waits for that).
    pub(crate) fn spawn(name: &CStr, data: Arc<T>, f: fn(&Arc<T>)) -> Result<KThread<T>> {
        let ctx = KBox::new(ThreadCtx { data, f }, GFP_KERNEL)?;
        let p = core::ptr::from_ref::<ThreadCtx<T>>(&ctx)
            .cast_mut()
            .cast::<c_void>();
        // SAFETY: `thread_main::<T>` expects a `ThreadCtx<T>`, which `p` is; it outlives the
        // thread as `Drop` stops the thread first. The format `%s` takes one C string, `name`,
        // which kthread_create_on_node copies.
        let t = from_err_ptr(unsafe {
            bindings::kthread_create_on_node(
                Some(thread_main::<T>),
                p,
                bindings::NUMA_NO_NODE,
                c"%s".as_char_ptr(),
                name.as_char_ptr(),
            )
        })?;
        let task = NonNull::new(t).ok_or(ENOMEM)?;
        // SAFETY: `t` is a new kthread, not running yet: the reference taken here keeps it
        // valid until `Drop`; waking it starts `thread_main`.
        unsafe {
            bindings::get_task_struct(t);
            bindings::wake_up_process(t);
        }
        // INVARIANT: A kthread with a task reference that we own; `ctx` moves with it.
        Ok(KThread { task, _ctx: ctx })
    }
}

impl<T: Send + Sync + 'static> Drop for KThread<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we hold a task reference on a kthread;
        // `kthread_stop_put` wakes the thread, waits until its function returned, and drops
        // the reference. `ctx` is freed only after this (field drop order runs after `drop`).
        unsafe { bindings::kthread_stop_put(self.task.as_ptr()) };
    }
}
