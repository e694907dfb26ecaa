//! Counter names: the grammar every counter name must follow, and the
//! expansion of bucket sets.
//!
//! The normative text is `counters-spec/naming.md`; this module is its
//! implementation. In short:
//!
//! ```text
//! name     = base [ ":" bucket ]            ; at most 128 bytes
//! base     = segment *( "/" segment )
//! segment  = 1*( ALPHA / DIGIT / "_" / "-" / "." )
//! bucket   = 1*( ALPHA / DIGIT / "_" / "-" / "." / "+" / "<" / ">" / "=" )
//! set      = base ":{" bucket *( "," bucket ) "}"   ; config files only
//! stack    = name 1*( LF frame )            ; at most 4096 bytes
//! frame    = 1*256( %x21-7E )               ; printable ASCII, no space
//! ```
//!
//! Names are checked when a counter is first used; a name that breaks the
//! grammar is refused (its counts are dropped), never a panic.
//!
//! ```
//! use clearcount_protocol::name;
//! assert!(name::check("compile/flag:opt-level").is_ok());
//! assert!(name::check("has space").is_err());
//! assert_eq!(
//!     name::expand("build/target:{linux,macos}").unwrap(),
//!     vec!["build/target:linux", "build/target:macos"],
//! );
//! ```

use std::fmt;

/// Longest plain counter name, in bytes.
pub const MAX_NAME: usize = 128;
/// Longest stack counter name (counter name, newlines and frames), in bytes.
pub const MAX_STACK_NAME: usize = 4096;
/// Longest single frame of a stack counter name, in bytes.
pub const MAX_FRAME: usize = 256;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    reason: String,
}

impl NameError {
    fn new(reason: impl Into<String>) -> Self {
        NameError {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for NameError {}

fn segment_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

fn bucket_byte(b: u8) -> bool {
    segment_byte(b) || matches!(b, b'+' | b'<' | b'>' | b'=')
}

/// Checks the base of a name (the part before any `:`).
fn check_base(base: &str) -> Result<(), NameError> {
    if base.is_empty() {
        return Err(NameError::new("name is empty"));
    }
    for seg in base.split('/') {
        if seg.is_empty() {
            return Err(NameError::new(format!(
                "name {base:?} has an empty segment (leading, trailing or double '/')"
            )));
        }
        if let Some(b) = seg.bytes().find(|&b| !segment_byte(b)) {
            return Err(NameError::new(format!(
                "name {base:?} has a character not allowed in a name: {:?}",
                b as char
            )));
        }
    }
    Ok(())
}

fn check_bucket(name: &str, bucket: &str) -> Result<(), NameError> {
    if bucket.is_empty() {
        return Err(NameError::new(format!("name {name:?} has an empty bucket")));
    }
    if let Some(b) = bucket.bytes().find(|&b| !bucket_byte(b)) {
        return Err(NameError::new(format!(
            "name {name:?} has a character not allowed in a bucket: {:?}",
            b as char
        )));
    }
    Ok(())
}

/// Checks a plain counter name (`base` or `base:bucket`).
///
/// ```
/// assert!(clearcount_protocol::name::check("gopls/editor:vscode").is_ok());
/// assert!(clearcount_protocol::name::check("a//b").is_err());
/// assert!(clearcount_protocol::name::check("a:b:c").is_err());
/// ```
pub fn check(name: &str) -> Result<(), NameError> {
    if name.len() > MAX_NAME {
        return Err(NameError::new(format!(
            "name is {} bytes long, the limit is {MAX_NAME}",
            name.len()
        )));
    }
    match name.split_once(':') {
        None => check_base(name),
        Some((base, bucket)) => {
            check_base(base)?;
            if bucket.contains(':') {
                return Err(NameError::new(format!(
                    "name {name:?} has more than one ':'"
                )));
            }
            check_bucket(name, bucket)
        }
    }
}

/// Checks one frame of a stack counter name.
fn check_frame(frame: &str) -> Result<(), NameError> {
    if frame.is_empty() || frame.len() > MAX_FRAME {
        return Err(NameError::new(format!(
            "stack frame must be 1 to {MAX_FRAME} bytes, got {}",
            frame.len()
        )));
    }
    if frame.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return Err(NameError::new(format!(
            "stack frame {frame:?} has a byte outside printable ASCII"
        )));
    }
    Ok(())
}

/// Checks a stack counter name: a plain name, then one or more frames, each
/// after a newline.
///
/// ```
/// assert!(clearcount_protocol::name::check_stack("crash/panic\nmain:+3\nrun:+12").is_ok());
/// assert!(clearcount_protocol::name::check_stack("crash/panic").is_err());
/// ```
pub fn check_stack(name: &str) -> Result<(), NameError> {
    if name.len() > MAX_STACK_NAME {
        return Err(NameError::new(format!(
            "stack name is {} bytes long, the limit is {MAX_STACK_NAME}",
            name.len()
        )));
    }
    let mut parts = name.split('\n');
    check(parts.next().unwrap_or(""))?;
    let mut frames = 0;
    for frame in parts {
        check_frame(frame)?;
        frames += 1;
    }
    if frames == 0 {
        return Err(NameError::new("stack name has no frames"));
    }
    Ok(())
}

/// Checks a name as found in a counter file or a report: a stack name if it
/// holds a newline, else a plain name.
pub fn check_any(name: &str) -> Result<(), NameError> {
    if name.contains('\n') {
        check_stack(name)
    } else {
        check(name)
    }
}

/// The counter name part of a stack counter name (before the first newline).
///
/// ```
/// assert_eq!(clearcount_protocol::name::stack_counter("crash/panic\nmain:+1"), "crash/panic");
/// assert_eq!(clearcount_protocol::name::stack_counter("plain"), "plain");
/// ```
pub fn stack_counter(name: &str) -> &str {
    name.split_once('\n').map_or(name, |(head, _)| head)
}

/// Expands a bucket set `base:{a,b,c}` into the names it stands for; any
/// other valid name expands to itself.
///
/// ```
/// use clearcount_protocol::name::expand;
/// assert_eq!(expand("x:{a,b}").unwrap(), vec!["x:a", "x:b"]);
/// assert_eq!(expand("x:a").unwrap(), vec!["x:a"]);
/// assert!(expand("x:{}").is_err());
/// ```
pub fn expand(pattern: &str) -> Result<Vec<String>, NameError> {
    let Some((base, rest)) = pattern.split_once(':') else {
        check(pattern)?;
        return Ok(vec![pattern.to_string()]);
    };
    let Some(inner) = rest.strip_prefix('{') else {
        check(pattern)?;
        return Ok(vec![pattern.to_string()]);
    };
    let inner = inner
        .strip_suffix('}')
        .ok_or_else(|| NameError::new(format!("bucket set {pattern:?} does not end with '}}'")))?;
    check_base(base)?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for bucket in inner.split(',') {
        let bucket = bucket.trim();
        let name = format!("{base}:{bucket}");
        check(&name)?;
        if !seen.insert(name.clone()) {
            return Err(NameError::new(format!(
                "bucket set {pattern:?} lists {bucket:?} twice"
            )));
        }
        out.push(name);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names() {
        for good in [
            "a",
            "a/b/c",
            "a-b.c_d",
            "x:1",
            "lat:<10ms",
            "v:>=2",
            "p/q:a+b",
        ] {
            assert!(check(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "a b", "a\tb", "é", "a:", ":a", "a:b:c", "a:{x}", "a\nb",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        assert!(check(&"a".repeat(MAX_NAME)).is_ok());
        assert!(check(&"a".repeat(MAX_NAME + 1)).is_err());
        assert!(check("").unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn stack_names() {
        assert!(check_stack("c\nf").is_ok());
        assert!(check_stack("c\n").is_err());
        assert!(check_stack("c\nf g").is_err());
        assert!(check_stack(&format!("c\n{}", "f".repeat(MAX_FRAME + 1))).is_err());
        let long = format!("c{}", "\nframe".repeat(1000));
        assert!(check_stack(&long).is_err());
        assert!(check_any("a/b").is_ok() && check_any("a/b\nf:+1").is_ok());
        assert!(check_any("a b").is_err() && check_any("a/b\nf g").is_err());
    }

    #[test]
    fn bucket_sets() {
        assert_eq!(expand("a/b:{x, y}").unwrap(), vec!["a/b:x", "a/b:y"]);
        assert!(expand("a:{x,x}").is_err());
        assert!(expand("a:{x,}").is_err());
        assert!(expand("a:{x").is_err());
        assert!(expand("a b:{x}").is_err());
    }
}
