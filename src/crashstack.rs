//! A crash's stack, kept by the signal handler and named by the next run.
//!
//! Naming a stack's frames (function names and lines) reads the program's
//! debug information: it allocates, takes locks and can take milliseconds,
//! none of which a signal handler may do. Walking the stack needs the
//! unwind tables, which only the dynamic loader can find safely (under its
//! lock). So the crash counter's handler does neither. It keeps what a
//! later process needs, with system calls only:
//!
//! 1. At [`prepare`] (when the crash counter is installed), the fixed part
//!    of a record is built in advance: the program's identity and the list
//!    of loaded objects (where each one's segments lie, and its name).
//! 2. At the crash ([`capture`], in the handler): the registers at the
//!    fault, and a copy of up to 64 KiB of the thread's stack above the
//!    stack pointer, read so that an unmapped page ends the copy instead of
//!    faulting. They are written after the fixed part to a new file,
//!    `crashes/<identity>-<pid>.tmp`, renamed to `….stack` once whole.
//! 3. The next process of the same program that installs the crash
//!    counter sees the record ([`waiting`]) and starts the namer child
//!    (`kit::crash`), which ([`collect`]) claims each record of its own
//!    identity (a rename: of children started at once, one gets it), walks the copy
//!    with its own unwind tables (the same code: an address of the crashed
//!    process maps to the same object at the same offset), names the
//!    frames as every stack counter does (function names and line offsets
//!    only), adds one to the crash stack counter, and deletes the record.
//!
//! The stack is therefore counted in the week of the child that names it,
//! not necessarily the week of the crash; and only if the same program
//! build runs again and installs the crash counter (the identity is the
//! executable's size and modification time, and where its segments lie:
//! another build's addresses would name the wrong code). Records of another
//! identity are left for that build, and deleted after
//! [`KEEP_OTHERS_DAYS`]; broken records are deleted. The copy holds the
//! stack's raw bytes, which may hold values of the program: it never leaves
//! the machine, only the names made from it are counted, and it is deleted
//! once named.
//!
//! Only where the fast stack walker runs (Linux on x86-64,
//! [`crate::unwind::WALKS_COPIES`]): elsewhere nothing is prepared,
//! captured or collected, and a crash counts its signal only.
//!
//! This module owns the record's format (little-endian):
//!
//! ```text
//! "ccstack1"                       8 bytes
//! identity                         u64
//! objects                          u32, then per object:
//!   start, end                     u64, u64
//!   main                           u8 (1: the main program)
//!   name length, name              u16, bytes
//! kind                             u8 (the signal, in `Crash::ALL`'s order), 7 zero bytes
//! pc, sp, bp                       u64 each: the registers at the fault
//! stack address                    u64: where the copy starts (sp, or the
//!                                  first readable page above it)
//! stack length, stack              u64, bytes (memory from there up)
//! ```

use crate::stack::StackCounter;
use crate::sys::crash::{Crash, Registers};
use crate::unwind::Object;
use std::path::Path;

/// The folder of the telemetry directory that holds the records.
pub(crate) const DIR: &str = "crashes";
/// Records of another build are deleted after this many days.
pub const KEEP_OTHERS_DAYS: u64 = 28;
/// The record's first bytes.
const MAGIC: &[u8; 8] = b"ccstack1";
/// Longest copy of a stack a record holds.
const MAX_STACK: usize = 64 * 1024;
/// Most objects a record lists.
const MAX_OBJECTS: usize = 4096;
/// Longest record read.
const MAX_RECORD: u64 = 4 << 20;
/// Deepest walk of a copy.
const MAX_FRAMES: usize = crate::stack::MAX_DEPTH + 16;
/// Length of the part written at the crash, before the stack.
const CRASH_PART: usize = 48;

/// This program's identity: FNV-1a 64 over its executable's size and
/// modification time and where its segments lie. `None` if the executable
/// cannot be found.
fn identity(objects: &[Object]) -> Option<u64> {
    let meta = std::fs::metadata(std::env::current_exe().ok()?).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos() as u64;
    let main = objects.iter().find(|o| o.main)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in [meta.len(), mtime, main.end - main.start] {
        for b in v.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Some(h)
}

/// Builds the fixed part of a record for crashes of this process, to be
/// written under `telemetry_dir`. Once per process; does nothing where
/// crash stacks are not kept.
pub(crate) fn prepare(telemetry_dir: &Path) {
    glue::prepare(telemetry_dir);
}

/// In the crash handler: keeps the crashed thread's registers and stack
/// for the next run. Async-signal-safe (system calls and copies into
/// memory set aside; no allocation, no lock); does nothing unless
/// [`prepare`] ran, and only once per process.
pub(crate) fn capture(kind: Crash, regs: Registers) {
    glue::capture(kind, regs);
}

crate::sys::with_fast_unwind! {
mod glue {
    use super::{CRASH_PART, Crash, DIR, MAGIC, MAX_OBJECTS, Object, Registers};
    use crate::sys::snapshot;
    use std::ffi::CStr;
    use std::path::Path;
    use std::sync::OnceLock;

    /// Room for a record's path.
    const PATH_ROOM: usize = 1024;
    /// Unreadable pages the copy may skip above the stack pointer (after a
    /// stack overflow it points into the guard page).
    const SKIP_PAGES: u64 = 16;

    /// The parts of a record made in advance, and where it goes.
    struct Prepared {
        /// `<telemetry dir>/crashes`, NUL-terminated.
        dir: Vec<u8>,
        /// `<telemetry dir>/crashes/<identity>-`: the pid and suffix follow.
        prefix: Vec<u8>,
        /// Magic, identity and objects.
        head: Vec<u8>,
    }

    static PREPARED: OnceLock<Prepared> = OnceLock::new();

/// The fixed part of a record: magic, identity, objects.
    fn record_head(id: u64, objects: &[Object]) -> Vec<u8> {
        let mut head = Vec::with_capacity(1024);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&id.to_le_bytes());
        let listed: Vec<&Object> = objects
            .iter()
            .filter(|o| o.name.len() <= usize::from(u16::MAX) && o.start < o.end)
            .take(MAX_OBJECTS)
            .collect();
        head.extend_from_slice(&(listed.len() as u32).to_le_bytes());
        for o in listed {
            head.extend_from_slice(&o.start.to_le_bytes());
            head.extend_from_slice(&o.end.to_le_bytes());
            head.push(u8::from(o.main));
            head.extend_from_slice(&(o.name.len() as u16).to_le_bytes());
            head.extend_from_slice(&o.name);
        }
        head
    }

    pub(super) fn prepare(telemetry_dir: &Path) {
        if PREPARED.get().is_some() {
            return;
        }
        let objects = crate::unwind::objects();
        let Some(id) = super::identity(&objects) else { return };
        let Some(dir) = telemetry_dir.join(DIR).to_str().map(str::to_owned) else {
            return;
        };
        let head = record_head(id, &objects);
        let prefix = format!("{dir}/{id:016x}-").into_bytes();
        let mut dir = dir.into_bytes();
        dir.push(0);
        if dir[..dir.len() - 1].contains(&0) || prefix.len() + 32 > PATH_ROOM {
            return;
        }
        let _ = PREPARED.set(Prepared { dir, prefix, head });
    }

    pub(super) fn capture(kind: Crash, regs: Registers) {
        let Some(p) = PREPARED.get() else { return };
        let Some(s) = snapshot::take_scratch() else { return };
        // After a stack overflow the stack pointer is in the guard page:
        // the frames start on a page above it.
        let mut at = regs.sp;
        let mut got = snapshot::copy_own_memory(at, &mut s.stack);
        for _ in 0..SKIP_PAGES {
            if got > 0 {
                break;
            }
            at = (at | 4095).wrapping_add(1);
            got = snapshot::copy_own_memory(at, &mut s.stack);
        }
        let kind = Crash::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u8;
        let mut head = [0u8; CRASH_PART];
        head[0] = kind;
        let words = [regs.pc, regs.sp, regs.bp, at, got as u64];
        for (i, v) in words.into_iter().enumerate() {
            head[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        s.head[..CRASH_PART].copy_from_slice(&head);
        // `<prefix><pid>.tmp`, then the same with `.stack`.
        let mut digits = [0u8; 10];
        let mut pid = snapshot::pid();
        let mut d = digits.len();
        loop {
            d -= 1;
            digits[d] = b'0' + (pid % 10) as u8;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        let name = |path: &mut [u8; PATH_ROOM], suffix: &[u8]| -> Option<usize> {
            let parts = [&p.prefix[..], &digits[d..], suffix, b"\0"];
            let mut at = 0;
            for part in parts {
                path.get_mut(at..at + part.len())?.copy_from_slice(part);
                at += part.len();
            }
            Some(at)
        };
        if name(&mut s.tmp_path, b".tmp").is_none() || name(&mut s.path, b".stack").is_none() {
            return;
        }
        let (Ok(dir), Ok(tmp), Ok(done)) = (
            CStr::from_bytes_until_nul(&p.dir),
            CStr::from_bytes_until_nul(&s.tmp_path),
            CStr::from_bytes_until_nul(&s.path),
        ) else {
            return;
        };
        let parts: [&[u8]; 3] = [&p.head, &s.head[..CRASH_PART], &s.stack[..got]];
        snapshot::write_new_file(dir, tmp, done, &parts);
    }
}
}

crate::sys::without_fast_unwind! {
mod glue {
    use super::{Crash, Registers};

    pub(super) fn prepare(_telemetry_dir: &std::path::Path) {}

    pub(super) fn capture(_kind: Crash, _regs: Registers) {}
}
}

/// A record, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The crashed program's identity.
    pub(crate) identity: u64,
    /// Its loaded objects.
    pub(crate) objects: Vec<Object>,
    /// What killed it.
    pub(crate) kind: Crash,
    /// The registers at the fault.
    pub(crate) regs: Registers,
    /// Where the copy of its stack starts (`regs.sp` or above).
    pub(crate) stack_at: u64,
    /// The copy of its stack.
    pub(crate) stack: Vec<u8>,
}

/// Reads a record; an error says what is wrong with it.
pub(crate) fn parse(bytes: &[u8]) -> Result<Record, String> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(8)? != MAGIC {
        return Err("not a crash stack record (bad magic)".into());
    }
    let identity = r.u64()?;
    let n = r.u32()? as usize;
    if n > MAX_OBJECTS {
        return Err(format!("{n} objects, more than {MAX_OBJECTS}"));
    }
    let mut objects = Vec::with_capacity(n);
    for _ in 0..n {
        let (start, end) = (r.u64()?, r.u64()?);
        let main = match r.take(1)?[0] {
            0 => false,
            1 => true,
            b => return Err(format!("object main flag {b}")),
        };
        let len = u16::from_le_bytes(r.take(2)?.try_into().unwrap_or_default());
        let name = r.take(usize::from(len))?.to_vec();
        if start >= end {
            return Err("an object ends before it starts".into());
        }
        objects.push(Object {
            start,
            end,
            name,
            main,
        });
    }
    let crash = r.take(CRASH_PART)?;
    let kind = *Crash::ALL
        .get(usize::from(crash[0]))
        .ok_or_else(|| format!("unknown crash kind {}", crash[0]))?;
    let word =
        |i: usize| u64::from_le_bytes(crash[8 + 8 * i..16 + 8 * i].try_into().unwrap_or_default());
    let regs = Registers {
        pc: word(0),
        sp: word(1),
        bp: word(2),
    };
    let stack_at = word(3);
    if stack_at < regs.sp {
        return Err("the stack copy starts below the stack pointer".into());
    }
    let len = usize::try_from(word(4)).unwrap_or(usize::MAX);
    if len > MAX_STACK {
        return Err(format!(
            "a stack copy of {len} bytes, more than {MAX_STACK}"
        ));
    }
    let stack = r.take(len)?.to_vec();
    if r.at != bytes.len() {
        return Err(format!("{} bytes after the stack", bytes.len() - r.at));
    }
    Ok(Record {
        identity,
        objects,
        kind,
        regs,
        stack_at,
        stack,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!("cut short at byte {}", self.bytes.len()));
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
}

/// The frames of a record's stack, as (address to name, function start)
/// in this process, innermost first: its addresses are mapped to the same
/// object at the same offset here (an object of the same name, or the
/// main program, whose segments span as many bytes).
pub(crate) fn frames_of(rec: &Record, here_now: &[Object]) -> Vec<(usize, usize)> {
    let here = |addr: u64| -> Option<u64> {
        let then = rec
            .objects
            .iter()
            .find(|o| o.start <= addr && addr < o.end)?;
        let now = here_now.iter().find(|o| {
            o.main == then.main
                && (o.main || o.name == then.name)
                && o.end - o.start == then.end - then.start
        })?;
        now.start.checked_add(addr - then.start)
    };
    let mut out = vec![(0, 0); MAX_FRAMES];
    let n = crate::unwind::walk_copy(rec.regs, rec.stack_at, &rec.stack, &here, &mut out);
    out.truncate(n);
    out
}

/// Whether records of this program's crashes wait under `telemetry_dir`
/// (one failed directory open when there are none).
pub(crate) fn waiting(telemetry_dir: &Path) -> bool {
    if !crate::unwind::WALKS_COPIES {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(telemetry_dir.join(DIR)) else {
        return false;
    };
    let Some(own) = identity(&crate::unwind::objects()).map(|id| format!("{id:016x}-")) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.starts_with(own.as_str()) && name.ends_with(".stack")
    })
}

/// What [`collect`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Collected {
    /// Records named and counted.
    pub(crate) counted: usize,
    /// Broken records deleted, with what was wrong.
    pub(crate) broken: Vec<String>,
}

/// Names and counts the records this program's crashes left under
/// `telemetry_dir` into `counter`, leaving out leading frames that start
/// with one of `skip`, and deletes them; deletes broken records and old
/// ones of other builds. Costs one failed directory open when there are
/// none.
pub(crate) fn collect(telemetry_dir: &Path, counter: &StackCounter, skip: &[&str]) -> Collected {
    let mut done = Collected::default();
    if !crate::unwind::WALKS_COPIES {
        return done;
    }
    let dir = telemetry_dir.join(DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return done;
    };
    let objects = crate::unwind::objects();
    let own = identity(&objects).map(|id| format!("{id:016x}-"));
    let now = std::time::SystemTime::now();
    let age_days = |p: &Path| -> u64 {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .map_or(0, |d| d.as_secs() / 86_400)
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let mine = own.as_ref().is_some_and(|o| name.starts_with(o.as_str()));
        if !(mine && name.ends_with(".stack")) {
            // Another build's record, or one being written or named by a
            // process that died doing it.
            let days = if name.ends_with(".stack") {
                KEEP_OTHERS_DAYS
            } else {
                1
            };
            if age_days(&path) >= days {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        // Claim it: of processes starting at once, one renames it.
        let claimed = dir.join(format!("{name}.{}.taken", std::process::id()));
        if std::fs::rename(&path, &claimed).is_err() {
            continue;
        }
        let read = std::fs::File::open(&claimed).and_then(|f| {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_RECORD), &mut v)?;
            Ok(v)
        });
        match read.map_err(|e| e.to_string()).and_then(|b| parse(&b)) {
            Ok(rec) => {
                let frames = frames_of(&rec, &objects);
                counter.inc_sites(&frames, skip);
                done.counted += 1;
            }
            Err(e) => done.broken.push(format!("{name}: {e}")),
        }
        // Deleted once counted (a crash while naming leaves the claimed
        // name, deleted a day later: never named twice, never retried).
        let _ = std::fs::remove_file(&claimed);
    }
    // Gone once empty (fails, harmlessly, while records remain).
    let _ = std::fs::remove_dir(&dir);
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&7u64.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&0x1000u64.to_le_bytes());
        b.extend_from_slice(&0x9000u64.to_le_bytes());
        b.push(1);
        b.extend_from_slice(&0u16.to_le_bytes());
        let mut crash = [0u8; CRASH_PART];
        crash[0] = 4; // SIGABRT
        for (i, v) in [0x1234u64, 0x7000, 0x7100, 0x7000, 16]
            .into_iter()
            .enumerate()
        {
            crash[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&crash);
        b.extend_from_slice(&[9; 16]);
        b
    }

    #[test]
    fn a_record_reads_back() {
        let r = parse(&record()).unwrap();
        assert_eq!(r.identity, 7);
        assert_eq!(r.kind, Crash::Abort);
        assert_eq!(
            r.regs,
            Registers {
                pc: 0x1234,
                sp: 0x7000,
                bp: 0x7100
            }
        );
        assert_eq!(r.stack_at, 0x7000);
        assert_eq!(r.objects.len(), 1);
        assert!(r.objects[0].main);
        assert_eq!(r.stack, vec![9; 16]);
    }

    /// Every cut, and every changed byte in the fixed fields, is either
    /// refused with a reason or read as some record: never a panic, never
    /// a read past the end.
    #[test]
    fn a_broken_record_is_refused() {
        let good = record();
        for cut in 0..good.len() {
            let e = parse(&good[..cut]).unwrap_err();
            assert!(e.contains("cut short") || e.contains("magic"), "{cut}: {e}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(parse(&long).unwrap_err().contains("after the stack"));
        for i in 0..good.len() - 16 {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut b = good.clone();
                b[i] = v;
                let _ = parse(&b);
            }
        }
        let mut huge = good.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(&huge).unwrap_err().contains("objects"));
    }
}
