//! A small, strict JSON reader and writer: what the report format and the
//! client's own small files need, without a serialization framework (so a
//! program that counts carries a few kilobytes of JSON code, not a hundred).
//!
//! The reader takes RFC 8259 JSON only (no comments, no trailing commas, no
//! trailing bytes, fewer than [`MAX_DEPTH`] levels), keeps object members in
//! order, and keeps numbers as their text so that each caller reads them
//! as the type it expects. The writer writes compact or pretty (two-space)
//! JSON; strings are escaped and numbers laid out as `serde_json` does, so
//! files written before read and look the same.
//!
//! ```
//! use clearcount_protocol::json::{self, Value};
//! let v = json::parse(br#"{"a": [1, 2.5, "x\n"], "b": null}"#).unwrap();
//! assert_eq!(v.get("a").and_then(|a| a.as_array()).map(|a| a.len()), Some(3));
//! assert_eq!(json::to_string(&v), r#"{"a":[1,2.5,"x\n"],"b":null}"#);
//! ```

use std::fmt::Write as _;

/// Arrays and objects nest fewer than this many levels (127 at most, as
/// `serde_json` reads them).
pub const MAX_DEPTH: usize = 128;

/// A JSON value. Object members keep their order (and duplicates: callers
/// that care refuse them).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as its (valid JSON) text.
    Number(String),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object: its members in order.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object (the first, if repeated).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    /// What the value is, in serde's words (`integer \`-3\``, `string
    /// "x"`, `sequence`, ...), for error messages.
    pub fn describe(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::Bool(b) => format!("boolean `{b}`"),
            Value::Number(n) if n.contains(['.', 'e', 'E']) => format!("floating point `{n}`"),
            Value::Number(n) => format!("integer `{n}`"),
            Value::String(s) => format!("string {s:?}"),
            Value::Array(_) => "sequence".into(),
            Value::Object(_) => "map".into(),
        }
    }

    /// The number as an unsigned integer, or serde's error (`invalid
    /// value` for a negative or too large integer, `invalid type` for
    /// anything else).
    pub fn to_u64(&self) -> Result<u64, String> {
        match self {
            Value::Number(n) if !n.contains(['.', 'e', 'E']) => self
                .as_u64()
                .ok_or_else(|| format!("invalid value: integer `{n}`, expected u64")),
            v => Err(format!("invalid type: {}, expected u64", v.describe())),
        }
    }

    /// The number as a float, or serde's error.
    pub fn to_f64(&self) -> Result<f64, String> {
        self.as_f64()
            .ok_or_else(|| format!("invalid type: {}, expected f64", self.describe()))
    }

    /// The string, or serde's error.
    pub fn to_str(&self) -> Result<&str, String> {
        self.as_str()
            .ok_or_else(|| format!("invalid type: {}, expected a string", self.describe()))
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    /// The number as an unsigned integer, if it is written as one (no
    /// fraction, no exponent) and fits.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) if n.bytes().all(|b| b.is_ascii_digit()) => n.parse().ok(),
            _ => None,
        }
    }
    /// The number as a float (any JSON number).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => n.parse().ok(),
            _ => None,
        }
    }
    /// A number value for `n`, written as `serde_json` writes it (`null`
    /// when not finite).
    pub fn from_f64(n: f64) -> Value {
        let mut s = String::new();
        write_f64(&mut s, n);
        if s == "null" {
            Value::Null
        } else {
            Value::Number(s)
        }
    }
    /// A number value for `n`.
    pub fn from_u64(n: u64) -> Value {
        Value::Number(n.to_string())
    }
    /// A string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }
    /// A string value, or `null`.
    pub fn opt_string(s: Option<impl Into<String>>) -> Value {
        s.map_or(Value::Null, |s| Value::String(s.into()))
    }
}

/// Parses JSON text.
///
/// ```
/// assert!(clearcount_protocol::json::parse(b"[1,]").is_err());
/// assert!(clearcount_protocol::json::parse(b"{} x").is_err());
/// ```
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let mut p = Parser { b: bytes, i: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(v)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        let line = 1 + self.b[..self.i.min(self.b.len())]
            .iter()
            .filter(|&&c| c == b'\n')
            .count();
        format!("{what} at line {line}")
    }
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn lit(&mut self, word: &str, v: Value) -> Result<Value, String> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("expected value"))
        }
    }
    fn value(&mut self, depth: usize) -> Result<Value, String> {
        // As serde_json: the 128th array or object within others is
        // refused (`depth` counts those around this value).
        if depth + 1 >= MAX_DEPTH && matches!(self.peek(), Some(b'[' | b'{')) {
            return Err(self.err("nested too deep"));
        }
        match self.peek() {
            None => Err(self.err("EOF while parsing a value")),
            Some(b'n') => self.lit("null", Value::Null),
            Some(b't') => self.lit("true", Value::Bool(true)),
            Some(b'f') => self.lit("false", Value::Bool(false)),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.eat(b']') {
                    return Ok(Value::Array(a));
                }
                loop {
                    self.ws();
                    a.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat(b']') {
                        return Ok(Value::Array(a));
                    }
                    if !self.eat(b',') {
                        return Err(self.err("expected `,` or `]`"));
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut m = Vec::new();
                self.ws();
                if self.eat(b'}') {
                    return Ok(Value::Object(m));
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(self.err("key must be a string"));
                    }
                    let k = self.string()?;
                    self.ws();
                    if !self.eat(b':') {
                        return Err(self.err("expected `:`"));
                    }
                    self.ws();
                    let v = self.value(depth + 1)?;
                    m.push((k, v));
                    self.ws();
                    if self.eat(b'}') {
                        return Ok(Value::Object(m));
                    }
                    if !self.eat(b',') {
                        return Err(self.err("expected `,` or `}`"));
                    }
                }
            }
            Some(_) => Err(self.err("expected value")),
        }
    }
    fn digits(&mut self) -> usize {
        let s = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - s
    }
    fn number(&mut self) -> Result<Value, String> {
        let s = self.i;
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.eat(b'.') && self.digits() == 0 {
            return Err(self.err("invalid number"));
        }
        if self.eat(b'e') || self.eat(b'E') {
            let _ = self.eat(b'+') || self.eat(b'-');
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        // Only ASCII was consumed.
        let text = String::from_utf8_lossy(&self.b[s..self.i]).into_owned();
        Ok(Value::Number(text))
    }
    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .b
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("invalid escape"))?;
        self.i += 4;
        Ok(h)
    }
    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // the opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("EOF while parsing a string"));
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.err("EOF while parsing a string"));
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if !(self.eat(b'\\') && self.eat(b'u')) {
                                    return Err(self.err("lone surrogate in string"));
                                }
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("lone surrogate in string"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code)
                                .ok_or_else(|| self.err("lone surrogate in string"))?
                        }
                        _ => return Err(self.err("invalid escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return Err(self.err("control character in string")),
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("invalid UTF-8 in string"))
    }
}

/// Writes `s` as a JSON string, escaped as `serde_json` escapes.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes a float in `serde_json`'s layout: the shortest text that reads
/// back as the same number (where two such texts of 17 digits exist, the
/// nearer one, where `serde_json` may pick the other), in plain notation for exponents from -5 to 16 and
/// scientific notation (`1e-7`, `1.5e+17`) outside; `null` when not finite.
pub fn write_f64(out: &mut String, x: f64) {
    if !x.is_finite() {
        out.push_str("null");
        return;
    }
    // `{:e}` gives the shortest round-trip digits: `-1.2345e-7`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i32;
    // The value is 0.DIGITS × 10^kk.
    let kk = exp + 1;
    if neg {
        out.push('-');
    }
    if n <= kk && kk <= 16 {
        out.push_str(&digits);
        for _ in 0..kk - n {
            out.push('0');
        }
        out.push_str(".0");
    } else if 0 < kk && kk <= 16 {
        out.push_str(&digits[..kk as usize]);
        out.push('.');
        out.push_str(&digits[kk as usize..]);
    } else if -5 < kk && kk <= 0 {
        out.push_str("0.");
        for _ in 0..-kk {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = kk - 1;
        let _ = write!(out, "e{}{e}", if e < 0 { "" } else { "+" });
    }
}

fn write(out: &mut String, v: &Value, indent: Option<usize>) {
    let newline = |out: &mut String, level: usize| {
        if indent.is_some() {
            out.push('\n');
            for _ in 0..level {
                out.push_str("  ");
            }
        }
    };
    let level = indent.unwrap_or(0);
    let inner = indent.map(|l| l + 1);
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(n),
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, level + 1);
                write(out, e, inner);
            }
            if !a.is_empty() {
                newline(out, level);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, e)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, level + 1);
                write_str(out, k);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                write(out, e, inner);
            }
            if !m.is_empty() {
                newline(out, level);
            }
            out.push('}');
        }
    }
}

/// Compact JSON text.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    write(&mut out, v, None);
    out
}

/// Pretty JSON text: two-space indents, as `serde_json::to_string_pretty`.
pub fn to_string_pretty(v: &Value) -> String {
    let mut out = String::new();
    write(&mut out, v, Some(0));
    out
}

/// The members of an object, each key at most once and each one of
/// `known`; else the error `serde` gives (`unknown field`, `duplicate
/// field`).
pub fn fields<'v>(
    v: &'v Value,
    what: &str,
    known: &[&str],
) -> Result<Vec<(&'v str, &'v Value)>, String> {
    let Value::Object(m) = v else {
        return Err(format!("invalid type: expected {what}"));
    };
    let mut out: Vec<(&str, &Value)> = Vec::with_capacity(m.len());
    for (k, e) in m {
        if !known.contains(&k.as_str()) {
            return Err(format!(
                "unknown field `{k}`, expected one of {}",
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if out.iter().any(|(seen, _)| seen == k) {
            return Err(format!("duplicate field `{k}`"));
        }
        out.push((k, e));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_serde_json_writes_them() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut cases = vec![
            0.0,
            -0.0,
            0.5,
            1.0,
            0.1,
            1e-5,
            1e-6,
            1.5e-7,
            123456.0,
            1e15,
            1e16,
            1e17,
            1.25e17,
            2f64.powi(-53),
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            0.30000000000000004,
        ];
        for _ in 0..20_000 {
            cases.push((next() >> 11) as f64 / (1u64 << 53) as f64);
            cases.push(f64::from_bits(next()));
        }
        for x in cases {
            let mut ours = String::new();
            write_f64(&mut ours, x);
            let theirs = serde_json::to_string(&x).unwrap();
            // Where two 17-digit texts both read back as x, the two
            // writers may pick different ones; the layout is the same.
            if !x.is_finite() {
                assert_eq!((ours.as_str(), theirs.as_str()), ("null", "null"));
                continue;
            }
            assert_eq!(
                ours.parse::<f64>().unwrap().to_bits(),
                x.to_bits(),
                "{ours}"
            );
            if ours != theirs {
                assert_eq!(ours.len(), theirs.len(), "{x:e}: {ours} vs {theirs}");
                assert_eq!(
                    &ours[..ours.len() - 1],
                    &theirs[..theirs.len() - 1],
                    "{x:e}: {ours} vs {theirs}"
                );
            }
        }
    }

    #[test]
    fn strings_round_trip_and_escape_as_serde_json() {
        for s in [
            "",
            "a\"b\\c",
            "\n\r\t\u{8}\u{c}\u{1}\u{1f}",
            "é€😀",
            "\u{7f}",
        ] {
            let mut ours = String::new();
            write_str(&mut ours, s);
            assert_eq!(ours, serde_json::to_string(s).unwrap());
            assert_eq!(parse(ours.as_bytes()).unwrap(), Value::String(s.into()));
        }
        assert_eq!(
            parse(br#""\ud83d\ude00\u00e9\/""#).unwrap(),
            Value::String("😀é/".into())
        );
    }

    #[test]
    fn strict() {
        for bad in [
            &b""[..],
            b"01",
            b"1.",
            b"-",
            b"1e",
            b"[1,]",
            b"{\"a\":1,}",
            b"{'a':1}",
            b"\"\x01\"",
            b"\"\\ud800\"",
            b"\"\\x\"",
            b"nul",
            b"[1] 2",
            b"{\"a\" 1}",
            b"\"\xff\"",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).is_err());
        let ok = "[".repeat(MAX_DEPTH - 1) + &"]".repeat(MAX_DEPTH - 1);
        assert!(parse(ok.as_bytes()).is_ok());
    }

    #[test]
    fn pretty_as_serde_json() {
        let text = br#"{"a":[1,{"b":null,"c":[]}],"d":{},"e":"x"}"#;
        let v = parse(text).unwrap();
        let theirs: serde_json::Value = serde_json::from_slice(text).unwrap();
        assert_eq!(
            to_string_pretty(&v),
            serde_json::to_string_pretty(&theirs).unwrap()
        );
        assert_eq!(to_string(&v).as_bytes(), text);
    }
}
