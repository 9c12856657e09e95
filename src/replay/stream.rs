//! Stream records → ops: database mapping, expiries made absolute, and cluster routing.
//!
//! # Key positions
//! Where the keys are comes from Redis' own key specs ([`crate::commands`], generated from
//! `COMMAND INFO`), used to route and to check that multi-key commands stay in one slot. A
//! command the table does not know is routed by its first argument; keyless commands
//! (`FLUSHALL`, `FUNCTION …`, `SCRIPT …`) go to every master, `PUBLISH` to any.
//!
//! # Cluster targets
//! `DEL`/`UNLINK`/`TOUCH`/`EXISTS` spanning slots are split per key and `MSET` per slot (same
//! effect); other cross-slot commands are sent as they are and their `CROSSSLOT` error is
//! reported with the position. A `MULTI` block whose keys span slots is sent as individual
//! commands (atomicity is lost, the effect is kept) with a warning naming the position.
//!
//! # Expiries
//! Redis before 7.0 propagates relative expiries (`EXPIRE k 10`, `SETEX`, `SET … EX`); replayed
//! later they would extend the TTL. They are rewritten to absolute ones (`PEXPIREAT`,
//! `SET … PXAT`) from the record's capture time, as 7.0+ sources already send them.

use bytes::Bytes;

use crate::journal::{Position, Transaction};
use crate::net::slot::key_slot;

use super::checkpoint::Phase;
use super::error::{Error, Result};
use super::op::{Argv, Cmd, Op, Route, Unit};
use super::options::ReplayOptions;

/// One command of the stream as replay holds it: [`crate::journal::Command`] with its
/// arguments as [`Bytes`] (from the reader's arena, `replay::feed`).
#[derive(Debug, Clone)]
pub struct Command {
    /// The database the command applies to.
    pub db: u32,
    /// Capture time, ms since the Unix epoch (relative expiries are made absolute from it).
    pub time_ms: u64,
    /// Name and arguments.
    pub argv: Argv,
}

impl From<crate::journal::Command> for Command {
    fn from(c: crate::journal::Command) -> Command {
        Command {
            db: c.db,
            time_ms: c.time_ms,
            argv: c.argv.into_iter().map(Bytes::from).collect(),
        }
    }
}

/// Converts stream records for one shard.
#[derive(Debug, Clone)]
pub struct StreamConverter {
    /// Shard name, for messages.
    pub shard: String,
    /// Whether the target is a cluster.
    pub cluster: bool,
    /// Target server version as `major*100+minor` (SET … PXAT needs 6.2).
    pub target_version: u32,
    /// Source db → target db.
    pub map_db: std::collections::BTreeMap<u32, u32>,
    /// Shards in the journal: with more than one, a flush in one shard's stream would also
    /// remove what the others replayed.
    pub journal_shards: usize,
}

/// The source slot ranges a shard of a multi-shard journal serves at a point of its stream: a
/// flush there deletes only the keys of these slots on the target ([`Cmd::flush_slots`]).
///
/// They start as the journal's manifest recorded them and follow the topology markers capture
/// wrote when the source's layout changed (a shard follows the master serving its first slot,
/// so after a slot migration its ranges are that master's): a flush after a resharding must
/// not delete the keys of a slot that had moved to another master, nor keep those of a slot
/// that had moved in. Capture reads the layout every 5 s, so a flush within seconds of a
/// migration can still see the ranges from before it.
#[derive(Debug, Clone)]
pub struct ShardSlots {
    /// The slot the shard follows (its first in the manifest).
    locator: u16,
    /// The ranges now.
    now: std::sync::Arc<Vec<(u16, u16)>>,
}

impl ShardSlots {
    /// The ranges the manifest gives a shard; `None` when it has none.
    pub fn new(ranges: Vec<(u16, u16)>) -> Option<ShardSlots> {
        Some(ShardSlots {
            locator: ranges.first()?.0,
            now: std::sync::Arc::new(ranges),
        })
    }

    /// The ranges now.
    pub fn now(&self) -> &std::sync::Arc<Vec<(u16, u16)>> {
        &self.now
    }

    /// Follows a topology marker's `description` (at `position` of `shard`'s stream): the
    /// ranges of the master that serves the shard's slot there. A marker that cannot be read,
    /// or where no master serves it, changes nothing and is warned about.
    pub fn follow(&mut self, description: &str, shard: &str, position: Position) {
        let owner = crate::capture::plan::parse_description(description).and_then(|layout| {
            layout.into_iter().find(|(_, ranges)| {
                ranges
                    .iter()
                    .any(|&(a, b)| a <= self.locator && self.locator <= b)
            })
        });
        match owner {
            Some((_, ranges)) if ranges != *self.now => {
                tracing::info!(%shard, %position, from = ?self.now, to = ?ranges, "the source's layout changed: a flush of this shard from here on deletes the keys of its new slot ranges");
                self.now = std::sync::Arc::new(ranges);
            }
            Some(_) => {}
            None => {
                tracing::warn!(%shard, %position, slot = self.locator, "a topology marker names no master serving this shard's slot: a flush of this shard keeps deleting the keys of its earlier slot ranges")
            }
        }
    }
}

impl StreamConverter {
    /// A converter for `shard` under `opts`.
    pub fn new(shard: &str, cluster: bool, target_version: u32, opts: &ReplayOptions) -> Self {
        StreamConverter {
            shard: shard.to_string(),
            cluster,
            target_version,
            map_db: opts.map_db.clone(),
            journal_shards: 1,
        }
    }

    /// The target db of `db`, refused on a cluster when not 0.
    pub fn db(&self, db: u32, position: Position) -> Result<u32> {
        let to = self.map_db.get(&db).copied().unwrap_or(db);
        if self.cluster && to != 0 {
            return Err(Error::ClusterDb {
                shard: self.shard.clone(),
                position,
                db,
            });
        }
        Ok(to)
    }

    /// One command record; `slots`: the shard's source slot ranges there, when the journal
    /// has several shards.
    pub fn command(
        &self,
        c: Command,
        position: Position,
        slots: Option<&ShardSlots>,
    ) -> Result<Option<Op>> {
        let db = self.db(c.db, position)?;
        if skipped(&c.argv) {
            return Ok(None);
        }
        let flush = is_flush(&c.argv);
        let argv = absolute_expiry(c.argv, c.time_ms, self.target_version);
        // the key for messages is taken from the failing command itself (see the writer)
        let key = None;
        let mut cmds = self.routed(argv);
        if flush && self.journal_shards > 1 {
            match slots.map(ShardSlots::now) {
                Some(slots) => {
                    tracing::info!(shard = %self.shard, %position, "{}: one source master was flushed; deleting the keys of its {} slot range(s) on the target", upper(&cmds[0].argv[0]), slots.len());
                    for c in &mut cmds {
                        c.flush_slots = Some(slots.clone());
                    }
                }
                None => self.warn_flush(&cmds[0].argv, position),
            }
        }
        Ok(Some(Op {
            position,
            phase: Phase::Stream,
            db,
            end_db: db,
            key,
            unit: Unit::Commands(cmds),
            guard: None,
            folded: Vec::new(),
        }))
    }

    /// One `MULTI … EXEC` record.
    pub fn transaction(&self, t: &Transaction, position: Position) -> Result<Option<Op>> {
        let db = self.db(t.db, position)?;
        let mut end_db = db;
        let mut argvs = Vec::new();
        for argv in &t.commands {
            if skipped(argv) {
                continue;
            }
            if self.journal_shards > 1 && (is(argv, b"FLUSHALL") || is(argv, b"FLUSHDB")) {
                self.warn_flush(argv, position);
            }
            if is(argv, b"SELECT") {
                let n: u32 = argv
                    .get(1)
                    .and_then(|a| std::str::from_utf8(a).ok())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                end_db = self.db(n, position)?;
                argvs.push(vec![
                    Bytes::from_static(b"SELECT"),
                    Bytes::from(end_db.to_string()),
                ]);
                continue;
            }
            argvs.push(absolute_expiry(
                argv.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
                t.time_ms,
                self.target_version,
            ));
        }
        if argvs.is_empty() {
            return Ok(None);
        }
        let key = argvs
            .iter()
            .find_map(|a| first_key(a))
            .map(bytes::Bytes::copy_from_slice);
        let unit = if !self.cluster {
            Unit::Transaction(argvs.into_iter().map(|a| Cmd::new(a, Route::Any)).collect())
        } else {
            let mut slots: Vec<u16> = argvs
                .iter()
                .flat_map(|a| keys(a).into_iter().map(key_slot))
                .collect();
            slots.sort_unstable();
            slots.dedup();
            if slots.len() <= 1 {
                let route = slots.first().map_or(Route::Any, |s| Route::Slot(*s));
                Unit::Transaction(argvs.into_iter().map(|a| Cmd::new(a, route)).collect())
            } else {
                tracing::warn!(
                    shard = %self.shard,
                    %position,
                    slots = slots.len(),
                    "a MULTI block spans slots on a cluster target: its commands are sent one by one (not atomically)"
                );
                Unit::Commands(argvs.into_iter().flat_map(|a| self.routed(a)).collect())
            }
        };
        Ok(Some(Op {
            position,
            phase: Phase::Stream,
            db,
            end_db,
            key,
            unit,
            guard: None,
            folded: Vec::new(),
        }))
    }

    fn warn_flush(&self, argv: &[impl AsRef<[u8]>], position: Position) {
        tracing::warn!(
            shard = %self.shard,
            %position,
            "{} in one shard's stream of a {}-shard journal (inside a transaction, or the shard's slots are not recorded): it flushes the whole target, including what other shards replayed",
            upper(argv[0].as_ref()),
            self.journal_shards
        );
    }

    /// Routes one command, splitting the multi-key commands that can be split.
    fn routed(&self, argv: Argv) -> Vec<Cmd> {
        if !self.cluster {
            return vec![Cmd::new(argv, Route::Any)];
        }
        let name = upper(&argv[0]);
        if matches!(
            name.as_str(),
            "FLUSHALL" | "FLUSHDB" | "FUNCTION" | "SCRIPT"
        ) {
            return vec![Cmd::new(argv, Route::All)];
        }
        let ks = keys(&argv);
        let Some(first) = ks.first() else {
            return vec![Cmd::new(argv, Route::Any)];
        };
        let slot = key_slot(first);
        if ks.iter().all(|k| key_slot(k) == slot) {
            return vec![Cmd::new(argv, Route::Slot(slot))];
        }
        match name.as_str() {
            "DEL" | "UNLINK" | "TOUCH" | "EXISTS" => argv[1..]
                .iter()
                .map(|k| Cmd::new(vec![argv[0].clone(), k.clone()], Route::Slot(key_slot(k))))
                .collect(),
            "MSET" if argv.len() % 2 == 1 => {
                let mut groups: Vec<(u16, Argv)> = Vec::new();
                for pair in argv[1..].chunks(2) {
                    let s = key_slot(&pair[0]);
                    match groups.iter_mut().find(|(g, _)| *g == s) {
                        Some((_, a)) => a.extend(pair.iter().cloned()),
                        None => {
                            let mut a = vec![argv[0].clone()];
                            a.extend(pair.iter().cloned());
                            groups.push((s, a));
                        }
                    }
                }
                groups
                    .into_iter()
                    .map(|(s, a)| Cmd::new(a, Route::Slot(s)))
                    .collect()
            }
            _ => vec![Cmd::new(argv, Route::Slot(slot))],
        }
    }
}

fn upper(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_uppercase()
}

/// Whether `argv` is the command `name` (any case).
pub(super) fn is(argv: &[impl AsRef<[u8]>], name: &[u8]) -> bool {
    argv.first()
        .is_some_and(|a| a.as_ref().eq_ignore_ascii_case(name))
}

/// Whether `argv` empties a database (`FLUSHALL`, `FLUSHDB`): in a multi-shard journal, only
/// the shard's slots ([`ShardSlots`]).
pub(super) fn is_flush(argv: &[impl AsRef<[u8]>]) -> bool {
    is(argv, b"FLUSHALL") || is(argv, b"FLUSHDB")
}

/// Protocol chatter that is not data (a journal should not hold it; tolerated if it does).
fn skipped(argv: &[impl AsRef<[u8]>]) -> bool {
    argv.is_empty()
        || is(argv, b"PING")
        || is(argv, b"REPLCONF")
        || is(argv, b"MULTI")
        || is(argv, b"EXEC")
}

/// The first key of a command, if it has one.
pub fn first_key<A: AsRef<[u8]>>(argv: &[A]) -> Option<&[u8]> {
    keys(argv).into_iter().next()
}

/// The keys of a command, from Redis' own key specs ([`crate::commands`]); for a command the
/// table does not know (a module's), its first argument, which is where nearly every command
/// keeps its key.
pub fn keys<A: AsRef<[u8]>>(argv: &[A]) -> Vec<&[u8]> {
    match crate::commands::keys(argv) {
        Some(keys) => keys,
        None => argv.get(1).map(|a| a.as_ref()).into_iter().collect(),
    }
}

/// Rewrites relative expiries to absolute ones from the capture time `time_ms` (see the module
/// docs). Commands already absolute, or with values that are not plain integers, are unchanged.
pub fn absolute_expiry(argv: Argv, time_ms: u64, target_version: u32) -> Argv {
    let candidate = argv.first().is_some_and(|n| {
        matches!(n.len(), 3 | 5 | 6 | 7) && matches!(n[0].to_ascii_uppercase(), b'E' | b'P' | b'S')
    });
    // a plain `SET k v` (the most frequent command) has nothing to rewrite: no look further
    if !candidate || argv.len() < 3 || (argv[0].len() == 3 && argv.len() < 5) {
        return argv;
    }
    let num = |a: &[u8]| -> Option<i64> { std::str::from_utf8(a).ok()?.parse().ok() };
    let at = |rel_ms: i64| Bytes::from((time_ms as i64).saturating_add(rel_ms).to_string());
    let name = upper(&argv[0]);
    let pxat = target_version >= 602;
    match name.as_str() {
        "EXPIRE" | "PEXPIRE" if argv.len() >= 3 => {
            let unit = if name == "EXPIRE" { 1000 } else { 1 };
            if let Some(n) = num(&argv[2]).filter(|n| *n > 0) {
                let mut out = vec![
                    Bytes::from_static(b"PEXPIREAT"),
                    argv[1].clone(),
                    at(n.saturating_mul(unit)),
                ];
                out.extend(argv[3..].iter().cloned());
                return out;
            }
        }
        "SETEX" | "PSETEX" if argv.len() == 4 && pxat => {
            let unit = if name == "SETEX" { 1000 } else { 1 };
            if let Some(n) = num(&argv[2]).filter(|n| *n > 0) {
                return vec![
                    Bytes::from_static(b"SET"),
                    argv[1].clone(),
                    argv[3].clone(),
                    Bytes::from_static(b"PXAT"),
                    at(n.saturating_mul(unit)),
                ];
            }
        }
        "SET" if argv.len() >= 5 && pxat => {
            let mut out = argv;
            let mut i = 3;
            while i + 1 < out.len() {
                let opt = upper(&out[i]);
                if opt == "EX" || opt == "PX" {
                    let unit = if opt == "EX" { 1000 } else { 1 };
                    if let Some(n) = num(&out[i + 1]).filter(|n| *n > 0) {
                        out[i] = Bytes::from_static(b"PXAT");
                        out[i + 1] = at(n.saturating_mul(unit));
                    }
                    break;
                }
                i += 1;
            }
            return out;
        }
        _ => {}
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Argv {
        s.iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    #[test]
    fn key_positions() {
        assert_eq!(keys(&v(&["SET", "a", "1"])), vec![b"a".as_slice()]);
        assert_eq!(keys(&v(&["EVALSHA", "x", "2", "k1", "k2", "arg"])).len(), 2);
        assert_eq!(
            keys(&v(&["BITOP", "AND", "d", "s1"])),
            vec![b"d".as_slice(), b"s1"]
        );
        assert_eq!(
            keys(&v(&["MSET", "a", "1", "b", "2"])),
            vec![b"a".as_slice(), b"b"]
        );
        assert_eq!(
            keys(&v(&[
                "ZUNIONSTORE",
                "d",
                "2",
                "a",
                "b",
                "WEIGHTS",
                "1",
                "2"
            ]))
            .len(),
            3
        );
        assert!(keys(&v(&["FLUSHALL"])).is_empty());
        assert_eq!(
            keys(&v(&["XGROUP", "CREATE", "s", "g", "$"])),
            vec![b"s".as_slice()]
        );
    }

    #[test]
    fn relative_expiries_become_absolute() {
        assert_eq!(
            absolute_expiry(v(&["EXPIRE", "k", "10"]), 1000, 700),
            v(&["PEXPIREAT", "k", "11000"])
        );
        assert_eq!(
            absolute_expiry(v(&["SETEX", "k", "2", "v"]), 1000, 700),
            v(&["SET", "k", "v", "PXAT", "3000"])
        );
        assert_eq!(
            absolute_expiry(v(&["SET", "k", "v", "PX", "5"]), 1000, 700),
            v(&["SET", "k", "v", "PXAT", "1005"])
        );
        assert_eq!(
            absolute_expiry(v(&["SET", "k", "v", "PXAT", "5"]), 1000, 700),
            v(&["SET", "k", "v", "PXAT", "5"])
        );
        assert_eq!(
            absolute_expiry(v(&["SETEX", "k", "2", "v"]), 1000, 600),
            v(&["SETEX", "k", "2", "v"])
        );
    }

    #[test]
    fn cluster_splits_multi_key_deletes_and_mset() {
        let opts = ReplayOptions::new("/j".into(), crate::net::Endpoint::new("h", 1));
        let c = StreamConverter::new("shard-000", true, 700, &opts);
        assert_eq!(c.routed(v(&["DEL", "a", "b", "c"])).len(), 3);
        assert_eq!(c.routed(v(&["DEL", "{t}a", "{t}b"])).len(), 1);
        let m = c.routed(v(&["MSET", "a", "1", "b", "2"]));
        assert_eq!(m.len(), 2);
        assert_eq!(c.routed(v(&["FLUSHALL"]))[0].route, Route::All);
        let err = c.command(
            Command {
                db: 3,
                time_ms: 0,
                argv: v(&["SET", "a", "1"]),
            },
            Position::ZERO,
            None,
        );
        assert!(matches!(err, Err(Error::ClusterDb { db: 3, .. })));
    }
}
