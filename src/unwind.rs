//! A fast stack walker for stack counters (Linux, x86-64).
//!
//! The system unwinder (libgcc's `_Unwind_Backtrace`) looks up each frame's
//! unwind table entry and interprets its call-frame program every time:
//! about 2,000 instructions a frame, most of a stack counter's cost. This
//! walker reads the same tables (`.eh_frame`, through `.eh_frame_hdr`,
//! parsed with `gimli`) once per code address and caches the resulting rule
//! — where the caller's frame, return address and frame pointer are — so a
//! stack seen before costs a table lookup and two stack reads per frame.
//!
//! It handles the rules compilers emit for ordinary code (frame address =
//! stack or frame pointer + offset; return address and frame pointer saved
//! at an offset). Anything else (a DWARF expression, code without unwind
//! tables, a library loaded after the first walk) makes it give up, and the
//! caller uses the system unwinder instead. Every stack read is checked to
//! lie in the current thread's stack, above the walker's own frame.
//!
//! On other platforms [`walk`] always gives up.

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod imp {
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

    thread_local! {
        static RULES: RefCell<HashMap<u64, Option<Rule>, BuildHasherDefault<AddrHasher>>> =
            RefCell::new(HashMap::default());
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

    fn compute(ip: u64) -> Option<Rule> {
        let m = sys::modules().iter().find(|m| m.text.contains(&ip))?;
        let bases = BaseAddresses::default()
            .set_eh_frame_hdr(m.eh_frame_hdr.0)
            .set_eh_frame(m.eh_frame.0)
            .set_text(m.text.start);
        let hdr = EhFrameHdr::new(m.eh_frame_hdr.1, LittleEndian)
            .parse(&bases, 8)
            .ok()?;
        let table = hdr.table()?;
        let eh = EhFrame::new(m.eh_frame.1, LittleEndian);
        let fde = table
            .fde_for_address(&eh, &bases, ip, EhFrame::cie_from_offset)
            .ok()?;
        let mut ctx = Box::new(UnwindContext::new());
        let row = fde
            .unwind_info_for_address(&eh, &bases, &mut ctx, ip)
            .ok()?;
        let (cfa_from_bp, cfa_off) = match *row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RSP => {
                (false, offset)
            }
            CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RBP => {
                (true, offset)
            }
            _ => return None,
        };
        let ra_off = match row.register(X86_64::RA) {
            Some(RegisterRule::Offset(o)) => o,
            _ => return None, // undefined: the outermost frame
        };
        // RBP is callee-saved: its default rule is "same value".
        let bp_off = match row.register(X86_64::RBP) {
            None | Some(RegisterRule::SameValue) => None,
            Some(RegisterRule::Offset(o)) => Some(o),
            _ => return None,
        };
        Some(Rule {
            cfa_from_bp,
            cfa_off,
            ra_off,
            bp_off,
            func_start: fde.initial_address(),
        })
    }

    fn rule_for(ip: u64) -> Option<Rule> {
        RULES.with(|rules| {
            if let Some(r) = rules.borrow().get(&ip) {
                return *r;
            }
            let r = compute(ip);
            let mut rules = rules.borrow_mut();
            if rules.len() >= MAX_RULES {
                rules.clear();
            }
            rules.insert(ip, r);
            r
        })
    }

    #[inline(never)]
    pub(crate) fn walk(marker: u64, out: &mut [usize]) -> Option<usize> {
        if out.is_empty() {
            return Some(0);
        }
        let (ip, sp, bp) = sys::registers();
        let floor = sp;
        let (mut sp, mut bp) = (sp, bp);
        // The first frame is this function itself, at an exact address;
        // callers are looked up just before their return address.
        let mut lookup = ip;
        let mut found = false;
        let mut n = 0;
        for _ in 0..out.len() + 64 {
            let Some(rule) = rule_for(lookup) else {
                // No unwind rule: the stack ends here (after the marker),
                // or this walker cannot handle it (before).
                return found.then_some(n);
            };
            let cfa = if rule.cfa_from_bp { bp } else { sp }.checked_add_signed(rule.cfa_off)?;
            let Some(ra) = sys::read_stack(cfa.checked_add_signed(rule.ra_off)?, floor) else {
                return found.then_some(n);
            };
            if let Some(off) = rule.bp_off {
                bp = sys::read_stack(cfa.checked_add_signed(off)?, floor)?;
            }
            if cfa <= sp {
                return None; // frames must move up the stack
            }
            sp = cfa;
            found |= rule.func_start == marker;
            if ra == 0 {
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
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) use imp::eh_frame_address;

/// Writes into `out` the return addresses of the frames below the frame of
/// the function that starts at `marker` (the same addresses the system
/// unwinder reports, in the same order); returns how many, or `None` if
/// this walker cannot walk this stack.
#[inline(never)]
pub(crate) fn walk(marker: usize, out: &mut [usize]) -> Option<usize> {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        imp::walk(marker as u64, out)
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        let _ = (marker, out);
        None
    }
}

#[cfg(all(test, target_os = "linux", target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[inline(never)]
    fn marker_fn(out: &mut [usize]) -> Option<usize> {
        let n = walk(marker_fn as fn(&mut [usize]) -> Option<usize> as usize, out);
        std::hint::black_box(n)
    }

    #[inline(never)]
    fn level(d: u32, out: &mut [usize]) -> Option<usize> {
        if d == 0 {
            marker_fn(out)
        } else {
            std::hint::black_box(level(d - 1, out))
        }
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
            found = f.symbol_address() as usize == marker;
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
            assert!(name(fast[i]).ends_with("level"), "{}", name(fast[i]));
            assert!(name(sys[i]).ends_with("system_level"), "{}", name(sys[i]));
        }
    }

    /// Both walkers from the same frame: the same return addresses.
    #[inline(never)]
    fn both(fast: &mut [usize], system: &mut Vec<usize>) -> usize {
        let marker = both as fn(&mut [usize], &mut Vec<usize>) -> usize as usize;
        let n = walk(marker, fast).expect("fast walk");
        let mut found = false;
        backtrace::trace(|f| {
            if found {
                system.push(f.ip() as usize);
                return system.len() < n;
            }
            found = f.symbol_address() as usize == marker;
            true
        });
        std::hint::black_box(n)
    }

    #[inline(never)]
    fn both_at(d: u32, fast: &mut [usize], system: &mut Vec<usize>) -> usize {
        if d == 0 {
            both(fast, system)
        } else {
            std::hint::black_box(both_at(d - 1, fast, system))
        }
    }

    #[test]
    fn same_addresses_as_the_system_unwinder() {
        for depth in [0, 1, 5, 20] {
            let mut fast = [0usize; 16];
            let mut system = Vec::new();
            let n = both_at(depth, &mut fast, &mut system);
            assert!(n > 0);
            assert_eq!(&fast[..n], &system[..], "depth {depth}");
        }
        // From another thread (another stack) too.
        std::thread::spawn(|| {
            let mut fast = [0usize; 16];
            let mut system = Vec::new();
            let n = both_at(3, &mut fast, &mut system);
            assert_eq!(&fast[..n], &system[..]);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_marker_not_on_the_stack_finds_nothing() {
        let mut out = [0usize; 4];
        assert_eq!(walk(1, &mut out), None);
    }
}
