//! The unit of work between reading the journal and writing to the target: an [`Op`] is what one
//! journal record (or one snapshot key with its chunks) becomes — commands, their routing, and
//! what each reply means.

use crate::journal::Position;

use super::checkpoint::Phase;

/// One command argument vector. Arguments are [`bytes::Bytes`]: the journal reader copies a
/// stream command's arguments into a shared arena rather than allocating each one
/// (`replay::feed`), and a writer on another thread drops them without a cross-thread free
/// per argument.
pub type Argv = Vec<bytes::Bytes>;

/// Where a command goes on a cluster target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The master owning this slot.
    Slot(u16),
    /// Any master (keyless commands).
    Any,
    /// Every master (`FLUSHALL`, `FUNCTION LOAD`, `SCRIPT FLUSH` …).
    All,
}

/// What a `BUSYKEY` (or "library already exists") reply means for this command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBusy {
    /// An ordinary failure.
    Fail,
    /// The key is kept: counted as skipped (`--on-conflict skip`).
    Skip,
    /// Stop the replay (`--on-conflict error`).
    Stop,
    /// The key is replaced: a `RESTORE` sent without `REPLACE` (`--on-conflict replace` on a
    /// target that has not held the snapshot's keys so far) goes again with it
    /// ([`super::snapshot::with_replace`]), counted as replaced.
    Replace,
}

/// One command with its routing and reply meaning.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// Name and arguments.
    pub argv: Argv,
    /// Cluster routing.
    pub route: Route,
    /// BUSYKEY meaning.
    pub on_busy: OnBusy,
    /// The whole command already encoded as RESP, sent as it is; `argv` then holds only the
    /// command's name (for reports and counts). Snapshot keys' RESTOREs are built this way on
    /// the journal reader's thread, payload and all, in one buffer: no argument vectors to
    /// allocate, fill and free per key.
    pub wire: Option<bytes::Bytes>,
    /// A `FLUSHALL`/`FLUSHDB` of one shard of a multi-shard journal: on the source it emptied
    /// one master, so on the target it deletes only the keys of these source slot ranges
    /// (inclusive) rather than everything the other shards replayed too
    /// ([`super::writer::Writer`] does it; `None`: sent as it is).
    pub flush_slots: Option<std::sync::Arc<Vec<(u16, u16)>>>,
}

impl Cmd {
    /// A command routed by `route` whose BUSYKEY is an ordinary failure.
    pub fn new(argv: Argv, route: Route) -> Cmd {
        Cmd {
            argv,
            route,
            on_busy: OnBusy::Fail,
            wire: None,
            flush_slots: None,
        }
    }

    /// A command already encoded (see [`Cmd::wire`]) named `name`.
    pub fn encoded(name: &'static [u8], wire: bytes::Bytes, route: Route) -> Cmd {
        Cmd {
            argv: vec![bytes::Bytes::from_static(name)],
            route,
            on_busy: OnBusy::Fail,
            wire: Some(wire),
            flush_slots: None,
        }
    }

    /// Bytes on the wire, roughly (for `--max-bytes` and statistics).
    pub fn wire_len(&self) -> u64 {
        match &self.wire {
            Some(w) => w.len() as u64,
            None => self.argv.iter().map(|a| a.len() as u64 + 16).sum::<u64>() + 8,
        }
    }

    /// The upper-case command name (two words for container commands), for reports.
    pub fn name(&self) -> String {
        let mut n = self
            .argv
            .first()
            .map(|a| String::from_utf8_lossy(a).to_uppercase())
            .unwrap_or_default();
        if matches!(
            n.as_str(),
            "FUNCTION" | "SCRIPT" | "XGROUP" | "CONFIG" | "OBJECT"
        ) && let Some(s) = self.argv.get(1)
        {
            n.push(' ');
            n.push_str(&String::from_utf8_lossy(s).to_uppercase());
        }
        n
    }
}

/// How an op's commands are sent.
#[derive(Debug, Clone)]
pub enum Unit {
    /// Independent commands, in order (each routed on its own on a cluster).
    Commands(Vec<Cmd>),
    /// `MULTI … EXEC` as one unit (all on one node; `SELECT`s inside already mapped).
    Transaction(Vec<Cmd>),
}

impl Unit {
    /// The commands.
    pub fn cmds(&self) -> &[Cmd] {
        match self {
            Unit::Commands(c) | Unit::Transaction(c) => c,
        }
    }
}

/// A check that must pass before the op is sent (rewrite path under `skip`/`error`).
#[derive(Debug, Clone)]
pub struct Guard {
    /// The key that must not exist on the target.
    pub key: Vec<u8>,
    /// Its route.
    pub route: Route,
    /// What to do when it exists.
    pub on_exists: OnBusy,
}

/// One journal record's worth of work.
#[derive(Debug, Clone)]
pub struct Op {
    /// The last journal position this op completes (the checkpoint advances to it).
    pub position: Position,
    /// Snapshot key or stream record.
    pub phase: Phase,
    /// Target database the op starts in.
    pub db: u32,
    /// Target database selected when the op ends (differs after a transaction with `SELECT`).
    pub end_db: u32,
    /// The key, for messages and lanes (snapshot keys and keyed commands); shares its bytes
    /// with the command's argument where it is one.
    pub key: Option<bytes::Bytes>,
    /// The commands.
    pub unit: Unit,
    /// Checked before sending.
    pub guard: Option<Guard>,
    /// Empty, or — for plain `SET`s folded into one `MSET` ([`Op::fold`]) — the position
    /// of every folded `SET`, in order (the `MSET`'s keys are its arguments 1, 3, 5 …).
    pub folded: Vec<Position>,
}

impl Op {
    /// An op without commands: it only moves the checkpoint to `position` once everything
    /// before it is acknowledged (a snapshot's end, a key streamed on its own).
    pub fn checkpoint_only(position: Position, phase: Phase) -> Op {
        Op {
            position,
            phase,
            db: 0,
            end_db: 0,
            key: None,
            unit: Unit::Commands(Vec::new()),
            guard: None,
            folded: Vec::new(),
        }
    }

    /// Number of commands.
    pub fn len(&self) -> usize {
        self.unit.cmds().len()
    }

    /// Whether the op has no command (it only advances the checkpoint).
    pub fn is_empty(&self) -> bool {
        self.unit.cmds().is_empty()
    }

    /// Bytes on the wire, roughly.
    pub fn wire_len(&self) -> u64 {
        self.unit.cmds().iter().map(Cmd::wire_len).sum()
    }

    /// Journal records this op carries out: one, or as many as were folded into it.
    pub fn records(&self) -> usize {
        self.folded.len().max(1)
    }

    /// Commands this op stands for (what `--max-ops` counts): its own, or the `SET`s
    /// folded into it.
    pub fn commands_carried(&self) -> usize {
        self.len().max(self.folded.len())
    }

    /// Whether this op is one plain `SET key value` (no option, no guard, no db change, an
    /// ordinary reply meaning): the only command [`Op::fold`] folds.
    fn plain_set(&self) -> bool {
        self.guard.is_none()
            && self.folded.is_empty()
            && self.db == self.end_db
            && matches!(&self.unit, Unit::Commands(c) if c.len() == 1
                && c[0].on_busy == OnBusy::Fail
                && c[0].argv.len() == 3
                && c[0].argv[0].eq_ignore_ascii_case(b"SET"))
    }

    /// Whether later plain `SET`s may be folded into this op: it is one, or a fold of them
    /// below [`FOLD_MAX`].
    pub fn takes_folds(&self) -> bool {
        self.plain_set() || (1..FOLD_MAX).contains(&self.folded.len())
    }

    /// Whether `next` may be folded into this op ([`Op::fold`]): both are plain `SET`s (or
    /// this is already their fold, below [`FOLD_MAX`]), in the same phase, db and route; the
    /// two become one `MSET k1 v1 k2 v2 …` whose position is `next`'s.
    ///
    /// Why: a destination spends about as much CPU on a `SET`'s command overhead (parsing,
    /// look-up, reply) as on storing its value, and a replay is bound by the destination's
    /// CPU; one `MSET` of many keys costs it about 30 % less per key (docs/performance.md).
    /// The effect is the same: `MSET` overwrites each key whatever its type and drops its
    /// TTL, exactly as a plain `SET` does, in argument order, so a key set twice keeps its
    /// last value; keyspace notifications are the same. `MSET` applies all its keys or none,
    /// so an error reply stands for every folded `SET` and is reported against each of their
    /// positions and keys (see the writer). Callers fold only ops of one connection (lane),
    /// so order per key and the per-lane replay markers hold.
    pub fn can_fold(&self, next: &Op) -> bool {
        self.takes_folds()
            && next.plain_set()
            && next.phase == self.phase
            && next.db == self.db
            && next.unit.cmds()[0].route == self.unit.cmds()[0].route
    }

    /// Folds `next` into this op; [`Op::can_fold`] must have said yes.
    pub fn fold(&mut self, next: Op) {
        debug_assert!(self.can_fold(&next));
        let (Unit::Commands(mine), Unit::Commands(mut theirs)) = (&mut self.unit, next.unit) else {
            return;
        };
        let mine = &mut mine[0];
        if self.folded.is_empty() {
            self.folded.reserve_exact(FOLD_MAX);
            self.folded.push(self.position);
            mine.argv[0] = bytes::Bytes::from_static(b"MSET");
            mine.argv.reserve_exact(1 + 2 * FOLD_MAX - mine.argv.len());
        }
        let mut argv = std::mem::take(&mut theirs[0].argv).into_iter();
        argv.next();
        mine.argv.extend(argv);
        self.folded.push(next.position);
        self.position = next.position;
    }

    /// The key of folded `SET` number `i` (see [`Op::fold`]).
    pub fn folded_key(&self, i: usize) -> Option<&[u8]> {
        let c = self.unit.cmds().first()?;
        c.argv.get(1 + 2 * i).map(|a| a.as_ref())
    }
}

/// Most `SET`s folded into one `MSET`.
pub const FOLD_MAX: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    fn set(args: &[&str], seq: u64, db: u32, route: Route) -> Op {
        Op {
            position: Position::new(1, 100, seq),
            phase: Phase::Stream,
            db,
            end_db: db,
            key: None,
            unit: Unit::Commands(vec![Cmd::new(
                args.iter()
                    .map(|a| bytes::Bytes::copy_from_slice(a.as_bytes()))
                    .collect(),
                route,
            )]),
            guard: None,
            folded: Vec::new(),
        }
    }

    fn argv(op: &Op) -> Vec<String> {
        op.unit.cmds()[0]
            .argv
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    #[test]
    fn plain_sets_fold_into_one_mset_in_order_with_every_position() {
        let mut a = set(&["SET", "k1", "v1"], 1, 0, Route::Any);
        for (i, k) in ["k2", "k1", "k3"].iter().enumerate() {
            let b = set(&["set", k, &format!("w{i}")], 2 + i as u64, 0, Route::Any);
            assert!(a.can_fold(&b));
            a.fold(b);
        }
        assert_eq!(
            argv(&a),
            ["MSET", "k1", "v1", "k2", "w0", "k1", "w1", "k3", "w2"]
        );
        assert_eq!(a.records(), 4);
        assert_eq!(a.commands_carried(), 4);
        assert_eq!(a.position, Position::new(1, 100, 4));
        assert_eq!(
            a.folded.iter().map(|p| p.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(a.folded_key(2), Some(b"k1".as_slice()));
    }

    #[test]
    fn only_plain_sets_of_one_db_route_and_phase_fold() {
        let a = set(&["SET", "k", "v"], 1, 0, Route::Any);
        for other in [
            set(&["SET", "k", "v", "PXAT", "1"], 2, 0, Route::Any),
            set(&["SET", "k", "v", "KEEPTTL"], 2, 0, Route::Any),
            set(&["INCR", "k", "v"], 2, 0, Route::Any),
            set(&["SET", "k", "v"], 2, 1, Route::Any),
            set(&["SET", "k", "v"], 2, 0, Route::Slot(7)),
        ] {
            assert!(!a.can_fold(&other), "{:?}", argv(&other));
        }
        let mut snapshot = set(&["SET", "k", "v"], 2, 0, Route::Any);
        snapshot.phase = Phase::Snapshot;
        assert!(!a.can_fold(&snapshot));
        let mut guarded = set(&["SET", "k", "v"], 2, 0, Route::Any);
        guarded.guard = Some(Guard {
            key: b"k".to_vec(),
            route: Route::Any,
            on_exists: OnBusy::Skip,
        });
        assert!(!a.can_fold(&guarded) && !guarded.can_fold(&a));
        let mut busy = set(&["SET", "k", "v"], 2, 0, Route::Any);
        if let Unit::Commands(c) = &mut busy.unit {
            c[0].on_busy = OnBusy::Skip;
        }
        assert!(!a.can_fold(&busy));
        let mut tx = set(&["SET", "k", "v"], 2, 0, Route::Any);
        tx.unit = Unit::Transaction(tx.unit.cmds().to_vec());
        assert!(!a.can_fold(&tx));
        // a fold stops growing at FOLD_MAX
        let mut f = set(&["SET", "k0", "v"], 0, 0, Route::Any);
        for i in 1..FOLD_MAX as u64 {
            let b = set(&["SET", "k", "v"], i, 0, Route::Any);
            f.fold(b);
        }
        assert_eq!(f.records(), FOLD_MAX);
        assert!(!f.can_fold(&set(&["SET", "k", "v"], 999, 0, Route::Any)));
        // a fold does not join another SET as if it were one
        assert!(!set(&["SET", "x", "y"], 0, 0, Route::Any).can_fold(&f));
    }
}
