//! Small byte strings copied into shared 64 KiB chunks and handed on as [`Bytes`] slices: the
//! arguments of stream commands (`replay::feed`), and snapshot keys' names, string values and
//! encoded RESTOREs ([`super::snapshot::KeyConverter::convert`]).
//!
//! Why: replay is fed by one reader thread per shard and written by the writers' threads. One
//! allocation per argument or key means an allocation on the reader's thread, a free on a
//! writer's (a cross-thread free, the allocator's slow path) and a copy, cache-cold, from
//! wherever it landed into the connection's buffer. Replaying 2 M `SET`s, that was a third of
//! replay's CPU (docs/performance.md). A chunk costs one allocation per [`CHUNK`] bytes and an
//! atomic count per slice, and its slices lie next to each other in memory.
//!
//! # Memory
//! A chunk lives until the last slice taken from it is dropped, that is until its command is
//! acknowledged. Chunks hold only what is sent (never a frame's other bytes), which the
//! replay's in-flight budget already counts, give or take a chunk per lane; anything above
//! [`OWN_ABOVE`] gets an allocation of its own, so a big value never keeps a chunk alive, nor a
//! chunk a big value.

use bytes::{Bytes, BytesMut};

/// Bytes per chunk.
pub const CHUNK: usize = 64 << 10;
/// Byte strings longer than this are allocated on their own (see the module docs).
pub const OWN_ABOVE: usize = 4 << 10;

/// Copies small byte strings into shared chunks (see the module docs). One per thread: it is
/// not shared, its slices are.
#[derive(Default)]
pub struct Arena {
    chunk: BytesMut,
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("room", &self.chunk.capacity())
            .finish()
    }
}

impl Arena {
    /// `a`, copied.
    pub fn copy(&mut self, a: &[u8]) -> Bytes {
        self.build(a.len(), |w| w.extend_from_slice(a))
    }

    /// The `len` bytes `write` appends to the buffer it is given (exactly `len`: a slice
    /// shorter or longer than announced would waste or overrun the chunk's room).
    pub fn build(&mut self, len: usize, write: impl FnOnce(&mut BytesMut)) -> Bytes {
        if len > OWN_ABOVE {
            let mut own = BytesMut::with_capacity(len);
            write(&mut own);
            debug_assert_eq!(own.len(), len);
            return own.freeze();
        }
        if self.chunk.capacity() < len {
            self.chunk = BytesMut::with_capacity(CHUNK);
        }
        write(&mut self.chunk);
        debug_assert_eq!(self.chunk.len(), len);
        self.chunk.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_share_chunks_and_big_strings_get_their_own() {
        let mut a = Arena::default();
        let x = a.copy(b"key:1");
        let y = a.copy(b"value");
        assert_eq!((&x[..], &y[..]), (&b"key:1"[..], &b"value"[..]));
        // adjacent in one chunk
        assert_eq!(x.as_ptr().wrapping_add(x.len()), y.as_ptr());
        let big = vec![7u8; OWN_ABOVE + 1];
        let b = a.copy(&big);
        assert_eq!(&b[..], &big[..]);
        let z = a.copy(b"z");
        assert_eq!(y.as_ptr().wrapping_add(y.len()), z.as_ptr());
        // a full chunk is replaced, the old one lives on in its slices
        let mut last = z.clone();
        for _ in 0..(CHUNK / OWN_ABOVE + 2) {
            last = a.copy(&big[..OWN_ABOVE]);
        }
        assert_eq!(&last[..], &big[..OWN_ABOVE]);
        assert_eq!((&x[..], &z[..]), (&b"key:1"[..], &b"z"[..]));
        assert!(a.copy(b"").is_empty());
    }

    #[test]
    fn built_slices_hold_what_was_written() {
        let mut a = Arena::default();
        let head = a.build(4, |w| w.extend_from_slice(b"*1\r\n"));
        let next = a.build(3, |w| {
            w.extend_from_slice(b"ab");
            w.extend_from_slice(b"c");
        });
        assert_eq!((&head[..], &next[..]), (&b"*1\r\n"[..], &b"abc"[..]));
        assert_eq!(head.as_ptr().wrapping_add(4), next.as_ptr());
        let big = a.build(OWN_ABOVE + 2, |w| w.resize(OWN_ABOVE + 2, b'x'));
        assert_eq!(big.len(), OWN_ABOVE + 2);
    }
}
