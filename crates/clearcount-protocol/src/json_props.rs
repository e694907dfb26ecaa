//! Property tests (proptest) of the JSON reader and writer against
//! `serde_json`, in both directions: what `serde_json` writes (random values
//! of every type, any string, any number) this reader reads as the same
//! value; what this writer writes, compact or pretty, `serde_json` reads as
//! the same value; and random JSON texts (made of the grammar's pieces,
//! nested up to and past the depth limits, then mutated) are read the same
//! by both, or refused by both, or the difference is the one listed in
//! [`known_difference`]. Every refusal of this reader is one line that
//! names where.
//!
//! `cargo test -p clearcount-protocol --all-features --lib json_props`

use crate::json::{self, Value};
use proptest::prelude::*;

/// Cases per property: a few seconds in CI for all of them.
const CASES: u32 = 300;

/// How far (in units in the last place) `serde_json`'s reading of a float
/// may be from the correctly rounded one: without its `float_roundtrip`
/// feature it reads floats with a fast algorithm that can be a few units
/// off (`1.8742500538041398e-149` reads as `…402e-149`, 2 units). Rust's
/// own parse, which this crate's callers use, is correctly rounded: where
/// this reader's value is compared with the number written, no unit of
/// difference is allowed.
const SERDE_ULPS: u64 = 8;

/// Whether this reader's value is `serde_json`'s: numbers compared as the
/// integers or floats they stand for (floats `ulps` units in the last
/// place apart at most: [`SERDE_ULPS`]), objects with the last of repeated
/// keys, as `serde_json` keeps them.
fn same(ours: &Value, theirs: &serde_json::Value, ulps: u64) -> bool {
    match (ours, theirs) {
        (Value::Null, serde_json::Value::Null) => true,
        (Value::Bool(a), serde_json::Value::Bool(b)) => a == b,
        (Value::Number(n), serde_json::Value::Number(m)) => {
            if let (Ok(a), Some(b)) = (n.parse::<u64>(), m.as_u64()) {
                a == b
            } else if let (Ok(a), Some(b)) = (n.parse::<i64>(), m.as_i64()) {
                a == b
            } else {
                match (n.parse::<f64>(), m.as_f64()) {
                    (Ok(a), Some(b)) => {
                        a == b
                            || (a.to_bits().abs_diff(b.to_bits()) <= ulps
                                && a.signum() == b.signum())
                    }
                    _ => false,
                }
            }
        }
        (Value::String(a), serde_json::Value::String(b)) => a == b,
        (Value::Array(a), serde_json::Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y, ulps))
        }
        (Value::Object(m), serde_json::Value::Object(b)) => {
            // The last of repeated keys, in the order they were read.
            let mut last: Vec<(&String, &Value)> = Vec::new();
            for (k, e) in m {
                match last.iter_mut().find(|(n, _)| *n == k) {
                    Some(slot) => slot.1 = e,
                    None => last.push((k, e)),
                }
            }
            last.len() == b.len()
                && last
                    .iter()
                    .all(|(k, e)| b.get(k.as_str()).is_some_and(|w| same(e, w, ulps)))
        }
        _ => false,
    }
}

/// A `serde_json` value as this crate's, with numbers as this writer lays
/// them out.
fn from_serde(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from_u64(u),
            (None, Some(i), _) => Value::Number(i.to_string()),
            (None, None, Some(f)) => Value::from_f64(f),
            _ => Value::Null,
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(from_serde).collect()),
        serde_json::Value::Object(m) => {
            Value::Object(m.iter().map(|(k, e)| (k.clone(), from_serde(e))).collect())
        }
    }
}

fn leaf() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|i| serde_json::json!(i)),
        any::<u64>().prop_map(|u| serde_json::json!(u)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::json!(f)),
        any::<String>().prop_map(serde_json::Value::String),
        "[ -~\t\n\r\u{7f}\u{1}]{0,10}".prop_map(serde_json::Value::String),
    ]
}

fn value() -> impl Strategy<Value = serde_json::Value> {
    leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Pieces of JSON text: the values of every kind, numbers and strings at
/// their edges, nesting around the depth limit.
fn scalar_text() -> impl Strategy<Value = String> {
    let fixed = [
        "null",
        "true",
        "false",
        "nul",
        "True",
        "0",
        "-0",
        "01",
        "-",
        "1.",
        ".5",
        "1.5",
        "1e5",
        "1E+5",
        "1e-5",
        "1e",
        "-1.5e-7",
        "1e400",
        "-1e400",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775809",
        "\"\"",
        "\"a\\\"b\\\\c\\/\"",
        "\"\\u00e9\\ud83d\\ude00\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"tab\there\"",
        "\"\u{1}\"",
        "\"é€😀\"",
        "[]",
        "{}",
        "[1,]",
        "{\"a\":1,}",
        "{'a':1}",
        "{\"a\" 1}",
        "{1:1}",
        "{\"a\":1,\"a\":2}",
    ];
    prop_oneof![
        proptest::sample::select(fixed.to_vec()).prop_map(str::to_string),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        (120usize..136).prop_map(|n| "[".repeat(n) + &"]".repeat(n)),
        (120usize..136).prop_map(|n| "{\"a\":".repeat(n) + "1" + &"}".repeat(n)),
    ]
}

fn text_value() -> impl Strategy<Value = String> {
    scalar_text().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(("[a-z\"]{0,3}", inner), 0..4).prop_map(|v| {
                let parts: Vec<String> = v.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
                format!("{{ {} }}", parts.join(" , "))
            }),
        ]
    })
}

/// A JSON text, with whitespace around, then up to three edits.
fn text_doc() -> impl Strategy<Value = String> {
    let edit = (
        any::<prop::sample::Index>(),
        prop_oneof![
            Just(None),
            proptest::sample::select("\"[]{},:\\ \n0-.eu".chars().collect::<Vec<_>>())
                .prop_map(Some),
        ],
    );
    (
        "[ \t\r\n]{0,2}",
        text_value(),
        "[ \t\r\nx]{0,2}",
        proptest::collection::vec(edit, 0..3),
    )
        .prop_map(|(before, v, after, edits)| {
            let mut chars: Vec<char> = format!("{before}{v}{after}").chars().collect();
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

/// Where the readers may disagree on whether a text is JSON: this reader
/// keeps a number as its text (each caller reads it as the type it
/// expects, and refuses what does not fit), where `serde_json` refuses a
/// number beyond `f64`.
fn known_difference(ours: &Value) -> Option<&'static str> {
    fn has_huge_number(v: &Value) -> bool {
        match v {
            Value::Number(n) => n.parse::<f64>().is_ok_and(|f| f.is_infinite()),
            Value::Array(a) => a.iter().any(has_huge_number),
            Value::Object(m) => m.iter().any(|(_, e)| has_huge_number(e)),
            _ => false,
        }
    }
    has_huge_number(ours).then_some("numbers beyond f64 are kept as text")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// What `serde_json` writes, compact or pretty, this reader reads as
    /// the same value.
    #[test]
    fn reads_what_serde_json_writes(v in value()) {
        for text in [
            serde_json::to_string(&v).unwrap(),
            serde_json::to_string_pretty(&v).unwrap(),
        ] {
            let ours = json::parse(text.as_bytes());
            prop_assert!(ours.is_ok(), "{text:?}: {ours:?}");
            prop_assert!(same(&ours.unwrap(), &v, 0), "{text}");
        }
    }

    /// What this writer writes, compact or pretty, `serde_json` reads as
    /// the same value (and lays out the same way).
    #[test]
    fn serde_json_reads_what_this_writes(v in value()) {
        let ours = from_serde(&v);
        for (text, theirs) in [
            (json::to_string(&ours), serde_json::to_string(&v).unwrap()),
            (json::to_string_pretty(&ours), serde_json::to_string_pretty(&v).unwrap()),
        ] {
            let back: Result<serde_json::Value, _> = serde_json::from_str(&text);
            prop_assert!(back.is_ok(), "{text:?}: {back:?}");
            prop_assert!(same(&ours, &back.unwrap(), SERDE_ULPS), "{text}");
            prop_assert!(same(&json::parse(text.as_bytes()).unwrap(), &v, 0), "{text}");
            // Byte for byte, but for the last digit of a float where two
            // shortest texts exist (see `json::write_f64`).
            prop_assert_eq!(text.len(), theirs.len(), "{} vs {}", text, theirs);
        }
    }

    /// Random texts: read the same by both, or refused by both (this
    /// reader in one line that names where), or a known difference.
    #[test]
    fn reads_texts_as_serde_json_does(doc in text_doc()) {
        let ours = json::parse(doc.as_bytes());
        let theirs: Result<serde_json::Value, _> = serde_json::from_str(&doc);
        if let Err(e) = &ours {
            prop_assert!(e.contains(" at line ") && !e.contains('\n'), "{doc:?}: {e:?}");
        }
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => prop_assert!(same(a, b, SERDE_ULPS), "{doc:?}: {a:?} vs {b:?}"),
            (Err(_), Err(_)) => {}
            (Ok(a), Err(e)) => prop_assert!(
                known_difference(a).is_some(),
                "{doc:?}: ours reads it, serde_json refuses: {e}"
            ),
            (Err(e), Ok(_)) => prop_assert!(false, "{doc:?}: serde_json reads it, ours refuses: {e}"),
        }
    }
}
