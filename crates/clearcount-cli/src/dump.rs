//! `clearcount dump [--json] FILE...`: any counter file, every counter.
//! The JSON shape is `counters-spec/file-format.md` §8.

use serde_json::{Value, json};
use std::path::PathBuf;

pub(crate) fn run(files: &[PathBuf], json: bool) -> Result<(), String> {
    let mut out = Vec::new();
    for f in files {
        let d = clearcount::dump(f).map_err(|e| format!("{}: {e}", f.display()))?;
        if json {
            out.push(json!({
                "file": f,
                "meta": {
                    "program": d.program,
                    "version": d.version,
                    "os": d.os,
                    "arch": d.arch,
                    "week_begin": d.week_begin,
                    "week_end": d.week_end,
                },
                "records": d.records,
                "counters": d.counters,
                "stacks": d.stacks,
            }));
        } else {
            println!("{}", f.display());
            println!(
                "{} {} {} {}, week {} to {}, {} records",
                d.program, d.version, d.os, d.arch, d.week_begin, d.week_end, d.records
            );
            for (k, v) in &d.counters {
                println!("{v:>10}  {k}");
            }
            for (k, v) in &d.stacks {
                println!("{v:>10}  {}", k.replace('\n', "\n            "));
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&Value::Array(out)).unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_file_is_an_error_that_names_it() {
        let e = super::run(&["/no/such.v1.count".into()], false).unwrap_err();
        assert!(e.starts_with("/no/such.v1.count: "), "{e}");
    }
}
