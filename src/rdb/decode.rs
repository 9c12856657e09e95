//! Encoded value bytes → logical values.
//!
//! [`decode`] takes the exact value bytes of a key (from [`super::Event::Key`], or a DUMP
//! payload's body) and returns a [`Value`] whose collections are *iterators*: elements are
//! produced one at a time from the encoded bytes, so a collection of millions of elements is
//! never materialized whole. Elements are [`Bytes`] sharing the input's memory where the
//! encoding allows (raw strings, listpack strings); compressed quicklist or stream nodes are
//! expanded one node at a time.
//!
//! Every encoding is checked while iterating (bounds, counts, order where the format requires
//! it); errors are [`Malformed`] positioned inside the value — add
//! [`super::KeyMeta::value_offset`] for the file offset.

use std::collections::VecDeque;

use bytes::Bytes;

use super::elem::Elem;
use super::error::{MResult, Malformed};
use super::intset::IntsetIter;
use super::length;
use super::listpack::ListpackIter;
use super::reader::module_name;
use super::stream::Stream;
use super::string::{self, StrHeader};
use super::version::ObjectType;
use super::ziplist::ZiplistIter;
use super::zipmap::ZipmapIter;

/// A decoded value.
#[derive(Debug)]
pub enum Value {
    /// A string (also HyperLogLogs and bitmaps).
    String(Bytes),
    /// List elements, head to tail.
    List(Elements),
    /// Set members.
    Set(Elements),
    /// Sorted-set members with scores.
    Zset(ZsetIter),
    /// Hash fields, with per-field expiry when the type has one.
    Hash(HashIter),
    /// A stream.
    Stream(Box<Stream>),
    /// A module value, carried opaque.
    Module(ModuleValue),
}

/// A module value: opaque bytes plus the module's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleValue {
    /// The 64-bit module type id.
    pub module_id: u64,
    /// The 9-character module type name (`ReJSON-RL`, `MBbloom--`…).
    pub module_name: String,
    /// The module's encoding version (low 10 bits of the id).
    pub encoding_version: u16,
    /// The whole value, byte-exact (id included): what a DUMP payload carries.
    pub raw: Bytes,
}

/// A hash field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashField {
    /// Field name.
    pub field: Bytes,
    /// Field value.
    pub value: Bytes,
    /// Absolute expiry in ms, for the hash-field-expiry types.
    pub expire_ms: Option<i64>,
}

/// A cursor over a [`Bytes`] value that hands out zero-copy slices.
#[derive(Debug, Clone)]
pub(crate) struct BCursor {
    pub(crate) buf: Bytes,
    pub(crate) pos: usize,
}

impl BCursor {
    pub(crate) fn new(buf: Bytes) -> Self {
        BCursor { buf, pos: 0 }
    }

    fn ended(&self, what: &'static str) -> Malformed {
        ended(self.pos, what)
    }

    pub(crate) fn len(&mut self, what: &'static str) -> MResult<u64> {
        match length::parse_len(&self.buf[self.pos..]).map_err(|e| e.shift(self.pos))? {
            Some((n, used)) => {
                self.pos += used;
                Ok(n)
            }
            None => Err(self.ended(what)),
        }
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> MResult<Bytes> {
        if self.buf.len() - self.pos < n {
            return Err(self.ended(what));
        }
        self.pos += n;
        Ok(self.buf.slice(self.pos - n..self.pos))
    }

    pub(crate) fn i64_le(&mut self, what: &'static str) -> MResult<i64> {
        Ok(i64::from_le_bytes(
            self.take(8, what)?[..].try_into().unwrap(),
        ))
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> MResult<u8> {
        Ok(self.take(1, what)?[0])
    }

    /// Reads an RDB string: raw strings are zero-copy, integers become decimal text, LZF is
    /// expanded.
    pub(crate) fn string(&mut self) -> MResult<Bytes> {
        let (s, end) = string_at(&self.buf, self.pos)?;
        self.pos = end;
        Ok(match s {
            StrAt::Slice(r) => self.buf.slice(r),
            StrAt::Owned(v) => v.into(),
        })
    }

    /// Skips an RDB string without expanding it.
    pub(crate) fn skip_string(&mut self) -> MResult<()> {
        let start = self.pos;
        let (h, used) = string::parse_header(&self.buf[start..])
            .map_err(|e| e.shift(start))?
            .ok_or_else(|| self.ended("a string header"))?;
        self.pos += used;
        let n = usize::try_from(h.payload_len()).map_err(|_| self.ended("string bytes"))?;
        self.take(n, "string bytes").map(drop)
    }
}

/// The error for a value that ended at `pos` where `what` was expected.
fn ended(pos: usize, what: &'static str) -> Malformed {
    Malformed::new(pos, format!("{what}, value ended"))
}

/// An RDB string read by [`decode_string`]: a range of the input (raw bytes), or its expansion
/// (integers become decimal text, LZF is expanded).
#[derive(Debug, PartialEq, Eq)]
pub enum StrAt {
    /// The string is these bytes of the input.
    Slice(std::ops::Range<usize>),
    /// The string, expanded.
    Owned(Vec<u8>),
}

/// Reads the RDB string at `start` of `buf`, returning it and where it ends.
fn string_at(buf: &[u8], start: usize) -> MResult<(StrAt, usize)> {
    let (h, used) = string::parse_header(&buf[start..])
        .map_err(|e| e.shift(start))?
        .ok_or_else(|| ended(start, "a string header"))?;
    let at = start + used;
    let take = |n: u64, what| {
        usize::try_from(n)
            .ok()
            .filter(|&n| buf.len() - at >= n)
            .map(|n| at..at + n)
            .ok_or_else(|| ended(at, what))
    };
    match h {
        StrHeader::Int(i) => Ok((StrAt::Owned(i.to_string().into_bytes()), at)),
        StrHeader::Raw { len } => {
            let r = take(len, "string bytes")?;
            let end = r.end;
            Ok((StrAt::Slice(r), end))
        }
        StrHeader::Lzf { clen, ulen } => {
            let r = take(clen, "LZF bytes")?;
            let end = r.end;
            let out = string::lzf_decompress(&buf[r], ulen).map_err(|e| e.shift(at))?;
            Ok((StrAt::Owned(out), end))
        }
    }
}

/// Decodes the value of a string key (type 0) from its exact encoded bytes: the string
/// [`decode`] returns as [`Value::String`], with the same errors, but as where it lies in
/// `value` (a raw string: the caller slices it without a copy) or as its expansion (an integer
/// or LZF string), so the caller decides where it is kept (replay builds it into a shared
/// arena, never a buffer of its own per key).
pub fn decode_string(value: &[u8]) -> MResult<StrAt> {
    Ok(string_at(value, 0)?.0)
}

/// Decodes a value of type `t` from its exact encoded bytes.
pub fn decode(t: ObjectType, value: Bytes) -> MResult<Value> {
    use ObjectType::*;
    let mut c = BCursor::new(value.clone());
    Ok(match t {
        String => Value::String(c.string()?),
        ListLinked => Value::List(Elements::strings(c)?),
        ListZiplist => Value::List(Elements::blob(&mut c, Blob::Ziplist)?),
        ListQuicklist => Value::List(Elements::quicklist(c, false)?),
        ListQuicklist2 => Value::List(Elements::quicklist(c, true)?),
        Set => Value::Set(Elements::strings(c)?),
        SetIntset => Value::Set(Elements::blob(&mut c, Blob::Intset)?),
        SetListpack => Value::Set(Elements::blob(&mut c, Blob::Listpack)?),
        ZsetV1 => {
            let left = c.len("member count")?;
            Value::Zset(ZsetIter(ZsetInner::V1 { c, left }))
        }
        Zset2 => {
            let left = c.len("member count")?;
            Value::Zset(ZsetIter(ZsetInner::V2 { c, left }))
        }
        ZsetZiplist => Value::Zset(ZsetIter(ZsetInner::Pairs(Elements::blob(
            &mut c,
            Blob::Ziplist,
        )?))),
        ZsetListpack => Value::Zset(ZsetIter(ZsetInner::Pairs(Elements::blob(
            &mut c,
            Blob::Listpack,
        )?))),
        Hash => Value::Hash(HashIter(HashInner::Pairs(Elements::strings_times(c, 2)?))),
        HashZipmap => {
            let blob = c.string()?;
            Value::Hash(HashIter(HashInner::Zipmap(ZipmapIter::new(blob)?)))
        }
        HashZiplist => Value::Hash(HashIter(HashInner::Pairs(Elements::blob(
            &mut c,
            Blob::Ziplist,
        )?))),
        HashListpack => Value::Hash(HashIter(HashInner::Pairs(Elements::blob(
            &mut c,
            Blob::Listpack,
        )?))),
        HashListpackExPreGa => Value::Hash(HashIter(HashInner::Triples(Elements::blob(
            &mut c,
            Blob::Listpack,
        )?))),
        HashListpackEx => {
            c.i64_le("min expire")?;
            Value::Hash(HashIter(HashInner::Triples(Elements::blob(
                &mut c,
                Blob::Listpack,
            )?)))
        }
        HashMetadataPreGa => {
            let left = c.len("field count")?;
            Value::Hash(HashIter(HashInner::Meta { c, left, min: None }))
        }
        HashMetadata => {
            let min = c.i64_le("min expire")?;
            let left = c.len("field count")?;
            Value::Hash(HashIter(HashInner::Meta {
                c,
                left,
                min: Some(min),
            }))
        }
        ValkeyHash2 => {
            let left = c.len("field count")?;
            Value::Hash(HashIter(HashInner::Valkey { c, left }))
        }
        StreamListpacks | StreamListpacks2 | StreamListpacks3 => {
            let v = match t {
                StreamListpacks => 1,
                StreamListpacks2 => 2,
                _ => 3,
            };
            Value::Stream(Box::new(Stream::decode(c, v)?))
        }
        Module2 => {
            let module_id = c.len("module id")?;
            let (module_name, encoding_version) = module_name(module_id);
            Value::Module(ModuleValue {
                module_id,
                module_name,
                encoding_version,
                raw: value,
            })
        }
        ModulePreGa | ValkeyPathHash => {
            return Err(Malformed::new(
                0,
                format!("a supported type, {t:?} cannot be decoded"),
            ));
        }
    })
}

/// Which compact blob a string holds.
#[derive(Debug, Clone, Copy)]
enum Blob {
    Ziplist,
    Listpack,
    Intset,
}

#[derive(Debug)]
enum Source {
    Strings {
        c: BCursor,
        left: u64,
    },
    Listpack(ListpackIter),
    Ziplist(ZiplistIter),
    Intset(IntsetIter),
    Quicklist {
        c: BCursor,
        nodes_left: u64,
        v2: bool,
        node: Option<Box<Source>>,
        plain: Option<Bytes>,
    },
    Done,
}

/// The elements of a list or set (and the flattened pairs/triples of hashes and sorted sets),
/// in stored order, whatever the encoding.
#[derive(Debug)]
pub struct Elements {
    src: Source,
    /// Offset of the enclosing blob inside the value, for error positions.
    base: usize,
}

impl Elements {
    fn strings(c: BCursor) -> MResult<Self> {
        Self::strings_times(c, 1)
    }

    /// `n` × `per` strings, `n` read first (hash tables store pairs).
    fn strings_times(mut c: BCursor, per: u64) -> MResult<Self> {
        let n = c.len("element count")?;
        let left = n
            .checked_mul(per)
            .ok_or_else(|| Malformed::new(0, "an element count that fits in 64 bits"))?;
        Ok(Elements {
            src: Source::Strings { c, left },
            base: 0,
        })
    }

    fn blob(c: &mut BCursor, kind: Blob) -> MResult<Self> {
        let at = c.pos;
        let blob = c.string()?;
        let base = at;
        let src = Self::blob_source(blob, kind).map_err(|e| e.shift(base))?;
        Ok(Elements { src, base })
    }

    fn blob_source(blob: Bytes, kind: Blob) -> MResult<Source> {
        Ok(match kind {
            Blob::Ziplist => Source::Ziplist(ZiplistIter::new(blob)?),
            Blob::Listpack => Source::Listpack(ListpackIter::new(blob)?),
            Blob::Intset => Source::Intset(IntsetIter::new(blob)?),
        })
    }

    fn quicklist(mut c: BCursor, v2: bool) -> MResult<Self> {
        let nodes_left = c.len("quicklist node count")?;
        Ok(Elements {
            src: Source::Quicklist {
                c,
                nodes_left,
                v2,
                node: None,
                plain: None,
            },
            base: 0,
        })
    }

    fn next_inner(src: &mut Source) -> Option<MResult<Elem>> {
        match src {
            Source::Done => None,
            Source::Strings { c, left } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                Some(c.string().map(Elem::Str))
            }
            Source::Listpack(it) => it.next(),
            Source::Ziplist(it) => it.next(),
            Source::Intset(it) => it.next().map(|r| r.map(Elem::Int)),
            Source::Quicklist {
                c,
                nodes_left,
                v2,
                node,
                plain,
            } => loop {
                if let Some(p) = plain.take() {
                    return Some(Ok(Elem::Str(p)));
                }
                if let Some(n) = node {
                    match Self::next_inner(n) {
                        Some(Ok(e)) => return Some(Ok(e)),
                        Some(Err(e)) => return Some(Err(e.shift(c.pos))),
                        None => *node = None,
                    }
                }
                if *nodes_left == 0 {
                    return None;
                }
                *nodes_left -= 1;
                let container = if *v2 {
                    match c.len("quicklist container") {
                        Ok(k) => k,
                        Err(e) => return Some(Err(e)),
                    }
                } else {
                    2
                };
                let blob = match c.string() {
                    Ok(b) => b,
                    Err(e) => return Some(Err(e)),
                };
                match (container, *v2) {
                    (1, true) => *plain = Some(blob),
                    (2, _) => {
                        let kind = if *v2 { Blob::Listpack } else { Blob::Ziplist };
                        match Self::blob_source(blob, kind) {
                            Ok(s) => *node = Some(Box::new(s)),
                            Err(e) => return Some(Err(e.shift(c.pos))),
                        }
                    }
                    _ => {
                        return Some(Err(Malformed::new(
                            c.pos,
                            format!("quicklist container 1 or 2, found {container}"),
                        )));
                    }
                }
            },
        }
    }
}

impl Elements {
    /// The next element as stored (integers not yet turned into text).
    pub fn next_elem(&mut self) -> Option<MResult<Elem>> {
        let r = Self::next_inner(&mut self.src);
        if let Some(Err(_)) = r {
            self.src = Source::Done;
            return r.map(|r| r.map_err(|e| e.shift(self.base)));
        }
        r
    }
}

impl Iterator for Elements {
    type Item = MResult<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_elem().map(|r| r.map(Elem::into_bytes))
    }
}

/// Parses a score stored as text (`"1.5"`, `"-inf"`, `"inf"`, integers). NaN is corruption.
pub fn parse_score(s: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(s).ok()?;
    let v: f64 = match t {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => t.parse().ok()?,
    };
    (!v.is_nan()).then_some(v)
}

#[derive(Debug)]
enum ZsetInner {
    Pairs(Elements),
    V1 { c: BCursor, left: u64 },
    V2 { c: BCursor, left: u64 },
    Done,
}

/// Sorted-set members and scores, in stored order (ascending for compact encodings, descending
/// for type 5).
#[derive(Debug)]
pub struct ZsetIter(ZsetInner);

impl ZsetIter {
    fn step(&mut self) -> Option<MResult<(Bytes, f64)>> {
        match &mut self.0 {
            ZsetInner::Done => None,
            ZsetInner::Pairs(it) => {
                let m = match it.next()? {
                    Ok(m) => m,
                    Err(e) => return Some(Err(e)),
                };
                let s = match it.next() {
                    Some(Ok(s)) => s,
                    Some(Err(e)) => return Some(Err(e)),
                    None => return Some(Err(Malformed::new(0, "a score after the last member"))),
                };
                Some(parse_score(&s).map(|v| (m, v)).ok_or_else(|| {
                    Malformed::new(
                        0,
                        format!("a numeric score, found {:?}", String::from_utf8_lossy(&s)),
                    )
                }))
            }
            ZsetInner::V1 { c, left } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                Some((|| {
                    let m = c.string()?;
                    let at = c.pos;
                    let n = c.u8("score length")?;
                    let v = match n {
                        253 => return Err(Malformed::new(at, "a score that is not NaN")),
                        254 => f64::INFINITY,
                        255 => f64::NEG_INFINITY,
                        n => {
                            let t = c.take(n as usize, "score text")?;
                            parse_score(&t).ok_or_else(|| Malformed::new(at, "a decimal score"))?
                        }
                    };
                    Ok((m, v))
                })())
            }
            ZsetInner::V2 { c, left } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                Some((|| {
                    let m = c.string()?;
                    let at = c.pos;
                    let v = f64::from_le_bytes(c.take(8, "binary score")?[..].try_into().unwrap());
                    if v.is_nan() {
                        return Err(Malformed::new(at, "a score that is not NaN"));
                    }
                    Ok((m, v))
                })())
            }
        }
    }
}

impl Iterator for ZsetIter {
    type Item = MResult<(Bytes, f64)>;

    fn next(&mut self) -> Option<Self::Item> {
        let r = self.step();
        if let Some(Err(_)) = r {
            self.0 = ZsetInner::Done;
        }
        r
    }
}

#[derive(Debug)]
enum HashInner {
    Pairs(Elements),
    Zipmap(ZipmapIter),
    /// field, value, absolute ttl (0 = none).
    Triples(Elements),
    /// len ttl, field, value. `min`: None = ttl absolute (pre-GA); Some(m) = ttl + m − 1.
    Meta {
        c: BCursor,
        left: u64,
        min: Option<i64>,
    },
    /// field, value, 8-byte expiry (−1 = none).
    Valkey {
        c: BCursor,
        left: u64,
    },
    Done,
}

/// Hash fields in stored order.
#[derive(Debug)]
pub struct HashIter(HashInner);

impl HashIter {
    fn step(&mut self) -> Option<MResult<HashField>> {
        let field = |field, value, expire_ms| HashField {
            field,
            value,
            expire_ms,
        };
        match &mut self.0 {
            HashInner::Done => None,
            HashInner::Pairs(it) => {
                let f = match it.next()? {
                    Ok(f) => f,
                    Err(e) => return Some(Err(e)),
                };
                Some(match it.next() {
                    Some(Ok(v)) => Ok(field(f, v, None)),
                    Some(Err(e)) => Err(e),
                    None => Err(Malformed::new(0, "a value after the last hash field")),
                })
            }
            HashInner::Zipmap(it) => it.next().map(|r| r.map(|(f, v)| field(f, v, None))),
            HashInner::Triples(it) => {
                let f = match it.next()? {
                    Ok(f) => f,
                    Err(e) => return Some(Err(e)),
                };
                Some((|| {
                    let v = it
                        .next()
                        .ok_or_else(|| Malformed::new(0, "a hash value"))??;
                    let t = it
                        .next()
                        .ok_or_else(|| Malformed::new(0, "a hash field TTL"))??;
                    let ttl = Elem::Str(t)
                        .as_i64()
                        .ok_or_else(|| Malformed::new(0, "an integer hash field TTL"))?;
                    Ok(field(f, v, (ttl != 0).then_some(ttl)))
                })())
            }
            HashInner::Meta { c, left, min } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                let min = *min;
                Some((|| {
                    let ttl = c.len("field TTL")?;
                    let f = c.string()?;
                    let v = c.string()?;
                    let expire = match (ttl, min) {
                        (0, _) => None,
                        (t, None) => Some(t as i64),
                        (t, Some(m)) => Some((t as i64).wrapping_add(m).wrapping_sub(1)),
                    };
                    Ok(field(f, v, expire))
                })())
            }
            HashInner::Valkey { c, left } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                Some((|| {
                    let f = c.string()?;
                    let v = c.string()?;
                    let e = c.i64_le("field expiry")?;
                    Ok(field(f, v, (e != -1).then_some(e)))
                })())
            }
        }
    }
}

impl Iterator for HashIter {
    type Item = MResult<HashField>;

    fn next(&mut self) -> Option<Self::Item> {
        let r = self.step();
        if let Some(Err(_)) = r {
            self.0 = HashInner::Done;
        }
        r
    }
}

/// Buffer type used for one expanded node at a time.
pub(crate) type NodeQueue<T> = VecDeque<T>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::{listpack, ziplist};

    fn hex(s: &str) -> Bytes {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Splits an Appendix B DUMP payload into type and value (drops version + CRC).
    fn dump(s: &str) -> (ObjectType, Bytes) {
        let b = hex(s);
        let t = ObjectType::from_byte(b[0], crate::rdb::Flavor::Redis).unwrap();
        (t, b.slice(1..b.len() - 10))
    }

    fn list(v: Value) -> Vec<Bytes> {
        match v {
            Value::List(e) | Value::Set(e) => e.map(Result::unwrap).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decode_string_matches_decode_with_its_errors() {
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for v in [&b"hello"[..], b"12345", b"-7", b"", &[b'x'; 300]] {
            let mut raw = Vec::new();
            string::encode_raw(v, &mut raw);
            let mut enc = Vec::new();
            string::encode(v, &mut enc);
            let mut lzf = Vec::new();
            string::encode_lzf_literal(v, &mut lzf);
            cases.extend([raw, enc, lzf]);
        }
        let mut trailing = Vec::new();
        string::encode_raw(b"abc", &mut trailing);
        trailing.extend_from_slice(b"junk");
        cases.push(trailing);
        let good = cases.len();
        // truncated header, bytes, LZF data; a bad encoding byte; an LZF size out of reach
        cases.extend([
            vec![],
            vec![0x40],
            vec![5, b'a'],
            vec![0xC3, 4, 2, 1, b'a'],
            vec![0xC3, 1, 100, 0],
            vec![0xC5],
        ]);
        for (i, c) in cases.into_iter().enumerate() {
            let want = decode(ObjectType::String, Bytes::from(c.clone()));
            let got = decode_string(&c).map(|at| match at {
                StrAt::Slice(r) => c[r].to_vec(),
                StrAt::Owned(v) => v,
            });
            match (want, got) {
                (Ok(Value::String(w)), Ok(g)) => assert_eq!(w, g, "case {i}"),
                (Err(w), Err(g)) => {
                    assert!(i >= good);
                    assert_eq!(w.to_string(), g.to_string(), "case {i}");
                }
                (w, g) => panic!("case {i}: {w:?} vs {g:?}"),
            }
        }
    }

    #[test]
    fn appendix_b_vectors() {
        let (t, v) = dump("000568656c6c6f0a006372df766534200a");
        assert!(matches!(decode(t, v).unwrap(), Value::String(s) if s == "hello"));
        let (t, v) = dump("00c139300a009d94ea2793fc08b9");
        assert!(matches!(decode(t, v).unwrap(), Value::String(s) if s == "12345"));
        let (t, v) = dump("10151500000004008266310382763103826632037b01ff0a004ac585b69f9c1e83");
        let Value::Hash(h) = decode(t, v).unwrap() else {
            panic!()
        };
        let h: Vec<_> = h.map(Result::unwrap).map(|f| (f.field, f.value)).collect();
        assert_eq!(
            h,
            vec![("f1".into(), "v1".into()), ("f2".into(), "123".into())]
        );
        let (t, v) = dump("0b0e0200000003000000fdff010002000a00d1b78ed9bc07c27f");
        assert_eq!(list(decode(t, v).unwrap()), vec!["-3", "1", "2"]);
        let (t, v) =
            dump("1202020d0d0000000200816102dfff02ff020a0a0000000100c12c02ff0a00c8082f0274def1e9");
        assert_eq!(list(decode(t, v).unwrap()), vec!["a", "-1", "300"]);
        let (t, v) = dump("111414000000040081610283312e35048162020201ff0a00fa02b425af188763");
        let Value::Zset(z) = decode(t, v).unwrap() else {
            panic!()
        };
        let z: Vec<_> = z.map(Result::unwrap).collect();
        assert_eq!(z, vec![("a".into(), 1.5), ("b".into(), 2.0)]);
    }

    #[test]
    fn quicklist_v1_of_ziplists_and_plain_nodes() {
        let mut v = Vec::new();
        length::encode(2, &mut v);
        string::encode_raw(&ziplist::encode([&b"a"[..], b"7"]), &mut v);
        string::encode_lzf_literal(&ziplist::encode([&b"b"[..]]), &mut v);
        let got = list(decode(ObjectType::ListQuicklist, v.into()).unwrap());
        assert_eq!(got, vec!["a", "7", "b"]);

        let mut v = Vec::new();
        length::encode(2, &mut v);
        length::encode(1, &mut v);
        string::encode_raw(b"plain element", &mut v);
        length::encode(2, &mut v);
        string::encode_raw(&listpack::encode([&b"x"[..]]), &mut v);
        assert_eq!(
            list(decode(ObjectType::ListQuicklist2, v.into()).unwrap()),
            vec!["plain element", "x"]
        );
    }

    #[test]
    fn zset_scores_v1_v2_and_specials() {
        let mut v = Vec::new();
        length::encode(3, &mut v);
        string::encode(b"a", &mut v);
        v.extend_from_slice(&[3, b'1', b'.', b'5']);
        string::encode(b"b", &mut v);
        v.push(254);
        string::encode(b"c", &mut v);
        v.push(255);
        let Value::Zset(z) = decode(ObjectType::ZsetV1, v.into()).unwrap() else {
            panic!()
        };
        let z: Vec<_> = z.map(Result::unwrap).map(|(_, s)| s).collect();
        assert_eq!(z, vec![1.5, f64::INFINITY, f64::NEG_INFINITY]);

        let mut v = Vec::new();
        length::encode(1, &mut v);
        string::encode(b"m", &mut v);
        v.extend_from_slice(&f64::NAN.to_le_bytes());
        let Value::Zset(mut z) = decode(ObjectType::Zset2, v.into()).unwrap() else {
            panic!()
        };
        assert!(z.next().unwrap().is_err(), "NaN scores are corruption");
    }

    #[test]
    fn hash_field_ttls() {
        // type 24: minExpire 1000; field a ttl stored 1 → 1000; field b no ttl
        let mut v = 1000i64.to_le_bytes().to_vec();
        length::encode(2, &mut v);
        length::encode(1, &mut v);
        string::encode(b"a", &mut v);
        string::encode(b"1", &mut v);
        length::encode(0, &mut v);
        string::encode(b"b", &mut v);
        string::encode(b"2", &mut v);
        let Value::Hash(h) = decode(ObjectType::HashMetadata, v.into()).unwrap() else {
            panic!()
        };
        let ttl: Vec<_> = h.map(|f| f.unwrap().expire_ms).collect();
        assert_eq!(ttl, vec![Some(1000), None]);

        // Valkey HASH_2: -1 = none, 0 is a real timestamp
        let mut v = Vec::new();
        length::encode(2, &mut v);
        for (f, e) in [(b"x", -1i64), (b"y", 0)] {
            string::encode(f, &mut v);
            string::encode(b"v", &mut v);
            v.extend_from_slice(&e.to_le_bytes());
        }
        let Value::Hash(h) = decode(ObjectType::ValkeyHash2, v.into()).unwrap() else {
            panic!()
        };
        let ttl: Vec<_> = h.map(|f| f.unwrap().expire_ms).collect();
        assert_eq!(ttl, vec![None, Some(0)]);

        // type 25: listpack triples
        let mut v = 5i64.to_le_bytes().to_vec();
        string::encode_raw(
            &listpack::encode([&b"f"[..], b"v", b"1700000000000", b"g", b"w", b"0"]),
            &mut v,
        );
        let Value::Hash(h) = decode(ObjectType::HashListpackEx, v.into()).unwrap() else {
            panic!()
        };
        let ttl: Vec<_> = h.map(|f| f.unwrap().expire_ms).collect();
        assert_eq!(ttl, vec![Some(1_700_000_000_000), None]);
    }

    /// Regression: type 4 (hash table) stores the number of *pairs*; the first decoder read
    /// that many strings and failed on `hash_v3.rdb`, `encodings.rdb` and `parser_filters.rdb`.
    #[test]
    fn regression_hash_table_count_is_pairs() {
        let mut v = Vec::new();
        length::encode(2, &mut v);
        for s in [&b"f1"[..], b"v1", b"f2", b"v2"] {
            string::encode(s, &mut v);
        }
        let Value::Hash(h) = decode(ObjectType::Hash, v.into()).unwrap() else {
            panic!()
        };
        assert_eq!(h.map(Result::unwrap).count(), 2);
    }

    #[test]
    fn truncated_values_are_errors_not_panics() {
        let (t, v) =
            dump("1202020d0d0000000200816102dfff02ff020a0a0000000100c12c02ff0a00c8082f0274def1e9");
        for cut in 0..v.len() {
            let r = decode(t, v.slice(..cut)).and_then(|val| match val {
                Value::List(e) => e.collect::<MResult<Vec<_>>>().map(drop),
                _ => Ok(()),
            });
            assert!(r.is_err(), "cut at {cut}");
        }
    }
}
