//! Stack counters through shared libraries that are loaded with dlopen,
//! closed with dlclose, and whose addresses are then reused (Linux x86-64,
//! glibc).
//!
//! The test compiles three tiny C libraries with `cc` and runs this test
//! binary again as a child (`child_dlopen`, active only when `DLOPEN_CHILD`
//! is set), since a process starts telemetry once. The child:
//!
//! 1. loads library A, bumps `dl/via` from a callback that A calls (three
//!    times), and bumps the Rust-only stack `dl/rust`;
//! 2. closes A, maps a page of its own code where A's code was (no unwind
//!    tables anywhere near it, A's other pages left unmapped) and bumps
//!    `dl/jit` from a callback that this code calls;
//! 3. fills A's whole old address range with 0xff, bumps `dl/rust` again
//!    and a new Rust-only stack `dl/rust2`, loads library B (other code;
//!    A's range is taken, so it lands elsewhere) and bumps `dl/via` through
//!    it;
//! 4. closes B, reserves every free range above A's old one (so the kernel's
//!    top-down search for a place finds A's range first), unmaps the
//!    garbage, and loads library C: A's code under another name of the same
//!    length, which must land exactly where A was, so its return addresses
//!    are A's. It bumps `dl/via` through C and `dl/rust` once more.
//!
//! It must not crash; C must have been mapped at A's old address; and the
//! counter file must hold one `dl/via` stack per library, each naming that
//! library's function and no other (C's, at A's addresses, must not be
//! named after A: the walker's cached rules and names for a closed library
//! are dropped); `dl/jit` naming the callback and not A's function; and one
//! `dl/rust` stack counted three times.

// glibc: a static musl program cannot load libraries. The fast walker
// only (with the portable fallbacks forced, stack counters use the
// `backtrace` crate, which cannot tell reused addresses apart).
#![cfg(all(
    target_os = "linux",
    target_arch = "x86_64",
    target_env = "gnu",
    not(clearcount_fallbacks)
))]

mod common;

use clearcount::StackCounter;
use std::collections::BTreeMap;
use std::ffi::{CString, c_int, c_void};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A library function: calls `f`, then returns (never a tail call).
type LibFn = unsafe extern "C" fn(extern "C" fn()) -> c_int;

/// A and C: the same code; `NAME` is `lib_a_call` or `lib_c_call`.
const SAME_LAYOUT: &str = r#"
int NAME(void (*f)(void)) {
    volatile int x = 1;
    f();
    return x;
}
"#;

/// B: other code, so other addresses.
const OTHER_LAYOUT: &str = r#"
static volatile int sink;
int lib_b_helper(int n) {
    int s = 0;
    for (int i = 0; i < n; i++) s += i * sink;
    return s;
}
int lib_b_call(void (*f)(void)) {
    volatile int x = 2;
    sink += lib_b_helper(x);
    f();
    return x + sink;
}
"#;

/// Compiles `src` into `dir/name`; fails, with the line that installs
/// one, without a C compiler.
fn compile(dir: &Path, name: &str, src: &str, defines: &[&str]) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let so = dir.join(format!("{name}.so"));
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-funwind-tables"])
        .args(defines)
        .arg("-o")
        .arg(&so)
        .arg(&c)
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs a C compiler (`cc`: {e}): apt-get install gcc libc6-dev")
        });
    assert!(
        out.status.success(),
        "cc {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

#[test]
fn dlopen_dlclose_and_reused_addresses() {
    let dir = common::TempDir::new("dlopen");
    let a = compile(&dir.0, "lib_a", SAME_LAYOUT, &["-DNAME=lib_a_call"]);
    let b = compile(&dir.0, "lib_b", OTHER_LAYOUT, &[]);
    let c = compile(&dir.0, "lib_c", SAME_LAYOUT, &["-DNAME=lib_c_call"]);
    let telemetry = dir.0.join("telemetry");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child_dlopen", "--exact", "--nocapture", "--test-threads=1"])
        .env("DLOPEN_CHILD", "1")
        .env(
            "DLOPEN_LIBS",
            format!("{}:{}:{}", a.display(), b.display(), c.display()),
        )
        .env("CLEARCOUNT_DIR", &telemetry)
        .env_remove("CLEARCOUNT_NOW")
        .env_remove("DO_NOT_TRACK")
        .env_remove("DLTEST_TELEMETRY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("{stderr}");
    // The case this test is named for happened: C was mapped where A had
    // been, so a stale cache would name C's frame after A's function.
    assert!(
        stdout.contains("REUSED=C at A's old address"),
        "C was not mapped at A's old address:\n{stdout}\n{stderr}"
    );
    let file = stdout
        .lines()
        .find_map(|l| l.split_once("FILE=").map(|(_, f)| f))
        .expect("the child names its counter file");
    let parsed = clearcount::dump(file.as_ref()).unwrap();
    let stacks = |counter: &str| -> BTreeMap<&str, u64> {
        parsed
            .stacks
            .iter()
            .filter(|(k, _)| k.split('\n').next() == Some(counter))
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    };
    let all = &parsed.stacks;

    // One stack per library, each naming its own function and no other:
    // callback, library function, the Rust caller.
    let via = stacks("dl/via");
    assert_eq!(via.len(), 3, "{all:#?}");
    for (lib, count) in [("lib_a_call", 3), ("lib_b_call", 2), ("lib_c_call", 1)] {
        let (name, n) = via
            .iter()
            .find(|(k, _)| k.contains(lib))
            .unwrap_or_else(|| panic!("no dl/via stack names {lib}: {all:#?}"));
        assert_eq!(*n, count, "{name}");
        let lines: Vec<&str> = name.lines().collect();
        assert!(is_frame(lines[1], "on_lib"), "{name}");
        assert_eq!(lines[2], lib, "{name}");
        assert!(is_frame(lines[3], "call_lib"), "{name}");
        let others = ["lib_a_call", "lib_b_call", "lib_c_call"];
        assert!(
            others.iter().all(|o| *o == lib || !name.contains(o)),
            "{name}"
        );
    }

    // Code where A was, without unwind tables: the walk stops after the
    // callback (the system unwinder cannot go further either), and the
    // frame is not named after A's function.
    let jit = stacks("dl/jit");
    assert_eq!(jit.len(), 1, "{all:#?}");
    let (name, n) = jit.iter().next().unwrap();
    assert_eq!(*n, 1);
    assert!(is_frame(name.lines().nth(1).unwrap(), "on_jit"), "{name}");
    assert!(!name.contains("lib_a_call"), "{name}");

    // Rust-only stacks: the same stack, before and after, is one record.
    let rust = stacks("dl/rust");
    assert_eq!(rust.len(), 1, "{all:#?}");
    let (name, n) = rust.iter().next().unwrap();
    assert_eq!(*n, 3, "{name}");
    let lines: Vec<&str> = name.lines().collect();
    assert_eq!(lines.len(), 3, "{name}");
    assert!(is_frame(lines[1], "rust_leaf"), "{name}");
    assert!(is_frame(lines[2], "rust_mid"), "{name}");
    let rust2 = stacks("dl/rust2");
    assert_eq!(rust2.len(), 1, "{all:#?}");
    let (name, _) = rust2.iter().next().unwrap();
    assert!(
        is_frame(name.lines().nth(1).unwrap(), "rust_other"),
        "{name}"
    );
}

/// Whether the frame `line` is this test's function `func` with a line
/// offset: `dlopen::func:+N`, or `func:+N` with line tables only.
fn is_frame(line: &str, func: &str) -> bool {
    line.split_once(":+").is_some_and(|(f, off)| {
        (f == func || f == format!("dlopen::{func}")) && off.parse::<u32>().is_ok()
    })
}

static VIA: StackCounter = StackCounter::new("dl/via", 3);
static JIT: StackCounter = StackCounter::new("dl/jit", 3);
static RUST: StackCounter = StackCounter::new("dl/rust", 2);
static RUST2: StackCounter = StackCounter::new("dl/rust2", 4);

extern "C" fn on_lib() {
    VIA.inc();
}

extern "C" fn on_jit() {
    JIT.inc();
}

#[inline(never)]
fn call_lib(f: LibFn) -> c_int {
    // SAFETY: `f` is a library function of type `LibFn`, loaded and open.
    black_box(unsafe { f(on_lib) })
}

#[inline(never)]
fn rust_leaf() {
    RUST.inc();
    black_box(());
}

#[inline(never)]
fn rust_mid() {
    rust_leaf();
    black_box(());
}

#[inline(never)]
fn rust_other() {
    RUST2.inc();
    black_box(());
}

/// The segments the dynamic loader mapped for the object loaded from
/// `path`, page-rounded: (start, end, executable). Empty if none is loaded.
fn mappings(path: &Path) -> Vec<(usize, usize, bool)> {
    struct Search {
        path: CString,
        found: Vec<(usize, usize, bool)>,
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid `info` for the call; `data` is
        // the `Search` below; `dlpi_phdr` points to `dlpi_phnum` headers.
        unsafe {
            let (info, search) = (&*info, &mut *data.cast::<Search>());
            if info.dlpi_name.is_null()
                || std::ffi::CStr::from_ptr(info.dlpi_name) != search.path.as_c_str()
            {
                return 0;
            }
            let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum));
            for p in phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD) {
                let start = (info.dlpi_addr + p.p_vaddr) as usize & !4095;
                let end = ((info.dlpi_addr + p.p_vaddr + p.p_memsz) as usize + 4095) & !4095;
                search.found.push((start, end, p.p_flags & libc::PF_X != 0));
            }
            1
        }
    }
    let mut search = Search {
        path: CString::new(path.to_str().unwrap()).unwrap(),
        found: Vec::new(),
    };
    // SAFETY: `each` only reads what the loader passes; `search` outlives
    // the call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut search).cast()) };
    search.found
}

fn open(path: &Path) -> *mut c_void {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; the library's constructors are the
    // compiler's defaults.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!h.is_null(), "dlopen {}", path.display());
    h
}

fn lookup(h: *mut c_void, name: &str) -> LibFn {
    let c = CString::new(name).unwrap();
    // SAFETY: `h` is an open handle; the symbol is a function of type
    // `LibFn` (see the C sources above).
    unsafe {
        let p = libc::dlsym(h, c.as_ptr());
        assert!(!p.is_null(), "dlsym {name}");
        std::mem::transmute::<*mut c_void, LibFn>(p)
    }
}

fn close(h: *mut c_void, path: &Path) {
    // SAFETY: `h` is open and none of its code is running.
    assert_eq!(unsafe { libc::dlclose(h) }, 0);
    assert!(
        mappings(path).is_empty(),
        "{} was not unmapped",
        path.display()
    );
}

/// Maps `len` bytes at exactly `addr` (failing if anything is there).
fn map_at(addr: usize, len: usize, prot: c_int) -> *mut u8 {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let p = unsafe {
        libc::mmap(
            addr as *mut c_void,
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    assert_eq!(p as usize, addr, "mmap at {addr:#x}");
    p.cast()
}

/// Child: the sequence in the module comment.
#[test]
fn child_dlopen() {
    let Ok(libs) = std::env::var("DLOPEN_CHILD").and(std::env::var("DLOPEN_LIBS")) else {
        return;
    };
    let libs: Vec<PathBuf> = libs.split(':').map(PathBuf::from).collect();
    let (a, b, c) = (&libs[0], &libs[1], &libs[2]);
    let started = clearcount::Telemetry::new("dltest", "dltest", "1.0").start();
    println!(
        "FILE={}",
        started.file.as_ref().expect("a counter file").display()
    );

    // 1. Through A, and Rust only.
    let ha = open(a);
    let f = lookup(ha, "lib_a_call");
    for _ in 0..3 {
        call_lib(f);
    }
    rust_mid();
    let a_maps = mappings(a);
    let a_start = a_maps.iter().map(|m| m.0).min().unwrap();
    let a_end = a_maps.iter().map(|m| m.1).max().unwrap();
    let a_text = a_maps.iter().find(|m| m.2).unwrap().0;
    eprintln!("A at {a_start:#x}..{a_end:#x}, code at {a_text:#x}");
    close(ha, a);

    // 2. Code of our own where A's code was; A's tables are gone.
    //    push rbp; mov rbp, rsp; call rdi; pop rbp; ret
    const TRAMPOLINE: [u8; 9] = [0x55, 0x48, 0x89, 0xe5, 0xff, 0xd7, 0x5d, 0xc3, 0xcc];
    let page = map_at(a_text, 4096, libc::PROT_READ | libc::PROT_WRITE);
    // SAFETY: `page` is 4096 writable bytes we just mapped; then made
    // executable, it holds a complete function of type `LibFn`.
    unsafe {
        std::ptr::copy_nonoverlapping(TRAMPOLINE.as_ptr(), page, TRAMPOLINE.len());
        assert_eq!(
            libc::mprotect(page.cast(), 4096, libc::PROT_READ | libc::PROT_EXEC),
            0
        );
        let jit = std::mem::transmute::<*mut u8, extern "C" fn(extern "C" fn()) -> c_int>(page);
        black_box(jit(on_jit));
        assert_eq!(libc::munmap(page.cast(), 4096), 0);
    }

    // 3. Garbage where A was; Rust only; through B.
    let garbage = map_at(a_start, a_end - a_start, libc::PROT_READ | libc::PROT_WRITE);
    // SAFETY: `garbage` is `a_end - a_start` writable bytes.
    unsafe { std::ptr::write_bytes(garbage, 0xff, a_end - a_start) };
    rust_mid();
    rust_other();
    let hb = open(b);
    let f = lookup(hb, "lib_b_call");
    for _ in 0..2 {
        call_lib(f);
    }
    close(hb, b);
    let reserved = reserve_free_ranges_above(a_end);
    // SAFETY: our own mapping, not in use.
    assert_eq!(unsafe { libc::munmap(garbage.cast(), a_end - a_start) }, 0);

    // 4. Through C, which is A's code under another name: with every free
    //    range above A's reserved, the kernel (which places a mapping in the
    //    highest free range it fits) puts C exactly where A was. Rust only
    //    again.
    let hc = open(c);
    let c_start = mappings(c).iter().map(|m| m.0).min().unwrap();
    for (at, len) in reserved {
        // SAFETY: our own reservations, never used.
        assert_eq!(unsafe { libc::munmap(at as *mut c_void, len) }, 0);
    }
    assert_eq!(
        c_start, a_start,
        "C at {c_start:#x}, A was at {a_start:#x}: this test assumes the kernel's default top-down placement of mappings (vm.legacy_va_layout = 0)"
    );
    println!("REUSED=C at A's old address {a_start:#x}");
    call_lib(lookup(hc, "lib_c_call"));
    rust_mid();
}

/// Reserves (inaccessible, no memory behind it) every free range of the
/// address space above `floor`, up to the mapping below the main thread's
/// stack (the range right below the stack is where it grows, and lies
/// above where the kernel places mappings anyway). Returns the
/// reservations: (start, length).
fn reserve_free_ranges_above(floor: usize) -> Vec<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut ranges: Vec<(usize, usize, bool)> = maps
        .lines()
        .map(|l| {
            let (range, rest) = l.split_once(' ').unwrap();
            let (s, e) = range.split_once('-').unwrap();
            let hex = |x: &str| usize::from_str_radix(x, 16).unwrap();
            (hex(s), hex(e), rest.ends_with("[stack]"))
        })
        .collect();
    ranges.sort_unstable();
    let stack = ranges
        .iter()
        .find(|r| r.2)
        .map(|r| r.0)
        .expect("/proc/self/maps shows the stack");
    let mut reserved = Vec::new();
    for pair in ranges.windows(2) {
        let (start, end) = (pair[0].1.max(floor), pair[1].0);
        if start >= end || end >= stack {
            continue;
        }
        let len = end - start;
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping;
        // the reservation is never accessed.
        let p = unsafe {
            libc::mmap(
                start as *mut c_void,
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE
                    | libc::MAP_ANONYMOUS
                    | libc::MAP_NORESERVE
                    | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        assert_eq!(p as usize, start, "reserving {start:#x}..{end:#x}");
        reserved.push((start, len));
    }
    reserved
}
