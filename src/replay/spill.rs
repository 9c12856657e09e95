//! A large snapshot value written to a file as its chunks arrive, then mapped back.
//!
//! A value that must be rebuilt with commands ([`super::rebuild`]) cannot be streamed the way a
//! RESTORE payload is ([`super::bigkey`]): the RDB layout of some types is not in command order
//! (a stream's consumer groups come after all its entries, and are needed before the first
//! `XADD` of a resent build), and a build restarted after a broken connection needs the value
//! again from its first byte. Holding it whole in memory is what the replay must not do — a hash
//! of 10 M fields is gigabytes — so it goes to an unlinked temporary file instead, and the RDB
//! decoder reads it through a read-only memory map: the pages are the kernel's page cache,
//! written back and dropped under pressure, not the process's heap.
//!
//! The file is created already unlinked (`tempfile::tempfile_in`), so nothing is left behind
//! whatever way the process ends, kill -9 included. It lives in the replay's state folder
//! (beside the checkpoint), which is on disk, rather than in `/tmp`, which can be a RAM
//! filesystem (Debian 13's default).

use std::io::Write;
use std::path::Path;

use bytes::Bytes;

/// A value being written to disk.
pub struct Spill {
    file: std::io::BufWriter<std::fs::File>,
    len: u64,
}

impl Spill {
    /// An empty spill file in `dir` (created if missing), already unlinked.
    pub fn new(dir: &Path) -> std::io::Result<Spill> {
        std::fs::create_dir_all(dir)?;
        let file = tempfile::tempfile_in(dir)?;
        Ok(Spill {
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            len: 0,
        })
    }

    /// Appends the value's next bytes.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all(data)?;
        self.len += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole value, mapped read-only (the file goes away when the last slice of it is
    /// dropped).
    pub fn map(self) -> std::io::Result<Bytes> {
        if self.len == 0 {
            return Ok(Bytes::new());
        }
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        // SAFETY: the file is private to this process (created unlinked, never shared), and
        // nothing writes to it once mapped: the map cannot change under the slices handed out.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Bytes::from_owner(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spilled_value_reads_back_whole_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spill::new(&dir.path().join("state")).unwrap();
        let mut expect = Vec::new();
        for i in 0..300u32 {
            let chunk: Vec<u8> = (0..7919u32).map(|j| (i ^ j) as u8).collect();
            s.write(&chunk).unwrap();
            expect.extend_from_slice(&chunk);
        }
        assert_eq!(s.len(), expect.len() as u64);
        let b = s.map().unwrap();
        assert_eq!(&b[..], &expect[..]);
        let left = std::fs::read_dir(dir.path().join("state")).unwrap().count();
        assert_eq!(left, 0, "the spill file is unlinked");
        assert!(Spill::new(dir.path()).unwrap().map().unwrap().is_empty());
    }
}
