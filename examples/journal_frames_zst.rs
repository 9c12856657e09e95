//! Writes every frame payload of a journal shard, concatenated, to a file: a valid multi-frame
//! zstd stream of exactly the bytes `shake inspect` decompresses, for timing `zstd -d` on the
//! same input (`scripts/bench-inspect`). Also prints the total uncompressed size.
//!
//! Usage: `cargo run --release --example journal_frames_zst -- JOURNAL_DIR SHARD OUT.zst`

use shake::journal::{self, RecoveryMode, ShardReader};
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, shard, out] = &args[..] else {
        eprintln!("usage: journal_frames_zst JOURNAL_DIR SHARD OUT.zst");
        std::process::exit(2);
    };
    let r =
        ShardReader::open(std::path::Path::new(dir), shard, RecoveryMode::Refuse).expect("reader");
    let segs: Vec<Vec<u8>> = r
        .segment_paths()
        .iter()
        .map(|p| std::fs::read(p).expect("segment"))
        .collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(out).expect("out"));
    let (mut stored, mut raw) = (0u64, 0u64);
    for fr in r.frames() {
        let start = fr.offset as usize + journal::frame::FRAME_HEADER_LEN;
        let payload = &segs[fr.segment][start..start + fr.header.stored_len as usize];
        f.write_all(payload).expect("write");
        stored += payload.len() as u64;
        raw += journal::frame::raw_payload(&fr.header, payload)
            .expect("frame")
            .len() as u64;
    }
    f.flush().expect("flush");
    println!("{stored} {raw}");
}
