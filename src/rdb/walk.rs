//! Resumable framing: finds where a record or an object value ends without decoding it.
//!
//! RDB values are not length-prefixed as a whole, so the only way to find the end of a value is
//! to walk its structure: lengths, strings and fixed-size fields, nested in counted repetitions.
//! The walker keeps that structure as an explicit stack of [`Task`]s instead of recursion, so
//! it can stop anywhere when the buffer runs dry and continue when more bytes arrive — including
//! in the middle of a 512 MiB string, whose payload it consumes in pieces. That is what lets the
//! reader deliver huge values as chunks with bounded memory. The stack depth is fixed by the
//! format (at most 6), never by the data.
//!
//! Only the framing is checked here (length encodings, string encodings, quicklist container
//! kinds, module opcodes, and the RESP lines of Valkey's opcode 242: `*<n>\r\n` with n ≥ 1,
//! then n × `$<len>\r\n<bytes>\r\n`, header lines of at most 23 bytes, no negative counts —
//! the layout of `writeReplicationData` in Valkey's `src/forkless.c`, checked against the
//! source only, no server here writes it). The contents of listpacks, ziplists and so on live inside
//! length-prefixed strings, so they cannot mis-frame the file; they are checked when decoded.

use super::error::{MResult, Malformed};
use super::length;
use super::string::{self, StrHeader};
use super::version::ObjectType;

/// One step of the structure still to be walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Task {
    /// A length (or integer) field.
    Len,
    /// A string (header + payload).
    Str,
    /// The rest of a string's payload.
    Bytes(u64),
    /// Fixed-size field.
    Fixed(u8),
    /// A type-3 zset score: one length byte (253–255 special) then ASCII.
    AsciiDouble,
    /// A length `n`, then `n` × the body.
    Count(Body),
    /// `n` more times the body.
    Repeat(Body, u64),
    /// Module value fields: (opcode, payload) until opcode 0.
    ModuleOps,
    /// A quicklist-2 container kind: must be 1 (PLAIN) or 2 (PACKED).
    QlContainer,
    /// A length; if non-zero, a string follows (7.0-rc function description).
    OptStr,
    /// A RESP multi-bulk header `*<n>\r\n` (n ≥ 1), then `n` × [`Task::RespBulk`] (Valkey
    /// opcode 242, an inline command).
    RespArray,
    /// A RESP bulk string `$<len>\r\n<bytes>\r\n`.
    RespBulk,
    /// The `\r\n` after a RESP bulk string's bytes.
    Crlf,
}

/// A repeated structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// One string.
    Str1,
    /// Two strings (hash field + value, stream node key + listpack).
    Str2,
    /// Member + ASCII score.
    ZsetV1,
    /// Member + binary double.
    Zset2,
    /// Quicklist-2 node: container + string.
    Ql2Node,
    /// Redis 7.4 hash-with-TTL field: ttl length, field, value.
    HashMeta,
    /// Valkey HASH_2 field: field, value, 8-byte expiry.
    ValkeyHash2,
    /// Stream consumer group, by stream version (1–3).
    Group(u8),
    /// Group PEL entry: 16-byte ID, 8-byte time, delivery count.
    Pel,
    /// Consumer, by stream version.
    Consumer(u8),
    /// A 16-byte stream ID.
    Id16,
    /// A pair of lengths (slot ranges).
    Len2,
    /// One RESP bulk string.
    RespBulk,
}

impl Body {
    fn tasks(self) -> &'static [Task] {
        use Task::*;
        match self {
            Body::Str1 => &[Str],
            Body::Str2 => &[Str, Str],
            Body::ZsetV1 => &[Str, AsciiDouble],
            Body::Zset2 => &[Str, Fixed(8)],
            Body::Ql2Node => &[QlContainer, Str],
            Body::HashMeta => &[Len, Str, Str],
            Body::ValkeyHash2 => &[Str, Str, Fixed(8)],
            Body::Group(1) => &[Str, Len, Len, Count(Body::Pel), Count(Body::Consumer(1))],
            Body::Group(2) => &[
                Str,
                Len,
                Len,
                Len,
                Count(Body::Pel),
                Count(Body::Consumer(2)),
            ],
            Body::Group(_) => &[
                Str,
                Len,
                Len,
                Len,
                Count(Body::Pel),
                Count(Body::Consumer(3)),
            ],
            Body::Pel => &[Fixed(16), Fixed(8), Len],
            Body::Consumer(3) => &[Str, Fixed(8), Fixed(8), Count(Body::Id16)],
            Body::Consumer(_) => &[Str, Fixed(8), Count(Body::Id16)],
            Body::Id16 => &[Fixed(16)],
            Body::Len2 => &[Len, Len],
            Body::RespBulk => &[RespBulk],
        }
    }
}

/// The value layout of an object type, or `None` when it cannot be walked (type 6, Valkey
/// PATH_HASH).
pub(crate) fn value_tasks(t: ObjectType) -> Option<&'static [Task]> {
    use ObjectType::*;
    use Task::*;
    Some(match t {
        String | HashZipmap | ListZiplist | SetIntset | ZsetZiplist | HashZiplist
        | HashListpack | ZsetListpack | SetListpack | HashListpackExPreGa => &[Str],
        ListLinked | Set | ListQuicklist => &[Count(Body::Str1)],
        Hash => &[Count(Body::Str2)],
        ZsetV1 => &[Count(Body::ZsetV1)],
        Zset2 => &[Count(Body::Zset2)],
        ListQuicklist2 => &[Count(Body::Ql2Node)],
        HashMetadataPreGa => &[Count(Body::HashMeta)],
        HashMetadata => &[Fixed(8), Count(Body::HashMeta)],
        HashListpackEx => &[Fixed(8), Str],
        ValkeyHash2 => &[Count(Body::ValkeyHash2)],
        Module2 => &[Len, ModuleOps],
        StreamListpacks => &[Count(Body::Str2), Len, Len, Len, Count(Body::Group(1))],
        StreamListpacks2 => &[
            Count(Body::Str2),
            Len,
            Len,
            Len,
            Len,
            Len,
            Len,
            Len,
            Len,
            Count(Body::Group(2)),
        ],
        StreamListpacks3 => &[
            Count(Body::Str2),
            Len,
            Len,
            Len,
            Len,
            Len,
            Len,
            Len,
            Len,
            Count(Body::Group(3)),
        ],
        ModulePreGa | ValkeyPathHash => return None,
    })
}

/// Outcome of [`Walker::walk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Walked {
    /// The structure is complete.
    Done,
    /// More bytes are needed.
    NeedMore,
}

/// The resumable walker. `walk` advances a position in a caller-owned buffer.
#[derive(Debug, Default, Clone)]
pub(crate) struct Walker {
    stack: Vec<Task>,
}

impl Walker {
    /// Starts walking `tasks` in order.
    pub(crate) fn start(&mut self, tasks: &[Task]) {
        self.stack.clear();
        self.stack.extend(tasks.iter().rev());
    }

    /// Walks `buf` from `*pos`, advancing it past every complete item (and through string
    /// payloads byte by byte). On error, `*pos` is where the bad item starts.
    pub(crate) fn walk(&mut self, buf: &[u8], pos: &mut usize) -> MResult<Walked> {
        while let Some(task) = self.stack.pop() {
            let rest = &buf[*pos..];
            let wrap = |e: Malformed| e.shift(*pos);
            macro_rules! need {
                ($e:expr) => {
                    match $e {
                        Some(v) => v,
                        None => {
                            self.stack.push(task);
                            return Ok(Walked::NeedMore);
                        }
                    }
                };
            }
            match task {
                Task::Len => {
                    let (_, used) = need!(length::parse_len(rest).map_err(wrap)?);
                    *pos += used;
                }
                Task::Str => {
                    let (h, used) = need!(string::parse_header(rest).map_err(wrap)?);
                    *pos += used;
                    let n = h.payload_len();
                    if let StrHeader::Lzf { ulen, clen } = h
                        && ulen > clen.saturating_mul(89)
                    {
                        return Err(Malformed::new(
                            *pos - used,
                            format!(
                                "an LZF string whose sizes are possible ({clen} bytes cannot expand to {ulen})"
                            ),
                        ));
                    }
                    if n > 0 {
                        self.stack.push(Task::Bytes(n));
                    }
                }
                Task::Bytes(n) => {
                    let avail = rest.len() as u64;
                    if avail >= n {
                        *pos += n as usize;
                    } else {
                        *pos += avail as usize;
                        self.stack.push(Task::Bytes(n - avail));
                        return Ok(Walked::NeedMore);
                    }
                }
                Task::Fixed(n) => {
                    need!((rest.len() >= n as usize).then_some(()));
                    *pos += n as usize;
                }
                Task::AsciiDouble => {
                    let &b = need!(rest.first());
                    let len = if b >= 253 { 0 } else { b as usize };
                    need!((rest.len() > len).then_some(()));
                    *pos += 1 + len;
                }
                Task::Count(body) => {
                    let (n, used) = need!(length::parse_len(rest).map_err(wrap)?);
                    *pos += used;
                    if n > 0 {
                        self.stack.push(Task::Repeat(body, n));
                    }
                }
                Task::Repeat(body, n) => {
                    if n > 1 {
                        self.stack.push(Task::Repeat(body, n - 1));
                    }
                    self.stack.extend(body.tasks().iter().rev());
                }
                Task::ModuleOps => {
                    let (op, used) = need!(length::parse_len(rest).map_err(wrap)?);
                    let next = match op {
                        0 => None,
                        1 | 2 => Some(Task::Len),
                        3 => Some(Task::Fixed(4)),
                        4 => Some(Task::Fixed(8)),
                        5 => Some(Task::Str),
                        _ => {
                            return Err(Malformed::new(
                                *pos,
                                format!("a module field opcode 0–5, found {op}"),
                            ));
                        }
                    };
                    *pos += used;
                    if let Some(t) = next {
                        self.stack.push(Task::ModuleOps);
                        self.stack.push(t);
                    }
                }
                Task::QlContainer => {
                    let (c, used) = need!(length::parse_len(rest).map_err(wrap)?);
                    if c != 1 && c != 2 {
                        return Err(Malformed::new(
                            *pos,
                            format!(
                                "a quicklist node container 1 (PLAIN) or 2 (PACKED), found {c}"
                            ),
                        ));
                    }
                    *pos += used;
                }
                Task::RespArray => {
                    let (n, used) = need!(resp_line(rest, b'*').map_err(wrap)?);
                    if n == 0 {
                        return Err(Malformed::new(
                            *pos,
                            "an inline command with at least one argument",
                        ));
                    }
                    *pos += used;
                    self.stack.push(Task::Repeat(Body::RespBulk, n));
                }
                Task::RespBulk => {
                    let (n, used) = need!(resp_line(rest, b'$').map_err(wrap)?);
                    *pos += used;
                    self.stack.push(Task::Crlf);
                    if n > 0 {
                        self.stack.push(Task::Bytes(n));
                    }
                }
                Task::Crlf => {
                    let two = need!(rest.get(..2));
                    if two != b"\r\n" {
                        return Err(Malformed::new(*pos, "\\r\\n after a RESP bulk string"));
                    }
                    *pos += 2;
                }
                Task::OptStr => {
                    let (has, used) = need!(length::parse_len(rest).map_err(wrap)?);
                    *pos += used;
                    if has != 0 {
                        self.stack.push(Task::Str);
                    }
                }
            }
        }
        Ok(Walked::Done)
    }
}

/// Longest RESP header line accepted: the prefix, 20 digits, `\r\n`.
const RESP_LINE_MAX: usize = 23;

/// Parses a RESP header line `<prefix><decimal>\r\n` at the start of `b`: `Ok(None)` when the
/// line is not complete yet, the value and the bytes used otherwise. Negative counts (null
/// arrays or bulks) are refused: an inline command has none.
pub(crate) fn resp_line(b: &[u8], prefix: u8) -> MResult<Option<(u64, usize)>> {
    let Some(&first) = b.first() else {
        return Ok(None);
    };
    if first != prefix {
        return Err(Malformed::new(
            0,
            format!("a RESP '{}' line, found byte {first:#04x}", prefix as char),
        ));
    }
    let Some(cr) = b.iter().take(RESP_LINE_MAX).position(|&c| c == b'\r') else {
        if b.len() >= RESP_LINE_MAX {
            return Err(Malformed::new(0, "a RESP header line of at most 23 bytes"));
        }
        return Ok(None);
    };
    let digits = &b[1..cr];
    let value = (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
        .then(|| std::str::from_utf8(digits).ok()?.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| Malformed::new(1, "a non-negative decimal count in a RESP header line"))?;
    match b.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((value, cr + 2))),
        Some(_) => Err(Malformed::new(
            cr + 1,
            "\\n after \\r in a RESP header line",
        )),
    }
}

/// Measures the common value shapes (one string; `n` strings, pairs, zset-2 entries or
/// quicklist-2 nodes) in a tight loop over a buffer holding at least the whole value, starting
/// at `pos`. Returns the end position; `None` when the shape is not one of these, the buffer
/// ends first, or anything is malformed — the caller then uses the resumable [`Walker`], which
/// also reports errors.
#[inline]
pub(crate) fn measure_simple(tasks: &[Task], buf: &[u8], pos: usize) -> Option<usize> {
    #[inline(always)]
    fn str_end(buf: &[u8], pos: usize) -> Option<usize> {
        let (h, used) = string::parse_header(buf.get(pos..)?).ok()??;
        if let StrHeader::Lzf { clen, ulen } = h
            && ulen > clen.saturating_mul(89)
        {
            return None;
        }
        let end = (pos + used).checked_add(usize::try_from(h.payload_len()).ok()?)?;
        (end <= buf.len()).then_some(end)
    }
    #[inline(always)]
    fn len_end(buf: &[u8], pos: usize) -> Option<(u64, usize)> {
        let (n, used) = length::parse_len(buf.get(pos..)?).ok()??;
        Some((n, pos + used))
    }
    match tasks {
        [Task::Str] => str_end(buf, pos),
        [Task::Count(body @ (Body::Str1 | Body::Str2 | Body::Zset2 | Body::Ql2Node))] => {
            let (n, mut p) = len_end(buf, pos)?;
            // each element takes at least one byte: a count above the bytes present cannot fit
            if n > (buf.len() - p) as u64 {
                return None;
            }
            for _ in 0..n {
                p = match body {
                    Body::Str1 => str_end(buf, p)?,
                    Body::Str2 => str_end(buf, str_end(buf, p)?)?,
                    Body::Zset2 => {
                        let e = str_end(buf, p)? + 8;
                        (e <= buf.len()).then_some(e)?
                    }
                    _ => {
                        let (c, q) = len_end(buf, p)?;
                        if c != 1 && c != 2 {
                            return None;
                        }
                        str_end(buf, q)?
                    }
                };
            }
            Some(p)
        }
        _ => None,
    }
}

/// Walks a complete slice with `tasks` and returns the number of bytes the structure occupies.
/// Truncation is an error.
pub(crate) fn measure(tasks: &[Task], buf: &[u8]) -> MResult<usize> {
    let mut w = Walker::default();
    w.start(tasks);
    let mut pos = 0;
    match w.walk(buf, &mut pos)? {
        Walked::Done => Ok(pos),
        Walked::NeedMore => Err(Malformed::new(buf.len(), "more value bytes, input ended")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumes_byte_by_byte() {
        // a type-4 hash: 2 pairs, one LZF value
        let mut v = Vec::new();
        length::encode(2, &mut v);
        string::encode(b"f1", &mut v);
        string::encode_lzf_literal(&[7u8; 100], &mut v);
        string::encode(b"12345", &mut v);
        string::encode(b"v2", &mut v);
        let tasks = value_tasks(ObjectType::Hash).unwrap();
        assert_eq!(measure(tasks, &v).unwrap(), v.len());
        let mut w = Walker::default();
        w.start(tasks);
        let mut pos = 0;
        for end in 0..v.len() {
            assert_eq!(w.walk(&v[..end], &mut pos).unwrap(), Walked::NeedMore);
        }
        assert_eq!(w.walk(&v, &mut pos).unwrap(), Walked::Done);
        assert_eq!(pos, v.len());
    }

    #[test]
    fn resp_command_resumes_byte_by_byte_and_rejects_bad_lines() {
        let v = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n";
        assert_eq!(measure(&[Task::RespArray], v).unwrap(), v.len());
        let mut w = Walker::default();
        w.start(&[Task::RespArray]);
        let mut pos = 0;
        for end in 0..v.len() {
            assert_eq!(w.walk(&v[..end], &mut pos).unwrap(), Walked::NeedMore);
        }
        assert_eq!(w.walk(v, &mut pos).unwrap(), Walked::Done);
        assert_eq!(pos, v.len());
        for bad in [
            &b"*0\r\n"[..],
            b"*-1\r\n",
            b"$1\r\n",
            b"*1\r\n$1\r\nkXX",
            b"*1\n",
            b"*1\rx",
            b"*123456789012345678901234\r\n",
            b"*99999999999999999999\r\n",
            b"*1\r\n$-1\r\n",
        ] {
            assert!(measure(&[Task::RespArray], bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rejects_bad_framing() {
        assert!(measure(value_tasks(ObjectType::ListQuicklist2).unwrap(), &[1, 3, 0]).is_err());
        assert!(measure(value_tasks(ObjectType::Module2).unwrap(), &[5, 9]).is_err());
        assert!(measure(&[Task::Str], &[0xC4]).is_err());
    }
}
