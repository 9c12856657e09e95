//! The quick check of a batch of keys: `TYPE` and `PTTL` on both sides (one pipeline per side
//! and node), judged into existence, type and TTL verdicts.
//!
//! TTLs are read as remaining milliseconds on each side a moment apart, so they never match
//! exactly; `--ttl-tolerance` absorbs the reading delay (and a replay's clock skew). A key missing
//! on the target whose source TTL is within the tolerance is expiring anyway and not a
//! difference.

use bytes::Bytes;

use crate::resp::Frame;

use super::error::{Error, Result};
use super::report::{Bucket, printable};
use super::side::{Cmd, Side};

/// A key as one side sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    /// `TYPE`'s answer (`string`, `hash`, a module type name…), `None` when the key is absent.
    pub ty: Option<String>,
    /// `PTTL`: remaining ms, or -1 for no expiry (-2 when absent).
    pub pttl: i64,
}

impl KeyState {
    /// An absent key (e.g. a database a cluster cannot have).
    pub fn absent() -> KeyState {
        KeyState { ty: None, pttl: -2 }
    }
}

/// Reads `TYPE` and `PTTL` of `keys` in db `db` in one pipeline per node.
pub async fn read(side: &mut Side, db: u32, keys: &[Bytes]) -> Result<Vec<KeyState>> {
    let mut cmds = Vec::with_capacity(keys.len() * 2);
    for k in keys {
        cmds.push(Cmd::new("TYPE", k, &[]));
        cmds.push(Cmd::new("PTTL", k, &[]));
    }
    let replies = side.batch(db, &cmds).await?;
    let mut out = Vec::with_capacity(keys.len());
    for (k, pair) in keys.iter().zip(replies.chunks_exact(2)) {
        let bad = |what: String| Error::Reply {
            side: side.role(),
            addr: side.info().endpoint.addr(),
            key: printable(k),
            db,
            what,
        };
        let ty = match &pair[0] {
            Frame::Simple(t) | Frame::Bulk(t) => String::from_utf8_lossy(t).into_owned(),
            other => return Err(bad(format!("TYPE answered {}", short(other)))),
        };
        let pttl = pair[1]
            .as_int()
            .ok_or_else(|| bad(format!("PTTL answered {}", short(&pair[1]))))?;
        out.push(if ty == "none" {
            KeyState::absent()
        } else {
            KeyState { ty: Some(ty), pttl }
        });
    }
    Ok(out)
}

/// A frame, shortened for a message (error replies are the useful case).
pub fn short(f: &Frame) -> String {
    match f {
        Frame::Error(e) => format!("error {}", printable(e)),
        other => {
            let s = format!("{other:?}");
            s.chars().take(80).collect()
        }
    }
}

/// What the quick check concluded about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Present on both with one type and TTLs within the tolerance.
    Same,
    /// Gone from the source when read (deleted or expired after SCAN listed it).
    Vanished,
    /// Missing on the target, but the source TTL is within the tolerance.
    Expiring,
    /// A difference, with what differs.
    Diff(Bucket, String),
}

/// Judges one key from both sides' states.
pub fn judge(src: &KeyState, tgt: &KeyState, tolerance_ms: i64) -> Verdict {
    let Some(st) = &src.ty else {
        return Verdict::Vanished;
    };
    let Some(tt) = &tgt.ty else {
        if src.pttl >= 0 && src.pttl <= tolerance_ms {
            return Verdict::Expiring;
        }
        return Verdict::Diff(Bucket::Missing, format!("{st} not on the target"));
    };
    if st != tt {
        return Verdict::Diff(Bucket::Type, format!("{st} vs {tt}"));
    }
    match (src.pttl, tgt.pttl) {
        (-1, -1) => Verdict::Same,
        (-1, t) => Verdict::Diff(Bucket::Ttl, format!("no TTL vs {t} ms")),
        (s, -1) => Verdict::Diff(Bucket::Ttl, format!("{s} ms vs no TTL")),
        (s, t) if (s - t).abs() > tolerance_ms => Verdict::Diff(
            Bucket::Ttl,
            format!("{s} ms vs {t} ms (tolerance {tolerance_ms} ms)"),
        ),
        _ => Verdict::Same,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(ty: &str, pttl: i64) -> KeyState {
        KeyState {
            ty: Some(ty.into()),
            pttl,
        }
    }

    #[test]
    fn verdicts() {
        let none = KeyState::absent();
        assert_eq!(judge(&st("hash", -1), &st("hash", -1), 1000), Verdict::Same);
        assert_eq!(judge(&none, &st("hash", -1), 1000), Verdict::Vanished);
        assert_eq!(judge(&st("string", 500), &none, 1000), Verdict::Expiring);
        assert!(matches!(
            judge(&st("string", 5000), &none, 1000),
            Verdict::Diff(Bucket::Missing, _)
        ));
        assert!(matches!(
            judge(&st("string", -1), &none, 1000),
            Verdict::Diff(Bucket::Missing, _)
        ));
        assert!(matches!(
            judge(&st("string", -1), &st("list", -1), 1000),
            Verdict::Diff(Bucket::Type, _)
        ));
        assert_eq!(
            judge(&st("set", 10_000), &st("set", 9_500), 1000),
            Verdict::Same
        );
        assert!(matches!(
            judge(&st("set", 10_000), &st("set", 5_000), 1000),
            Verdict::Diff(Bucket::Ttl, _)
        ));
        assert!(matches!(
            judge(&st("set", -1), &st("set", 5_000), 1000),
            Verdict::Diff(Bucket::Ttl, _)
        ));
        assert!(matches!(
            judge(&st("set", 5_000), &st("set", -1), 1000),
            Verdict::Diff(Bucket::Ttl, _)
        ));
    }
}
