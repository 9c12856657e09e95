//! Fuzzes the RDB reader and every decoder: arbitrary bytes (after one of the real magics,
//! chosen by the first input byte) are fed in pieces whose size also comes from the input; every
//! key value that frames is decoded, rendered as JSON, rewritten as commands and checked as a
//! DUMP payload. Nothing may panic, loop forever or allocate from an unchecked length.
//!
//! Run with `cargo fuzz run rdb_reader` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shake::rdb::{Event, Flavor, Reader, ReaderOptions, dump, json, rewrite};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let magic: &[u8] = match sel % 4 {
        0 => b"REDIS0011",
        1 => b"REDIS0006",
        2 => b"VALKEY080",
        _ => b"",
    };
    let step = usize::from(sel / 4).max(1);
    let mut input = magic.to_vec();
    input.extend_from_slice(rest);
    let mut reader = Reader::new(ReaderOptions {
        chunk_threshold: 256,
        verify_checksum: false,
        ..Default::default()
    });
    let flavor = if sel % 4 == 2 {
        Flavor::Valkey
    } else {
        Flavor::Redis
    };
    for chunk in input.chunks(step) {
        reader.feed(chunk);
        loop {
            match reader.next_event() {
                Ok(Some(Event::Key(k))) => {
                    let t = k.meta.object_type;
                    let _ = json::to_json(t, k.value.clone());
                    if let Ok(cmds) =
                        rewrite::rewrite(&k.meta.key, t, k.value.clone(), None, &Default::default())
                    {
                        for c in cmds {
                            if c.is_err() {
                                break;
                            }
                        }
                    }
                    let payload = dump::build(t.id(), &k.value, 11);
                    let _ = dump::parse(&payload, flavor);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = reader.finish();

    // the zero-copy face over the same input
    let mut lent = Reader::new(ReaderOptions {
        chunk_threshold: 256,
        verify_checksum: false,
        ..Default::default()
    });
    for chunk in input.chunks(step) {
        lent.feed(chunk);
        loop {
            match lent.advance() {
                Ok(true) => {
                    if let Some(shake::rdb::EventRef::Key(k)) = lent.current() {
                        let _ = dump::build(k.object_type.id(), k.value, 11);
                    }
                }
                Ok(false) => break,
                Err(_) => return,
            }
        }
    }
});
