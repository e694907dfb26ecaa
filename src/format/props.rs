//! Property tests (proptest) over the counter file reader: damaged, truncated and
//! hostile files never make it panic, hang or read out of bounds (a read out
//! of bounds of the slice would panic), and whatever it accepts is sound.

use crate::format::{self, Meta};
use proptest::prelude::*;

fn meta() -> Meta {
    Meta::new("t", "1.0", "linux", "x86_64", "2026-11-16".parse().unwrap())
}

/// A valid file with `names` counted, made by the real writer through a
/// process-independent path: the public reader's own image plus records laid
/// out per the spec.
fn image_with(names: &[String]) -> Vec<u8> {
    let mut img = format::initial_image(&meta());
    let mut alloc = format::DATA_OFF;
    for (i, name) in names.iter().enumerate() {
        let off = alloc;
        img[off..off + 8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        img[off + 12..off + 16].copy_from_slice(&(name.len() as u32).to_le_bytes());
        img[off + 16..off + 16 + name.len()].copy_from_slice(name.as_bytes());
        alloc += format::record_size(name.len());
        let mut link = format::TABLE_OFF + 4 * format::slot_of(name.as_bytes());
        loop {
            let cur = u32::from_le_bytes(img[link..link + 4].try_into().unwrap()) as usize;
            if cur == 0 {
                img[link..link + 4].copy_from_slice(&(off as u32).to_le_bytes());
                break;
            }
            link = cur + 8;
        }
    }
    img[40..48].copy_from_slice(&(alloc as u64).to_le_bytes());
    img
}

fn names() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::btree_set("[a-z]{1,6}(/[a-z0-9]{1,6}){0,2}(:[a-z<>=0-9]{1,4})?", 0..40)
        .prop_map(|s| s.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn valid_files_read_back(names in names()) {
        let img = image_with(&names);
        let p = format::parse(&img).unwrap();
        prop_assert_eq!(p.counters.len(), names.len());
        for (i, n) in names.iter().enumerate() {
            prop_assert_eq!(p.counters[n], i as u64 + 1);
        }
    }

    #[test]
    fn damaged_files_never_panic(
        names in names(),
        edits in proptest::collection::vec((0usize..8192, any::<u8>()), 1..64),
        cut in proptest::option::of(0usize..70_000),
    ) {
        let mut img = image_with(&names);
        for (pos, val) in edits {
            // Aim at the interesting part: header, table and records.
            let pos = pos % img.len().min(8192);
            img[pos] = val;
        }
        if let Some(c) = cut {
            img.truncate(c.min(img.len()));
        }
        if let Ok(p) = format::parse(&img) {
            for n in p.counters.keys() {
                prop_assert!(crate::name::check(n).is_ok());
            }
            for n in p.stacks.keys() {
                prop_assert!(crate::name::check_stack(n).is_ok());
            }
        }
    }

    #[test]
    fn hostile_offsets_never_panic(
        names in names(),
        slots in proptest::collection::vec((0usize..format::SLOTS, any::<u32>()), 1..32),
        alloc in any::<u64>(),
    ) {
        let mut img = image_with(&names);
        for (slot, val) in slots {
            let o = format::TABLE_OFF + 4 * slot;
            img[o..o + 4].copy_from_slice(&val.to_le_bytes());
        }
        if alloc % 3 == 0 {
            img[40..48].copy_from_slice(&alloc.to_le_bytes());
        }
        let _ = format::parse(&img);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100_000)) {
        prop_assert!(format::parse(&bytes).is_err());
    }
}
