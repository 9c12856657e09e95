//! The value check of full mode, for keys the quick check found on both sides with one type.
//!
//! 1. Lengths first (`STRLEN`/`LLEN`/`HLEN`/`SCARD`/`ZCARD`/`XLEN`, one pipeline per side), with
//!    `MEMORY USAGE` on the source: unequal lengths are a difference without reading values,
//!    and the memory size picks the path.
//! 2. Keys up to `--chunk-threshold`: `DUMP` on both sides, in sub-batches of bounded total
//!    size. Equal payloads with equal RDB versions are equal; otherwise both payloads are decoded
//!    ([`crate::rdb`]) and compared logically ([`super::logical`]), because one value has
//!    several encodings.
//! 3. Bigger keys: window by window ([`super::window`]), so a huge key is never held whole.
//!
//! Where `MEMORY USAGE` is refused (some managed services), the size is estimated as the
//! string length, or 64 bytes per element.

use bytes::Bytes;

use crate::rdb::{Flavor, decode, dump};
use crate::resp::Frame;

use super::error::{Error, Result};
use super::logical::{self, Undecodable};
use super::quick::short;
use super::report::printable;
use super::side::{Cmd, Side};
use super::window;

/// How a key's value was found equal or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Identical DUMP payloads.
    DumpBytes,
    /// Decoded payloads compared logically.
    Decoded,
    /// Windowed reads.
    Windowed,
    /// Lengths alone (they differed).
    Length,
}

/// Settings of the value check.
#[derive(Debug, Clone, Copy)]
pub struct ValueSettings {
    /// Keys whose size exceeds this many bytes take the windowed path.
    pub chunk_threshold: u64,
    /// Elements (or 64 KiB string pieces) per windowed read.
    pub window: usize,
    /// Tolerance for hash-field expiries, ms.
    pub tolerance_ms: i64,
}

/// Upper bound on the DUMP bytes requested in one pipeline (per side).
const DUMP_BATCH_BYTES: u64 = 64 << 20;

/// Whether a reply is a `WRONGTYPE` error (the key changed type between two reads).
pub fn is_wrongtype(f: &Frame) -> bool {
    f.as_error().is_some_and(|e| e.starts_with(b"WRONGTYPE"))
}

/// The length command of a type, if it has one.
fn length_command(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "string" => "STRLEN",
        "list" => "LLEN",
        "hash" => "HLEN",
        "set" => "SCARD",
        "zset" => "ZCARD",
        "stream" => "XLEN",
        _ => return None,
    })
}

/// Compares the values of `keys` (each with its type) in db `db`. Returns, per key, what
/// differs (if anything) and how it was decided.
pub async fn compare(
    src: &mut Side,
    tgt: &mut Side,
    db: u32,
    keys: &[(Bytes, String)],
    s: &ValueSettings,
) -> Result<Vec<(Option<String>, How)>> {
    let mut src_cmds = Vec::with_capacity(keys.len() * 2);
    let mut tgt_cmds = Vec::with_capacity(keys.len());
    for (k, ty) in keys {
        let len = length_command(ty).unwrap_or("EXISTS");
        src_cmds.push(Cmd::new(len, k, &[]));
        src_cmds.push(Cmd {
            key: k.clone(),
            args: vec![
                Bytes::from_static(b"MEMORY"),
                Bytes::from_static(b"USAGE"),
                k.clone(),
            ],
        });
        tgt_cmds.push(Cmd::new(len, k, &[]));
    }
    let (sr, tr) = tokio::join!(src.batch(db, &src_cmds), tgt.batch(db, &tgt_cmds));
    let (sr, tr) = (sr?, tr?);
    let mut out: Vec<Option<(Option<String>, How)>> = vec![None; keys.len()];
    let mut dumps: Vec<(usize, u64)> = Vec::new();
    let mut windowed: Vec<(usize, u64)> = Vec::new();
    for (i, (k, ty)) in keys.iter().enumerate() {
        let bad = |side: &Side, what: String| Error::Reply {
            side: side.role(),
            addr: side.info().endpoint.addr(),
            key: printable(k),
            db,
            what,
        };
        // A key whose type changed since the quick check: the re-check decides.
        if [&sr[2 * i], &tr[i]].iter().any(|f| is_wrongtype(f)) {
            out[i] = Some((
                Some("type changed during the comparison".into()),
                How::Length,
            ));
            continue;
        }
        let sl = sr[2 * i]
            .as_int()
            .ok_or_else(|| bad(src, format!("length answered {}", short(&sr[2 * i]))))?;
        let tl = tr[i]
            .as_int()
            .ok_or_else(|| bad(tgt, format!("length answered {}", short(&tr[i]))))?;
        if length_command(ty).is_some() && sl != tl {
            out[i] = Some((Some(format!("length {sl} vs {tl}")), How::Length));
            continue;
        }
        let size = match &sr[2 * i + 1] {
            Frame::Integer(n) => *n as u64,
            _ if ty == "string" => sl as u64,
            _ => (sl as u64).saturating_mul(64),
        };
        if size > s.chunk_threshold && length_command(ty).is_some() {
            windowed.push((i, sl as u64));
        } else {
            dumps.push((i, size));
        }
    }
    // DUMP path, in sub-batches of bounded size.
    let mut start = 0;
    while start < dumps.len() {
        let mut end = start;
        let mut bytes = 0u64;
        while end < dumps.len() && (end == start || bytes + dumps[end].1 <= DUMP_BATCH_BYTES) {
            bytes += dumps[end].1;
            end += 1;
        }
        let part = &dumps[start..end];
        let cmds: Vec<Cmd> = part
            .iter()
            .map(|(i, _)| Cmd::new("DUMP", &keys[*i].0, &[]))
            .collect();
        let (sp, tp) = tokio::join!(src.batch(db, &cmds), tgt.batch(db, &cmds));
        let (sp, tp) = (sp?, tp?);
        let same_rdb = src.info().rdb_version == tgt.info().rdb_version;
        for (j, (i, _)) in part.iter().enumerate() {
            let k = &keys[*i].0;
            out[*i] = Some(compare_payloads(
                src, tgt, db, k, &sp[j], &tp[j], same_rdb, s,
            )?);
        }
        start = end;
    }
    for (i, len) in windowed {
        let (k, ty) = &keys[i];
        let d = match window::compare(src, tgt, db, k, ty, len, s).await {
            // The key changed type mid-walk: the re-check decides.
            Err(Error::Reply { what, .. }) if what.contains("WRONGTYPE") => {
                Some("type changed during the comparison".into())
            }
            other => other?,
        };
        out[i] = Some((d, How::Windowed));
    }
    Ok(out
        .into_iter()
        .map(|o| o.unwrap_or((None, How::DumpBytes)))
        .collect())
}

#[allow(clippy::too_many_arguments)]
fn compare_payloads(
    src: &Side,
    tgt: &Side,
    db: u32,
    key: &Bytes,
    a: &Frame,
    b: &Frame,
    same_rdb: bool,
    s: &ValueSettings,
) -> Result<(Option<String>, How)> {
    let payload = |side: &Side, f: &Frame| -> Result<Option<Bytes>> {
        match f {
            Frame::Bulk(p) => Ok(Some(p.clone())),
            Frame::Null => Ok(None),
            other => Err(Error::Reply {
                side: side.role(),
                addr: side.info().endpoint.addr(),
                key: printable(key),
                db,
                what: format!("DUMP answered {}", short(other)),
            }),
        }
    };
    let (Some(pa), Some(pb)) = (payload(src, a)?, payload(tgt, b)?) else {
        // Deleted or expired between the quick check and DUMP: the re-check decides.
        return Ok((
            Some("key disappeared during the comparison".into()),
            How::DumpBytes,
        ));
    };
    if same_rdb && pa == pb {
        return Ok((None, How::DumpBytes));
    }
    match decoded(
        &pa,
        src.info().flavor,
        &pb,
        tgt.info().flavor,
        s.tolerance_ms,
    ) {
        Ok(d) => Ok((d, How::Decoded)),
        Err(u) => {
            // Not decodable (a module type, a format newer than this build): equal bodies are
            // still equal; anything else is reported with the reason.
            let body = |p: &Bytes| p.slice(..p.len().saturating_sub(10));
            if body(&pa) == body(&pb) {
                Ok((None, How::DumpBytes))
            } else {
                Ok((
                    Some(format!(
                        "DUMP payloads differ ({} vs {} bytes) and the {} one cannot be decoded: {}",
                        pa.len(),
                        pb.len(),
                        u.side,
                        u.why
                    )),
                    How::DumpBytes,
                ))
            }
        }
    }
}

/// Decodes both payloads and compares them logically.
fn decoded(
    a: &Bytes,
    fa: Flavor,
    b: &Bytes,
    fb: Flavor,
    tolerance_ms: i64,
) -> std::result::Result<Option<String>, Undecodable> {
    let value = |p: &Bytes, f: Flavor, side: &'static str| {
        let why = |e: String| Undecodable { side, why: e };
        let parsed = dump::parse(p, f).map_err(|e| why(e.to_string()))?;
        let start = 1;
        let body = p.slice(start..start + parsed.value.len());
        decode(parsed.object_type, body).map_err(|e| why(e.to_string()))
    };
    let va = value(a, fa, "source")?;
    let vb = value(b, fb, "target")?;
    logical::compare(va, vb, tolerance_ms)
}
