//! An instrumented command-line tool, the way a toolchain uses clearcount.
//!
//! Copy this file to start: it starts telemetry first thing in `main`,
//! declares its counters as statics, and counts what it does.
//!
//! ```text
//! instrumented hello              count a command
//! instrumented inc NAME [TIMES]   add TIMES (default 1) to counter NAME
//! instrumented stack NAME         bump a stack counter NAME from a nested call
//! ```
//!
//! Telemetry lives in namespace `example`: `EXAMPLE_TELEMETRY=off` or
//! `DO_NOT_TRACK=1` turns it off, `clearcount --namespace example status`
//! shows what is counted.

use clearcount::counter::{self, Counter};
use clearcount::{StackCounter, Telemetry};
use std::process::ExitCode;

static HELLO: Counter = Counter::new("instrumented/command:hello");
static INC: Counter = Counter::new("instrumented/command:inc");
static STACK: Counter = Counter::new("instrumented/command:stack");

fn main() -> ExitCode {
    // 1. Start telemetry before anything else.
    let started = Telemetry::new("example", "instrumented", env!("CARGO_PKG_VERSION")).start();
    if std::env::var_os("INSTRUMENTED_DEBUG").is_some() {
        eprintln!("telemetry: {started:?}");
    }

    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["hello"] => {
            HELLO.inc();
            println!("hello");
        }
        ["inc", name] | ["inc", name, _] => {
            INC.inc();
            let times: u64 = match args.get(2).map(|t| t.parse()) {
                None => 1,
                Some(Ok(t)) => t,
                Some(Err(_)) => return usage("TIMES must be a number"),
            };
            // By name, in a loop: the same path a hot loop in a tool takes.
            for _ in 0..times {
                counter::inc(name);
            }
        }
        ["stack", name] => {
            STACK.inc();
            stack(name);
        }
        _ => return usage("unknown command"),
    }
    ExitCode::SUCCESS
}

/// Stack counters are statics too; a program with a dynamic name keeps one
/// per name (here a small fixed set).
fn stack(name: &str) {
    static DEFAULT: StackCounter = StackCounter::new("instrumented/stack", 8);
    static OTHER: StackCounter = StackCounter::new("instrumented/stack-other", 8);
    let c = if name == "instrumented/stack-other" {
        &OTHER
    } else {
        &DEFAULT
    };
    nested_outer(c);
}

#[inline(never)]
fn nested_outer(c: &'static StackCounter) {
    nested_inner(c);
}

#[inline(never)]
fn nested_inner(c: &'static StackCounter) {
    c.inc();
}

fn usage(why: &str) -> ExitCode {
    eprintln!("instrumented: {why}\nusage: instrumented hello | inc NAME [TIMES] | stack NAME");
    ExitCode::from(2)
}
