//! Whether a shipment continues what a receiving journal holds: pure logic, no I/O.
//!
//! Three links are checked, each by content:
//!
//! 1. the sequence number is the next one expected (a higher one names the missing shipments;
//!    a lower one is a repeat — or, if its content differs from what was received under that
//!    number, a diverged history);
//! 2. the shipment's `previous` link (sequence + SHA-256 of the previous `shipment.json`)
//!    equals the last shipment received;
//! 3. for every shard, `follows` is the last segment the receiving journal holds.
//!
//! A receive interrupted after some segments of a shipment were added (but before
//! `received.json` recorded it) leaves the journal holding a prefix of that shipment's
//! segments after `follows`; [`check`] accepts exactly that case and says how many segments
//! of each shard are already there, so running `receive` again completes the shipment.

use std::collections::BTreeMap;

use super::error::{Error, Result};
use super::format::{ReceivedRecord, SegmentRef, Shipment};

/// What to do with a shipment that passed the chain check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It is the next one: add it. `present` says, per shard, how many of its first segments
    /// the journal already holds (left by an interrupted receive); usually all zero.
    Next {
        /// Segments already present, per shard name.
        present: BTreeMap<String, usize>,
    },
    /// Exactly this shipment was received before.
    AlreadyReceived(ReceivedRecord),
}

/// What the receiving side holds.
#[derive(Debug, Clone, Default)]
pub struct Holdings<'a> {
    /// The receiving journal's identity (`None`: no journal yet, the shipment will create it).
    pub journal_id: Option<&'a str>,
    /// Shipments received, in order.
    pub received: &'a [ReceivedRecord],
    /// Per shard of the receiving journal, its sealed segments in order.
    pub shards: BTreeMap<String, Vec<SegmentRef>>,
}

/// Checks `shipment` (whose `shipment.json` has SHA-256 `sha256`) against `have`.
pub fn check(shipment: &Shipment, sha256: &str, have: &Holdings<'_>) -> Result<Verdict> {
    let journal = shipment.journal_id.clone();
    let seq = shipment.sequence;
    if let Some(id) = have.journal_id
        && id != shipment.journal_id
    {
        return Err(Error::OtherJournal {
            sequence: seq,
            expected: id.to_string(),
            found: journal,
        });
    }
    let last = have.received.last();
    let expected = last.map_or(1, |r| r.sequence + 1);
    if seq < expected {
        let before = have.received.iter().find(|r| r.sequence == seq);
        return match before {
            Some(r) if r.sha256 == sha256 => Ok(Verdict::AlreadyReceived(r.clone())),
            Some(r) => Err(Error::Diverged {
                journal,
                sequence: seq,
                received_at: super::rfc3339(r.received_unix_ms),
                expected: r.sha256.clone(),
                found: sha256.to_string(),
            }),
            None => Err(Error::Chain {
                journal,
                sequence: seq,
                what: format!(
                    "received.json has no shipment {seq} although later ones were received"
                ),
            }),
        };
    }
    if seq > expected {
        return Err(Error::Gap {
            journal,
            sequence: seq,
            missing: (expected..seq).collect(),
            last: last.map(|r| r.sequence),
        });
    }
    match (&shipment.previous, last) {
        (None, None) => {}
        (Some(p), Some(l)) if p.sequence == l.sequence && p.sha256 == l.sha256 => {}
        (p, l) => {
            return Err(Error::Chain {
                journal,
                sequence: seq,
                what: format!(
                    "it follows {} but the last shipment received is {}: not the same history",
                    p.as_ref().map_or("nothing".into(), |p| format!(
                        "shipment {} ({})",
                        p.sequence, p.sha256
                    )),
                    l.map_or("none".into(), |l| format!(
                        "shipment {} ({})",
                        l.sequence, l.sha256
                    )),
                ),
            });
        }
    }
    if have.journal_id.is_some() {
        let theirs: Vec<&str> = shipment.shards.iter().map(|s| s.name.as_str()).collect();
        let ours: Vec<&str> = have.shards.keys().map(|s| s.as_str()).collect();
        let mut sorted = theirs.clone();
        sorted.sort_unstable();
        if sorted != ours {
            return Err(Error::Chain {
                journal,
                sequence: seq,
                what: format!("it has shards {theirs:?}, the receiving journal has {ours:?}"),
            });
        }
    }
    let mut present = BTreeMap::new();
    let empty = Vec::new();
    for sh in &shipment.shards {
        let held = have.shards.get(&sh.name).unwrap_or(&empty);
        let start = match &sh.follows {
            None => 0,
            Some(f) => match held.iter().position(|h| h == f) {
                Some(i) => i + 1,
                None => {
                    return Err(Error::Chain {
                        journal,
                        sequence: seq,
                        what: format!(
                            "shard {}: it follows segment {} (SHA-256 {}), which the receiving \
                             journal does not hold (its last is {})",
                            sh.name,
                            f.file,
                            f.sha256,
                            held.last().map_or("none".into(), |h| h.file.clone())
                        ),
                    });
                }
            },
        };
        let after = &held[start..];
        let prefix = after.len() <= sh.segments.len()
            && after
                .iter()
                .zip(&sh.segments)
                .all(|(h, s)| *h == s.as_ref());
        if !prefix {
            return Err(Error::Chain {
                journal,
                sequence: seq,
                what: format!(
                    "shard {}: it follows {}, but the receiving journal already holds {} after \
                     it, which this shipment does not start with",
                    sh.name,
                    sh.follows.as_ref().map_or("nothing", |f| f.file.as_str()),
                    after[0].file
                ),
            });
        }
        present.insert(sh.name.clone(), after.len());
    }
    Ok(Verdict::Next { present })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Position;
    use crate::ship::format::{PreviousShipment, ShardShipment, ShippedSegment};

    const ID: &str = "00112233445566778899aabbccddeeff";

    fn seg(n: u64) -> ShippedSegment {
        let first = Position::new(1, n * 10, 0);
        ShippedSegment {
            file: crate::journal::segment::file_name(first),
            number: n,
            first,
            last: Position::new(1, n * 10 + 9, 0),
            bytes: 1,
            sha256: format!("{n:064x}"),
        }
    }

    fn shipment(seq: u64, prev_sha: Option<&str>, follows: Option<u64>, segs: &[u64]) -> Shipment {
        Shipment {
            format: super::super::format::FORMAT_NAME.into(),
            format_version: 1,
            shake_version: "t".into(),
            journal_id: ID.into(),
            sequence: seq,
            created_unix_ms: 0,
            previous: prev_sha.map(|s| PreviousShipment {
                sequence: seq - 1,
                sha256: s.into(),
            }),
            shards: vec![ShardShipment {
                name: "shard-000".into(),
                follows: follows.map(|n| seg(n).as_ref()),
                segments: segs.iter().map(|n| seg(*n)).collect(),
            }],
        }
    }

    fn rec(seq: u64, sha: &str) -> ReceivedRecord {
        ReceivedRecord {
            sequence: seq,
            name: String::new(),
            sha256: sha.into(),
            created_unix_ms: 0,
            received_unix_ms: 0,
            segments: 0,
            bytes: 0,
        }
    }

    fn holdings<'a>(received: &'a [ReceivedRecord], segs: &[u64]) -> Holdings<'a> {
        Holdings {
            journal_id: (!received.is_empty()).then_some(ID),
            received,
            shards: [(
                "shard-000".to_string(),
                segs.iter().map(|n| seg(*n).as_ref()).collect(),
            )]
            .into(),
        }
    }

    fn none_present() -> Verdict {
        Verdict::Next {
            present: [("shard-000".to_string(), 0)].into(),
        }
    }

    #[test]
    fn first_and_next_shipments_are_accepted() {
        let s1 = shipment(1, None, None, &[0, 1]);
        assert_eq!(
            check(&s1, "s1", &Holdings::default()).unwrap(),
            none_present()
        );
        let r = [rec(1, "s1")];
        let s2 = shipment(2, Some("s1"), Some(1), &[2]);
        assert_eq!(
            check(&s2, "s2", &holdings(&r, &[0, 1])).unwrap(),
            none_present()
        );
    }

    #[test]
    fn a_gap_names_the_missing_shipments() {
        let r = [rec(1, "s1")];
        let s4 = shipment(4, Some("s3"), Some(3), &[4]);
        match check(&s4, "s4", &holdings(&r, &[0, 1])) {
            Err(e @ Error::Gap { .. }) => {
                let m = e.to_string();
                assert!(m.contains("shipment(s) 2, 3 missing"), "{m}");
                assert!(e.is_refusal());
            }
            other => panic!("{other:?}"),
        }
        let s2 = shipment(2, Some("s1"), None, &[0]);
        assert!(matches!(
            check(&s2, "s2", &Holdings::default()),
            Err(Error::Gap { .. })
        ));
    }

    #[test]
    fn a_repeat_is_recognised_and_a_diverged_one_refused() {
        let r = [rec(1, "s1"), rec(2, "s2")];
        let s1 = shipment(1, None, None, &[0, 1]);
        assert!(matches!(
            check(&s1, "s1", &holdings(&r, &[0, 1, 2])),
            Ok(Verdict::AlreadyReceived(x)) if x.sequence == 1
        ));
        assert!(matches!(
            check(&s1, "other", &holdings(&r, &[0, 1, 2])),
            Err(Error::Diverged { sequence: 1, .. })
        ));
    }

    #[test]
    fn broken_links_are_refused() {
        let r = [rec(1, "s1")];
        // previous link from another history
        let s2 = shipment(2, Some("zz"), Some(1), &[2]);
        assert!(matches!(
            check(&s2, "s2", &holdings(&r, &[0, 1])),
            Err(Error::Chain { .. })
        ));
        // follows a segment the journal does not have
        let s2 = shipment(2, Some("s1"), Some(5), &[6]);
        let e = check(&s2, "s2", &holdings(&r, &[0, 1])).unwrap_err();
        assert!(e.to_string().contains("does not hold"), "{e}");
        // follows an earlier segment than the last held, and does not re-ship it
        let s2 = shipment(2, Some("s1"), Some(0), &[7]);
        assert!(matches!(
            check(&s2, "s2", &holdings(&r, &[0, 1])),
            Err(Error::Chain { .. })
        ));
        // another journal
        let mut other = shipment(2, Some("s1"), Some(1), &[2]);
        other.journal_id = "ffffffffffffffff".into();
        assert!(matches!(
            check(&other, "x", &holdings(&r, &[0, 1])),
            Err(Error::OtherJournal { .. })
        ));
        // shards that do not match
        let mut h = holdings(&r, &[0, 1]);
        h.shards.insert("shard-001".into(), vec![]);
        assert!(matches!(
            check(&shipment(2, Some("s1"), Some(1), &[2]), "s2", &h),
            Err(Error::Chain { .. })
        ));
    }

    #[test]
    fn an_interrupted_receive_is_completed() {
        let r = [rec(1, "s1")];
        let s2 = shipment(2, Some("s1"), Some(1), &[2, 3, 4]);
        assert_eq!(
            check(&s2, "s2", &holdings(&r, &[0, 1, 2, 3])).unwrap(),
            Verdict::Next {
                present: [("shard-000".to_string(), 2)].into()
            }
        );
    }
}
