//! The `clearcount` command: see `clearcount --help`.

fn main() {
    std::process::exit(clearcount::cli::main_with_args(std::env::args_os()));
}
