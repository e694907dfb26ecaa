//! A fast stack walker for stack counters (Linux on x86-64, with glibc or
//! musl), and which frames the `backtrace` crate can name.
//!
//! The system unwinder (libgcc's `_Unwind_Backtrace`) looks up each frame's
//! unwind table entry and interprets its call-frame program every time:
//! about 2,000 instructions a frame, most of a stack counter's cost. This
//! walker reads the same tables (`.eh_frame`, through `.eh_frame_hdr`,
//! parsed with `gimli`) once per code address and caches, per thread, the
//! resulting rule (where the caller's frame, return address and frame
//! pointer are), so a stack seen before costs a hash lookup and one or two
//! stack reads per frame, plus one question to the dynamic loader per walk.
//!
//! Loaded code changes: a library closed with `dlclose` leaves its address
//! range to other code, or to nothing. So a rule is computed from an
//! object's tables only while the loader cannot unload that object (inside
//! a `dl_iterate_phdr` callback, see `sys::unwind`), never through a saved
//! reference; and each walk is given the loader's count of unloaded objects
//! ([`unloads`]): when it changed, the thread's cached rules are dropped,
//! since a rule for an address in an unloaded object could be applied to
//! the code there now. Loading alone invalidates nothing: a cached rule
//! belongs to an object still loaded, and "no object here" is never cached.
//!
//! The walk succeeds only when it has as many frames as asked or reaches
//! the outermost frame: one whose return address rule is "undefined"
//! (glibc's `_start` and thread start mark theirs so) or whose return
//! address is 0. Anything else it cannot handle makes it give up (`None`)
//! rather than cut the stack short, and the caller uses the system unwinder
//! instead: an address in no loaded object (generated code), code without
//! unwind tables, a rule other than the ones compilers emit for ordinary
//! code (frame address = stack or frame pointer + offset; return address
//! and frame pointer saved at an offset, or the frame pointer unchanged), a
//! signal frame, a stack read outside the current thread's stack or below
//! the walker's own frame, a frame that does not move up the stack.
//!
//! On other platforms [`walk`] always gives up, [`unloads`] is `None`, and
//! [`backtrace_knows`] every address.

use crate::sys::{with_fast_unwind as fast, without_fast_unwind as slow};

fast! {
mod imp {
    use super::Object;
    use crate::sys::crash::Registers;
    use crate::sys::unwind as sys;
    use gimli::{
        BaseAddresses, CfaRule, EhFrame, EhFrameHdr, LittleEndian, Pointer, RegisterRule,
        UnwindContext, UnwindSection, X86_64,
    };
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::hash::{BuildHasherDefault, Hasher};

    /// How to go from a frame to its caller's.
    #[derive(Debug, Clone, Copy)]
    struct Rule {
        /// The frame address is the frame pointer (else the stack pointer)
        /// plus `cfa_off`.
        cfa_from_bp: bool,
        cfa_off: i64,
        /// The return address is saved at frame address + `ra_off`.
        ra_off: i64,
        /// The caller's frame pointer is saved at frame address + this, or
        /// unchanged when `None`.
        bp_off: Option<i64>,
        /// First address of the function.
        func_start: u64,
    }

    /// What the unwind tables say of a code address.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// An ordinary frame: how to reach the caller's.
        Frame(Rule),
        /// The outermost frame: the return address is undefined.
        End,
        /// Something this walker does not handle: no unwind tables or no
        /// entry for the address, an unusual rule, a signal frame.
        Cannot,
    }

    /// Most rules cached per thread before the cache is emptied.
    const MAX_RULES: usize = 4096;

    /// Code addresses are already well spread: a multiply is hash enough.
    #[derive(Default)]
    struct AddrHasher(u64);

    impl Hasher for AddrHasher {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            }
        }
        fn write_u64(&mut self, v: u64) {
            self.0 = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    /// A thread's rules, valid while the loader's unload count is `unloads`.
    #[derive(Default)]
    struct Rules {
        unloads: u64,
        steps: HashMap<u64, Step, BuildHasherDefault<AddrHasher>>,
    }

    impl Rules {
        /// The step for the code at `ip`; `None` if no loaded object has a
        /// segment there (not cached: an object may be loaded there later).
        fn step(&mut self, ip: u64) -> Option<Step> {
            if let Some(s) = self.steps.get(&ip) {
                return Some(*s);
            }
            let s = compute(ip)?;
            if self.steps.len() >= MAX_RULES {
                self.steps.clear();
            }
            self.steps.insert(ip, s);
            Some(s)
        }
    }

    thread_local! {
        static RULES: RefCell<Rules> = RefCell::new(Rules::default());
    }

    /// The address of `.eh_frame`, read from `.eh_frame_hdr`.
    pub(crate) fn eh_frame_address(hdr_addr: u64, hdr: &[u8]) -> Option<u64> {
        let bases = BaseAddresses::default().set_eh_frame_hdr(hdr_addr);
        let parsed = EhFrameHdr::new(hdr, LittleEndian).parse(&bases, 8).ok()?;
        match parsed.eh_frame_ptr() {
            Pointer::Direct(a) => Some(a),
            Pointer::Indirect(_) => None,
        }
    }

    /// The step for the code at `ip`, read from the tables of the object
    /// that has code there, while the loader cannot unload it.
    fn compute(ip: u64) -> Option<Step> {
        let step = sys::with_tables_at(ip, |t| from_tables(t, ip))?;
        Some(step.flatten().unwrap_or(Step::Cannot))
    }

    /// `None`: the tables have nothing usable for `ip`.
    fn from_tables(t: &sys::Tables<'_>, ip: u64) -> Option<Step> {
        let bases = BaseAddresses::default()
            .set_eh_frame_hdr(t.eh_frame_hdr.0)
            .set_eh_frame(t.eh_frame.0)
            .set_text(t.text);
        let hdr = EhFrameHdr::new(t.eh_frame_hdr.1, LittleEndian)
            .parse(&bases, 8)
            .ok()?;
        let table = hdr.table()?;
        let eh = EhFrame::new(t.eh_frame.1, LittleEndian);
        let fde = table
            .fde_for_address(&eh, &bases, ip, EhFrame::cie_from_offset)
            .ok()?;
        if fde.is_signal_trampoline() || fde.cie().return_address_register() != X86_64::RA {
            return None;
        }
        let mut ctx = Box::new(UnwindContext::new());
        let row = fde
            .unwind_info_for_address(&eh, &bases, &mut ctx, ip)
            .ok()?;
        let ra_off = match row.register(X86_64::RA) {
            Some(RegisterRule::Offset(o)) => o,
            // No caller, whatever the frame address.
            Some(RegisterRule::Undefined) => return Some(Step::End),
            _ => return None,
        };
        let (cfa_from_bp, cfa_off) = match *row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RSP => {
                (false, offset)
            }
            CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RBP => {
                (true, offset)
            }
            _ => return None,
        };
        // RBP is callee-saved: its default rule is "same value".
        let bp_off = match row.register(X86_64::RBP) {
            None | Some(RegisterRule::SameValue) => None,
            Some(RegisterRule::Offset(o)) => Some(o),
            _ => return None,
        };
        Some(Step::Frame(Rule {
            cfa_from_bp,
            cfa_off,
            ra_off,
            bp_off,
            func_start: fde.initial_address(),
        }))
    }

    pub(crate) fn unloads() -> Option<u64> {
        sys::unloads()
    }

    #[inline(never)]
    pub(crate) fn walk(marker: u64, unloads: u64, out: &mut [usize]) -> Option<usize> {
        if out.is_empty() {
            return Some(0);
        }
        // This function's own registers: it must not be inlined, and they
        // must be read here, not in a closure.
        let (ip, sp, bp) = sys::registers();
        RULES.with(|rules| {
            // Taken already: a walk inside a walk (a signal handler); let
            // the system unwinder do it.
            let mut rules = rules.try_borrow_mut().ok()?;
            if rules.unloads != unloads {
                rules.steps.clear();
                rules.unloads = unloads;
            }
            walk_from(&mut rules, marker, (ip, sp, bp), out)
        })
    }

    fn walk_from(
        rules: &mut Rules,
        marker: u64,
        (ip, sp, bp): (u64, u64, u64),
        out: &mut [usize],
    ) -> Option<usize> {
        let floor = sp;
        let (mut sp, mut bp) = (sp, bp);
        // The first frame is `walk` itself, at an exact address; callers
        // are looked up just before their return address.
        let mut lookup = ip;
        let mut found = false;
        let mut n = 0;
        for _ in 0..out.len() + 64 {
            let rule = match rules.step(lookup)? {
                Step::Frame(rule) => rule,
                // The true end of the stack: complete if the marker was met.
                Step::End => return found.then_some(n),
                Step::Cannot => return None,
            };
            let cfa = if rule.cfa_from_bp { bp } else { sp }.checked_add_signed(rule.cfa_off)?;
            let ra = sys::read_stack(cfa.checked_add_signed(rule.ra_off)?, floor)?;
            if let Some(off) = rule.bp_off {
                bp = sys::read_stack(cfa.checked_add_signed(off)?, floor)?;
            }
            if cfa <= sp {
                return None; // frames must move up the stack
            }
            sp = cfa;
            found |= rule.func_start == marker;
            if ra == 0 {
                // The end of the stack, as libgcc's unwinder takes it.
                return found.then_some(n);
            }
            if found {
                out[n] = ra as usize;
                n += 1;
                if n == out.len() {
                    return Some(n);
                }
            }
            lookup = ra - 1;
        }
        None
    }

    /// Walks a copy of a crashed thread's stack (see [`walk_copy`](super::walk_copy)).
    pub(crate) fn walk_copy(
        regs: Registers,
        stack_at: u64,
        stack: &[u8],
        here: &dyn Fn(u64) -> Option<u64>,
        out: &mut [(usize, usize)],
    ) -> usize {
        // A word of the copy, by its address in the crashed process.
        let read = |addr: u64| -> Option<u64> {
            let off = usize::try_from(addr.checked_sub(stack_at)?).ok()?;
            let word = stack.get(off..off.checked_add(8)?)?;
            Some(u64::from_le_bytes(word.try_into().ok()?))
        };
        let (mut sp, mut bp) = (regs.sp, regs.bp);
        let Some(mut pc) = here(regs.pc) else {
            return 0;
        };
        let mut n = 0;
        while n < out.len() {
            // The innermost frame is at its exact address; callers are
            // looked up just before their return address.
            let innermost = n == 0;
            let lookup = if innermost { pc } else { pc - 1 };
            let rule = match compute(lookup) {
                Some(Step::Frame(rule)) => Some(rule),
                Some(Step::End) => return n,
                _ => None,
            };
            let name_at = if innermost { pc + 1 } else { pc };
            out[n] = (name_at as usize, rule.map_or(0, |r| r.func_start as usize));
            n += 1;
            let Some(rule) = rule else { return n };
            let step = || -> Option<(u64, u64, u64)> {
                let cfa = if rule.cfa_from_bp { bp } else { sp }.checked_add_signed(rule.cfa_off)?;
                let ra = read(cfa.checked_add_signed(rule.ra_off)?)?;
                let bp = match rule.bp_off {
                    Some(off) => read(cfa.checked_add_signed(off)?)?,
                    None => bp,
                };
                Some((cfa, ra, bp))
            };
            let Some((cfa, ra, next_bp)) = step() else {
                return n;
            };
            if cfa <= sp || ra == 0 {
                return n;
            }
            (sp, bp) = (cfa, next_bp);
            match here(ra) {
                Some(ra) if ra > 0 => pc = ra,
                _ => return n,
            }
        }
        n
    }

    /// Every loaded object: where its segments lie, its name, whether it
    /// is the main program.
    pub(crate) fn objects() -> Vec<Object> {
        sys::loaded_objects()
            .1
            .into_iter()
            .map(|o| Object {
                start: o.start,
                end: o.end,
                name: o.name,
                main: o.main,
            })
            .collect()
    }

    /// Load addresses and names of the objects `backtrace` surely lists.
    fn trusted() -> &'static [(u64, Vec<u8>)] {
        static TRUSTED: std::sync::OnceLock<Vec<(u64, Vec<u8>)>> = std::sync::OnceLock::new();
        TRUSTED.get_or_init(|| {
            let (unloads, all) = sys::loaded_objects();
            let own = sys::object_at(trusted as fn() -> &'static [(u64, Vec<u8>)] as usize as u64);
            all.into_iter()
                .filter(|o| unloads == Some(0) || o.main || Some(o) == own.as_ref())
                .map(|o| (o.base, o.name))
                .collect()
        })
    }

    pub(crate) fn backtrace_knows(ret: usize) -> bool {
        let Some(o) = sys::object_at((ret as u64).wrapping_sub(1)) else {
            return false;
        };
        o.main || trusted().iter().any(|(base, name)| *base == o.base && *name == o.name)
    }

    pub(crate) fn loader_symbol(ret: usize) -> Option<String> {
        let bytes = sys::dynamic_symbol((ret as u64).wrapping_sub(1))?;
        Some(format!("{:#}", backtrace::SymbolName::new(&bytes)))
    }

    /// Makes every rule cached by this thread say "cannot".
    #[cfg(test)]
    pub(crate) fn spoil_cached_rules() {
        RULES.with(|r| {
            for s in r.borrow_mut().steps.values_mut() {
                *s = Step::Cannot;
            }
        });
    }
}

pub(crate) use imp::eh_frame_address;
use imp as plat;
}

slow! {
mod plat {
    use super::Object;
    use crate::sys::crash::Registers;

    pub(crate) fn walk_copy(
        _regs: Registers,
        _stack_at: u64,
        _stack: &[u8],
        _here: &dyn Fn(u64) -> Option<u64>,
        _out: &mut [(usize, usize)],
    ) -> usize {
        0
    }
    pub(crate) fn objects() -> Vec<Object> {
        Vec::new()
    }
    pub(crate) fn unloads() -> Option<u64> {
        None
    }
    pub(crate) fn walk(_marker: u64, _unloads: u64, _out: &mut [usize]) -> Option<usize> {
        None
    }
    pub(crate) fn backtrace_knows(_ret: usize) -> bool {
        true
    }
    pub(crate) fn loader_symbol(_ret: usize) -> Option<String> {
        None
    }
}
}

/// How many objects the dynamic loader has unloaded so far in this
/// process; `None` where it cannot be known. Costs one call into the
/// loader (about 10 ns; it takes the loader's lock).
pub(crate) fn unloads() -> Option<u64> {
    plat::unloads()
}

/// Writes into `out` the return addresses of the frames below the frame of
/// the function that starts at `marker` (the same addresses the system
/// unwinder reports, in the same order, less the 0 that libgcc's reports
/// past the outermost frame), stopping when `out` is full or at the
/// outermost frame; returns how many. `None` if the marker is not on
/// the stack or this walker cannot walk the stack that far (the caller
/// should then use the system unwinder). `unloads` is what [`unloads`]
/// returned just before: without it the walker cannot know whether its
/// cached rules still hold, and gives up.
#[inline(never)]
pub(crate) fn walk(marker: usize, unloads: Option<u64>, out: &mut [usize]) -> Option<usize> {
    plat::walk(marker as u64, unloads?, out)
}

/// Whether the `backtrace` crate names the code at return address `ret`
/// correctly.
///
/// It lists the loaded objects once, the first time it symbolizes, and
/// never again (rust-lang/backtrace-rs#238): it cannot name code in an
/// object loaded later, and it names an address in an object unloaded
/// since from that object's file, though other code may be there now. So
/// it is trusted with an address only when the object there now was surely
/// in its list and has stayed loaded: the main program; the object holding
/// this crate (and so `backtrace`'s list); and, if no object had been
/// unloaded when this was first asked, every object loaded then
/// (identified by load address and name: an object of the same name loaded
/// again at the same address is taken to be the same). Never where no
/// object has code. Everywhere on platforms without the loader queries.
pub(crate) fn backtrace_knows(ret: usize) -> bool {
    plat::backtrace_knows(ret)
}

/// The loader's name (demangled) for the exported function whose code
/// holds return address `ret`: how frames that [`backtrace_knows`] not are
/// named. `None` where there is none (and on platforms without the loader
/// queries).
pub(crate) fn loader_symbol(ret: usize) -> Option<String> {
    plat::loader_symbol(ret)
}

fast! {
/// Whether a crash's stack can be kept and walked later here: where the
/// fast walker runs (it reads the unwind tables that walk needs).
pub(crate) const WALKS_COPIES: bool = true;
}

slow! {
/// Whether a crash's stack can be kept and walked later here: not without
/// the fast walker.
pub(crate) const WALKS_COPIES: bool = false;
}

/// A loaded object, as [`objects`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Object {
    /// The lowest address of its loaded segments.
    pub(crate) start: u64,
    /// The end of its highest loaded segment.
    pub(crate) end: u64,
    /// The loader's name for it (empty for the main program).
    pub(crate) name: Vec<u8>,
    /// The main program.
    pub(crate) main: bool,
}

/// Every loaded object now (none where the loader cannot be asked).
pub(crate) fn objects() -> Vec<Object> {
    plat::objects()
}

/// Walks a copy of a crashed thread's stack, taken by the crash handler
/// (`stack` holds the crashed process's memory from `stack_at` up), with
/// this process's unwind tables: `here` turns a code address of the
/// crashed process into the same code's address in this one (`None` if
/// this process does not have that code). Writes into `out`, innermost
/// first, each frame's address to name it by (a return address; for the
/// innermost frame, the faulting instruction plus one) and its function's
/// start (0 if unknown), both in this process; returns how many. Stops at
/// the outermost frame, at the end of the copy, at code it cannot map or
/// walk, or when `out` is full. Always 0 where [`WALKS_COPIES`] is false.
pub(crate) fn walk_copy(
    regs: crate::sys::crash::Registers,
    stack_at: u64,
    stack: &[u8],
    here: &dyn Fn(u64) -> Option<u64>,
    out: &mut [(usize, usize)],
) -> usize {
    plat::walk_copy(regs, stack_at, stack, here, out)
}

fast! {
#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_env = "gnu")]
    use std::cell::Cell;

    #[inline(never)]
    fn marker_fn(u: Option<u64>, out: &mut [usize]) -> Option<usize> {
        let n = walk(
            marker_fn as fn(Option<u64>, &mut [usize]) -> Option<usize> as usize,
            u,
            out,
        );
        std::hint::black_box(n)
    }

    #[inline(never)]
    fn level_u(d: u32, u: Option<u64>, out: &mut [usize]) -> Option<usize> {
        if d == 0 {
            marker_fn(u, out)
        } else {
            std::hint::black_box(level_u(d - 1, u, out))
        }
    }

    fn level(d: u32, out: &mut [usize]) -> Option<usize> {
        level_u(d, unloads(), out)
    }

    /// The system unwinder's return addresses below `marker_fn`.
    #[inline(never)]
    fn system_marker(out: &mut Vec<usize>, want: usize) {
        let marker = system_marker as fn(&mut Vec<usize>, usize) as usize;
        let mut found = false;
        backtrace::trace(|f| {
            if found {
                out.push(f.ip() as usize);
                return out.len() < want;
            }
            found = crate::sys::frames::function_start(f) == marker;
            true
        });
    }

    #[inline(never)]
    fn system_level(d: u32, out: &mut Vec<usize>, want: usize) {
        if d == 0 {
            system_marker(out, want)
        } else {
            system_level(d - 1, out, want);
            std::hint::black_box(());
        }
    }

    #[test]
    fn walks_as_deep_as_asked_and_repeats() {
        let mut a = [0usize; 8];
        let n = level(12, &mut a).expect("the fast walker handles ordinary code");
        assert_eq!(n, 8);
        let mut b = [0usize; 8];
        assert_eq!(level(12, &mut b), Some(8));
        assert_eq!(a, b, "the same stack gives the same addresses");
        let mut c = [0usize; 8];
        level(3, &mut c).unwrap();
        assert_ne!(a, c, "another stack gives other addresses");
    }

    #[test]
    fn agrees_with_the_system_unwinder_on_the_shape() {
        // Same depth below the marker, so the same number of frames and the
        // same functions (symbolized) as the system unwinder's.
        let mut fast = [0usize; 6];
        let n = level(4, &mut fast).unwrap();
        let mut sys = Vec::new();
        system_level(4, &mut sys, 6);
        assert_eq!(n, sys.len());
        let name = |ip: usize| {
            let mut s = String::new();
            backtrace::resolve(ip as *mut std::ffi::c_void, |sym| {
                if s.is_empty() {
                    s = sym.name().map(|n| format!("{n:#}")).unwrap_or_default();
                }
            });
            s
        };
        // The first few frames are the `level` recursion in both.
        for i in 0..4 {
            assert!(name(fast[i]).ends_with("level_u"), "{}", name(fast[i]));
            assert!(name(sys[i]).ends_with("system_level"), "{}", name(sys[i]));
        }
    }

    /// Both walkers from the same frame: the fast walker's return addresses
    /// and up to `cap` of the system unwinder's.
    #[inline(never)]
    fn both(fast: &mut [usize], system: &mut Vec<usize>, cap: usize) -> usize {
        let marker = both as fn(&mut [usize], &mut Vec<usize>, usize) -> usize as usize;
        let n = walk(marker, unloads(), fast).expect("fast walk");
        let mut found = false;
        backtrace::trace(|f| {
            if f.ip().is_null() {
                // libgcc's last frame, past the outermost: not a frame.
                return false;
            }
            if found {
                system.push(f.ip() as usize);
                return system.len() < cap;
            }
            found = crate::sys::frames::function_start(f) == marker;
            true
        });
        std::hint::black_box(n)
    }

    #[inline(never)]
    fn both_at(d: u32, fast: &mut [usize], system: &mut Vec<usize>, cap: usize) -> usize {
        if d == 0 {
            both(fast, system, cap)
        } else {
            std::hint::black_box(both_at(d - 1, fast, system, cap))
        }
    }

    #[test]
    fn same_addresses_as_the_system_unwinder() {
        for depth in [0, 1, 5, 20] {
            let mut fast = [0usize; 16];
            let mut system = Vec::new();
            let n = both_at(depth, &mut fast, &mut system, 16);
            assert!(n > 0);
            assert_eq!(&fast[..n], &system[..], "depth {depth}");
        }
        // From another thread (another stack) too.
        std::thread::spawn(|| {
            let mut fast = [0usize; 16];
            let mut system = Vec::new();
            let n = both_at(3, &mut fast, &mut system, 16);
            assert_eq!(&fast[..n], &system[..]);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_whole_thread_stack_ends_at_the_outermost_frame() {
        // A new thread's stack is short: asked for more frames than it has,
        // the walker stops where the system unwinder stops (the thread
        // start's return address is undefined), with the same addresses.
        std::thread::spawn(|| {
            let mut fast = [0usize; 200];
            let mut system = Vec::new();
            let n = both_at(2, &mut fast, &mut system, 1000);
            assert!(n < fast.len(), "{n}");
            assert_eq!(&fast[..n], &system[..]);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_marker_not_on_the_stack_finds_nothing() {
        let mut out = [0usize; 4];
        assert_eq!(walk(1, unloads(), &mut out), None);
    }

    #[test]
    fn no_unload_count_no_walk() {
        let mut out = [0usize; 4];
        assert_eq!(level_u(2, None, &mut out), None);
        assert_eq!(level_u(2, unloads(), &mut out), Some(4));
    }

    #[test]
    fn cached_rules_are_dropped_when_the_unload_count_changes() {
        let u = unloads().unwrap();
        let mut out = [0usize; 4];
        assert_eq!(level_u(2, Some(u), &mut out), Some(4));
        // Every cached rule now says "cannot": a walk that uses them fails.
        imp::spoil_cached_rules();
        assert_eq!(level_u(2, Some(u), &mut out), None, "the cache is used");
        // Another count: the cache is dropped and the rules read again.
        assert_eq!(level_u(2, Some(u + 1), &mut out), Some(4));
        assert_eq!(level_u(2, Some(u), &mut out), Some(4));
    }

    /// Builds `lib_call(f)` (calls `f`, then returns) into a shared library
    /// with `flags`. Fails, with the line that installs it, without a C
    /// compiler.
    #[cfg(target_env = "gnu")]
    fn c_library(dir: &std::path::Path, name: &str, flags: &[&str]) -> std::path::PathBuf {
        let src = dir.join(format!("{name}.c"));
        std::fs::write(
            &src,
            "int lib_call(void (*f)(void)) { volatile int x = 1; f(); return x; }\n",
        )
        .unwrap();
        let so = dir.join(format!("{name}.so"));
        let out = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O1"])
            .args(flags)
            .arg("-o")
            .arg(&so)
            .arg(&src)
            .output()
            .unwrap_or_else(|e| {
                panic!("this test needs a C compiler (`cc`: {e}): apt-get install gcc libc6-dev")
            });
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        so
    }

    #[cfg(target_env = "gnu")]
    thread_local! {
        static FROM_C: Cell<(Option<usize>, [usize; 8])> = const { Cell::new((None, [0; 8])) };
    }

    #[cfg(target_env = "gnu")]
    extern "C" fn walk_from_c() {
        let mut out = [0usize; 8];
        let n = marker_fn(unloads(), &mut out);
        FROM_C.with(|c| c.set((n, out)));
    }

    // (glibc: a static musl program cannot load a library.)
    #[cfg(target_env = "gnu")]
    #[test]
    fn a_frame_without_unwind_tables_gives_up_instead_of_stopping() {
        let dir = tempfile::tempdir().unwrap();
        let without = c_library(
            dir.path(),
            "without_tables",
            &["-fno-asynchronous-unwind-tables", "-fno-unwind-tables"],
        );
        let with = c_library(dir.path(), "with_tables", &["-funwind-tables"]);
        // Walk from a callback of C code that has no unwind tables: the
        // walker must not return the frames it got so far (the callback's
        // alone) as if the stack ended there.
        crate::sys::unwind::testlib::call(&without, "lib_call", walk_from_c);
        let (n, _) = FROM_C.with(Cell::get);
        assert_eq!(n, None);
        // The same code with unwind tables: walked through.
        crate::sys::unwind::testlib::call(&with, "lib_call", walk_from_c);
        let (n, out) = FROM_C.with(Cell::get);
        assert_eq!(n, Some(8));
        let lib = crate::sys::unwind::object_at(out[1] as u64 - 1).unwrap();
        assert!(lib.name.ends_with(b"with_tables.so"), "{lib:?}");
        assert_eq!(loader_symbol(out[1]).as_deref(), Some("lib_call"));
        assert!(backtrace_knows(out[0]), "the callback is in the test binary");
    }
}
}
