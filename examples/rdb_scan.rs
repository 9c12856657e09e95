//! Scans RDB files with the streaming reader (no value decoding) and prints keys, bytes and
//! MB/s. Used by `scripts/bench-rdb`.
//!
//! Usage: `cargo run --release --example rdb_scan -- FILE.rdb [FILE.rdb …]`

use std::time::Instant;

use shake::rdb::{Event, ReadEvents, ReaderOptions};

fn main() {
    let mut failed = false;
    for path in std::env::args().skip(1) {
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
        let (mut keys, mut value_bytes) = (0u64, 0u64);
        let mut result = Ok(());
        for ev in events.by_ref() {
            match ev {
                Ok(Event::Key(k)) => {
                    keys += 1;
                    value_bytes += k.value.len() as u64;
                }
                Ok(Event::BigKeyStart(_)) => keys += 1,
                Ok(Event::BigKeyPiece(p)) => value_bytes += p.len() as u64,
                Ok(_) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let total = events.reader().offset();
        match result {
            Ok(()) => println!(
                "{path}: {keys} keys, {total} bytes ({value_bytes} value bytes) in {secs:.3} s = {:.1} MB/s",
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
