//! Stack counters: a counter per distinct call stack that reached it.
//!
//! [`StackCounter::inc`] walks the caller's stack (return addresses only,
//! no symbols) and looks the addresses up in a per-counter cache. Only a
//! stack seen for the first time is symbolized, into a name of the form
//!
//! ```text
//! <counter name>
//! <function>:+<line offset>
//! <function>:+<line offset>
//! ...
//! ```
//!
//! one frame per line, innermost first, at most `depth` frames. A frame is
//! the function's name (demangled, without the hash) and the offset of the
//! line from the function's first line; where the offset cannot be had (the
//! function's first line is unknown, or the frame was inlined from another
//! file) the line number itself is used, written without `+`; with no debug
//! information at all, the function name alone. Code in a shared library
//! that the `backtrace` crate cannot vouch for (loaded after it listed the
//! loaded objects, or where it may still see an unloaded one; see
//! `crate::unwind::backtrace_knows`) is named by the loader's exported
//! symbol alone, or `?`. Never a file path, never an argument or any other
//! value.
//!
//! ```
//! use clearcount::StackCounter;
//! static SLOW_PATH: StackCounter = StackCounter::new("mytool/slow-path", 8);
//! fn rarely() { SLOW_PATH.inc(); }
//! rarely();
//! ```

use crate::registry::{self, DROP, Entry};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Deepest stack a stack counter records.
pub const MAX_DEPTH: usize = 32;
/// Most distinct stacks one stack counter records; others are dropped.
pub const MAX_STACKS: usize = 256;

/// A counter that records the caller's stack; meant to be a `static`.
pub struct StackCounter {
    name: &'static str,
    depth: usize,
    /// Stacks seen before.
    seen: Mutex<Seen>,
}

/// A stack counter's stacks seen before: return addresses → entry.
///
/// After `dlclose`, a library's addresses may hold other code, and the
/// same return addresses be another stack; so the map is emptied when the
/// loader's count of unloaded objects rises. A call reads that count
/// before walking its stack, and empties the map and raises `unloads` if
/// it read more. Then each entry was added by a call whose stack's code was
/// loaded (running) at a moment when the count was `unloads`, and so is the
/// code of every call that uses the map (it read at most `unloads`, and
/// its code runs until it takes the lock, after the count reached
/// `unloads`). Nothing was unloaded between two moments with the same
/// count, so both stacks' code was loaded at once: equal return addresses
/// are the same code.
///
/// At most [`MAX_STACKS`] return address lists are kept (later ones are not
/// symbolized), and at most [`MAX_STACKS`] distinct stacks are counted,
/// however often the map is emptied: `recorded` keeps them.
struct Seen {
    unloads: u64,
    stacks: BTreeMap<Box<[usize]>, &'static Entry>,
    recorded: Vec<&'static Entry>,
}

impl Seen {
    /// `entry` if it may be counted: a stack counted before, or a new one
    /// while fewer than [`MAX_STACKS`] were; else [`DROP`].
    fn record(&mut self, entry: &'static Entry) -> &'static Entry {
        if std::ptr::eq(entry, &DROP) || self.recorded.iter().any(|e| std::ptr::eq(*e, entry)) {
            entry
        } else if self.recorded.len() < MAX_STACKS {
            self.recorded.push(entry);
            entry
        } else {
            &DROP // a new stack once MAX_STACKS were counted
        }
    }
}

impl std::fmt::Debug for StackCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackCounter")
            .field("name", &self.name)
            .field("depth", &self.depth)
            .finish()
    }
}

impl StackCounter {
    /// A stack counter named `name` that records up to `depth` frames
    /// (at most 32).
    pub const fn new(name: &'static str, depth: usize) -> StackCounter {
        StackCounter {
            name,
            depth: if depth > MAX_DEPTH { MAX_DEPTH } else { depth },
            seen: Mutex::new(Seen {
                unloads: 0,
                stacks: BTreeMap::new(),
                recorded: Vec::new(),
            }),
        }
    }

    /// The counter's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Adds one to the counter of the caller's stack.
    #[inline(never)]
    pub fn inc(&self) {
        let marker = StackCounter::inc as fn(&StackCounter) as usize;
        self.inc_below(marker, &[]);
        // Keep this frame on the stack: a tail call to `inc_below` would
        // remove it, and with it the marker the walk looks for.
        std::hint::black_box(());
    }

    /// Adds one to the counter of the stack below the frame of the function
    /// at address `marker`, leaving out leading frames whose function name
    /// starts with one of `skip` (used by the panic hook to leave out the
    /// panic machinery).
    pub(crate) fn inc_below(&self, marker: usize, skip: &[&str]) {
        if crate::telemetry::is_off() || self.depth == 0 {
            return;
        }
        // Capture return addresses only: finding the function a frame
        // belongs to costs a table search, so it is done just for the few
        // frames above `marker`. Spare frames are kept in case leading
        // frames are skipped by name.
        let want = (self.depth + if skip.is_empty() { 0 } else { 16 }).min(IPS);
        let mut ips = [0usize; IPS];
        // The fast walker (cached unwind rules) where it can; else the
        // system unwinder. Both report the same return addresses.
        let unloads = crate::unwind::unloads();
        let n = match crate::unwind::walk(marker, unloads, &mut ips[..want]) {
            Some(n) => n,
            None => {
                let mut n = 0;
                let mut found = false;
                backtrace::trace(|frame| {
                    if frame.ip().is_null() {
                        // Past the outermost frame (libgcc reports one
                        // more, at 0): the fast walker stops before it.
                        return false;
                    }
                    if found {
                        ips[n] = frame.ip() as usize;
                        n += 1;
                        return n < want;
                    }
                    found = crate::sys::frames::function_start(frame) == marker;
                    true
                });
                if !found {
                    return;
                }
                n
            }
        };
        let key = &ips[..n];
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = unloads
            && u > seen.unloads
        {
            seen.stacks.clear();
            seen.unloads = u;
        }
        if let Some(e) = seen.stacks.get(key) {
            let e = *e;
            drop(seen);
            e.add(1);
            return;
        }
        if seen.stacks.len() >= MAX_STACKS {
            return;
        }
        // A new stack: walk it again, keeping whole frames to symbolize.
        let mut frames: Vec<backtrace::Frame> = Vec::with_capacity(want);
        let mut found = false;
        backtrace::trace(|frame| {
            if frame.ip().is_null() {
                return false;
            }
            if found {
                frames.push(frame.clone());
                return frames.len() < want;
            }
            found = crate::sys::frames::function_start(frame) == marker;
            true
        });
        let sites: Vec<Site<'_>> = frames
            .iter()
            .map(|frame| Site {
                ret: frame.ip() as usize,
                func_start: crate::sys::frames::function_start(frame),
                frame: Some(frame),
            })
            .collect();
        let entry = seen.record(self.entry_for(&sites, skip));
        seen.stacks.insert(key.into(), entry);
        drop(seen);
        entry.add(1);
    }

    /// Adds one to the counter of a stack walked elsewhere: a crash's,
    /// walked from a copy of its stack. `sites` are, innermost first, each
    /// frame's address to name it by (a return address, or for the
    /// innermost frame the faulting instruction plus one) and its
    /// function's start (0 if unknown), as addresses of this process.
    /// Leading frames whose name starts with one of `skip` are left out.
    pub(crate) fn inc_sites(&self, sites: &[(usize, usize)], skip: &[&str]) {
        if crate::telemetry::is_off() || self.depth == 0 || sites.is_empty() {
            return;
        }
        let sites: Vec<Site<'_>> = sites
            .iter()
            .map(|&(ret, func_start)| Site {
                ret,
                func_start,
                frame: None,
            })
            .collect();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = seen.record(self.entry_for(&sites, skip));
        drop(seen);
        entry.add(1);
    }

    /// Symbolizes `sites` into a stack counter name and finds its entry.
    fn entry_for(&self, sites: &[Site<'_>], skip: &[&str]) -> &'static Entry {
        let mut lines: Vec<String> = Vec::new();
        let mut leading = true;
        'frames: for site in sites {
            let ret = site.ret;
            let mut start: Option<(u32, Option<PathBuf>)> = None;
            let mut syms: Vec<(String, Option<u32>, Option<PathBuf>)> = Vec::new();
            if crate::unwind::backtrace_knows(ret) {
                // The physical function's first line: resolve its start
                // address and take the outermost symbol there. `resolve`
                // looks up the address minus one (it expects return
                // addresses), so add one to land on the first instruction.
                if site.func_start != 0 {
                    let first = site.func_start.wrapping_add(1);
                    backtrace::resolve(first as *mut std::ffi::c_void, |s| {
                        start = s.lineno().map(|l| (l, s.filename().map(PathBuf::from)));
                    });
                }
                let push = |sym: &backtrace::Symbol| {
                    let func = sym
                        .name()
                        .map(|n| clean(&format!("{n:#}")))
                        .unwrap_or_else(|| "?".into());
                    syms.push((func, sym.lineno(), sym.filename().map(PathBuf::from)));
                };
                match site.frame {
                    Some(frame) => backtrace::resolve_frame(frame, push),
                    None => backtrace::resolve(ret as *mut std::ffi::c_void, push),
                }
            }
            if syms.is_empty() {
                let func =
                    crate::unwind::loader_symbol(ret).map_or_else(|| "?".into(), |n| clean(&n));
                syms.push((func, None, None));
            }
            let last = syms.len() - 1;
            for (i, (func, line, file)) in syms.into_iter().enumerate() {
                if is_runtime(&func) {
                    break 'frames;
                }
                if leading && skip.iter().any(|p| func.starts_with(p)) {
                    continue;
                }
                leading = false;
                // Inlined frames (all but the last) have no first line of
                // their own here: they keep the line number.
                let start = if i == last { start.clone() } else { None };
                let text = match (line, start) {
                    (Some(l), Some((first, f))) if f == file && first <= l => {
                        format!("{func}:+{}", l - first)
                    }
                    (Some(l), _) => format!("{func}:{l}"),
                    (None, _) => func,
                };
                if lines.len() < self.depth {
                    lines.push(text);
                }
            }
        }
        // The frames that call `main` are the same for every program.
        while lines
            .last()
            .is_some_and(|l| l.starts_with("core::ops::function::") || l.starts_with("call_once"))
        {
            lines.pop();
        }
        if lines.is_empty() {
            lines.push("?".into());
        }
        let mut name = String::from(self.name);
        for l in &lines {
            if name.len() + 1 + l.len() > crate::name::MAX_STACK_NAME {
                break;
            }
            name.push('\n');
            name.push_str(l);
        }
        if crate::name::check_stack(&name).is_err() {
            return &DROP;
        }
        registry::find_or_insert(&name, crate::telemetry::attach_new).unwrap_or(&DROP)
    }
}

/// A frame to name: the address to look up (a return address), where its
/// function starts (0: unknown), and the system unwinder's frame if the
/// walk came from it (resolved as such: on Windows that keeps its inlined
/// frames).
struct Site<'a> {
    ret: usize,
    func_start: usize,
    frame: Option<&'a backtrace::Frame>,
}

/// The Rust runtime's frames below `main`: a stack ends there. (Names are
/// full paths with full debug information, bare names with line tables only.)
fn is_runtime(func: &str) -> bool {
    func.starts_with("std::rt::")
        || func.contains("__rust_begin_short_backtrace")
        || func.starts_with("lang_start")
}

/// Room for return addresses: the deepest stack plus spare frames.
const IPS: usize = MAX_DEPTH + 16;

/// Cleans a symbol name into a frame: printable ASCII, no spaces.
fn clean(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    out.truncate(crate::name::MAX_FRAME - 12);
    if out.is_empty() {
        out.push('?');
    }
    out
}
