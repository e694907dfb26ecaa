//! Where the function of a frame from the system unwinder starts.
//!
//! Stack counters find their own frame in a walk by the start address of
//! its function. The `backtrace` crate's `Frame::symbol_address` gives it
//! on unix (from the unwind tables), but on Windows it is the frame's
//! instruction pointer itself. Windows keeps every function's bounds in
//! the image's exception directory (`.pdata`), which
//! `RtlLookupFunctionEntry` searches (Microsoft's x64 and ARM64 exception
//! handling documentation); that gives the start there.

/// The start address of the function of `frame`.
pub(crate) fn function_start(frame: &backtrace::Frame) -> usize {
    imp::function_start(frame.ip() as usize).unwrap_or(frame.symbol_address() as usize)
}

#[cfg(all(windows, target_arch = "x86_64"))]
mod imp {
    use windows_sys::Win32::System::Diagnostics::Debug::RtlLookupFunctionEntry;

    pub(super) fn function_start(ip: usize) -> Option<usize> {
        // A return address may lie just past its function's last
        // instruction (a call at the very end): look up the byte before.
        let pc = ip.checked_sub(1)? as u64;
        let mut base: u64 = 0;
        // SAFETY: a lookup in the loaded images' tables: it reads them and
        // writes one u64 through a valid, exclusive pointer to a local; no
        // history table is passed (null is allowed).
        let entry = unsafe { RtlLookupFunctionEntry(pc, &mut base, std::ptr::null_mut()) };
        // SAFETY: a non-null result points to the image's own, loaded
        // RUNTIME_FUNCTION entry; only its begin offset is read.
        let begin = unsafe { entry.as_ref() }?.BeginAddress;
        Some((base + u64::from(begin)) as usize)
    }
}

#[cfg(all(windows, target_arch = "aarch64"))]
mod imp {
    use windows_sys::Win32::System::Diagnostics::Debug::RtlLookupFunctionEntry;

    pub(super) fn function_start(ip: usize) -> Option<usize> {
        let pc = ip.checked_sub(1)?;
        let mut base: usize = 0;
        // SAFETY: as on x86-64: reads the loaded images' tables, writes one
        // usize through a valid pointer to a local.
        let entry = unsafe { RtlLookupFunctionEntry(pc, &mut base, std::ptr::null_mut()) };
        // SAFETY: a non-null result points to a loaded image's entry.
        let begin = unsafe { entry.as_ref() }?.BeginAddress;
        Some(base + begin as usize)
    }
}

#[cfg(not(all(windows, any(target_arch = "x86_64", target_arch = "aarch64"))))]
mod imp {
    pub(super) fn function_start(_ip: usize) -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    #[inline(never)]
    fn marked() -> bool {
        let marker = marked as fn() -> bool as usize;
        let mut found = false;
        backtrace::trace(|f| {
            found |= super::function_start(f) == marker;
            !found
        });
        std::hint::black_box(found)
    }

    /// The walk finds the frame of a function by its start address, on
    /// every platform (on Windows through the exception directory).
    #[test]
    fn a_frame_is_found_by_its_function() {
        assert!(marked());
    }
}
