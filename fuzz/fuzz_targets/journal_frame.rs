//! Fuzz the journal's frame reader and segment scanner: no input may panic, hang or allocate
//! without bound; whatever `check` accepts must decode or fail cleanly.
//!
//! The first byte picks a mode. Odd: the bytes are taken as they are (frame check, decode, and
//! strict and tolerant segment scans). Even: the rest is taken as the *raw record bytes* of a
//! frame that this target wraps in a header with valid checksums, so the fuzzer reaches the
//! record parser instead of stopping at CRC mismatches.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shake::journal::Position;
use shake::journal::frame::{self, Check, Codec, FRAME_HEADER_LEN, FrameHeader, FrameKind};
use shake::journal::segment;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        if let Ok(Check::Complete(h)) = frame::check(rest) {
            let _ = frame::decode_records(&h, &rest[FRAME_HEADER_LEN..h.frame_len() as usize]);
        }
        let p = std::path::Path::new("fuzz.seg");
        if let Ok(scan) = segment::scan(rest, p, true, true) {
            for f in &scan.frames {
                let start = f.offset as usize + FRAME_HEADER_LEN;
                let _ = frame::decode_records(
                    &f.header,
                    &rest[start..start + f.header.stored_len as usize],
                );
            }
        }
        let _ = segment::scan(rest, p, false, false);
    } else {
        let h = FrameHeader {
            kind: FrameKind::Records,
            codec: Codec::None,
            first: Position::ZERO,
            last: Position::new(u64::MAX, u64::MAX, u64::MAX),
            records: u32::from(mode >> 1),
            stored_len: rest.len() as u32,
            raw_len: rest.len() as u32,
            payload_crc: crc32c::crc32c(rest),
        };
        let mut f = h.encode().to_vec();
        f.extend_from_slice(rest);
        if let Ok(Check::Complete(h)) = frame::check(&f) {
            let owned = frame::decode_records(&h, &f[FRAME_HEADER_LEN..]);
            // The borrowed parser (hand-written fast path + serde) must agree with the owned one.
            let borrowed = frame::parse_entries_ref(&h, rest);
            match (&owned, &borrowed) {
                (Ok(o), Ok(b)) => {
                    assert!(o.len() == b.len() && o.iter().zip(b).all(|(o, b)| *o == b.to_owned()))
                }
                (Err(_), Err(_)) => {}
                _ => panic!("owned and borrowed parsers disagree: {owned:?} / {borrowed:?}"),
            }
        }
    }
});
