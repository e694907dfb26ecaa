//! The TOML reader of the collection config: TOML documents into a tree of
//! values with their byte spans, with no serialization framework, so that a
//! client that verifies the config links a few kilobytes instead of a
//! general TOML and serde stack. Every collection config, the one `clearcount
//! config check` checks and the one clients read, goes through it.
//!
//! It reads TOML 1.1 (the version the `toml` crate reads, which a property
//! test holds it against: `text_props.rs`): comments, bare, quoted and
//! dotted keys, the four kinds of string (with TOML 1.1's `\e` and `\xHH`
//! escapes), integers (decimal, `0x`, `0o`, `0b`, with `_`), floats
//! (`inf`, `nan`), booleans, arrays, inline tables (which may span lines and
//! end with a comma), `[tables]` and `[[arrays of tables]]`; dates and times
//! are checked but have no use in a config (they are refused as a wrong
//! type).
//!
//! Bounded for hostile input (an auditor reads entries of any log): tables
//! and arrays nest at most [`MAX_DEPTH`] levels, counting every part of a
//! dotted key and of a table header as a level, so no recursion (parsing,
//! or dropping the tree) goes deeper than that; a key is found in its
//! table through a hash index, so reading is linear in the text.

use std::collections::HashMap;
use std::ops::Range;

/// Most levels tables and arrays nest, dotted keys and table headers
/// included (`a.b.c = 1` is three levels deep).
pub(crate) const MAX_DEPTH: usize = 64;

/// A value and the bytes it spans (for a table from a header, the header).
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub val: Val,
    pub span: Range<usize>,
}

#[derive(Debug, Clone)]
pub(crate) enum Val {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date,
    /// `aot`: made by `[[…]]` headers (only those may be extended by one).
    Array {
        items: Vec<Item>,
        aot: bool,
    },
    Table(Table),
}

impl Val {
    /// What the value is, for "invalid type" messages.
    pub(crate) fn kind(&self) -> String {
        match self {
            Val::Str(s) => format!("string {s:?}"),
            Val::Int(i) => format!("integer `{i}`"),
            Val::Float(f) => format!("floating point `{f}`"),
            Val::Bool(b) => format!("boolean `{b}`"),
            Val::Date => "date-time".into(),
            Val::Array { .. } => "array".into(),
            Val::Table(_) => "table".into(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    /// Keys in order, with the key's span and the value.
    pub entries: Vec<(String, Range<usize>, Item)>,
    /// Each key's position in `entries`.
    index: HashMap<String, usize>,
    /// Made by a `[header]` or an inline table (closed to other headers),
    /// rather than on the way to a deeper one.
    defined: bool,
    /// Made by dotted keys.
    dotted: bool,
    /// An inline table: closed to every later addition.
    inline: bool,
}

impl Table {
    fn get_mut(&mut self, key: &str) -> Option<&mut Item> {
        let &i = self.index.get(key)?;
        self.entries.get_mut(i).map(|(_, _, v)| v)
    }

    /// Adds a key that is not there yet.
    fn push(&mut self, key: String, span: Range<usize>, item: Item) {
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, span, item));
    }
}

/// A syntax problem: where, and what.
pub(crate) type Error = (usize, String);

/// Reads a TOML document.
pub(crate) fn parse(text: &str) -> Result<Table, Error> {
    let mut p = P {
        s: text.as_bytes(),
        t: text,
        i: 0,
    };
    let mut root = Table::default();
    let mut cur: Vec<String> = Vec::new();
    loop {
        p.ws();
        match p.peek() {
            None => break,
            Some(b'#') | Some(b'\n') | Some(b'\r') => {}
            Some(b'[') => {
                let start = p.i;
                let aot = p.s[p.i..].starts_with(b"[[");
                p.i += if aot { 2 } else { 1 };
                p.ws();
                let keys = p.key(0)?;
                p.ws();
                let close: &[u8] = if aot { b"]]" } else { b"]" };
                if !p.s[p.i..].starts_with(close) {
                    return Err(p.err("expected `]` to close the table header"));
                }
                p.i += close.len();
                let span = start..p.i;
                header(&mut root, &keys, aot, span)?;
                cur = keys.into_iter().map(|(k, _)| k).collect();
            }
            Some(_) => {
                let keys = p.key(cur.len())?;
                p.ws();
                if !p.eat(b'=') {
                    return Err(p.err("expected `=` after a key"));
                }
                p.ws();
                let item = p.value(cur.len() + keys.len())?;
                let table = descend(&mut root, &cur)?;
                insert(table, &keys, item)?;
            }
        }
        p.ws();
        p.comment()?;
        if !(p.eat_newline() || p.peek().is_none()) {
            return Err(p.err("expected a newline after a value or header"));
        }
    }
    Ok(root)
}

/// The table at `path` (from the root, the last element of an array of
/// tables at each step).
fn descend<'t>(root: &'t mut Table, path: &[String]) -> Result<&'t mut Table, Error> {
    let mut t = root;
    for k in path {
        let item = t.get_mut(k).ok_or((0, format!("no table `{k}`")))?;
        t = match &mut item.val {
            Val::Table(t) => t,
            Val::Array { items, aot: true } => match items.last_mut().map(|i| &mut i.val) {
                Some(Val::Table(t)) => t,
                _ => return Err((item.span.start, format!("`{k}` is not a table"))),
            },
            _ => return Err((item.span.start, format!("`{k}` is not a table"))),
        };
    }
    Ok(t)
}

/// Applies a `[header]` or `[[header]]`.
fn header(
    root: &mut Table,
    keys: &[(String, Range<usize>)],
    aot: bool,
    span: Range<usize>,
) -> Result<(), Error> {
    let (last, parents) = keys
        .split_last()
        .ok_or((span.start, "empty header".to_string()))?;
    let mut t = root;
    for (k, ks) in parents {
        if t.get_mut(k).is_none() {
            t.push(
                k.clone(),
                ks.clone(),
                Item {
                    val: Val::Table(Table::default()),
                    span: ks.clone(),
                },
            );
        }
        let item = t.get_mut(k).ok_or((ks.start, "lost key".to_string()))?;
        t = match &mut item.val {
            Val::Table(t) if !t.inline => t,
            Val::Array { items, aot: true } => match items.last_mut().map(|i| &mut i.val) {
                Some(Val::Table(t)) => t,
                _ => return Err((ks.start, format!("`{k}` is not a table"))),
            },
            _ => return Err((ks.start, format!("duplicate key `{k}`"))),
        };
    }
    let (k, ks) = last;
    let new_table = || Item {
        val: Val::Table(Table {
            defined: true,
            ..Table::default()
        }),
        span: span.clone(),
    };
    match t.get_mut(k) {
        None => {
            let val = if aot {
                Val::Array {
                    items: vec![new_table()],
                    aot: true,
                }
            } else {
                new_table().val
            };
            t.push(
                k.clone(),
                ks.clone(),
                Item {
                    val,
                    span: span.clone(),
                },
            );
        }
        Some(item) => match (&mut item.val, aot) {
            (Val::Array { items, aot: true }, true) => items.push(new_table()),
            (Val::Table(t), false) if !t.defined && !t.dotted && !t.inline => {
                t.defined = true;
                item.span = span.clone();
            }
            _ => return Err((ks.start, format!("duplicate key `{k}`"))),
        },
    }
    Ok(())
}

/// Inserts `key = value` (the key maybe dotted) into `t`.
fn insert(t: &mut Table, keys: &[(String, Range<usize>)], item: Item) -> Result<(), Error> {
    let ((k, ks), parents) = keys
        .split_last()
        .ok_or((item.span.start, "empty key".into()))?;
    let mut t = t;
    for (pk, pks) in parents {
        if t.get_mut(pk).is_none() {
            t.push(
                pk.clone(),
                pks.clone(),
                Item {
                    val: Val::Table(Table {
                        dotted: true,
                        ..Table::default()
                    }),
                    span: pks.clone(),
                },
            );
        }
        let sub = t.get_mut(pk).ok_or((pks.start, "lost key".to_string()))?;
        t = match &mut sub.val {
            Val::Table(st) if st.dotted && !st.inline => st,
            _ => return Err((pks.start, format!("duplicate key `{pk}`"))),
        };
    }
    if t.get_mut(k).is_some() {
        return Err((ks.start, format!("duplicate key `{k}`")));
    }
    t.push(k.clone(), ks.clone(), item);
    Ok(())
}

struct P<'a> {
    s: &'a [u8],
    t: &'a str,
    i: usize,
}

impl P<'_> {
    fn err(&self, what: &str) -> Error {
        (self.i, what.to_string())
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn eat_newline(&mut self) -> bool {
        if self.s[self.i..].starts_with(b"\r\n") {
            self.i += 2;
            true
        } else {
            self.eat(b'\n')
        }
    }
    /// Spaces and tabs.
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    /// A comment, up to its newline: no control character but tab.
    fn comment(&mut self) -> Result<(), Error> {
        if self.peek() == Some(b'#') {
            while let Some(c) = self.peek() {
                if c == b'\n' || (c == b'\r' && self.s.get(self.i + 1) == Some(&b'\n')) {
                    break;
                }
                if (c < b' ' && c != b'\t') || c == 0x7f {
                    return Err(self.err("control character in a comment"));
                }
                self.i += 1;
            }
        }
        Ok(())
    }
    /// Whitespace, newlines and comments (inside arrays and inline tables).
    fn ws_lines(&mut self) -> Result<(), Error> {
        loop {
            self.ws();
            self.comment()?;
            if !self.eat_newline() {
                return Ok(());
            }
        }
    }
    /// A dotted key, `depth` levels down: its parts and their spans.
    fn key(&mut self, depth: usize) -> Result<Vec<(String, Range<usize>)>, Error> {
        let mut keys = Vec::new();
        loop {
            if depth + keys.len() >= MAX_DEPTH {
                return Err(self.err(&format!(
                    "nested too deep: keys and tables nest at most {MAX_DEPTH} levels"
                )));
            }
            self.ws();
            let start = self.i;
            let k = match self.peek() {
                Some(b'"') => {
                    if self.s[self.i..].starts_with(b"\"\"\"") {
                        return Err(self.err("a key cannot be a multi-line string"));
                    }
                    self.basic_string()?
                }
                Some(b'\'') => {
                    if self.s[self.i..].starts_with(b"'''") {
                        return Err(self.err("a key cannot be a multi-line string"));
                    }
                    self.literal_string()?
                }
                _ => {
                    while self
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
                    {
                        self.i += 1;
                    }
                    if self.i == start {
                        return Err(self.err("expected a key"));
                    }
                    self.t[start..self.i].to_string()
                }
            };
            keys.push((k, start..self.i));
            self.ws();
            if !self.eat(b'.') {
                return Ok(keys);
            }
        }
    }
    /// A value, `depth` levels down.
    fn value(&mut self, depth: usize) -> Result<Item, Error> {
        if depth > MAX_DEPTH {
            return Err(self.err(&format!(
                "nested too deep: keys and tables nest at most {MAX_DEPTH} levels"
            )));
        }
        let start = self.i;
        let val = match self.peek() {
            None => return Err(self.err("expected a value")),
            Some(b'"') => {
                if self.s[self.i..].starts_with(b"\"\"\"") {
                    Val::Str(self.multiline_basic()?)
                } else {
                    Val::Str(self.basic_string()?)
                }
            }
            Some(b'\'') => {
                if self.s[self.i..].starts_with(b"'''") {
                    Val::Str(self.multiline_literal()?)
                } else {
                    Val::Str(self.literal_string()?)
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws_lines()?;
                    if self.eat(b']') {
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                    self.ws_lines()?;
                    if self.eat(b']') {
                        break;
                    }
                    if !self.eat(b',') {
                        return Err(self.err("expected `,` or `]` in an array"));
                    }
                }
                Val::Array { items, aot: false }
            }
            Some(b'{') => {
                self.i += 1;
                let mut t = Table::default();
                loop {
                    self.ws_lines()?;
                    if self.eat(b'}') {
                        break;
                    }
                    let keys = self.key(depth)?;
                    self.ws();
                    if !self.eat(b'=') {
                        return Err(self.err("expected `=` after a key"));
                    }
                    self.ws();
                    let v = self.value(depth + keys.len())?;
                    insert(&mut t, &keys, v)?;
                    self.ws_lines()?;
                    if self.eat(b'}') {
                        break;
                    }
                    if !self.eat(b',') {
                        return Err(self.err("expected `,` or `}` in an inline table"));
                    }
                }
                close_inline(&mut t);
                Val::Table(t)
            }
            Some(_) => self.scalar()?,
        };
        Ok(Item {
            val,
            span: start..self.i,
        })
    }
    /// `true`, `false`, a number or a date.
    fn scalar(&mut self) -> Result<Val, Error> {
        let start = self.i;
        while self.peek().is_some_and(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'+' | b'-' | b'.' | b':')
        }) {
            self.i += 1;
        }
        // A date and time may hold one space: `1979-05-27 07:32:00`.
        let word = &self.t[start..self.i];
        let is_date = word.len() >= 8
            && word.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && word.as_bytes()[4] == b'-'
            || word.len() >= 5 && word.as_bytes()[2] == b':';
        if is_date {
            if self.peek() == Some(b' ')
                && self.s.get(self.i + 1).is_some_and(u8::is_ascii_digit)
                && word.len() == 10
            {
                self.i += 1;
                while self.peek().is_some_and(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.' | b':')
                }) {
                    self.i += 1;
                }
            }
            let text = &self.t[start..self.i];
            if !is_datetime(text) {
                return Err((start, format!("invalid date or time `{text}`")));
            }
            return Ok(Val::Date);
        }
        if start == self.i {
            return Err(self.err("expected a value"));
        }
        let bad = |p: &P<'_>| (start, format!("invalid value `{}`", &p.t[start..p.i]));
        match word {
            "true" => return Ok(Val::Bool(true)),
            "false" => return Ok(Val::Bool(false)),
            "inf" | "+inf" => return Ok(Val::Float(f64::INFINITY)),
            "-inf" => return Ok(Val::Float(f64::NEG_INFINITY)),
            "nan" | "+nan" | "-nan" => return Ok(Val::Float(f64::NAN)),
            _ => {}
        }
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
            if let Some(digits) = word.strip_prefix(prefix) {
                let clean = underscores(digits, |c| c.is_digit(radix), |c| c.is_digit(radix))
                    .ok_or_else(|| bad(self))?;
                return i64::from_str_radix(&clean, radix)
                    .map(Val::Int)
                    .map_err(|_| bad(self));
            }
        }
        let unsigned = word.strip_prefix(['+', '-']).unwrap_or(word);
        let is_float = unsigned.contains(['.', 'e', 'E']);
        // The integer part: no leading zero, digits around every `_`.
        let int_part = unsigned.split(['.', 'e', 'E']).next().unwrap_or_default();
        if int_part.is_empty() || (int_part.len() > 1 && int_part.starts_with('0')) {
            return Err(bad(self));
        }
        if !is_float {
            let clean = underscores(
                word.trim_start_matches('+'),
                |c| c.is_ascii_digit() || c == '-',
                |c| c.is_ascii_digit(),
            )
            .ok_or_else(|| bad(self))?;
            return clean.parse().map(Val::Int).map_err(|_| bad(self));
        }
        // A float: digits on both sides of `.`; an exponent of digits.
        let (mantissa, exp) = match unsigned.find(['e', 'E']) {
            Some(e) => (&unsigned[..e], Some(&unsigned[e + 1..])),
            None => (unsigned, None),
        };
        if let Some((_, frac)) = mantissa.split_once('.')
            && frac.is_empty()
        {
            return Err(bad(self));
        }
        if let Some(exp) = exp {
            let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if exp.is_empty() || !exp.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(bad(self));
            }
        }
        let clean = underscores(
            word,
            |c| c.is_ascii_digit() || "+-.eE".contains(c),
            |c| c.is_ascii_digit(),
        )
        .ok_or_else(|| bad(self))?;
        match clean.parse::<f64>() {
            Ok(f) if f.is_infinite() => Err((
                start,
                format!("floating point number `{word}` is out of range"),
            )),
            Ok(f) => Ok(Val::Float(f)),
            Err(_) => Err(bad(self)),
        }
    }
    fn hex_escape(&mut self, n: usize) -> Result<char, Error> {
        let h = self
            .t
            .get(self.i..self.i + n)
            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32)
            .ok_or_else(|| self.err("invalid unicode escape"))?;
        self.i += n;
        Ok(h)
    }
    fn escape(&mut self, out: &mut String) -> Result<(), Error> {
        let c = self.peek().ok_or_else(|| self.err("unfinished escape"))?;
        self.i += 1;
        out.push(match c {
            b'b' => '\u{8}',
            b't' => '\t',
            b'n' => '\n',
            b'f' => '\u{c}',
            b'r' => '\r',
            b'e' => '\u{1b}',
            b'"' => '"',
            b'\\' => '\\',
            b'x' => self.hex_escape(2)?,
            b'u' => self.hex_escape(4)?,
            b'U' => self.hex_escape(8)?,
            _ => return Err((self.i - 1, "invalid escape in a string".into())),
        });
        Ok(())
    }
    /// The next character of a string (UTF-8), refusing control characters.
    fn string_char(&mut self, out: &mut String, newline_ok: bool) -> Result<(), Error> {
        let c = self.t[self.i..]
            .chars()
            .next()
            .ok_or_else(|| self.err("unfinished string"))?;
        if (c < ' ' && c != '\t' && !(newline_ok && c == '\n')) || c == '\u{7f}' {
            if c == '\r' && newline_ok && self.s.get(self.i + 1) == Some(&b'\n') {
                self.i += 1;
                return Ok(());
            }
            return Err(self.err("control character in a string"));
        }
        out.push(c);
        self.i += c.len_utf8();
        Ok(())
    }
    fn basic_string(&mut self) -> Result<String, Error> {
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None | Some(b'\n') => return Err(self.err("unfinished string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => self.string_char(&mut out, false)?,
            }
        }
    }
    fn literal_string(&mut self) -> Result<String, Error> {
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None | Some(b'\n') => return Err(self.err("unfinished string")),
                Some(b'\'') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(_) => self.string_char(&mut out, false)?,
            }
        }
    }
    /// After the opening quotes: a newline right there is not part of it.
    fn skip_first_newline(&mut self) {
        self.eat_newline();
    }
    /// The closing quotes (three, and up to two more that belong to the
    /// string).
    fn close_multiline(&mut self, q: u8, out: &mut String) -> bool {
        let run = self.s[self.i..].iter().take_while(|&&c| c == q).count();
        if run < 3 {
            return false;
        }
        for _ in 0..(run - 3).min(2) {
            out.push(q as char);
        }
        self.i += run.min(5);
        true
    }
    fn multiline_basic(&mut self) -> Result<String, Error> {
        self.i += 3;
        self.skip_first_newline();
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unfinished string")),
                Some(b'"') if self.close_multiline(b'"', &mut out) => return Ok(out),
                Some(b'\\') => {
                    // A line-ending backslash eats the newline and the
                    // whitespace after it.
                    let mut j = self.i + 1;
                    while matches!(self.s.get(j), Some(b' ' | b'\t')) {
                        j += 1;
                    }
                    if matches!(self.s.get(j), Some(b'\n' | b'\r')) {
                        self.i = j;
                        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                            self.i += 1;
                        }
                    } else {
                        self.i += 1;
                        self.escape(&mut out)?;
                    }
                }
                Some(_) => self.string_char(&mut out, true)?,
            }
        }
    }
    fn multiline_literal(&mut self) -> Result<String, Error> {
        self.i += 3;
        self.skip_first_newline();
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unfinished string")),
                Some(b'\'') if self.close_multiline(b'\'', &mut out) => return Ok(out),
                Some(_) => self.string_char(&mut out, true)?,
            }
        }
    }
}

/// True for a TOML date-time, local date-time, local date or local time
/// (RFC 3339 shapes; seconds may be left out of a time, as TOML 1.1
/// allows).
fn is_datetime(text: &str) -> bool {
    fn num(s: &str, lo: u32, hi: u32) -> Option<u32> {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
            .filter(|n| (lo..=hi).contains(n))
    }
    fn date(d: &str) -> bool {
        let (Some(y), Some(m), Some(day)) = (d.get(..4), d.get(5..7), d.get(8..10)) else {
            return false;
        };
        if d.len() != 10 || &d[4..5] != "-" || &d[7..8] != "-" {
            return false;
        }
        let Ok(y) = y.parse::<u32>() else {
            return false;
        };
        if !d[..4].bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
        let Some(m) = num(m, 1, 12) else { return false };
        let days = match m {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        num(day, 1, days).is_some()
    }
    fn time(t: &str) -> bool {
        // HH:MM[:SS[.frac]], then an optional offset.
        let (clock, offset) = match t.find(['Z', 'z', '+', '-']) {
            Some(i) => (&t[..i], Some(&t[i..])),
            None => (t, None),
        };
        let (hms, frac) = match clock.split_once('.') {
            Some((a, f)) => (a, Some(f)),
            None => (clock, None),
        };
        let parts: Vec<&str> = hms.split(':').collect();
        let ok_clock = match parts.as_slice() {
            [h, m] => frac.is_none() && num(h, 0, 23).is_some() && num(m, 0, 59).is_some(),
            [h, m, s] => {
                num(h, 0, 23).is_some() && num(m, 0, 59).is_some() && num(s, 0, 60).is_some()
            }
            _ => false,
        };
        let ok_frac = frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
        let ok_offset = match offset {
            None | Some("Z" | "z") => true,
            Some(o) => {
                o.len() == 6
                    && &o[3..4] == ":"
                    && num(&o[1..3], 0, 23).is_some()
                    && num(&o[4..6], 0, 59).is_some()
            }
        };
        ok_clock && ok_frac && ok_offset
    }
    if text.len() >= 10 && text.as_bytes()[4] == b'-' {
        let (d, rest) = text.split_at(10);
        if !date(d) {
            return false;
        }
        match rest.chars().next() {
            None => true,
            Some('T' | 't' | ' ') => time(&rest[1..]),
            Some(_) => false,
        }
    } else {
        // A local time has no offset.
        !text.contains(['Z', 'z', '+', '-']) && time(text)
    }
}

/// Marks an inline table and every table in it closed.
fn close_inline(t: &mut Table) {
    t.inline = true;
    t.defined = true;
    for (_, _, item) in &mut t.entries {
        if let Val::Table(sub) = &mut item.val {
            close_inline(sub);
        }
    }
}

/// `word` without its underscores, if each stands between two digits
/// (`between`) and every other character is one `digit` accepts.
fn underscores(
    word: &str,
    digit: impl Fn(char) -> bool,
    between: impl Fn(char) -> bool,
) -> Option<String> {
    let b: Vec<char> = word.chars().collect();
    let mut out = String::with_capacity(b.len());
    for (i, &c) in b.iter().enumerate() {
        if c == '_' {
            let ok = i > 0 && i + 1 < b.len() && between(b[i - 1]) && between(b[i + 1]);
            if !ok {
                return None;
            }
        } else if digit(c) {
            out.push(c);
        } else {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'t>(t: &'t Table, k: &str) -> &'t Val {
        &t.entries.iter().find(|(n, _, _)| n == k).unwrap().2.val
    }

    #[test]
    fn reads_toml() {
        let doc = r#"
# comment
a = 1_000 # trailing
b = -0.5e-3
"c d" = 'lit\eral'
e = """
multi \
   line"""
f = '''
raw "x"'''
g = [ 1, 2,
  # inside
  3, ]
h = { x = 1, y.z = "s" }
i = 0x1F
j = +inf
k = 1979-05-27T07:32:00Z
l.m = true
[[t]]
n = 1
[[t.u]]
o = 2
[[t]]
n = 2
[s.v]
w = "\u00e9\t"
"#;
        let t = parse(doc).unwrap();
        assert!(matches!(get(&t, "a"), Val::Int(1000)));
        assert!(matches!(get(&t, "b"), Val::Float(f) if *f == -0.5e-3));
        assert!(matches!(get(&t, "c d"), Val::Str(s) if s == "lit\\eral"));
        assert!(matches!(get(&t, "e"), Val::Str(s) if s == "multi line"));
        assert!(matches!(get(&t, "f"), Val::Str(s) if s == "raw \"x\""));
        assert!(matches!(get(&t, "g"), Val::Array { items, .. } if items.len() == 3));
        assert!(matches!(get(&t, "i"), Val::Int(31)));
        assert!(matches!(get(&t, "j"), Val::Float(f) if f.is_infinite()));
        assert!(matches!(get(&t, "k"), Val::Date));
        let Val::Array { items, aot: true } = get(&t, "t") else {
            panic!()
        };
        assert_eq!(items.len(), 2);
        let Val::Table(first) = &items[0].val else {
            panic!()
        };
        assert!(matches!(get(first, "u"), Val::Array { items, .. } if items.len() == 1));
        let Val::Table(s) = get(&t, "s") else {
            panic!()
        };
        let Val::Table(v) = get(s, "v") else { panic!() };
        assert!(matches!(get(v, "w"), Val::Str(x) if x == "é\t"));
    }

    /// The same tree as the `toml` crate reads (the server's declared
    /// counters use it), for every document of the corpus.
    #[test]
    fn agrees_with_the_toml_crate() {
        fn same(ours: &Val, theirs: &toml::Value) -> bool {
            match (ours, theirs) {
                (Val::Str(a), toml::Value::String(b)) => a == b,
                (Val::Int(a), toml::Value::Integer(b)) => a == b,
                (Val::Float(a), toml::Value::Float(b)) => {
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
                }
                (Val::Bool(a), toml::Value::Boolean(b)) => a == b,
                (Val::Date, toml::Value::Datetime(_)) => true,
                (Val::Array { items, .. }, toml::Value::Array(b)) => {
                    items.len() == b.len() && items.iter().zip(b).all(|(x, y)| same(&x.val, y))
                }
                (Val::Table(a), toml::Value::Table(b)) => same_table(a, b),
                _ => false,
            }
        }
        fn same_table(a: &Table, b: &toml::Table) -> bool {
            a.entries.len() == b.len()
                && a.entries
                    .iter()
                    .all(|(k, _, v)| b.get(k).is_some_and(|w| same(&v.val, w)))
        }
        let docs = [
            include_str!("../../../../config/config.toml"),
            "a = [\n 1,\n 2, # c\n]\n",
            "a = { b = 1, c = { d = 'x' } }\n",
            "a.b.c = 1\na.b.d = 2\n",
            "[a.b]\nc = 1\n[a]\nd = 2\n",
            "x = 1e3\ny = -0.0\nz = 1_2.3_4e-1_0\nw = 0o17\nv = 0b101\n",
            r#"s = "\u00e9\U0001F600\\""#,
            "s = \"\"\"\nab\"\"c\"\"\"\"\n",
            "s = '''a''''\n",
            "d = 1979-05-27\nt = 07:32:00\nu = 1979-05-27 07:32:00Z\n",
            "[[a.b]]\nc = 1\n[[a.b]]\nc = 2\n[a]\nd = 3\n",
            "'quoted key' = 1\n\"other.key\" = 2\n",
            "a = 9223372036854775807\nb = -9223372036854775808\n",
            "a = 9223372036854775808\n",
            "a = 1\r\nb = 2\r\n",
            "a = \"tab\there\"\n",
            "a = 00\n",
            "a = +0\n",
            "a = 0.1e+2\n",
            "a = 1.e2\n",
            "a = nan\nb = -inf\n",
            "a = 1\na = 2\n",
            "[t]\n[t]\n",
            "a = [1 2]\n",
            "a = \"\\q\"\n",
            "a = 1__0\n",
        ];
        for doc in docs {
            let ours = parse(doc);
            let theirs = doc.parse::<toml::Table>();
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert!(same_table(a, b), "{doc:?}: {a:?} vs {b:?}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{doc:?}: ours {ours:?}, toml {theirs:?}"),
            }
        }
    }

    #[test]
    fn refuses_what_toml_refuses() {
        for bad in [
            "a = 1\na = 2\n",
            "a = 01\n",
            "a = 1__0\n",
            "a = _1\n",
            "a = 1.\n",
            "a = .5\n",
            "a = \"x\n",
            "a = 'x\n",
            "a = [1 2]\n",
            "a = \n",
            "a = 1 b = 2\n",
            "[t]\n[t]\n",
            "t = 1\n[t]\n",
            "a = { b = 1 }\n[a]\n",
            "[[a]]\n[a]\n",
            "a = [1]\n[[a]]\n",
            "a = \"\\q\"\n",
            "a = 1e\n",
            "= 1\n",
            "a.b = 1\n[a]\n",
            // Found by the property test (text_props.rs).
            "a = 1 # a lone \r in a comment\n",
            "a = 1_e3\n",
            "a = 1100e306\n",
            "a = 1100-00000000306\n",
            "a = 2023-02-29\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
