//! Which of a shard's connections ("lanes") an op goes to, and the per-lane replay markers.
//!
//! With `--connections N`, a shard's ops are partitioned by the hash slot of their keys
//! (`slot % N`): every command on one key always goes to the same lane, so order per key is
//! the journal's. An op whose keys fall in different lanes, or which has no key (`FLUSHALL`,
//! `SWAPDB`, `FUNCTION …`), a script (`EVAL`, `FCALL`: their keys need not be declared) and
//! every `MULTI … EXEC` is a **barrier**: it is sent alone once everything before it is
//! acknowledged on every lane, and nothing after it is sent before it is acknowledged.
//!
//! # Markers
//! On a standalone target each lane's stream batches are `MULTI … SET <marker> <position> EXEC`,
//! one marker key per lane (lane 0 keeps the one-connection name, so a journal replayed with
//! one connection reads and writes the same key as before). A marker records the last position
//! *of that lane* that the target applied; barriers go through lane 0. On resume, the replay
//! restarts after the checkpoint (which never passes a position not acknowledged on every lane)
//! and skips the ops whose position is at or before their own lane's marker: nothing is applied
//! twice, nothing is left out. This needs the same partition as the run that wrote the
//! markers, so each marker also records the lane count, and a resumed replay adopts it.
//!
//! On a cluster target a transaction may only touch one slot, so the marker is per slot: each
//! stream batch is sent as one `MULTI … HSET <slot marker> <lane> <position> EXEC` per slot
//! it touches, the slot marker being a hash in that very slot (`shake-replay:{<tag>}:<journal
//! id>:<shard>`, [`slot_tag`]) with one field per lane. On resume every slot's marker is read
//! and a command is dropped when its slot's field for its lane is at or past its position: a
//! lane applies the commands of one slot in order, atomically with that slot's field.

use std::collections::HashMap;

use crate::journal::Position;
use crate::net::slot::{key_slot, slot_tag};

use super::checkpoint::Phase;
use super::op::{Op, Route, Unit};
use super::stream::keys;

/// Most connections per shard and node (`--connections`), and so the most marker keys.
pub const MAX_CONNECTIONS: usize = 64;

/// Where an op goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// No command (it only advances the checkpoint): any lane.
    Any,
    /// This lane.
    One(usize),
    /// Alone, after everything before it is acknowledged on every lane.
    Barrier,
}

/// Commands whose keys cannot be trusted to be the ones they touch.
fn opaque(name: &[u8]) -> bool {
    [
        b"EVAL".as_slice(),
        b"EVALSHA",
        b"EVAL_RO",
        b"EVALSHA_RO",
        b"FCALL",
        b"FCALL_RO",
        b"SCRIPT",
        b"FUNCTION",
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

/// Frequent commands whose only key is their first argument: their lane is found without
/// the key-spec table (which allocates per look-up).
fn single_key(name: &[u8]) -> bool {
    const NAMES: &[&[u8]] = &[
        b"SET",
        b"SETEX",
        b"PSETEX",
        b"SETNX",
        b"APPEND",
        b"INCR",
        b"INCRBY",
        b"INCRBYFLOAT",
        b"DECR",
        b"DECRBY",
        b"GETSET",
        b"GETDEL",
        b"SETRANGE",
        b"SETBIT",
        b"HSET",
        b"HSETNX",
        b"HMSET",
        b"HDEL",
        b"HINCRBY",
        b"HINCRBYFLOAT",
        b"LPUSH",
        b"RPUSH",
        b"LPOP",
        b"RPOP",
        b"LSET",
        b"LREM",
        b"LTRIM",
        b"SADD",
        b"SREM",
        b"ZADD",
        b"ZREM",
        b"ZINCRBY",
        b"EXPIRE",
        b"PEXPIRE",
        b"EXPIREAT",
        b"PEXPIREAT",
        b"PERSIST",
        b"XADD",
        b"XDEL",
        b"XTRIM",
        b"PFADD",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The lane of `op` among `n`.
pub fn lane_of(op: &Op, n: usize) -> Lane {
    if op.is_empty() {
        return Lane::Any;
    }
    if n <= 1 {
        return Lane::One(0);
    }
    let by_slot = |slot: u16| usize::from(slot) % n;
    if op.phase == Phase::Snapshot {
        // a snapshot key's commands (RESTORE, or DEL + chunks + PEXPIREAT) are all on its key
        return match &op.key {
            Some(k) => Lane::One(by_slot(key_slot(k))),
            None => Lane::Barrier, // a function library
        };
    }
    if matches!(op.unit, Unit::Transaction(_)) {
        return Lane::Barrier;
    }
    let mut lane = None;
    for c in op.unit.cmds() {
        let Some(name) = c.argv.first() else {
            return Lane::Barrier;
        };
        if c.argv.len() >= 2 && single_key(name) {
            let l = by_slot(key_slot(&c.argv[1]));
            if *lane.get_or_insert(l) != l {
                return Lane::Barrier;
            }
            continue;
        }
        if opaque(name) {
            return Lane::Barrier;
        }
        let ks = keys(&c.argv);
        if ks.is_empty() {
            return Lane::Barrier;
        }
        for k in ks {
            let l = by_slot(key_slot(k));
            if *lane.get_or_insert(l) != l {
                return Lane::Barrier;
            }
        }
    }
    lane.map_or(Lane::Barrier, Lane::One)
}

/// Every replay marker key's name starts with this (standalone and slot markers alike).
pub const MARKER_PREFIX: &[u8] = b"shake-replay:";

/// Whether `key` is one of replay's markers (they exist on a target while a replay runs, and
/// after a killed one until it is resumed): `shake compare` does not count them as extras.
pub fn is_marker_key(key: &[u8]) -> bool {
    key.starts_with(MARKER_PREFIX)
}

/// The marker key of `lane` for a shard of a journal (lane 0: the one-connection name).
pub fn marker_key(journal_id: u64, shard: &str, lane: usize) -> Vec<u8> {
    if lane == 0 {
        format!("shake-replay:{journal_id}:{shard}").into_bytes()
    } else {
        format!("shake-replay:{journal_id}:{shard}:{lane}").into_bytes()
    }
}

/// Every marker key a shard may have (all lane counts), to read on resume and delete when idle.
pub fn marker_family(journal_id: u64, shard: &str) -> Vec<Vec<u8>> {
    (0..MAX_CONNECTIONS)
        .map(|l| marker_key(journal_id, shard, l))
        .collect()
}

/// The marker hash of `slot` for a shard of a journal (cluster targets): a key in `slot`,
/// whose field `<lane>` holds [`Marker::value`].
pub fn slot_marker_key(journal_id: u64, shard: &str, slot: u16) -> Vec<u8> {
    format!("shake-replay:{{{}}}:{journal_id}:{shard}", slot_tag(slot)).into_bytes()
}

/// A lane's marker: its key, the lane count written with each position, and the whole family.
#[derive(Debug, Clone)]
pub struct Marker {
    /// This lane's key (standalone targets).
    pub key: Vec<u8>,
    /// This lane's number (the field of the slot markers on a cluster target).
    pub lane: usize,
    /// Lanes of the run (recorded so a resume partitions the same way).
    pub lanes: usize,
    /// Every marker key of the shard (deleted together; standalone targets).
    pub family: Vec<Vec<u8>>,
    /// The journal's id, naming the slot markers.
    pub journal_id: u64,
    /// The shard, naming the slot markers.
    pub shard: String,
}

impl Marker {
    /// The marker hash of `slot` (cluster targets).
    pub fn slot_key(&self, slot: u16) -> Vec<u8> {
        slot_marker_key(self.journal_id, &self.shard, slot)
    }

    /// The value recording `position`: `epoch:offset.seq`, followed by the lane count when
    /// above one (a one-connection marker reads as before).
    pub fn value(&self, position: Position) -> String {
        if self.lanes <= 1 {
            position.to_string()
        } else {
            format!("{position} {}", self.lanes)
        }
    }
}

/// Whether the markers cannot make `op` exactly-once: it deletes or moves the markers
/// themselves (`FLUSHALL`, `FLUSHDB`, `SWAPDB`), or on a cluster it has a command without a
/// slot (sent to any or every master outside a slot transaction). Such an op is a barrier
/// anyway; the dispatcher saves the checkpoint file before sending it and as soon as it is
/// acknowledged, so a resume never sends it again after anything that followed it.
pub fn unmarked(op: &Op, cluster: bool) -> bool {
    op.unit
        .cmds()
        .iter()
        .any(|c| (cluster && !matches!(c.route, Route::Slot(_))) || moves_markers(c))
}

/// Whether `c` may delete or move replay markers as sent: `FLUSHALL`, `FLUSHDB`, `SWAPDB`
/// (a one-shard flush, [`super::op::Cmd::flush_slots`], keeps them).
pub fn drops_markers(c: &super::op::Cmd) -> bool {
    c.flush_slots.is_none() && moves_markers(c)
}

fn moves_markers(c: &super::op::Cmd) -> bool {
    c.argv.first().is_some_and(|n| {
        [b"FLUSHALL".as_slice(), b"FLUSHDB", b"SWAPDB"]
            .iter()
            .any(|f| f.eq_ignore_ascii_case(n))
    })
}

/// What an interrupted run's markers show applied past the checkpoint: per lane on a
/// standalone target, per slot and lane on a cluster target.
#[derive(Debug, Default)]
pub struct Applied {
    lanes: Vec<Option<Position>>,
    slots: HashMap<(u16, usize), Position>,
}

impl Applied {
    /// Records lane `lane`'s marker (standalone).
    pub fn set_lane(&mut self, lane: usize, p: Position) {
        if self.lanes.len() <= lane {
            self.lanes.resize(lane + 1, None);
        }
        self.lanes[lane] = Some(p);
    }

    /// Records lane `lane`'s marker in `slot` (cluster).
    pub fn set_slot(&mut self, slot: u16, lane: usize, p: Position) {
        self.slots.insert((slot, lane), p);
    }

    /// The furthest position a marker shows applied: until the checkpoint reaches it, the
    /// markers must stay (deleting them earlier would lose what they record).
    pub fn furthest(&self) -> Option<Position> {
        self.lanes
            .iter()
            .flatten()
            .chain(self.slots.values())
            .max()
            .copied()
    }

    /// Whether no marker shows anything applied (asked per op: constant time).
    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty() && self.slots.is_empty()
    }

    /// Whether a command routed `route`, of an op at `position` that `lane` sends, was
    /// applied by the interrupted run.
    pub fn covers(&self, lane: usize, route: Route, position: Position) -> bool {
        let marker = match route {
            Route::Slot(s) if !self.slots.is_empty() => self.slots.get(&(s, lane)).copied(),
            _ => self.lanes.get(lane).copied().flatten(),
        };
        marker.is_some_and(|m| position <= m)
    }
}

/// A marker value: the position and the lane count of the run that wrote it.
pub fn parse_marker(v: &str) -> Option<(Position, usize)> {
    let mut it = v.split_whitespace();
    let pos = it.next()?.parse().ok()?;
    let lanes = match it.next() {
        Some(n) => n
            .parse()
            .ok()
            .filter(|n| (1..=MAX_CONNECTIONS).contains(n))?,
        None => 1,
    };
    Some((pos, lanes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::op::Cmd;

    fn op(cmds: &[&[&str]]) -> Op {
        Op {
            position: Position::ZERO,
            phase: Phase::Stream,
            db: 0,
            end_db: 0,
            key: None,
            unit: Unit::Commands(
                cmds.iter()
                    .map(|c| {
                        Cmd::new(
                            c.iter()
                                .map(|a| bytes::Bytes::copy_from_slice(a.as_bytes()))
                                .collect(),
                            Route::Any,
                        )
                    })
                    .collect(),
            ),
            guard: None,
            folded: Vec::new(),
        }
    }

    #[test]
    fn same_key_same_lane_and_barriers() {
        let a = lane_of(&op(&[&["SET", "k1", "v"]]), 4);
        assert_eq!(a, lane_of(&op(&[&["INCR", "k1"]]), 4));
        assert!(matches!(a, Lane::One(l) if l < 4));
        assert_eq!(lane_of(&op(&[&["SET", "k1", "v"]]), 1), Lane::One(0));
        assert_eq!(lane_of(&op(&[&["FLUSHALL"]]), 4), Lane::Barrier);
        assert_eq!(
            lane_of(&op(&[&["EVAL", "return 1", "1", "k1"]]), 4),
            Lane::Barrier
        );
        assert_eq!(lane_of(&op(&[]), 4), Lane::Any);
        // hash tags keep keys together
        assert!(matches!(
            lane_of(&op(&[&["MSET", "{t}a", "1", "{t}b", "2"]]), 4),
            Lane::One(_)
        ));
        // keys in different lanes: find two
        let mut lanes = std::collections::HashMap::new();
        for i in 0..64 {
            let k = format!("key:{i}");
            if let Lane::One(l) = lane_of(&op(&[&["SET", &k, "v"]]), 4) {
                lanes.entry(l).or_insert(k);
            }
        }
        assert_eq!(lanes.len(), 4, "keys spread over every lane");
        let (a, b) = (&lanes[&0], &lanes[&1]);
        assert_eq!(lane_of(&op(&[&["MSET", a, "1", b, "2"]]), 4), Lane::Barrier);
        let mut t = op(&[&["INCR", a]]);
        t.unit = Unit::Transaction(t.unit.cmds().to_vec());
        assert_eq!(lane_of(&t, 4), Lane::Barrier);
    }

    #[test]
    fn fast_path_names_have_one_key_first() {
        for name in [
            "SET",
            "SETEX",
            "PSETEX",
            "SETNX",
            "APPEND",
            "INCR",
            "INCRBY",
            "INCRBYFLOAT",
            "DECR",
            "DECRBY",
            "GETSET",
            "GETDEL",
            "SETRANGE",
            "SETBIT",
            "HSET",
            "HSETNX",
            "HMSET",
            "HDEL",
            "HINCRBY",
            "HINCRBYFLOAT",
            "LPUSH",
            "RPUSH",
            "LPOP",
            "RPOP",
            "LSET",
            "LREM",
            "LTRIM",
            "SADD",
            "SREM",
            "ZADD",
            "ZREM",
            "ZINCRBY",
            "EXPIRE",
            "PEXPIRE",
            "EXPIREAT",
            "PEXPIREAT",
            "PERSIST",
            "XADD",
            "XDEL",
            "XTRIM",
            "PFADD",
        ] {
            assert!(single_key(name.as_bytes()), "{name}");
            let argv: Vec<&[u8]> = vec![name.as_bytes(), b"k", b"1", b"2", b"3", b"4", b"5"];
            assert_eq!(
                crate::commands::keys(&argv),
                Some(vec![b"k".as_slice()]),
                "{name}"
            );
        }
    }

    #[test]
    fn marker_values_round_trip() {
        let p = Position::new(2, 1000, 3);
        let m = Marker {
            key: marker_key(7, "shard-000", 0),
            lane: 0,
            lanes: 1,
            family: vec![],
            journal_id: 7,
            shard: "shard-000".into(),
        };
        assert_eq!(parse_marker(&m.value(p)), Some((p, 1)));
        let m4 = Marker {
            lanes: 4,
            ..m.clone()
        };
        assert_eq!(parse_marker(&m4.value(p)), Some((p, 4)));
        assert_eq!(marker_key(7, "s", 0), b"shake-replay:7:s".to_vec());
        assert_eq!(marker_key(7, "s", 2), b"shake-replay:7:s:2".to_vec());
        assert_eq!(parse_marker("junk"), None);
        // a cluster's slot markers: one hash per slot, in that slot
        for slot in [0, 5061, 16383] {
            assert_eq!(key_slot(&m.slot_key(slot)), slot);
        }
        assert!(m.slot_key(1).ends_with(b":7:shard-000"));
        assert!(is_marker_key(&m.slot_key(1)) && is_marker_key(&marker_key(7, "s", 3)));
        assert!(!is_marker_key(b"shake:replay"));
    }
}
