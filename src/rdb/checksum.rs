//! CRC-64 as Redis computes it ("Jones": reflected poly `0xad93d23594c935a9`, init 0, xor-out 0),
//! used for the RDB trailer and DUMP payloads.
//!
//! The `crc` crate's `CRC_64_REDIS` has exactly these parameters; its slice-by-16 table
//! (`Table<16>`) is the fast pure-Rust option (see `docs/performance.md`).

use crc::{CRC_64_REDIS, Crc, Digest, Table};

/// The Redis CRC-64 with a slice-by-16 table.
pub static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// CRC-64 of `data` in one call.
pub fn crc64(data: &[u8]) -> u64 {
    CRC64.checksum(data)
}

/// An incremental CRC-64, fed as bytes are consumed so a stream is never re-read.
pub type Crc64Digest = Digest<'static, u64, Table<16>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_from_the_design_doc() {
        assert_eq!(crc64(b"123456789"), 0xe9c6d914c4b8d9ca);
        let mut d = CRC64.digest();
        d.update(b"1234");
        d.update(b"56789");
        assert_eq!(d.finalize(), 0xe9c6d914c4b8d9ca);
    }
}
