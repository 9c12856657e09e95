//! Scans RDB files with the streaming reader and prints keys, bytes and MB/s. Used by
//! `scripts/bench-rdb`.
//!
//! Usage: `cargo run --release --example rdb_scan -- [--decode] FILE.rdb [FILE.rdb …]`
//!
//! Without `--decode` only events are produced (framing, exact value bytes, CRC), through the
//! zero-copy `advance`/`current` API; `--owned` uses `next_event` (owned `Bytes`) instead. With
//! `--decode` every value is also decoded and every element, field, score and stream entry
//! visited.

use std::time::Instant;

use shake::rdb::decode::Value;
use shake::rdb::{Event, EventRef, ReadEvents, ReaderOptions, decode};

/// Decodes a value and visits every element; returns the number of elements.
fn visit(t: shake::rdb::ObjectType, v: bytes::Bytes) -> Result<u64, shake::rdb::Malformed> {
    let mut n = 0u64;
    match decode(t, v)? {
        Value::String(_) | Value::Module(_) => n += 1,
        Value::List(it) | Value::Set(it) => {
            for e in it {
                e?;
                n += 1;
            }
        }
        Value::Zset(it) => {
            for e in it {
                e?;
                n += 1;
            }
        }
        Value::Hash(it) => {
            for e in it {
                e?;
                n += 1;
            }
        }
        Value::Stream(s) => {
            for e in s.entries() {
                e?;
                n += 1;
            }
        }
    }
    Ok(n)
}

fn main() {
    let mut failed = false;
    let mut decode_values = false;
    let mut owned = false;
    for path in std::env::args().skip(1) {
        if path == "--decode" {
            decode_values = true;
            continue;
        }
        if path == "--owned" {
            owned = true;
            continue;
        }
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{path}: {e}");
                failed = true;
                continue;
            }
        };
        let start = Instant::now();
        let mut events = ReadEvents::new(file, ReaderOptions::default());
        let (mut keys, mut value_bytes, mut elements) = (0u64, 0u64, 0u64);
        let mut big: Option<(shake::rdb::ObjectType, Vec<u8>)> = None;
        let mut result = Ok(());
        if !decode_values && !owned {
            loop {
                match events.advance() {
                    Ok(true) => match events.current() {
                        Some(EventRef::Key(k)) => {
                            keys += 1;
                            value_bytes += k.value.len() as u64;
                        }
                        Some(EventRef::Owned(Event::Key(k))) => {
                            keys += 1;
                            value_bytes += k.value.len() as u64;
                        }
                        Some(EventRef::Owned(Event::BigKeyStart(_))) => keys += 1,
                        Some(EventRef::Owned(Event::BigKeyPiece(p))) => {
                            value_bytes += p.len() as u64
                        }
                        _ => {}
                    },
                    Ok(false) => break,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        for ev in events.by_ref().take_while(|_| decode_values || owned) {
            match ev {
                Ok(Event::Key(k)) => {
                    keys += 1;
                    value_bytes += k.value.len() as u64;
                    if decode_values {
                        match visit(k.meta.object_type, k.value) {
                            Ok(n) => elements += n,
                            Err(e) => {
                                result = Err(e.at(k.meta.value_offset, Some(&k.meta.key)));
                                break;
                            }
                        }
                    }
                }
                Ok(Event::BigKeyStart(m)) => {
                    keys += 1;
                    big = decode_values.then(|| (m.object_type, Vec::new()));
                }
                Ok(Event::BigKeyPiece(p)) => {
                    value_bytes += p.len() as u64;
                    if let Some((_, b)) = big.as_mut() {
                        b.extend_from_slice(&p);
                    }
                }
                Ok(Event::BigKeyEnd) => {
                    if let Some((t, b)) = big.take() {
                        elements += visit(t, b.into()).unwrap_or(0);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let total = events.reader().offset();
        let mode = match (decode_values, owned) {
            (true, _) => "decoded",
            (false, true) => "raw events, owned",
            (false, false) => "raw events, lent",
        };
        match result {
            Ok(()) => println!(
                "{path}: {mode}: {keys} keys, {elements} elements, {total} bytes ({value_bytes} value bytes) in {secs:.3} s = {:.1} MB/s",
                total as f64 / secs / 1e6
            ),
            Err(e) => {
                println!("{path}: ERROR {e}");
                failed = true;
            }
        }
    }
    std::process::exit(i32::from(failed));
}
