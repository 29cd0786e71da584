// SPDX-License-Identifier: GPL-2.0

//! User-mode helpers (`call_usermodehelper` with `UMH_WAIT_PROC`), for the fencing handlers.

use kernel::bindings;
use kernel::ffi::{c_char, c_int};
use kernel::prelude::*;
use kernel::str::CStr;

/// Most arguments or environment variables of a helper.
const MAX_STRINGS: usize = 16;

/// A NULL-terminated array of pointers to the strings of `v`.
fn ptrs(v: &[&CStr]) -> Result<[*mut c_char; MAX_STRINGS + 1]> {
    if v.len() > MAX_STRINGS {
        return Err(E2BIG);
    }
    let mut out = [core::ptr::null_mut(); MAX_STRINGS + 1];
    for (p, s) in out.iter_mut().zip(v) {
        // The helper machinery only reads the strings (`kernel_execve` copies them).
        *p = s.as_char_ptr().cast_mut();
    }
    Ok(out)
}

/// Runs `argv[0]` with `argv` and `envp` and waits until it exits. Returns the wait status
/// (`exit code << 8`, a signal in the low bits) or a negative errno.
///
/// Sleeps for as long as the helper runs: the caller must hold no lock, and no thread the
/// helper might wait for (the I/O path, the receiver) may wait for the caller.
pub(crate) fn run(argv: &[&CStr], envp: &[&CStr]) -> Result<i32> {
    let path = argv.first().ok_or(EINVAL)?;
    let mut a = ptrs(argv)?;
    let mut e = ptrs(envp)?;
    // SAFETY: `path`, `a` and `e` point to NUL-terminated strings (the arrays end with a null
    // pointer) that outlive the call: with `UMH_WAIT_PROC` it returns only after the helper
    // exited, and the kernel copied the strings when it executed the helper.
    let ret = unsafe {
        bindings::call_usermodehelper(
            path.as_char_ptr(),
            a.as_mut_ptr(),
            e.as_mut_ptr(),
            bindings::UMH_WAIT_PROC as c_int,
        )
    };
    Ok(ret)
}
