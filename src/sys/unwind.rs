//! The unsafe half of the fast stack walker (Linux, x86-64): where the
//! loaded code's unwind tables are, the caller's registers, and bounded
//! reads of the current thread's stack. The walking itself, which is safe
//! code, is in `crate::unwind`.

use std::cell::Cell;
use std::ops::Range;
use std::sync::OnceLock;

/// A loaded object (the executable or a shared library) and its unwind
/// tables, as mapped by the dynamic loader.
pub(crate) struct Module {
    /// Addresses of its executable segments.
    pub(crate) text: Range<u64>,
    /// Address and bytes of `.eh_frame_hdr`.
    pub(crate) eh_frame_hdr: (u64, &'static [u8]),
    /// Address and bytes from `.eh_frame` to the end of its segment.
    pub(crate) eh_frame: (u64, &'static [u8]),
}

struct Found {
    modules: Vec<Module>,
}

static MODULES: OnceLock<Vec<Module>> = OnceLock::new();

/// The objects loaded when first asked. Libraries loaded later are not
/// seen: the walker then reports failure and the caller falls back to the
/// system unwinder.
pub(crate) fn modules() -> &'static [Module] {
    MODULES.get_or_init(|| {
        let mut found = Found {
            modules: Vec::new(),
        };
        // SAFETY: dl_iterate_phdr calls `callback` once per loaded object
        // with a valid `dl_phdr_info`; `data` is our `Found`, alive for the
        // whole call.
        unsafe {
            libc::dl_iterate_phdr(Some(callback), (&raw mut found).cast());
        }
        found.modules
    })
}

unsafe extern "C" fn callback(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: the loader passes a valid `info` for the duration of the call,
    // and `data` is the `Found` given to dl_iterate_phdr.
    let (info, found) = unsafe { (&*info, &mut *data.cast::<Found>()) };
    let base = info.dlpi_addr;
    let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    let loads: Vec<Range<u64>> = phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_LOAD)
        .map(|p| base + p.p_vaddr..base + p.p_vaddr + p.p_memsz)
        .collect();
    let text = phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0)
        .map(|p| base + p.p_vaddr..base + p.p_vaddr + p.p_memsz)
        .reduce(|a, b| a.start.min(b.start)..a.end.max(b.end));
    let hdr = phdrs.iter().find(|p| p.p_type == libc::PT_GNU_EH_FRAME);
    let (Some(text), Some(hdr)) = (text, hdr) else {
        return 0;
    };
    let hdr_addr = base + hdr.p_vaddr;
    // SAFETY: the PT_GNU_EH_FRAME segment is mapped readable by the loader
    // for as long as the object is loaded.
    let hdr_bytes =
        unsafe { std::slice::from_raw_parts(hdr_addr as *const u8, hdr.p_memsz as usize) };
    let Some(eh_frame) = crate::unwind::eh_frame_address(hdr_addr, hdr_bytes) else {
        return 0;
    };
    let Some(seg) = loads.iter().find(|r| r.contains(&eh_frame)) else {
        return 0;
    };
    // SAFETY: `[eh_frame, seg.end)` lies inside a PT_LOAD segment of this
    // object, mapped readable while it is loaded.
    let eh_bytes =
        unsafe { std::slice::from_raw_parts(eh_frame as *const u8, (seg.end - eh_frame) as usize) };
    found.modules.push(Module {
        text,
        eh_frame_hdr: (hdr_addr, hdr_bytes),
        eh_frame: (eh_frame, eh_bytes),
    });
    0
}

/// The registers of the function this is inlined into: instruction
/// pointer (an address inside that function), stack pointer, frame pointer.
#[inline(always)]
pub(crate) fn registers() -> (u64, u64, u64) {
    let (ip, sp, bp): (u64, u64, u64);
    // SAFETY: reads three registers into outputs; touches no memory and
    // leaves the stack and flags unchanged.
    unsafe {
        std::arch::asm!(
            "lea {ip}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            ip = out(reg) ip,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags)
        );
    }
    (ip, sp, bp)
}

thread_local! {
    /// This thread's stack, `[low, high)`; empty until looked up.
    static STACK: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn stack_bounds() -> (u64, u64) {
    let cached = STACK.with(Cell::get);
    if cached.1 != 0 {
        return cached;
    }
    let mut bounds = (0, 0);
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread;
    // pthread_attr_getstack reads it; the attr is destroyed after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) == 0 {
            let mut addr: *mut libc::c_void = std::ptr::null_mut();
            let mut size: libc::size_t = 0;
            if libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0 {
                bounds = (addr as u64, addr as u64 + size as u64);
            }
            libc::pthread_attr_destroy(&mut attr);
        }
    }
    STACK.with(|s| s.set(bounds));
    bounds
}

/// Reads the 8 bytes at `addr` if they lie in the current thread's stack
/// at or above `floor` (the walker's own stack pointer: anything below it
/// is not a live frame of this thread).
#[inline]
pub(crate) fn read_stack(addr: u64, floor: u64) -> Option<u64> {
    let (low, high) = stack_bounds();
    if addr < floor.max(low) || addr.checked_add(8)? > high || !addr.is_multiple_of(8) {
        return None;
    }
    // SAFETY: `[addr, addr + 8)` is inside this thread's stack, at or above
    // the current stack pointer, so it is mapped, readable and aligned.
    Some(unsafe { std::ptr::read_volatile(addr as *const u64) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_reads_stay_in_the_live_stack() {
        let local = 0x1234_5678_u64;
        let addr = &raw const local as u64;
        let (_, sp, _) = registers();
        assert_eq!(read_stack(addr, sp.min(addr)), Some(0x1234_5678));
        // Below the floor (dead frames), unaligned, outside any stack.
        assert_eq!(read_stack(addr, addr + 8), None);
        assert_eq!(read_stack(addr + 1, sp.min(addr)), None);
        assert_eq!(read_stack(0, 0), None);
        assert_eq!(read_stack(u64::MAX - 7, 0), None);
        let heap = Box::new(7u64);
        assert_eq!(
            read_stack(&raw const *heap as u64, 0),
            None,
            "heap is not stack"
        );
        let (low, high) = stack_bounds();
        assert!(low < addr && addr < high);
        assert_eq!(read_stack(high, 0), None);
    }

    #[test]
    fn the_executable_has_unwind_tables() {
        let here = stack_reads_stay_in_the_live_stack as fn() as usize as u64;
        let m = modules()
            .iter()
            .find(|m| m.text.contains(&here))
            .expect("found");
        assert!(!m.eh_frame_hdr.1.is_empty() && !m.eh_frame.1.is_empty());
    }
}
