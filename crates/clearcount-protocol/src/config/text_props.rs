//! Property tests (proptest) of the TOML reader against the `toml` crate,
//! in both directions: documents the `toml` crate writes (random trees of
//! every value type, keys that need quoting, strings with any character)
//! read back as the same tree; and random TOML texts (made of the
//! grammar's pieces, then mutated) are read the same by both readers, or
//! refused by ours with a message at a place in the text. Where the two
//! disagree on whether a text is TOML at all, the difference must be one
//! listed in [`known_difference`].
//!
//! `cargo test -p clearcount-protocol --all-features --lib text_props`

use super::text::{self, Table, Val};
use proptest::prelude::*;

/// Cases per property: a few seconds in CI for all of them.
const CASES: u32 = 300;

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

/// Keys: bare ones, and any text (quoted by the writer).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z][a-z0-9_-]{0,5}",
        1 => "[ -~]{0,6}",
        1 => any::<String>().prop_map(|s| s.chars().take(6).collect()),
    ]
}

fn leaf() -> impl Strategy<Value = toml::Value> {
    prop_oneof![
        any::<String>().prop_map(toml::Value::String),
        "[ -~\t\n\r]{0,12}".prop_map(toml::Value::String),
        any::<i64>().prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
    ]
}

fn value() -> impl Strategy<Value = toml::Value> {
    leaf().prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(toml::Value::Array),
            proptest::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

fn document() -> impl Strategy<Value = toml::Table> {
    proptest::collection::btree_map(key(), value(), 0..8).prop_map(|m| m.into_iter().collect())
}

/// Pieces of TOML text: keys of every form, values of every form
/// (including the edge cases of numbers and strings), headers, comments.
fn key_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,2}",
        "[a-z]{1,2}\\.[a-z]{1,2}",
        "[a-z] ?\\. ?\"[a-z. ]{0,2}\"",
        "\"[a-z .#=]{0,3}\"",
        "'[a-z .\"]{0,3}'",
        "[0-9_-]{1,3}",
    ]
}

fn scalar_text() -> impl Strategy<Value = String> {
    let fixed = [
        "0",
        "-0",
        "+0",
        "00",
        "1_000",
        "1__0",
        "_1",
        "1_",
        "0x1F",
        "0xdead_beef",
        "0o17",
        "0b101",
        "0x",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "1.0",
        "1.",
        ".5",
        "1e3",
        "1E-3",
        "1e",
        "1.5e+10",
        "-0.0",
        "1_2.3_4e-1_0",
        "inf",
        "+inf",
        "-inf",
        "nan",
        "-nan",
        "true",
        "false",
        "True",
        "1979-05-27",
        "07:32:00",
        "1979-05-27T07:32:00Z",
        "1979-05-27 07:32:00",
        "1979-05-27T07:32:00.999+01:00",
        "\"\"",
        "\"a\\tb\\\\c\\\"\"",
        "\"\\u00e9\\U0001F600\"",
        "\"\\ud800\"",
        "\"\\q\"",
        "\"\\e\"",
        "\"\\x41\"",
        "\"\\xZ1\"",
        "07:32",
        "1979-05-27T07:32Z",
        "2024-02-29",
        "2023-02-29",
        "1979-05-27T24:00:00",
        "''",
        "'a\\b'",
        "'''a'''",
        "'''\na''''",
        "\"\"\"\na\\\n  b\"\"\"",
        "\"\"\"a\"\"\"\"\"",
        "[]",
        "[1, 2]",
        "[1, 'a']",
        "[ 1 , 2 , ]",
        "[\n1,\n# c\n2\n]",
        "{}",
        "{ a = 1 }",
        "{ a.b = 1, c = [2] }",
        "{ a = 1, }",
        "{\na = 1\n}",
        "{ a = 1, a = 2 }",
    ];
    prop_oneof![
        proptest::sample::select(fixed.to_vec()).prop_map(str::to_string),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "\"[ -~]{0,6}\"",
    ]
}

fn value_text() -> impl Strategy<Value = String> {
    scalar_text().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(", "))),
            proptest::collection::vec((key_text(), inner), 0..4).prop_map(|v| {
                let parts: Vec<String> = v.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", parts.join(", "))
            }),
        ]
    })
}

fn line_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (key_text(), value_text()).prop_map(|(k, v)| format!("{k} = {v}\n")),
        1 => key_text().prop_map(|k| format!("[{k}]\n")),
        1 => key_text().prop_map(|k| format!("[[{k}]]\n")),
        1 => Just("# a comment\n".to_string()),
        1 => Just("\n".to_string()),
        1 => Just("a = 1 # trailing\r\n".to_string()),
    ]
}

/// A text of TOML pieces, then up to three edits (a character removed, or
/// one of the grammar's characters inserted).
fn text_doc() -> impl Strategy<Value = String> {
    let edit = (
        any::<prop::sample::Index>(),
        prop_oneof![
            Just(None),
            proptest::sample::select("\"'[]{}=,.#\n\\ _+-0e:\t\r".chars().collect::<Vec<_>>())
                .prop_map(Some),
        ],
    );
    (
        proptest::collection::vec(line_text(), 0..6),
        proptest::collection::vec(edit, 0..3),
    )
        .prop_map(|(lines, edits)| {
            let mut chars: Vec<char> = lines.concat().chars().collect();
            for (at, insert) in edits {
                match insert {
                    Some(c) => chars.insert(at.index(chars.len() + 1), c),
                    None if !chars.is_empty() => {
                        chars.remove(at.index(chars.len()));
                    }
                    None => {}
                }
            }
            chars.into_iter().collect()
        })
}

/// Where the readers may disagree on whether a text is TOML, and why:
/// `ours` is this reader's refusal (where, what), or `None` when it reads
/// the text and the `toml` crate refuses it.
fn known_difference(doc: &str, ours: Option<&text::Error>) -> Option<&'static str> {
    match ours {
        // Whatever this reader reads, the `toml` crate reads.
        None => None,
        // The `toml` crate also takes a newline before or after the `=` of
        // a key in an inline table, which the TOML 1.1 grammar does not
        // (`keyval-sep = ws "=" ws`).
        Some((at, msg))
            if (msg == "expected `=` after a key" || msg == "expected a value")
                && matches!(doc.as_bytes().get(*at), Some(b'\n' | b'\r' | b'#')) =>
        {
            Some("a newline around `=` in an inline table")
        }
        Some(_) => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// What the `toml` crate writes, this reader reads as the same tree.
    #[test]
    fn reads_what_the_toml_crate_writes(doc in document()) {
        let Ok(written) = toml::to_string(&doc) else {
            return Ok(());
        };
        let ours = text::parse(&written);
        prop_assert!(ours.is_ok(), "{written:?}: {ours:?}");
        let ours = ours.unwrap();
        let theirs: toml::Table = written.parse().unwrap();
        prop_assert!(same_table(&ours, &theirs), "{written:?}");
        prop_assert!(same_table(&ours, &doc), "{written:?}");
    }

    /// Random texts: both read them the same, or both refuse them (ours
    /// with a message at a place in the text), or the difference is a
    /// known one.
    #[test]
    fn reads_texts_as_the_toml_crate_does(doc in text_doc()) {
        let ours = text::parse(&doc);
        let theirs = doc.parse::<toml::Table>();
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => prop_assert!(same_table(a, b), "{doc:?}: {a:?} vs {b:?}"),
            (Err((at, msg)), Err(_)) => {
                prop_assert!(*at <= doc.len() && !msg.is_empty(), "{doc:?}: {at} {msg:?}");
            }
            (Ok(_), Err(e)) => prop_assert!(
                known_difference(&doc, None).is_some(),
                "{doc:?}: ours reads it, toml refuses: {e}"
            ),
            (Err(e @ (at, msg)), Ok(_)) => {
                prop_assert!(*at <= doc.len() && !msg.is_empty(), "{doc:?}: {at} {msg:?}");
                prop_assert!(
                    known_difference(&doc, Some(e)).is_some(),
                    "{doc:?}: toml reads it, ours refuses: {msg}"
                );
            }
        }
    }
}
