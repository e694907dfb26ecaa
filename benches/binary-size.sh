#!/usr/bin/env bash
# Release binary size of a hello world with and without clearcount (counter
# engine only, the default features), built in a scratch crate next to the
# target directory. Usage: bash benches/binary-size.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/binary-size"
rm -rf "$work"
mkdir -p "$work/src/bin"
cat > "$work/Cargo.toml" <<TOML
[package]
name = "binary-size"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
clearcount = { path = "$root" }
TOML
cat > "$work/src/bin/plain.rs" <<'RS'
fn main() {
    println!("hello");
}
RS
cat > "$work/src/bin/counted.rs" <<'RS'
use clearcount::{Counter, Telemetry};
static HELLO: Counter = Counter::new("hello/command:hello");
fn main() {
    Telemetry::new("hello", "hello", "1.0").start();
    HELLO.inc();
    clearcount::counter::inc("hello/by-name");
    println!("hello");
}
RS
(cd "$work" && CARGO_TARGET_DIR="$work/target" cargo build --release --quiet)
plain=$(stat -c %s "$work/target/release/plain")
counted=$(stat -c %s "$work/target/release/counted")
echo "hello world, release (cargo defaults): without clearcount ${plain} bytes, with ${counted} bytes (+$((counted - plain)))"
