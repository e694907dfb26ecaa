//! The unsafe half of the fast stack walker (Linux, x86-64, glibc or musl):
//! what the dynamic loader knows about the loaded objects, the caller's
//! registers, and bounded reads of the current thread's stack. The walking
//! itself, which is safe code, is in `crate::unwind`.
//!
//! Objects come and go (dlopen, dlclose), and an object's address range
//! may then hold other code or nothing at all, so nothing here keeps a
//! reference into a loaded object. Every question about loaded code is
//! answered inside a `dl_iterate_phdr` callback, and only values are copied
//! out of it. glibc holds its loader lock (`dl_load_write_lock`) for the
//! whole iteration, and `dlclose` unmaps an object only while holding that
//! lock, so an object passed to the callback stays mapped until the callback
//! returns (libgcc's unwinder relies on the same). musl's `dlclose` never
//! unmaps anything.
//!
//! A change in the loaded objects is seen through the loader's counts:
//! `dlpi_subs`, the number of objects unloaded so far, which both glibc and
//! musl report (musl always reports 0).

use std::any::Any;
use std::cell::Cell;
use std::ffi::{CStr, c_int, c_void};
use std::ops::Range;
use std::panic::AssertUnwindSafe;

/// What the loader reports of one loaded object, during a callback only.
pub(crate) struct Object<'a> {
    /// The load bias (`dlpi_addr`): added to the addresses in the object's
    /// headers.
    base: u64,
    /// The name the loader knows it by (empty for the main program).
    name: &'a CStr,
    phdrs: &'a [libc::Elf64_Phdr],
    /// The first object reported: the main program.
    main: bool,
    /// How many objects the loader had unloaded (`dlpi_subs`), if it says.
    unloads: Option<u64>,
}

impl<'a> Object<'a> {
    /// The address ranges of its loaded segments, with their flags.
    fn segments(&self) -> impl Iterator<Item = (Range<u64>, u32)> + '_ {
        self.phdrs
            .iter()
            .filter(|p| p.p_type == libc::PT_LOAD)
            .map(|p| {
                let start = self.base.wrapping_add(p.p_vaddr);
                (start..start.saturating_add(p.p_memsz), p.p_flags)
            })
    }

    fn contains(&self, addr: u64) -> bool {
        self.segments().any(|(r, _)| r.contains(&addr))
    }

    /// The bytes at `range`, if it lies inside one loaded segment of this
    /// object that is readable and not writable.
    fn bytes(&self, range: Range<u64>) -> Option<&'a [u8]> {
        let inside = self.segments().any(|(seg, flags)| {
            flags & libc::PF_R != 0
                && flags & libc::PF_W == 0
                && seg.start <= range.start
                && range.end <= seg.end
        });
        if !inside || range.start > range.end {
            return None;
        }
        let len = usize::try_from(range.end - range.start).ok()?;
        // SAFETY: the range lies inside a PT_LOAD segment of this object
        // with PF_R. The loader maps each such segment readable over its
        // whole `p_memsz` (past the file's bytes, zero pages), and keeps it
        // mapped until the object is unloaded, which cannot happen before
        // the `dl_iterate_phdr` callback this `Object` lives in returns (see
        // the module comment); the slice's lifetime `'a` ends there too.
        // The segment has no PF_W: the program does not write it. (Only
        // the loader may, while it applies text relocations (DT_TEXTREL) as
        // it loads an object; the unwind tables read here use PC-relative
        // pointers and are not relocated.)
        Some(unsafe { std::slice::from_raw_parts(range.start as *const u8, len) })
    }
}

/// Calls `f` on the object that has a loaded segment containing `addr`,
/// inside the `dl_iterate_phdr` callback (so the object cannot be unloaded
/// while `f` runs); `None` if no object contains it. `f` must not unload
/// objects (nothing in this crate does). A panic in `f` is carried past the
/// loader and resumed.
fn with_object_at<R>(addr: u64, f: impl FnOnce(&Object<'_>) -> R) -> Option<R> {
    with_object(|o| o.contains(addr), f)
}

struct Search<P, F, R> {
    pick: P,
    f: Option<F>,
    index: usize,
    result: Option<R>,
    panic: Option<Box<dyn Any + Send>>,
}

fn with_object<P, F, R>(pick: P, f: F) -> Option<R>
where
    P: FnMut(&Object<'_>) -> bool,
    F: FnOnce(&Object<'_>) -> R,
{
    unsafe extern "C" fn callback<P, F, R>(
        info: *mut libc::dl_phdr_info,
        size: libc::size_t,
        data: *mut c_void,
    ) -> c_int
    where
        P: FnMut(&Object<'_>) -> bool,
        F: FnOnce(&Object<'_>) -> R,
    {
        // SAFETY: `data` is the `Search` given to dl_iterate_phdr below,
        // alive and not otherwise borrowed during the call.
        let search = unsafe { &mut *data.cast::<Search<P, F, R>>() };
        // SAFETY: the loader passes a valid `info` for the duration of the
        // call.
        let info = unsafe { &*info };
        let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers,
            // valid while the object is loaded (at least for this call).
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
        };
        let name = if info.dlpi_name.is_null() {
            c""
        } else {
            // SAFETY: `dlpi_name` is a NUL-terminated string owned by the
            // loader, valid for the call.
            unsafe { CStr::from_ptr(info.dlpi_name) }
        };
        let object = Object {
            base: info.dlpi_addr,
            name,
            phdrs,
            main: search.index == 0,
            // A loader that passes a smaller `dl_phdr_info` does not report
            // unloads.
            unloads: (size >= SUBS_END).then_some(info.dlpi_subs),
        };
        search.index += 1;
        // Unwinding out of an `extern "C"` function aborts: catch here,
        // resume once the loader's lock is released.
        let picked = match std::panic::catch_unwind(AssertUnwindSafe(|| (search.pick)(&object))) {
            Ok(p) => p,
            Err(e) => {
                search.panic = Some(e);
                return 1;
            }
        };
        if !picked {
            return 0;
        }
        if let Some(f) = search.f.take() {
            match std::panic::catch_unwind(AssertUnwindSafe(|| f(&object))) {
                Ok(r) => search.result = Some(r),
                Err(e) => search.panic = Some(e),
            }
        }
        1
    }

    let mut search = Search {
        pick,
        f: Some(f),
        index: 0,
        result: None,
        panic: None,
    };
    // SAFETY: dl_iterate_phdr calls `callback` once per loaded object with
    // a valid `dl_phdr_info`, until it returns non-zero; `data` is our
    // `Search`, alive for the whole call and of the type `callback` reads.
    unsafe {
        libc::dl_iterate_phdr(Some(callback::<P, F, R>), (&raw mut search).cast());
    }
    if let Some(e) = search.panic {
        std::panic::resume_unwind(e);
    }
    search.result
}

/// Where `dlpi_subs` ends: a loader that passes a smaller `dl_phdr_info`
/// does not report it.
const SUBS_END: usize =
    std::mem::offset_of!(libc::dl_phdr_info, dlpi_subs) + size_of::<libc::c_ulonglong>();

/// How many objects the loader has unloaded so far in this process, or
/// `None` if it does not say. Asks the loader: one `dl_iterate_phdr` call,
/// stopped at the first object (about 10 ns when no other thread holds the
/// loader's lock).
pub(crate) fn unloads() -> Option<u64> {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `data` is the `Option<u64>` given below; the loader
        // passes a valid `info` of `size` bytes, which covers `dlpi_subs`
        // when checked so.
        unsafe {
            if size >= SUBS_END {
                *data.cast::<Option<u64>>() = Some((*info).dlpi_subs);
            }
        }
        1
    }
    let mut subs: Option<u64> = None;
    // SAFETY: `first` reads only `info` and writes only `subs`, which
    // outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(first), (&raw mut subs).cast());
    }
    subs
}

/// A loaded object's unwind tables, readable only inside the callback that
/// passes them.
pub(crate) struct Tables<'a> {
    /// Start of the executable segment holding the address asked about.
    pub(crate) text: u64,
    /// Address and bytes of `.eh_frame_hdr`.
    pub(crate) eh_frame_hdr: (u64, &'a [u8]),
    /// Address and bytes from `.eh_frame` to the end of its segment.
    pub(crate) eh_frame: (u64, &'a [u8]),
}

/// Calls `f` on the unwind tables of the object whose executable segment
/// contains `addr`, while the loader cannot unload it. `None` if no loaded
/// object has a segment at `addr`; `Some(None)` if that segment is not
/// executable or the object has no usable `.eh_frame_hdr`/`.eh_frame`.
pub(crate) fn with_tables_at<R>(addr: u64, f: impl FnOnce(&Tables<'_>) -> R) -> Option<Option<R>> {
    with_object_at(addr, |o| {
        let text = o
            .segments()
            .find(|(r, flags)| flags & libc::PF_X != 0 && r.contains(&addr))?
            .0
            .start;
        let hdr = o.phdrs.iter().find(|p| p.p_type == libc::PT_GNU_EH_FRAME)?;
        let hdr_addr = o.base.wrapping_add(hdr.p_vaddr);
        let hdr_bytes = o.bytes(hdr_addr..hdr_addr.checked_add(hdr.p_memsz)?)?;
        let eh_frame = crate::unwind::eh_frame_address(hdr_addr, hdr_bytes)?;
        let (seg, _) = o.segments().find(|(r, _)| r.contains(&eh_frame))?;
        let eh_bytes = o.bytes(eh_frame..seg.end)?;
        Some(f(&Tables {
            text,
            eh_frame_hdr: (hdr_addr, hdr_bytes),
            eh_frame: (eh_frame, eh_bytes),
        }))
    })
}

/// A loaded object, as values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadedObject {
    /// The load bias (`dlpi_addr`).
    pub(crate) base: u64,
    /// The name the loader knows it by (empty for the main program).
    pub(crate) name: Vec<u8>,
    /// The main program (never unloaded).
    pub(crate) main: bool,
    /// The lowest address of its loaded segments.
    pub(crate) start: u64,
    /// The end of its highest loaded segment.
    pub(crate) end: u64,
}

impl LoadedObject {
    fn of(o: &Object<'_>) -> LoadedObject {
        let (start, end) = o.segments().fold((u64::MAX, 0), |(lo, hi), (r, _)| {
            (lo.min(r.start), hi.max(r.end))
        });
        LoadedObject {
            base: o.base,
            name: o.name.to_bytes().to_vec(),
            main: o.main,
            start: start.min(end),
            end,
        }
    }
}

/// The object with a loaded segment containing `addr` now.
pub(crate) fn object_at(addr: u64) -> Option<LoadedObject> {
    with_object_at(addr, LoadedObject::of)
}

/// Every loaded object, and how many objects had been unloaded when the
/// list was taken (`None` if the loader does not say).
pub(crate) fn loaded_objects() -> (Option<u64>, Vec<LoadedObject>) {
    let mut all = Vec::new();
    let mut unloads = None;
    // `pick` sees every object, under one hold of the loader's lock, and
    // never picks one.
    with_object(
        |o| {
            unloads = o.unloads;
            all.push(LoadedObject::of(o));
            false
        },
        |_| (),
    );
    (unloads, all)
}

/// `dladdr1`'s request for the object's link map (glibc's `<dlfcn.h>`).
#[cfg(target_env = "gnu")]
const RTLD_DL_LINKMAP: c_int = 2;

/// The name of the exported (dynamic) symbol whose code contains `addr`,
/// as the loader's `dladdr` finds it; `None` if there is none.
///
/// `dladdr` returns pointers into the object's string table, valid only
/// while the object stays loaded. So (glibc) the object at `addr` is first
/// pinned with `dlopen(RTLD_NOLOAD)` and checked to be the object `dladdr`
/// answers from, and released after the name is copied. (If its owner closed
/// it in the meantime, that release unloads it, in this thread.)
#[cfg(target_env = "gnu")]
pub(crate) fn dynamic_symbol(addr: u64) -> Option<Vec<u8>> {
    let object = object_at(addr)?;
    if object.main {
        // The main program is never unloaded: nothing to pin.
        return dladdr_name(addr, None);
    }
    let name = std::ffi::CString::new(object.name).ok()?;
    // SAFETY: `name` is a NUL-terminated string. RTLD_NOLOAD loads nothing
    // and runs no constructor: it only takes a reference to an object that
    // is already loaded, or fails.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    if handle.is_null() {
        // SAFETY: clears this thread's error message, which our failed
        // call set, so that the host's next `dlerror` is its own.
        unsafe { libc::dlerror() };
        return None;
    }
    let mut map: *mut c_void = std::ptr::null_mut();
    // SAFETY: `handle` is a valid handle; RTLD_DI_LINKMAP writes one
    // pointer (the object's `struct link_map *`) into `map`.
    let ok = unsafe { libc::dlinfo(handle, libc::RTLD_DI_LINKMAP, (&raw mut map).cast()) } == 0;
    let found = if ok && !map.is_null() {
        dladdr_name(addr, Some(map))
    } else {
        None
    };
    // SAFETY: releases the reference taken above; `handle` is not used
    // afterwards.
    unsafe { libc::dlclose(handle) };
    found
}

/// `dladdr(addr)`'s symbol name, copied; with `pinned`, only if the object
/// containing `addr` is the one whose link map that is.
#[cfg(target_env = "gnu")]
fn dladdr_name(addr: u64, pinned: Option<*mut c_void>) -> Option<Vec<u8>> {
    // SAFETY: `Dl_info` is plain pointers: all-zero is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let mut map: *mut c_void = std::ptr::null_mut();
    // SAFETY: `addr` is only compared with object ranges, never read;
    // `info` and `map` are valid for writes.
    let ok = unsafe {
        libc::dladdr1(
            addr as *const c_void,
            &mut info,
            &raw mut map,
            RTLD_DL_LINKMAP,
        )
    } != 0;
    if !ok || info.dli_sname.is_null() || pinned.is_some_and(|p| p != map) {
        return None;
    }
    // SAFETY: `dli_sname` points into the string table of the object
    // containing `addr`, which stays loaded while we copy: either the main
    // program (never unloaded) or the object pinned by our caller, which is
    // this very object (same link map).
    Some(
        unsafe { CStr::from_ptr(info.dli_sname) }
            .to_bytes()
            .to_vec(),
    )
}

/// The name of the exported (dynamic) symbol whose code contains `addr`,
/// as the loader's `dladdr` finds it; `None` if there is none.
#[cfg(not(target_env = "gnu"))]
pub(crate) fn dynamic_symbol(addr: u64) -> Option<Vec<u8>> {
    // SAFETY: `Dl_info` is plain pointers: all-zero is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `addr` is only compared with object ranges, never read;
    // `info` is valid for writes.
    if unsafe { libc::dladdr(addr as *const c_void, &mut info) } == 0 || info.dli_sname.is_null() {
        return None;
    }
    // SAFETY: `dli_sname` points into a loaded object's string table; musl
    // never unmaps a loaded object (its dlclose does nothing).
    Some(
        unsafe { CStr::from_ptr(info.dli_sname) }
            .to_bytes()
            .to_vec(),
    )
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
            let mut addr: *mut c_void = std::ptr::null_mut();
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

/// Test support: loading a shared library built by a test and calling into
/// it.
#[cfg(all(test, target_env = "gnu"))]
pub(crate) mod testlib {
    use std::ffi::{CString, c_int, c_void};
    use std::path::Path;

    /// A library function that calls `f`.
    type LibFn = unsafe extern "C" fn(extern "C" fn()) -> c_int;

    /// Loads the library at `path` (never unloaded) and calls its function
    /// `symbol`, of C type `int (void (*)(void))`, with `f`.
    pub(crate) fn call(path: &Path, symbol: &str, f: extern "C" fn()) -> c_int {
        let path = CString::new(path.to_str().unwrap()).unwrap();
        let symbol = CString::new(symbol).unwrap();
        // SAFETY: valid C strings; the test's library has the type given
        // above and no constructors but the compiler's; it stays loaded.
        unsafe {
            let h = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            assert!(!h.is_null(), "dlopen {path:?}");
            let p = libc::dlsym(h, symbol.as_ptr());
            assert!(!p.is_null(), "dlsym {symbol:?}");
            std::mem::transmute::<*mut c_void, LibFn>(p)(f)
        }
    }
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
        let sizes = with_tables_at(here, |t| {
            assert!(t.text <= here);
            (t.eh_frame_hdr.1.len(), t.eh_frame.1.len())
        })
        .expect("an object contains this code")
        .expect("it has unwind tables");
        assert!(sizes.0 > 0 && sizes.1 > 0);
        let heap = Box::new(7u64);
        assert!(with_tables_at(&raw const *heap as u64, |_| ()).is_none());
    }

    #[cfg(target_env = "gnu")] // a static musl program has no shared objects
    #[test]
    fn objects_and_unloads() {
        let here = objects_and_unloads as fn() as usize as u64;
        let o = object_at(here).expect("this code is in a loaded object");
        assert!(o.main, "the test binary is the main program");
        let (subs, all) = loaded_objects();
        assert!(subs.is_some(), "glibc and musl report unloads");
        assert_eq!(all[0], o);
        assert!(all.len() > 1, "and at least libc: {all:?}");
        assert!(object_at(0).is_none());
        // `unloads` is the count the loader passes with every object.
        assert!(unloads() >= subs);
    }

    #[cfg(target_env = "gnu")] // a static musl program has no shared objects
    #[test]
    fn dynamic_symbols_by_address() {
        // `dladdr` knows exported symbols only: libc's, here.
        let f = libc::getpid as *const () as usize as u64;
        let name = dynamic_symbol(f + 1).expect("getpid is exported");
        assert!(name == b"getpid" || name == b"__getpid", "{name:?}");
        assert_eq!(dynamic_symbol(0), None);
    }

    #[test]
    fn a_panic_inside_the_loader_callback_is_resumed_outside() {
        let here = a_panic_inside_the_loader_callback_is_resumed_outside as fn() as usize as u64;
        let r = std::panic::catch_unwind(|| with_object_at(here, |_| panic!("inside")));
        assert!(r.is_err());
        // The loader's lock was released: it can be taken again.
        assert!(object_at(here).is_some());
    }
}
