//! Sending ops to the target: pipelined batches per node, every reply checked against the
//! command that caused it.
//!
//! A batch is written to every node it touches, flushed, then the replies are read in order.
//! Each reply is matched with the command that caused it: errors are counted and logged with
//! command, key and journal position; `MOVED` updates the slot map and the command is resent,
//! `ASK` resends once after `ASKING`, `TRYAGAIN`/`CLUSTERDOWN`/`LOADING` are retried with
//! backoff. Only when every command of a batch has a final reply does the batch count as
//! acknowledged (and the checkpoint may move past it).
//!
//! On a standalone target, stream batches are *atomic with their position*: they are sent as
//! `MULTI … SET <marker> <position> EXEC`, so after a crash of replay or a connection loss the
//! marker tells exactly whether the last batch was applied — a resumed replay never applies an
//! `INCR` twice. The marker key (`shake-replay:<journal id>:<shard>` in db 0) is deleted once
//! the checkpoint file holds the same position, so it does not stay in the data.
//!
//! On a cluster target a transaction may only touch one slot, so a stream batch is cut per
//! slot: one `MULTI … HSET <slot marker> <lane> <position> EXEC` for each slot it touches, on
//! the slot's owner (see [`super::partition`]). A `MOVED`, `ASK` or transient refusal of a
//! queued command sends that slot's transaction again (after the migration for `ASK`); a
//! command refused when queued (`EXECABORT`) is reported and the rest of its slot resent.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::journal::Position;
use crate::net::{ConnectOptions, Connection, Endpoint};
use crate::resp::Frame;

use super::error::{Error, Result};
use super::op::{Cmd, OnBusy, Op, Route, Unit};
use super::partition::{Marker, parse_marker};
use super::report::Stats;
use super::router::{Redirect, SlotMap, parse_redirect, split_addr};
use super::stream::first_key;

mod flush;
mod slots;
use slots::SlotRound;

/// Why a batch did not complete.
#[derive(Debug)]
pub enum Failure {
    /// The connection broke: reconnect and retry (the batch may be partly applied).
    Connection(Error),
    /// Stop the replay.
    Fatal(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Fatal(e)
    }
}

struct Node {
    conn: Connection,
    db: u32,
}

/// The target side of one shard's replay.
pub struct Writer {
    shard: String,
    endpoint: Endpoint,
    connect: ConnectOptions,
    map: SlotMap,
    nodes: HashMap<String, Node>,
    dry_run: bool,
    stats: Arc<Stats>,
    marker: Option<Marker>,
    /// Slots whose marker this lane wrote (cluster targets), deleted by [`Writer::clear_marker`].
    touched: BTreeSet<u16>,
    /// Commands routed per node in dry-run mode.
    pub dry_counts: BTreeMap<String, u64>,
    /// Rounds of resending refused commands before giving up, unless their slot is being
    /// migrated ([`Writer::pause`]).
    rounds: usize,
    /// Follow each node's slot transactions with `WAIT <its replicas>` ([`Writer::wait_replicas`]).
    wait_replicas: bool,
    /// Nodes whose replicas did not acknowledge a `WAIT` in time: not waited for again until
    /// the topology is read again ([`Writer::reset`]).
    lagging: HashSet<String>,
    /// What this lane's markers were acknowledged to hold by a node no replica of which is
    /// known to have it: per slot on a cluster target, `None` for a standalone target's lane
    /// marker — with the node and the position. Checked after every reconnection
    /// ([`Writer::verify_acknowledged`]); forgotten once a `WAIT` on that node confirms it, or
    /// when the markers are deleted.
    unverified: HashMap<Option<u16>, (String, Position)>,
    /// A reconnection happened since `unverified` was last checked.
    verify: bool,
    /// [`Stats::markers_dropped`] when `unverified` was recorded, and when the batch being
    /// read was sent: entries from before a flush are not evidence of anything.
    generation: u64,
    sent_generation: u64,
}

/// Which command of which op an item is (`cmd: None`: a whole transaction unit).
#[derive(Debug, Clone)]
struct Item {
    op: usize,
    cmd: Option<usize>,
    node: Option<String>,
    asking: bool,
    /// Send the command (a RESTORE refused with `BUSYKEY`) with `REPLACE` added
    /// ([`OnBusy::Replace`]).
    replace: bool,
}

enum Expect {
    Internal,
    /// The reply to `WAIT <n>` ([`Writer::wait_replicas`]).
    Wait(usize),
    Cmd(usize),
    Multi,
    Queued(usize),
    Exec(usize),
}

/// A batch written by [`Writer::begin`] whose replies are still to be read.
pub struct Pending {
    kind: PendingKind,
    n: u64,
    bytes: u64,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending({} commands)", self.n)
    }
}

enum PendingKind {
    Dry,
    Plain(Round),
    Atomic(AtomicRound),
    Slots(SlotRound),
}

struct Round {
    order: Vec<String>,
    expects: HashMap<String, Vec<(Expect, Option<Item>)>>,
}

struct AtomicRound {
    addr: String,
    expect: Vec<Option<(usize, usize)>>,
    dropped: HashSet<(usize, usize)>,
}

enum Outcome {
    Done,
    Retry(Item, bool),
}

/// The kind of an error reply: its first word, upper-cased (`WRONGTYPE`, `BUSYKEY` …).
pub(super) fn error_kind(msg: &str) -> String {
    msg.split_whitespace()
        .next()
        .unwrap_or("ERR")
        .to_ascii_uppercase()
}

impl Writer {
    /// A writer for `shard` (one lane of it). `marker` is this lane's marker when stream
    /// batches are atomic with their position; `None` disables it.
    pub fn new(
        shard: &str,
        endpoint: &Endpoint,
        connect: &ConnectOptions,
        map: SlotMap,
        dry_run: bool,
        stats: Arc<Stats>,
        marker: Option<Marker>,
    ) -> Writer {
        let atomic = !dry_run;
        Writer {
            shard: shard.to_string(),
            endpoint: endpoint.clone(),
            connect: connect.clone(),
            map,
            nodes: HashMap::new(),
            dry_run,
            stats,
            marker: if atomic { marker } else { None },
            touched: BTreeSet::new(),
            dry_counts: BTreeMap::new(),
            rounds: RETRY_ROUNDS,
            wait_replicas: false,
            lagging: HashSet::new(),
            unverified: HashMap::new(),
            verify: false,
            generation: 0,
            sent_generation: 0,
        }
    }

    /// On a cluster target whose masters have replicas, a round counts as acknowledged only
    /// once each master's replicas have it too (`WAIT <replicas> 1000` after the node's part of
    /// the round, snapshot keys and stream alike): a master killed outright and replaced by its
    /// replica then cannot take acknowledged writes with it — the ones it had not replicated
    /// are still in flight, and are resent after the failover (stream slot transactions only
    /// where the slot markers on the promoted replica say they are missing). Replicas that do not acknowledge within a second are warned about once per
    /// node, and the replay goes on.
    pub fn wait_replicas(mut self, on: bool) -> Writer {
        self.wait_replicas = on;
        self
    }

    /// Rounds of resending redirected or transiently refused commands before giving up (when
    /// their slot is not being migrated): twice `--max-retries`.
    pub fn patience(mut self, rounds: usize) -> Writer {
        self.rounds = rounds.max(1);
        self
    }

    /// Whether stream batches go out atomically with the marker.
    pub fn atomic(&self) -> bool {
        self.marker.is_some()
    }

    /// The slot map.
    pub fn map(&self) -> &SlotMap {
        &self.map
    }

    /// Replaces the slot map (after a topology refresh) and drops every connection.
    pub fn reset(&mut self, map: SlotMap) {
        self.map = map;
        self.lagging.clear();
        self.disconnect();
    }

    /// Drops every connection (after a failure). Before the next batch the target is asked
    /// whether it still holds what it acknowledged (see `verify_acknowledged`).
    pub fn disconnect(&mut self) {
        self.nodes.clear();
        self.verify = !self.unverified.is_empty();
    }

    /// After a reconnection: asks the target whether this lane's markers still hold the
    /// positions it acknowledged without a replica known to have them. A node restarted
    /// without its data, or a replica promoted in place of a master it had not caught up with,
    /// no longer holds writes replay counted as applied and will not send again: each such
    /// marker is reported as a failure of kind `lost` (exit 1), never passed over silently.
    /// A connection failure here is one like any other (the caller reconnects and asks again).
    async fn verify_acknowledged(&mut self) -> std::result::Result<(), Failure> {
        let Some(marker) = self.marker.clone() else {
            self.verify = false;
            return Ok(());
        };
        let generation = self.markers_generation();
        if generation != self.generation {
            self.unverified.clear();
            self.verify = false;
            return Ok(());
        }
        let mut now: Vec<(Option<u16>, Option<Position>)> = Vec::new();
        if self.unverified.contains_key(&None) {
            now.push((None, self.marker_position().await?));
        }
        let slots: Vec<u16> = self.unverified.keys().filter_map(|s| *s).collect();
        if !slots.is_empty() {
            let field = marker.lane.to_string().into_bytes();
            let replies = self
                .per_slot(&slots, |s| {
                    vec![b"HGET".to_vec(), marker.slot_key(s), field.clone()]
                })
                .await?;
            now.extend(
                replies
                    .into_iter()
                    .map(|(s, f)| (Some(s), f.as_str().and_then(parse_marker).map(|(p, _)| p))),
            );
        }
        self.verify = false;
        if self.markers_generation() != generation {
            // a flush ran meanwhile: what was read proves nothing
            self.unverified.clear();
            return Ok(());
        }
        for (slot, holds) in now {
            let Some((addr, acked)) = self.unverified.get(&slot).cloned() else {
                continue;
            };
            if holds.is_some_and(|h| h >= acked) {
                continue;
            }
            self.unverified.remove(&slot);
            let place = match slot {
                Some(s) => format!("slot {s} (lane {})", marker.lane),
                None => format!("lane {}", marker.lane),
            };
            let holds = holds.map_or("nothing".to_string(), |h| h.to_string());
            self.stats.fail(
                &self.shard,
                &addr,
                "lost",
                "-",
                None,
                acked,
                &format!(
                    "the target lost writes it had acknowledged: {place} was applied up to {acked} on {addr}, its marker now holds {holds} (a failover to a replica that had not received them, or a restart without the data); they are not sent again: replay into an emptied target to repair, `shake compare` shows the keys"
                ),
            );
        }
        Ok(())
    }

    /// Checks that the target still holds what this lane's markers were acknowledged to hold
    /// (see `verify_acknowledged`), before the markers are deleted: a node may have lost it
    /// without this lane noticing (no write to it since, so no broken connection).
    pub async fn verify_markers(&mut self) -> std::result::Result<(), Failure> {
        if self.unverified.is_empty() {
            return Ok(()); // nothing recorded (no markers, a dry run, or all replicated)
        }
        self.verify_acknowledged().await
    }

    /// Records that `slot`'s marker (`None`: the lane's) was acknowledged at `p` by `addr`.
    fn acknowledged(&mut self, slot: Option<u16>, addr: &str, p: Position) {
        if self.marker.is_none() || self.dry_run {
            return;
        }
        let now = self.markers_generation();
        if now != self.sent_generation {
            return; // a flush sent since this batch may have removed its marker
        }
        if now != self.generation {
            self.unverified.clear();
            self.generation = now;
        }
        self.unverified.insert(slot, (addr.to_string(), p));
    }

    fn markers_generation(&self) -> u64 {
        self.stats
            .markers_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes the batch about to be sent: counts it in [`Stats::markers_dropped`] first if it
    /// flushes.
    fn sending(&mut self, ops: &[Op]) {
        if !self.dry_run
            && ops
                .iter()
                .any(|o| o.unit.cmds().iter().any(super::partition::drops_markers))
        {
            self.stats
                .markers_dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.sent_generation = self.markers_generation();
    }

    async fn node(&mut self, addr: &str) -> std::result::Result<&mut Node, Failure> {
        if !self.nodes.contains_key(addr) {
            let (host, port) = split_addr(addr).ok_or_else(|| {
                Failure::Fatal(Error::Protocol {
                    addr: addr.into(),
                    what: "a node address that is not host:port".into(),
                })
            })?;
            let ep = self.endpoint.with_addr(host, port);
            let mut ep0 = ep.clone();
            ep0.db = 0;
            let conn = Connection::connect(&ep0, &self.connect)
                .await
                .map_err(|source| {
                    Failure::Connection(Error::Net {
                        addr: addr.into(),
                        cause: source,
                    })
                })?;
            self.nodes.insert(addr.to_string(), Node { conn, db: 0 });
        }
        Ok(self.nodes.get_mut(addr).expect("inserted"))
    }

    fn conn_err(addr: &str, source: crate::net::Error) -> Failure {
        Failure::Connection(Error::Net {
            addr: addr.to_string(),
            cause: source,
        })
    }

    async fn read(&mut self, addr: &str) -> std::result::Result<Frame, Failure> {
        let limit = self.connect.reply_timeout;
        let node = self.nodes.get_mut(addr).expect("node used in this batch");
        match node.conn.buffered_frame() {
            Ok(Some((f, _))) => return Ok(f),
            Ok(None) => {}
            Err(e) => return Err(Self::conn_err(addr, e)),
        }
        match tokio::time::timeout(limit, node.conn.read_frame()).await {
            Ok(Ok((f, _))) => Ok(f),
            Ok(Err(e)) => Err(Self::conn_err(addr, e)),
            Err(_) => Err(Self::conn_err(
                addr,
                crate::net::Error::Timeout {
                    addr: addr.to_string(),
                    what: "replies of a pipelined batch".into(),
                    secs: limit.as_secs_f64(),
                },
            )),
        }
    }

    /// Whether `key` exists (for a guarded op).
    pub async fn exists(
        &mut self,
        key: &[u8],
        route: Route,
        db: u32,
    ) -> std::result::Result<bool, Failure> {
        if self.dry_run {
            return Ok(false);
        }
        let addr = self.map.node(route);
        let node = self.node(&addr).await?;
        if node.db != db {
            node.conn
                .request(&[b"SELECT".as_slice(), db.to_string().as_bytes()])
                .await
                .map_err(|e| Self::conn_err(&addr, e))?;
            node.db = db;
        }
        let f = node
            .conn
            .request(&[b"EXISTS".as_slice(), key])
            .await
            .map_err(|e| Self::conn_err(&addr, e))?;
        Ok(f.as_int().unwrap_or(0) > 0)
    }

    /// The position the marker records (standalone targets), if any.
    async fn marker_position(&mut self) -> std::result::Result<Option<Position>, Failure> {
        let Some(marker) = self.marker.clone() else {
            return Ok(None);
        };
        let addr = self.map.node(Route::Any);
        let node = self.node(&addr).await?;
        if node.db != 0 {
            node.conn
                .request(&["SELECT", "0"])
                .await
                .map_err(|e| Self::conn_err(&addr, e))?;
            node.db = 0;
        }
        let f = node
            .conn
            .request(&[b"GET".as_slice(), &marker.key])
            .await
            .map_err(|e| Self::conn_err(&addr, e))?;
        Ok(f.as_str().and_then(parse_marker).map(|(p, _)| p))
    }

    /// The values of the marker keys `names` (db 0), `None` where absent: read once at start
    /// to find what each lane of an interrupted run applied.
    pub async fn read_markers(
        &mut self,
        names: &[Vec<u8>],
    ) -> std::result::Result<Vec<Option<String>>, Failure> {
        if self.dry_run || names.is_empty() {
            return Ok(vec![None; names.len()]);
        }
        let mut argv = vec![b"MGET".to_vec()];
        argv.extend(names.iter().cloned());
        let f = self.request_in_db0(&argv).await?;
        Ok(match f {
            Frame::Array(items) => items
                .into_iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect(),
            _ => vec![None; names.len()],
        })
    }

    /// Adds slots whose marker is to be deleted with this lane's own (markers an interrupted
    /// run left behind).
    pub fn touch(&mut self, slots: impl IntoIterator<Item = u16>) {
        self.touched.extend(slots);
    }

    /// Deletes the shard's markers (once the checkpoint file holds their positions): on a
    /// standalone target every lane's, by lane 0; on a cluster target the slot markers this
    /// lane wrote (every lane is asked).
    pub async fn clear_marker(&mut self) -> std::result::Result<(), Failure> {
        let Some(marker) = self.marker.clone() else {
            return Ok(());
        };
        if self.dry_run {
            return Ok(());
        }
        // no longer tracked: the checkpoint file holds it now (checked just before,
        // `verify_markers`)
        self.unverified.clear();
        self.verify = false;
        if self.map.is_cluster() {
            let slots: Vec<u16> = self.touched.iter().copied().collect();
            self.per_slot(&slots, |s| vec![b"DEL".to_vec(), marker.slot_key(s)])
                .await?;
            self.touched.clear();
            return Ok(());
        }
        if marker.lane != 0 {
            return Ok(());
        }
        let mut argv = vec![b"DEL".to_vec()];
        argv.extend(marker.family.iter().cloned());
        self.request_in_db0(&argv).await?;
        Ok(())
    }

    /// Sends one command outside the pipeline to a node in database 0, where the markers live
    /// (`Route::Any`: on a cluster, the markers' node).
    async fn request_in_db0(&mut self, argv: &[Vec<u8>]) -> std::result::Result<Frame, Failure> {
        let addr = self.map.node(Route::Any);
        self.request_at(&addr, 0, argv).await
    }

    /// Sends one command outside the pipeline to node `addr` in database `db`.
    async fn request_at<A: AsRef<[u8]>>(
        &mut self,
        addr: &str,
        db: u32,
        argv: &[A],
    ) -> std::result::Result<Frame, Failure> {
        let node = self.node(addr).await?;
        if node.db != db {
            node.conn
                .request(&[b"SELECT".as_slice(), db.to_string().as_bytes()])
                .await
                .map_err(|e| Self::conn_err(addr, e))?;
            node.db = db;
        }
        node.conn
            .request(argv)
            .await
            .map_err(|e| Self::conn_err(addr, e))
    }

    fn record_error(&self, addr: &str, op: &Op, cmd: &Cmd, msg: &str) -> Result<()> {
        let kind = error_kind(msg);
        if kind == "BUSYKEY" || msg.contains("already exists") {
            match cmd.on_busy {
                OnBusy::Skip => {
                    self.stats
                        .skipped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(());
                }
                OnBusy::Stop => {
                    return Err(Error::Conflict {
                        addr: addr.to_string(),
                        shard: self.shard.clone(),
                        key: op
                            .key
                            .as_deref()
                            .map(super::error::printable_key)
                            .unwrap_or_else(|| "-".into()),
                        db: op.db,
                        position: op.position,
                    });
                }
                OnBusy::Fail | OnBusy::Replace => {}
            }
        }
        if !op.folded.is_empty() {
            // MSET applies all its keys or none: each folded SET failed, at its own position
            let n = op.folded.len();
            let msg = format!(
                "{msg} (one MSET carried this SET and {} others: none applied)",
                n - 1
            );
            for (i, position) in op.folded.iter().enumerate() {
                self.stats.fail(
                    &self.shard,
                    addr,
                    &kind,
                    "SET",
                    op.folded_key(i),
                    *position,
                    &msg,
                );
            }
            return Ok(());
        }
        let key = first_key(&cmd.argv).or(op.key.as_deref());
        self.stats
            .fail(&self.shard, addr, &kind, &cmd.name(), key, op.position, msg);
        Ok(())
    }

    /// Sends `ops` and checks every reply: [`Writer::begin`] then [`Writer::finish`].
    pub async fn execute(&mut self, ops: &[Op]) -> std::result::Result<(), Failure> {
        let p = self.begin(ops).await?;
        self.finish(ops, p).await
    }

    /// Writes `ops` to the target without waiting for the replies, so the next batch can be
    /// written while the server works on this one. Atomic batches are used for stream ops on a
    /// standalone target; otherwise commands are pipelined per node.
    pub async fn begin(&mut self, ops: &[Op]) -> std::result::Result<Pending, Failure> {
        if self.verify {
            self.verify_acknowledged().await?;
        }
        self.sending(ops);
        let n: u64 = ops.iter().map(|o| o.len() as u64).sum();
        let bytes: u64 = ops.iter().map(Op::wire_len).sum();
        let kind = if self.dry_run {
            for op in ops {
                for c in op.unit.cmds() {
                    let targets = match c.route {
                        Route::All => self.map.masters(),
                        r => vec![self.map.node(r)],
                    };
                    for t in targets {
                        *self.dry_counts.entry(t).or_default() += 1;
                    }
                }
            }
            PendingKind::Dry
        } else if n == 0 {
            PendingKind::Dry
        } else if let Some((db, flush)) = flush::of(ops) {
            self.flush_slots(db, flush).await?;
            PendingKind::Dry
        } else if self.atomic() && !self.map.is_cluster() && all_stream(ops) {
            PendingKind::Atomic(self.send_atomic(ops, HashSet::new()).await?)
        } else if let Some(groups) = self.slot_groups(ops) {
            PendingKind::Slots(self.send_slots(ops, groups).await?)
        } else {
            let items = self.items_of(ops);
            PendingKind::Plain(self.send_round(ops, items).await?)
        };
        Ok(Pending { kind, n, bytes })
    }

    /// Reads and checks the replies of a batch [`Writer::begin`] wrote, resending what was
    /// redirected or refused for a transient reason.
    pub async fn finish(&mut self, ops: &[Op], p: Pending) -> std::result::Result<(), Failure> {
        match p.kind {
            PendingKind::Dry => {}
            PendingKind::Atomic(r) => {
                let addr = r.addr.clone();
                if let Some(dropped) = self.read_atomic(ops, r).await? {
                    tracing::warn!(shard = %self.shard, "a batch was refused by EXEC (commands rejected when queued, reported above): sending the rest again");
                    let r = self.send_atomic(ops, dropped).await?;
                    if self.read_atomic(ops, r).await?.is_some() {
                        let last = ops.last().map(|o| o.position).unwrap_or_default();
                        return Err(Failure::Fatal(Error::Protocol {
                            addr: self.map.node(Route::Any),
                            what: format!("a batch ending at {last} was refused twice by EXEC"),
                        }));
                    }
                }
                if let Some(last) = ops.last() {
                    self.acknowledged(None, &addr, last.position);
                }
            }
            PendingKind::Plain(round) => self.finish_plain(ops, round).await?,
            PendingKind::Slots(round) => self.finish_slots(ops, round).await?,
        }
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.commands.fetch_add(p.n, Relaxed);
        self.stats.bytes.fetch_add(p.bytes, Relaxed);
        Ok(())
    }

    /// Sends `ops` again after a broken connection, leaving out what the target shows applied:
    /// an atomic batch its marker covers (standalone), the slot transactions whose slot marker
    /// covers them (cluster). Without markers everything is sent again.
    pub async fn resend(&mut self, ops: &[Op]) -> std::result::Result<(), Failure> {
        if self.verify {
            self.verify_acknowledged().await?;
        }
        if self.atomic() && !self.map.is_cluster() && all_stream(ops) {
            let last = ops.last().map(|o| o.position).unwrap_or_default();
            if self.marker_position().await?.is_some_and(|m| m >= last) {
                return Ok(()); // applied before the connection broke
            }
        } else if let Some(groups) = self.slot_groups(ops) {
            self.sending(ops);
            let groups = self.unapplied(groups).await?;
            let n = groups.iter().map(|g| g.cmds.len() as u64).sum();
            let bytes = groups
                .iter()
                .flat_map(|g| &g.cmds)
                .map(|&(i, j)| ops[i].unit.cmds()[j].wire_len())
                .sum();
            let kind = PendingKind::Slots(self.send_slots(ops, groups).await?);
            return self.finish(ops, Pending { kind, n, bytes }).await;
        }
        self.execute(ops).await
    }

    /// Replicas of node `addr` to `WAIT` for after a round (0: none, or not asked to).
    fn replicas_to_wait(&self, addr: &str) -> usize {
        if self.wait_replicas && !self.lagging.contains(addr) {
            self.map.replicas(addr)
        } else {
            0
        }
    }

    /// Checks the reply to `WAIT <n>` on `addr`. Fewer replicas than asked (one down, or far
    /// behind): warned about, and the node's replicas are not waited for again until the
    /// topology is read again (a refresh after a connection failure) — waiting a second per
    /// round would stall the replay.
    fn replicated(&mut self, addr: &str, n: usize, reply: &Frame) -> bool {
        let all = matches!(reply, Frame::Integer(k) if *k >= n as i64);
        if all {
            // everything this connection wrote before the WAIT is on every replica
            self.unverified.retain(|_, (a, _)| a != addr);
        }
        if !all && self.lagging.insert(addr.to_string()) {
            tracing::warn!(
                shard = %self.shard,
                node = %addr,
                "its {n} replica(s) did not all acknowledge within {WAIT_MS} ms ({reply:?}): no longer waited for until the topology is read again; writes not yet replicated would be lost if it failed now (replay would report them, kind `lost`)"
            );
        }
        all
    }

    /// The error after the rounds of redirections or transient refusals ran out.
    fn still_refused(&self, position: Position, rounds: usize) -> Failure {
        Failure::Fatal(Error::Protocol {
            addr: self.map.node(Route::Any),
            what: format!(
                "shard {}: commands at {position} still redirected or refused after {rounds} attempts",
                self.shard
            ),
        })
    }

    /// Before resending what was refused (commands at `position`, in `slots`): waits with
    /// backoff when a transient state was seen (`wait`), and decides whether to go on. After
    /// [`Writer::patience`] rounds it goes on only while one of the slots is being migrated
    /// (`CLUSTER NODES` of its owner shows it): Redis refuses multi-key commands and slot
    /// transactions on a slot half moved (`TRYAGAIN`) until the migration ends, however long
    /// it takes — a warning says so every 30 s. Anything else is an error then.
    async fn pause(
        &mut self,
        p: &mut Patience,
        slots: BTreeSet<u16>,
        wait: bool,
        position: Position,
    ) -> std::result::Result<(), Failure> {
        p.rounds += 1;
        if p.rounds > self.rounds {
            let Some((slot, other)) = self.migration(&slots).await? else {
                if p.warned.take().is_some() {
                    // the migration just ended: what it held back gets its rounds afresh
                    p.rounds = 1;
                    p.backoff = Duration::from_millis(100);
                    return Ok(());
                }
                return Err(self.still_refused(position, p.rounds - 1));
            };
            if p.warned
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(30))
            {
                p.warned = Some(std::time::Instant::now());
                tracing::warn!(
                    shard = %self.shard,
                    %position,
                    "slot {slot} is being migrated ({} ↔ {other}) on the target: its commands wait for the migration to end",
                    self.map.node(Route::Slot(slot))
                );
            }
        }
        if wait {
            tokio::time::sleep(p.backoff).await;
            p.backoff = (p.backoff * 2).min(Duration::from_secs(2));
        }
        Ok(())
    }

    /// A slot of `slots` its owner reports migrating or importing, with the other node.
    async fn migration(
        &mut self,
        slots: &BTreeSet<u16>,
    ) -> std::result::Result<Option<(u16, String)>, Failure> {
        if !self.map.is_cluster() {
            return Ok(None);
        }
        let owners: BTreeSet<String> = slots
            .iter()
            .map(|s| self.map.node(Route::Slot(*s)))
            .collect();
        for addr in owners {
            let node = self.node(&addr).await?;
            let f = node
                .conn
                .request(&["CLUSTER", "NODES"])
                .await
                .map_err(|e| Self::conn_err(&addr, e))?;
            let text = String::from_utf8_lossy(f.as_bytes().unwrap_or_default()).into_owned();
            if let Some(m) = crate::net::topology::migrations(&text)
                .into_iter()
                .find(|(s, _)| slots.contains(s))
            {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }

    async fn send_atomic(
        &mut self,
        ops: &[Op],
        dropped: HashSet<(usize, usize)>,
    ) -> std::result::Result<AtomicRound, Failure> {
        let marker = self.marker.clone().expect("atomic has a marker");
        let last = ops.last().map(|o| o.position).unwrap_or_default();
        let addr = self.map.node(Route::Any);
        let node = self.node(&addr).await?;
        let mut expect: Vec<Option<(usize, usize)>> = Vec::new();
        node.conn.queue(&["MULTI"]);
        let mut db = node.db;
        for (i, op) in ops.iter().enumerate() {
            if db != op.db {
                node.conn
                    .queue(&[b"SELECT".as_slice(), op.db.to_string().as_bytes()]);
                expect.push(None);
            }
            for (j, c) in op.unit.cmds().iter().enumerate() {
                if dropped.contains(&(i, j)) {
                    continue;
                }
                queue(&mut node.conn, c);
                expect.push(Some((i, j)));
            }
            db = op.end_db;
        }
        node.conn.queue(&["SELECT", "0"]);
        expect.push(None);
        let pos = marker.value(last);
        node.conn
            .queue(&[b"SET".as_slice(), &marker.key, pos.as_bytes()]);
        expect.push(None);
        node.conn.queue(&["EXEC"]);
        node.db = 0;
        node.conn
            .flush()
            .await
            .map_err(|e| Self::conn_err(&addr, e))?;
        Ok(AtomicRound {
            addr,
            expect,
            dropped,
        })
    }

    /// `None`: applied. `Some(dropped)`: EXEC refused it (nothing applied); the commands
    /// rejected when queued are reported and listed.
    async fn read_atomic(
        &mut self,
        ops: &[Op],
        r: AtomicRound,
    ) -> std::result::Result<Option<HashSet<(usize, usize)>>, Failure> {
        let AtomicRound {
            addr,
            expect,
            mut dropped,
        } = r;
        let f = self.read(&addr).await?;
        if let Frame::Error(m) = f {
            return Err(Failure::Fatal(Error::Protocol {
                addr: addr.clone(),
                what: format!("MULTI refused: {}", String::from_utf8_lossy(&m)),
            }));
        }
        let mut queue_errors = Vec::new();
        for e in &expect {
            if let Frame::Error(m) = self.read(&addr).await? {
                queue_errors.push((*e, String::from_utf8_lossy(&m).into_owned()));
            }
        }
        let exec = self.read(&addr).await?;
        match exec {
            Frame::Array(items) if queue_errors.is_empty() => {
                for (e, f) in expect.iter().zip(items) {
                    if let (Some((i, j)), Frame::Error(m)) = (e, f) {
                        let op = &ops[*i];
                        self.record_error(
                            &addr,
                            op,
                            &op.unit.cmds()[*j],
                            &String::from_utf8_lossy(&m),
                        )?;
                    }
                }
                Ok(None)
            }
            _ => {
                let mut internal = None;
                for (e, m) in queue_errors {
                    match e {
                        Some((i, j)) => {
                            let op = &ops[i];
                            self.record_error(&addr, op, &op.unit.cmds()[j], &m)?;
                            dropped.insert((i, j));
                        }
                        None => internal = Some(m),
                    }
                }
                if let Some(m) = internal {
                    return Err(Failure::Fatal(Error::Protocol {
                        addr,
                        what: format!("the replay marker could not be written: {m}"),
                    }));
                }
                Ok(Some(dropped))
            }
        }
    }

    fn items_of(&self, ops: &[Op]) -> Vec<Item> {
        let mut items: Vec<Item> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match &op.unit {
                Unit::Commands(cmds) => {
                    for (j, c) in cmds.iter().enumerate() {
                        if c.route == Route::All && self.map.is_cluster() {
                            for m in self.map.masters() {
                                items.push(Item {
                                    op: i,
                                    cmd: Some(j),
                                    node: Some(m),
                                    asking: false,
                                    replace: false,
                                });
                            }
                        } else {
                            items.push(Item {
                                op: i,
                                cmd: Some(j),
                                node: None,
                                asking: false,
                                replace: false,
                            });
                        }
                    }
                }
                Unit::Transaction(_) => items.push(Item {
                    op: i,
                    cmd: None,
                    node: None,
                    asking: false,
                    replace: false,
                }),
            }
        }
        items
    }

    async fn finish_plain(&mut self, ops: &[Op], round: Round) -> std::result::Result<(), Failure> {
        let (mut items, mut wait) = self.read_round(ops, round).await?;
        let mut patience = Patience::default();
        while !items.is_empty() {
            // keep the journal order among retried commands
            items.sort_by_key(|it| (it.op, it.cmd));
            let slots = items
                .iter()
                .filter_map(|it| {
                    let cmds = ops[it.op].unit.cmds();
                    match cmds.get(it.cmd.unwrap_or(0)).map(|c| c.route) {
                        Some(Route::Slot(s)) => Some(s),
                        _ => None,
                    }
                })
                .collect();
            let position = ops[items[0].op].position;
            self.pause(&mut patience, slots, wait, position).await?;
            let round = self.send_round(ops, items).await?;
            (items, wait) = self.read_round(ops, round).await?;
        }
        Ok(())
    }

    /// Groups items by the node their route leads to, keeping order (cluster targets).
    fn group(&self, ops: &[Op], items: Vec<Item>) -> ByNode<Item> {
        by_node(items, |it| {
            it.node.clone().unwrap_or_else(|| {
                let op = &ops[it.op];
                let route = match it.cmd {
                    Some(j) => op.unit.cmds()[j].route,
                    None => op.unit.cmds().first().map_or(Route::Any, |c| c.route),
                };
                self.map.node(route)
            })
        })
    }

    async fn send_round(
        &mut self,
        ops: &[Op],
        items: Vec<Item>,
    ) -> std::result::Result<Round, Failure> {
        // group by node, keeping order
        let (order, per_node) = if !self.map.is_cluster() {
            // one node: no routing to do per command
            let addr = self.map.node(Route::Any);
            (vec![addr.clone()], HashMap::from([(addr, items)]))
        } else {
            self.group(ops, items)
        };
        let mut expects: HashMap<String, Vec<(Expect, Option<Item>)>> = HashMap::new();
        for addr in &order {
            let list = &per_node[addr];
            let replicas = self.replicas_to_wait(addr);
            let node = self.node(addr).await?;
            let mut ex = Vec::new();
            for it in list {
                let op = &ops[it.op];
                if node.db != op.db {
                    node.conn
                        .queue(&[b"SELECT".as_slice(), op.db.to_string().as_bytes()]);
                    ex.push((Expect::Internal, None));
                    node.db = op.db;
                }
                if it.asking {
                    node.conn.queue(&["ASKING"]);
                    ex.push((Expect::Internal, None));
                }
                match it.cmd {
                    Some(j) => {
                        let c = &op.unit.cmds()[j];
                        match c.wire.as_deref().filter(|_| it.replace) {
                            Some(w) => {
                                let again = super::snapshot::with_replace(w).ok_or_else(|| {
                                    Failure::Fatal(Error::Protocol {
                                        addr: addr.clone(),
                                        what: format!(
                                            "a RESTORE at {} could not be given REPLACE",
                                            op.position
                                        ),
                                    })
                                })?;
                                node.conn.queue_raw(&again);
                            }
                            None => queue(&mut node.conn, c),
                        }
                        ex.push((Expect::Cmd(j), Some(it.clone())));
                    }
                    None => {
                        node.conn.queue(&["MULTI"]);
                        ex.push((Expect::Multi, Some(it.clone())));
                        for (j, c) in op.unit.cmds().iter().enumerate() {
                            queue(&mut node.conn, c);
                            ex.push((Expect::Queued(j), Some(it.clone())));
                        }
                        node.conn.queue(&["EXEC"]);
                        ex.push((Expect::Exec(it.op), Some(it.clone())));
                        node.db = op.end_db;
                    }
                }
            }
            if replicas > 0 {
                queue_wait(&mut node.conn, replicas);
                ex.push((Expect::Wait(replicas), None));
            }
            node.conn
                .flush()
                .await
                .map_err(|e| Self::conn_err(addr, e))?;
            expects.insert(addr.clone(), ex);
        }
        Ok(Round { order, expects })
    }

    async fn read_round(
        &mut self,
        ops: &[Op],
        round: Round,
    ) -> std::result::Result<(Vec<Item>, bool), Failure> {
        let Round { order, mut expects } = round;
        let mut items = Vec::new();
        let mut wait = false;
        for addr in &order {
            let ex = expects.remove(addr).unwrap_or_default();
            let mut unit_retry: Option<(Item, bool)> = None;
            let mut queued_errors: Vec<(usize, String)> = Vec::new();
            for (e, it) in ex {
                let f = self.read(addr).await?;
                match e {
                    Expect::Wait(n) => {
                        self.replicated(addr, n, &f);
                    }
                    Expect::Internal => {
                        if let Frame::Error(m) = f {
                            let m = String::from_utf8_lossy(&m).into_owned();
                            return Err(Failure::Fatal(Error::Protocol {
                                addr: addr.clone(),
                                what: format!("SELECT/ASKING refused: {m}"),
                            }));
                        }
                    }
                    Expect::Cmd(j) => {
                        let it = it.expect("cmd item");
                        match self.check(addr, ops, &it, j, f)? {
                            Outcome::Done => {}
                            Outcome::Retry(it, w) => {
                                wait |= w;
                                items.push(it);
                            }
                        }
                    }
                    Expect::Multi => {
                        unit_retry = None;
                        queued_errors.clear();
                    }
                    Expect::Queued(j) => {
                        if let Frame::Error(m) = f {
                            let m = String::from_utf8_lossy(&m).into_owned();
                            let it = it.expect("unit item");
                            match self.redirect_or_wait(&m, it.clone()) {
                                Some((r, w)) => unit_retry = Some((r, w)),
                                None => queued_errors.push((j, m)),
                            }
                        }
                    }
                    Expect::Exec(i) => {
                        let it = it.expect("unit item");
                        if let Some((r, w)) = unit_retry.take() {
                            wait |= w;
                            items.push(r);
                            continue;
                        }
                        let op = &ops[i];
                        for (j, m) in queued_errors.drain(..) {
                            self.record_error(addr, op, &op.unit.cmds()[j], &m)?;
                        }
                        match f {
                            Frame::Array(replies) => {
                                for (j, r) in replies.into_iter().enumerate() {
                                    if let Frame::Error(m) = r {
                                        let m = String::from_utf8_lossy(&m).into_owned();
                                        self.record_error(addr, op, &op.unit.cmds()[j], &m)?;
                                    }
                                }
                            }
                            Frame::Error(m) => {
                                let m = String::from_utf8_lossy(&m).into_owned();
                                if let Some((r, w)) = self.redirect_or_wait(&m, it) {
                                    wait |= w;
                                    items.push(r);
                                } else if !m.starts_with("EXECABORT") {
                                    let c = Cmd::new(
                                        vec![bytes::Bytes::from_static(b"EXEC")],
                                        Route::Any,
                                    );
                                    self.record_error(addr, op, &c, &m)?;
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok((items, wait))
    }

    /// For a redirect or a transient cluster state: the item to retry and whether to wait.
    fn redirect_or_wait(&mut self, msg: &str, mut it: Item) -> Option<(Item, bool)> {
        if it.cmd.is_some()
            && let Some(Redirect::Ask { addr, .. }) = parse_redirect(msg)
        {
            self.stats
                .redirects
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            it.node = Some(addr);
            it.asking = true;
            return Some((it, false));
        }
        let wait = self.unit_redirect(msg)?;
        it.node = None;
        it.asking = false;
        Some((it, wait))
    }

    /// For a transaction (or a marker read) refused by a redirect or a transient cluster state:
    /// whether to wait before sending it again (`None`: another error). `MOVED` updates the
    /// map; a transaction cannot be `ASK`ed as a whole, so `ASK` waits for the migration.
    fn unit_redirect(&mut self, msg: &str) -> Option<bool> {
        match parse_redirect(msg) {
            Some(Redirect::Moved { slot, addr }) => {
                self.stats
                    .redirects
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.map.set(slot, &addr);
                Some(false)
            }
            Some(Redirect::Ask { .. }) => {
                self.stats
                    .redirects
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(true)
            }
            None => transient(msg).then_some(true),
        }
    }

    fn check(
        &mut self,
        addr: &str,
        ops: &[Op],
        it: &Item,
        j: usize,
        f: Frame,
    ) -> std::result::Result<Outcome, Failure> {
        let Frame::Error(m) = f else {
            return Ok(Outcome::Done);
        };
        let m = String::from_utf8_lossy(&m).into_owned();
        if let Some((r, w)) = self.redirect_or_wait(&m, it.clone()) {
            return Ok(Outcome::Retry(r, w));
        }
        let op = &ops[it.op];
        let cmd = &op.unit.cmds()[j];
        if cmd.on_busy == OnBusy::Replace && !it.replace && error_kind(&m) == "BUSYKEY" {
            // the key exists: replaced, as the policy says (sent again with REPLACE)
            self.stats
                .replaced
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut again = it.clone();
            again.replace = true;
            return Ok(Outcome::Retry(again, false));
        }
        self.record_error(addr, op, cmd, &m)?;
        Ok(Outcome::Done)
    }
}

/// Whether an error reply says the cluster is in a passing state (a slot being migrated, a
/// failover, a node loading its data): the command is sent again after a wait.
pub(super) fn transient(msg: &str) -> bool {
    matches!(
        error_kind(msg).as_str(),
        "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "MASTERDOWN"
    )
}

/// Things to send, grouped by the node they go to: the nodes in order of first appearance,
/// and each node's things in their order.
type ByNode<T> = (Vec<String>, HashMap<String, Vec<T>>);

/// Groups `things` by `addr(thing)`, keeping order (see [`ByNode`]).
fn by_node<T>(
    things: impl IntoIterator<Item = T>,
    mut addr: impl FnMut(&T) -> String,
) -> ByNode<T> {
    let mut order: Vec<String> = Vec::new();
    let mut per_node: HashMap<String, Vec<T>> = HashMap::new();
    for t in things {
        let a = addr(&t);
        if !per_node.contains_key(&a) {
            order.push(a.clone());
        }
        per_node.entry(a).or_default().push(t);
    }
    (order, per_node)
}

/// How long a `WAIT` for a master's replicas may block (ms).
const WAIT_MS: u64 = 1000;

/// Rounds of resending redirected or transiently refused commands before giving up, by default
/// (about two minutes of backoff; see [`Writer::patience`]).
const RETRY_ROUNDS: usize = 60;

/// Where a writer is in resending refused commands ([`Writer::pause`]).
#[derive(Debug)]
struct Patience {
    rounds: usize,
    backoff: Duration,
    warned: Option<std::time::Instant>,
}

impl Default for Patience {
    fn default() -> Self {
        Patience {
            rounds: 0,
            backoff: Duration::from_millis(100),
            warned: None,
        }
    }
}

/// Whether every op of a batch is of the command stream (the phase batches are atomic in).
fn all_stream(ops: &[Op]) -> bool {
    ops.iter()
        .all(|o| o.phase == super::checkpoint::Phase::Stream)
}

/// Queues `WAIT <replicas> <WAIT_MS>` on `conn`.
fn queue_wait(conn: &mut crate::net::Connection, replicas: usize) {
    conn.queue(&["WAIT", &replicas.to_string(), &WAIT_MS.to_string()]);
}

/// Queues `c` on `conn`: its RESP bytes as they are when it was built encoded, else its
/// arguments.
fn queue(conn: &mut crate::net::Connection, c: &Cmd) {
    match &c.wire {
        Some(w) => conn.queue_raw(w),
        None => conn.queue(&c.argv),
    }
}
