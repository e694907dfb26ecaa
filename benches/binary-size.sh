#!/usr/bin/env bash
# Stripped release binary sizes of two small programs, each built without
# clearcount, with the counting engine only (no features), and with the
# uploader and the kit (`features = ["kit"]`, what the README's steps use):
#
#   hello  prints a line (and, with clearcount, starts telemetry and counts)
#   tool   a small clap tool with two subcommands (with the kit: the README's
#          steps: upload settings, panic counter, flag counting, the mounted
#          `telemetry` subcommand)
#
# The tool is also built with the kit and the feature `web-view` (the same
# code: its mounted `telemetry view --web` then serves the local pages, so
# the collection server's HTTP stack is linked in); the kit without it
# only says which command serves them.
#
# Built in scratch crates under target/binary-size, with cargo's release
# profile plus `strip = true`: with the defaults (what a toolchain gets by
# adding the dependency line), and with the one recommendation the README
# makes (opt-level "s" and one codegen unit for clearcount's own two
# crates, whose code runs once a day, on a panic, or once per start; the
# counting paths are inlined into the toolchain's own code at its own
# opt-level; it touches none of the toolchain's other crates). Targets
# (from the issue): the engine adds at most 200,000 bytes, the kit at most
# 1,000,000.
# Usage: bash benches/binary-size.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/binary-size"
rm -rf "$work"
mkdir -p "$work"

# What the README recommends a toolchain adds to its Cargo.toml.
recommended='
[profile.release.package.clearcount]
opt-level = "s"
codegen-units = 1
[profile.release.package.clearcount-protocol]
opt-level = "s"
codegen-units = 1'

# crate NAME DEPENDENCY-LINES MAIN.RS [PROFILE-LINES]
crate() {
    mkdir -p "$work/$1/src"
    cat > "$work/$1/Cargo.toml" <<TOML
[package]
name = "$1"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
$2

[profile.release]
strip = true
${4:-}

[workspace]
TOML
    printf '%s\n' "$3" > "$work/$1/src/main.rs"
}

hello_plain='fn main() { println!("hello"); }'
hello_counted='use clearcount::{Counter, Telemetry};
static HELLO: Counter = Counter::new("hello/command:hello");
fn main() {
    Telemetry::new("hello", "hello", "1.0").start();
    HELLO.inc();
    clearcount::counter::inc("hello/by-name");
    println!("hello");
}'
hello_kit='use clearcount::{Counter, Telemetry, upload::UploadSettings};
static HELLO: Counter = Counter::new("hello/command:hello");
fn main() {
    let s = UploadSettings::new("https://t.example.org/upload", "https://t.example.org/config.toml", "key", "policy");
    Telemetry::new("hello", "hello", "1.0").upload(s).start();
    clearcount::kit::panic::install(16);
    HELLO.inc();
    println!("hello");
}'
tool_plain='use clap::{Parser, Subcommand};
#[derive(Parser)]
struct Cli { #[arg(long)] verbose: bool, #[command(subcommand)] command: Command }
#[derive(Subcommand)]
enum Command { Build { #[arg(long)] release: bool }, Run { args: Vec<String> } }
fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Build { release } => println!("build {release} {}", cli.verbose),
        Command::Run { args } => println!("run {args:?}"),
    }
}'
tool_counted='use clap::{Parser, Subcommand};
use clearcount::{Counter, Telemetry};
static BUILDS: Counter = Counter::new("tool/command:build");
#[derive(Parser)]
struct Cli { #[arg(long)] verbose: bool, #[command(subcommand)] command: Command }
#[derive(Subcommand)]
enum Command { Build { #[arg(long)] release: bool }, Run { args: Vec<String> } }
fn main() {
    Telemetry::new("tool", "tool", "1.0").start();
    let cli = Cli::parse();
    match cli.command {
        Command::Build { release } => { BUILDS.inc(); println!("build {release} {}", cli.verbose) }
        Command::Run { args } => { clearcount::counter::inc("tool/command:run"); println!("run {args:?}") }
    }
}'
tool_kit='use clap::{Parser, Subcommand};
use clearcount::{Telemetry, upload::UploadSettings};
#[derive(Parser)]
struct Cli { #[arg(long)] verbose: bool, #[command(subcommand)] command: Command }
#[derive(Subcommand)]
enum Command {
    Build { #[arg(long)] release: bool },
    Run { args: Vec<String> },
    #[command(subcommand)]
    Telemetry(clearcount::kit::subcommand::TelemetryCommand),
}
fn main() {
    let s = UploadSettings::new("https://t.example.org/upload", "https://t.example.org/config.toml", "key", "policy")
        .with_minimum_checkpoint("minimum");
    Telemetry::new("tool", "tool", "1.0").upload(s).start();
    clearcount::kit::panic::install(16);
    let cli: Cli = clearcount::kit::flags::parse("tool");
    match cli.command {
        Command::Build { release } => println!("build {release} {}", cli.verbose),
        Command::Run { args } => println!("run {args:?}"),
        Command::Telemetry(t) => clearcount::kit::subcommand::run("tool", t).unwrap(),
    }
}'

clap_dep='clap = { version = "4", features = ["derive"] }'
engine_dep="clearcount = { path = \"$root\" }"
kit_dep="clearcount = { path = \"$root\", features = [\"kit\"] }"
web_dep="clearcount = { path = \"$root\", features = [\"kit\", \"web-view\"] }"

crate hello-plain "" "$hello_plain"
crate hello-engine "$engine_dep" "$hello_counted"
crate hello-kit "$kit_dep" "$hello_kit"
crate hello-engine-recommended "$engine_dep" "$hello_counted" "$recommended"
crate hello-kit-recommended "$kit_dep" "$hello_kit" "$recommended"
crate tool-plain "$clap_dep" "$tool_plain"
crate tool-engine "$clap_dep
$engine_dep" "$tool_counted"
crate tool-kit "$clap_dep
$kit_dep" "$tool_kit"
crate tool-engine-recommended "$clap_dep
$engine_dep" "$tool_counted" "$recommended"
crate tool-kit-recommended "$clap_dep
$kit_dep" "$tool_kit" "$recommended"
crate tool-kit-web "$clap_dep
$web_dep" "$tool_kit"

size() {
    (cd "$work/$1" && CARGO_TARGET_DIR="$work/target" cargo build --release --quiet)
    stat -c %s "$work/target/release/$1"
}
verdict() { if [ "$1" -le "$2" ]; then echo "met"; else echo "NOT met"; fi; }
for p in hello tool; do
    plain=$(size "$p-plain")
    engine=$(size "$p-engine")
    kit=$(size "$p-kit")
    engine_rec=$(size "$p-engine-recommended")
    kit_rec=$(size "$p-kit-recommended")
    printf '%-6s stripped: without clearcount %9d bytes; engine only %9d (+%d, %s); with kit %9d (+%d, %s)\n' \
        "$p" "$plain" "$engine" $((engine - plain)) "$(verdict $((engine - plain)) 200000)" \
        "$kit" $((kit - plain)) "$(verdict $((kit - plain)) 1000000)"
    printf '%-6s   with the recommended profile lines: engine only %9d (+%d, %s); with kit %9d (+%d, %s); the lines save %d.%d %% of the kit build\n' \
        "$p" "$engine_rec" $((engine_rec - plain)) "$(verdict $((engine_rec - plain)) 200000)" \
        "$kit_rec" $((kit_rec - plain)) "$(verdict $((kit_rec - plain)) 1000000)" \
        $(((kit - kit_rec) * 100 / kit)) $(((kit - kit_rec) * 1000 / kit % 10))
done
kit=$(size tool-kit)
web=$(size tool-kit-web)
printf 'tool   with kit and web-view %9d bytes (+%d over the kit alone)\n' "$web" $((web - kit))
