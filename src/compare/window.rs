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
//! element present for the whole walk; a repeat is harmless). Not covered here: stream consumer
//! groups and hash-field TTLs (both are compared on the DUMP path, i.e. for keys under the
//! threshold).

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
    let mut ctx = Ctx { src, tgt, db, key };
    match ty {
        "string" => {
            ctx.string(len, (w as u64).saturating_mul(4096).max(4096))
                .await
        }
        "list" => ctx.list(len, w as u64).await,
        "hash" | "set" | "zset" => ctx.scanned(ty, w).await,
        "stream" => ctx.stream(w).await,
        _ => Ok(None),
    }
}

struct Ctx<'a> {
    src: &'a mut Side,
    tgt: &'a mut Side,
    db: u32,
    key: &'a Bytes,
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
        let side = if on_source {
            &mut *self.src
        } else {
            &mut *self.tgt
        };
        let mut r = side.batch(self.db, std::slice::from_ref(&cmd)).await?;
        let f = r.pop().unwrap_or(Frame::Null);
        if let Frame::Error(_) = &f {
            return Err(self.bad(on_source, format!("{} answered {}", name(&cmd), short(&f))));
        }
        Ok(f)
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
