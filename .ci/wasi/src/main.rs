//! Counts through every API on a target without file mapping, then says
//! what telemetry did. `.ci/wasi-test` checks that nothing was written.

use clearcount::counter::{self, Counter};
use clearcount::{StackCounter, Telemetry};

static BUILDS: Counter = Counter::new("wasi/command:build");
static SLOW: StackCounter = StackCounter::new("wasi/slow", 8);

fn main() {
    let started = Telemetry::new("wasitool", "wasi-count", "1.0").start();
    for _ in 0..3 {
        BUILDS.inc();
        counter::inc("wasi/flag:verbose");
        SLOW.inc();
    }
    println!("mode={}", started.mode);
    println!("file={:?}", started.file);
    println!("problem={}", started.problem.unwrap_or_default());
}
