//! The windowed value check for keys above `--chunk-threshold`: the value is read a window at a
//! time on both sides, so memory stays bounded by a window whatever the key's size.
//!
//! | type   | source read                  | target read                     |
//! |--------|------------------------------|---------------------------------|
//! | string | `GETRANGE` of window × 4 KiB | the same range                  |
//! | list   | `LRANGE i i+w-1`             | the same range, index by index  |
//! | hash   | `HSCAN … COUNT w`            | `HMGET` of the fields returned  |
//! | set    | `SSCAN … COUNT w`            | `SISMEMBER` each member         |
//! | zset   | `ZSCAN … COUNT w`            | `ZSCORE` each member            |
//! | stream | `XRANGE start + COUNT w`     | the same range                  |
//!
//! Lengths were found equal before; for hashes, sets and sorted sets, equal lengths plus every
//! source element present and equal on the target means equal collections (SCAN returns every
//! element present for the whole walk; a repeat is harmless).
//!
//! Also compared: a hash's field expiries (`HPEXPIRETIME` of each window's fields, within the
//! TTL tolerance; a server without field TTLs has none), and a stream's metadata (`XINFO
//! STREAM`: length, last ID, entries added, largest deleted ID) and consumer groups (`XINFO
//! GROUPS`, each group's consumers by name and pending count, and its pending entries in
//! `XPENDING` windows: ID, consumer, delivery count). Idle times are not compared: they move
//! with the clock.

use bytes::Bytes;

use crate::rdb::decode::parse_score;
use crate::resp::Frame;

use super::error::{Error, Result};
use super::logical::compare_bytes;
use super::quick::short;
use super::report::printable;
use super::side::{Cmd, Side};
use super::value::ValueSettings;

/// Compares the value of `key` (type `ty`, `len` elements or bytes on both sides) window by
/// window; `Some(where)` at the first difference.
pub async fn compare(
    src: &mut Side,
    tgt: &mut Side,
    db: u32,
    key: &Bytes,
    ty: &str,
    len: u64,
    s: &ValueSettings,
) -> Result<Option<String>> {
    let w = s.window.max(1);
    let mut ctx = Ctx {
        src,
        tgt,
        db,
        key,
        tolerance_ms: s.tolerance_ms,
    };
    match ty {
        "string" => {
            ctx.string(len, (w as u64).saturating_mul(4096).max(4096))
                .await
        }
        "list" => ctx.list(len, w as u64).await,
        "hash" | "set" | "zset" => ctx.scanned(ty, w).await,
        "stream" => match ctx.stream(w).await? {
            Some(d) => Ok(Some(d)),
            None => ctx.stream_groups(w).await,
        },
        _ => Ok(None),
    }
}

struct Ctx<'a> {
    src: &'a mut Side,
    tgt: &'a mut Side,
    db: u32,
    key: &'a Bytes,
    tolerance_ms: i64,
}

impl Ctx<'_> {
    fn bad(&self, on_source: bool, what: String) -> Error {
        let side = if on_source { &*self.src } else { &*self.tgt };
        Error::Reply {
            side: side.role(),
            addr: side.info().endpoint.addr(),
            key: printable(self.key),
            db: self.db,
            what,
        }
    }

    async fn one(&mut self, on_source: bool, cmd: Cmd) -> Result<Frame> {
        let f = self.raw(on_source, cmd.clone()).await?;
        if let Frame::Error(_) = &f {
            return Err(self.bad(on_source, format!("{} answered {}", name(&cmd), short(&f))));
        }
        Ok(f)
    }

    /// One command's reply on one side, an error reply included.
    async fn raw(&mut self, on_source: bool, cmd: Cmd) -> Result<Frame> {
        let side = if on_source {
            &mut *self.src
        } else {
            &mut *self.tgt
        };
        let mut r = side.batch(self.db, std::slice::from_ref(&cmd)).await?;
        Ok(r.pop().unwrap_or(Frame::Null))
    }

    async fn both(&mut self, cmd: Cmd) -> Result<(Frame, Frame)> {
        let a = self.one(true, cmd.clone()).await?;
        let b = self.one(false, cmd).await?;
        Ok((a, b))
    }

    async fn string(&mut self, len: u64, piece: u64) -> Result<Option<String>> {
        let mut at = 0u64;
        while at < len {
            let end = (at + piece).min(len) - 1;
            let cmd = Cmd::new(
                "GETRANGE",
                self.key,
                &[at.to_string().as_bytes(), end.to_string().as_bytes()],
            );
            let (a, b) = self.both(cmd).await?;
            let (a, b) = (a.as_bytes().unwrap_or(&[]), b.as_bytes().unwrap_or(&[]));
            if let Some(d) = compare_bytes(a, b) {
                let pos = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0) as u64;
                return Ok(Some(if d.starts_with("length") {
                    format!("bytes {at}..={end}: {d}")
                } else {
                    format!("byte {} differs", at + pos)
                }));
            }
            at = end + 1;
        }
        Ok(None)
    }

    async fn list(&mut self, len: u64, w: u64) -> Result<Option<String>> {
        let mut at = 0u64;
        while at < len {
            let end = at + w - 1;
            let cmd = Cmd::new(
                "LRANGE",
                self.key,
                &[at.to_string().as_bytes(), end.to_string().as_bytes()],
            );
            let (a, b) = self.both(cmd).await?;
            let (a, b) = (a.as_array().unwrap_or(&[]), b.as_array().unwrap_or(&[]));
            for (j, (x, y)) in a.iter().zip(b).enumerate() {
                if x != y {
                    return Ok(Some(format!(
                        "index {}: {} vs {}",
                        at + j as u64,
                        printable(x.as_bytes().unwrap_or(&[])),
                        printable(y.as_bytes().unwrap_or(&[]))
                    )));
                }
            }
            if a.len() != b.len() {
                return Ok(Some(format!(
                    "indexes {at}..={end}: {} vs {} elements (changed while comparing?)",
                    a.len(),
                    b.len()
                )));
            }
            if a.is_empty() {
                break;
            }
            at = end + 1;
        }
        Ok(None)
    }

    /// Hashes, sets and sorted sets: scan the source, look the elements up on the target.
    async fn scanned(&mut self, ty: &str, w: usize) -> Result<Option<String>> {
        let (scan, per) = match ty {
            "hash" => ("HSCAN", 2),
            "set" => ("SSCAN", 1),
            _ => ("ZSCAN", 2),
        };
        let mut cursor: Bytes = Bytes::from_static(b"0");
        let count = w.to_string();
        loop {
            let cmd = Cmd::new(scan, self.key, &[&cursor, b"COUNT", count.as_bytes()]);
            let reply = self.one(true, cmd).await?;
            let (next, items) = match reply.as_array() {
                Some([c, Frame::Array(items)]) => (
                    c.as_bytes().map(Bytes::copy_from_slice),
                    items
                        .iter()
                        .map(|f| f.as_bytes().map(Bytes::copy_from_slice))
                        .collect::<Option<Vec<_>>>(),
                ),
                _ => (None, None),
            };
            let (Some(next), Some(items)) = (next, items) else {
                return Err(self.bad(true, format!("{scan} reply is not [cursor, [elements]]")));
            };
            if items.len() % per != 0 {
                return Err(self.bad(true, format!("{scan} returned an odd element count")));
            }
            let found = match ty {
                "hash" => self.hash_window(&items).await?,
                "set" => self.set_window(&items).await?,
                _ => self.zset_window(&items).await?,
            };
            if found.is_some() {
                return Ok(found);
            }
            if next.as_ref() == b"0" {
                return Ok(None);
            }
            cursor = next;
        }
    }

    async fn hash_window(&mut self, items: &[Bytes]) -> Result<Option<String>> {
        if items.is_empty() {
            return Ok(None);
        }
        let fields: Vec<&[u8]> = items.chunks_exact(2).map(|p| p[0].as_ref()).collect();
        let reply = self
            .one(false, Cmd::new("HMGET", self.key, &fields))
            .await?;
        let values = reply.as_array().unwrap_or(&[]);
        for (pair, got) in items.chunks_exact(2).zip(values) {
            match got.as_bytes() {
                None => {
                    return Ok(Some(format!(
                        "field {} only on source",
                        printable(&pair[0])
                    )));
                }
                Some(v) if v != pair[1].as_ref() => {
                    return Ok(Some(format!(
                        "field {}: {} vs {}",
                        printable(&pair[0]),
                        printable(&pair[1]),
                        printable(v)
                    )));
                }
                _ => {}
            }
        }
        self.field_ttls(&fields).await
    }

    /// The field expiries of a window of fields present on both sides (`HPEXPIRETIME`: -1 for
    /// none), equal within the TTL tolerance. A server without field TTLs (before Redis 7.4 or
    /// Valkey 9) answers an error: it holds none.
    async fn field_ttls(&mut self, fields: &[&[u8]]) -> Result<Option<String>> {
        let n = fields.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"FIELDS", n.as_bytes()];
        args.extend_from_slice(fields);
        let cmd = Cmd::new("HPEXPIRETIME", self.key, &args);
        let times = |f: &Frame| -> Vec<i64> {
            f.as_array()
                .map(|v| v.iter().map(|x| x.as_int().unwrap_or(-1)).collect())
                .unwrap_or_default()
        };
        let a = times(&self.raw(true, cmd.clone()).await?);
        let b = times(&self.raw(false, cmd).await?);
        let show = |t: Option<&i64>| match t {
            Some(t) if *t >= 0 => format!("expires at {t} ms"),
            _ => "no expiry".to_string(),
        };
        for (i, f) in fields.iter().enumerate() {
            let (x, y) = (a.get(i).filter(|t| **t >= 0), b.get(i).filter(|t| **t >= 0));
            let differ = match (x, y) {
                (Some(x), Some(y)) => (x - y).abs() > self.tolerance_ms,
                (None, None) => false,
                _ => true,
            };
            if differ {
                return Ok(Some(format!(
                    "field {}: {} vs {}",
                    printable(f),
                    show(x),
                    show(y)
                )));
            }
        }
        Ok(None)
    }

    async fn set_window(&mut self, items: &[Bytes]) -> Result<Option<String>> {
        let cmds: Vec<Cmd> = items
            .iter()
            .map(|m| Cmd::new("SISMEMBER", self.key, &[m]))
            .collect();
        let replies = self.tgt.batch(self.db, &cmds).await?;
        for (m, r) in items.iter().zip(&replies) {
            if r.as_int() != Some(1) {
                return Ok(Some(format!("member {} only on source", printable(m))));
            }
        }
        Ok(None)
    }

    async fn zset_window(&mut self, items: &[Bytes]) -> Result<Option<String>> {
        let cmds: Vec<Cmd> = items
            .chunks_exact(2)
            .map(|p| Cmd::new("ZSCORE", self.key, &[&p[0]]))
            .collect();
        let replies = self.tgt.batch(self.db, &cmds).await?;
        for (p, r) in items.chunks_exact(2).zip(&replies) {
            let Some(t) = r.as_bytes() else {
                return Ok(Some(format!("member {} only on source", printable(&p[0]))));
            };
            let (a, b) = (parse_score(&p[1]), parse_score(t));
            if a != b || a.is_none() {
                return Ok(Some(format!(
                    "member {}: score {} vs {}",
                    printable(&p[0]),
                    String::from_utf8_lossy(&p[1]),
                    String::from_utf8_lossy(t)
                )));
            }
        }
        Ok(None)
    }

    async fn stream(&mut self, w: usize) -> Result<Option<String>> {
        let mut start = String::from("-");
        let count = w.to_string();
        loop {
            let cmd = Cmd::new(
                "XRANGE",
                self.key,
                &[start.as_bytes(), b"+", b"COUNT", count.as_bytes()],
            );
            let (a, b) = self.both(cmd).await?;
            let (a, b) = (a.as_array().unwrap_or(&[]), b.as_array().unwrap_or(&[]));
            let id = |e: &Frame| {
                e.as_array()
                    .and_then(|p| p.first())
                    .and_then(|i| i.as_str())
                    .unwrap_or("?")
                    .to_string()
            };
            for (x, y) in a.iter().zip(b) {
                if x != y {
                    let (ix, iy) = (id(x), id(y));
                    return Ok(Some(if ix == iy {
                        format!("entry {ix}: fields differ")
                    } else {
                        format!("entry {ix} vs {iy}")
                    }));
                }
            }
            if a.len() != b.len() {
                return Ok(Some(format!(
                    "entries from {start}: {} vs {} in a window (changed while comparing?)",
                    a.len(),
                    b.len()
                )));
            }
            let Some(last) = a.last() else {
                return Ok(None);
            };
            if a.len() < w {
                return Ok(None);
            }
            start = match next_id(&id(last)) {
                Some(n) => n,
                None => return Ok(None),
            };
        }
    }
}

impl Ctx<'_> {
    /// A stream's metadata and consumer groups (see the module docs), once its entries matched.
    async fn stream_groups(&mut self, w: usize) -> Result<Option<String>> {
        let (a, b) = self
            .both(Cmd::sub("XINFO", "STREAM", self.key, &[]))
            .await?;
        for name in [
            "length",
            "last-generated-id",
            "entries-added",
            "max-deleted-entry-id",
            "groups",
        ] {
            // fields one server version lacks are not compared (a 6.2 source, a 7.0 target)
            if let (Some(x), Some(y)) = (a.field(name), b.field(name))
                && x != y
            {
                return Ok(Some(format!("stream {name}: {} vs {}", val(x), val(y))));
            }
        }
        let (a, b) = self
            .both(Cmd::sub("XINFO", "GROUPS", self.key, &[]))
            .await?;
        let groups = |f: &Frame| -> Vec<Frame> {
            let mut g = f.as_array().unwrap_or(&[]).to_vec();
            g.sort_by_cached_key(|x| {
                x.field("name")
                    .and_then(|n| n.as_bytes())
                    .map(<[u8]>::to_vec)
            });
            g
        };
        let (ga, gb) = (groups(&a), groups(&b));
        let gname = |g: &Frame| {
            g.field("name")
                .and_then(|n| n.as_bytes())
                .map(printable)
                .unwrap_or_else(|| "?".into())
        };
        for (x, y) in ga.iter().zip(&gb) {
            if gname(x) != gname(y) {
                return Ok(Some(format!("group {} vs {}", gname(x), gname(y))));
            }
            for name in ["consumers", "pending", "last-delivered-id", "entries-read"] {
                if let (Some(p), Some(q)) = (x.field(name), y.field(name))
                    && p != q
                {
                    return Ok(Some(format!(
                        "group {} {name}: {} vs {}",
                        gname(x),
                        val(p),
                        val(q)
                    )));
                }
            }
        }
        if ga.len() != gb.len() {
            return Ok(Some(format!(
                "{} vs {} consumer groups",
                ga.len(),
                gb.len()
            )));
        }
        for g in &ga {
            let Some(group) = g
                .field("name")
                .and_then(|n| n.as_bytes())
                .map(Bytes::copy_from_slice)
            else {
                continue;
            };
            if let Some(d) = self.consumers(&group).await? {
                return Ok(Some(format!("group {}: {d}", printable(&group))));
            }
            if let Some(d) = self.pending(&group, w).await? {
                return Ok(Some(format!("group {}: {d}", printable(&group))));
            }
        }
        Ok(None)
    }

    /// A group's consumers: names and pending counts (not idle times).
    async fn consumers(&mut self, group: &Bytes) -> Result<Option<String>> {
        let (a, b) = self
            .both(Cmd::sub("XINFO", "CONSUMERS", self.key, &[group]))
            .await?;
        let list = |f: &Frame| -> Vec<(Vec<u8>, Option<i64>)> {
            let mut v: Vec<_> = f
                .as_array()
                .unwrap_or(&[])
                .iter()
                .map(|c| {
                    (
                        c.field("name")
                            .and_then(|n| n.as_bytes())
                            .unwrap_or_default()
                            .to_vec(),
                        c.field("pending").and_then(Frame::as_int),
                    )
                })
                .collect();
            v.sort();
            v
        };
        let (ca, cb) = (list(&a), list(&b));
        for (x, y) in ca.iter().zip(&cb) {
            if x != y {
                return Ok(Some(if x.0 == y.0 {
                    format!(
                        "consumer {}: pending {} vs {}",
                        printable(&x.0),
                        shown(x.1),
                        shown(y.1)
                    )
                } else {
                    format!("consumer {} vs {}", printable(&x.0), printable(&y.0))
                }));
            }
        }
        Ok((ca.len() != cb.len()).then(|| format!("{} vs {} consumers", ca.len(), cb.len())))
    }

    /// A group's pending entries in windows of `w`: ID, consumer, delivery count.
    async fn pending(&mut self, group: &Bytes, w: usize) -> Result<Option<String>> {
        let mut start = String::from("-");
        let count = w.to_string();
        loop {
            let cmd = Cmd::new(
                "XPENDING",
                self.key,
                &[group, start.as_bytes(), b"+", count.as_bytes()],
            );
            let (a, b) = self.both(cmd).await?;
            // [id, consumer, idle, deliveries]: the idle time is left out
            let entries = |f: &Frame| -> Vec<(String, Vec<u8>, Option<i64>)> {
                f.as_array()
                    .unwrap_or(&[])
                    .iter()
                    .map(|e| {
                        let e = e.as_array().unwrap_or(&[]);
                        (
                            e.first().and_then(Frame::as_str).unwrap_or("?").to_string(),
                            e.get(1)
                                .and_then(Frame::as_bytes)
                                .unwrap_or_default()
                                .to_vec(),
                            e.get(3).and_then(Frame::as_int),
                        )
                    })
                    .collect()
            };
            let (ea, eb) = (entries(&a), entries(&b));
            for (x, y) in ea.iter().zip(&eb) {
                if x != y {
                    return Ok(Some(format!(
                        "pending entry {}: consumer {}, {} deliveries vs entry {}: consumer {}, {} deliveries",
                        x.0,
                        printable(&x.1),
                        shown(x.2),
                        y.0,
                        printable(&y.1),
                        shown(y.2)
                    )));
                }
            }
            if ea.len() != eb.len() {
                return Ok(Some(format!(
                    "pending entries from {start}: {} vs {} in a window",
                    ea.len(),
                    eb.len()
                )));
            }
            if ea.len() < w {
                return Ok(None);
            }
            start = match ea.last().and_then(|l| next_id(&l.0)) {
                Some(n) => n,
                None => return Ok(None),
            };
        }
    }
}

/// A reply value for a message: a number or a string as such, anything else as the frame.
fn val(f: &Frame) -> String {
    match f {
        Frame::Integer(i) => i.to_string(),
        Frame::Null => "none".into(),
        other => match other.as_str() {
            Some(s) => s.to_string(),
            None => short(other),
        },
    }
}

/// A count read from a reply, `?` where the reply had none.
fn shown(n: Option<i64>) -> String {
    n.map_or_else(|| "?".to_string(), |n| n.to_string())
}

/// The smallest stream ID after `id` (`ms-seq`), or `None` after the largest possible one.
pub fn next_id(id: &str) -> Option<String> {
    let (ms, seq) = id.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    if seq < u64::MAX {
        Some(format!("{ms}-{}", seq + 1))
    } else if ms < u64::MAX {
        Some(format!("{}-0", ms + 1))
    } else {
        None
    }
}

fn name(c: &Cmd) -> String {
    c.args
        .first()
        .map(|a| String::from_utf8_lossy(a).to_uppercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_advance() {
        assert_eq!(next_id("5-1").as_deref(), Some("5-2"));
        assert_eq!(next_id(&format!("5-{}", u64::MAX)).as_deref(), Some("6-0"));
        assert_eq!(next_id(&format!("{0}-{0}", u64::MAX)), None);
        assert_eq!(next_id("junk"), None);
    }
}
