//! Stream batches onto a cluster target, atomic with their position per slot: a transaction
//! on a cluster may only touch one slot, so a batch is cut per slot and each slot's commands
//! go as one `MULTI … HSET <slot marker> <lane> <position> EXEC` on the slot's owner (see
//! [`crate::replay::partition`] for the markers and why this is exact). Also the marker reads
//! that a resume and a resend need.

use std::collections::HashMap;

use crate::journal::Position;
use crate::resp::Frame;

use super::{Failure, Patience, Writer, all_stream, by_node, queue, queue_wait};
use crate::replay::error::Error;
use crate::replay::op::{Op, Route};
use crate::replay::partition::parse_marker;
use crate::replay::router::{Redirect, parse_redirect};

/// The commands of one slot in an atomic batch on a cluster target, by (op, command) index:
/// sent as one transaction with the slot's marker set to `last`.
#[derive(Debug, Clone)]
pub(super) struct SlotGroup {
    pub(super) slot: u16,
    pub(super) cmds: Vec<(usize, usize)>,
    pub(super) last: Position,
}

/// Slot transactions written, per node in the order written.
pub(super) struct SlotRound {
    order: Vec<String>,
    per_node: HashMap<String, Vec<SlotGroup>>,
    /// Nodes whose transactions are followed by `WAIT <n>`, with `n`.
    waits: HashMap<String, usize>,
}

impl Writer {
    /// Every slot marker of the shard on a cluster target (one `HGETALL` per slot, on its
    /// owner): `(slot, lane, value)` for each field found. Read once at start to find what each
    /// lane of an interrupted run applied.
    pub async fn read_slot_markers(
        &mut self,
    ) -> std::result::Result<Vec<(u16, usize, String)>, Failure> {
        let Some(marker) = self.marker.clone() else {
            return Ok(Vec::new());
        };
        let slots: Vec<u16> = (0..crate::net::slot::SLOTS).collect();
        let replies = self
            .per_slot(&slots, |s| vec![b"HGETALL".to_vec(), marker.slot_key(s)])
            .await?;
        let mut found = Vec::new();
        for (slot, f) in replies {
            let Frame::Array(items) = f else { continue };
            for pair in items.chunks(2) {
                if let [k, v] = pair
                    && let (Some(lane), Some(v)) =
                        (k.as_str().and_then(|k| k.parse().ok()), v.as_str())
                {
                    found.push((slot, lane, v.to_string()));
                }
            }
        }
        Ok(found)
    }

    /// Sends `command(slot)` (one key, in the slot) for each of `slots` to the slot's owner,
    /// pipelined per node, and returns the replies. `ASK` (the slot is being migrated and the
    /// key is not on its owner) is followed: `ASKING` and the command on the importing node.
    /// `MOVED` means the map is stale: a connection failure, so the caller refreshes the
    /// topology and tries again.
    pub(super) async fn per_slot(
        &mut self,
        slots: &[u16],
        command: impl Fn(u16) -> Vec<Vec<u8>>,
    ) -> std::result::Result<Vec<(u16, Frame)>, Failure> {
        let (order, per_node) = by_node(slots.iter().copied(), |&s| self.map.node(Route::Slot(s)));
        let mut out = Vec::with_capacity(slots.len());
        let mut asked: Vec<(u16, String)> = Vec::new();
        for addr in &order {
            let node = self.node(addr).await?;
            for &s in &per_node[addr] {
                node.conn.queue(&command(s));
            }
            node.conn
                .flush()
                .await
                .map_err(|e| Self::conn_err(addr, e))?;
            for &s in &per_node[addr] {
                let f = self.read(addr).await?;
                if let Frame::Error(m) = &f {
                    let m = String::from_utf8_lossy(m).into_owned();
                    if let Some(Redirect::Ask { addr: to, .. }) = parse_redirect(&m) {
                        asked.push((s, to));
                        continue;
                    }
                    return Err(self.marker_failure(addr, &m));
                }
                out.push((s, f));
            }
        }
        for (s, to) in asked {
            let node = self.node(&to).await?;
            node.conn.queue(&["ASKING"]);
            node.conn.queue(&command(s));
            node.conn
                .flush()
                .await
                .map_err(|e| Self::conn_err(&to, e))?;
            let mut reply = Frame::Null;
            for _ in ["ASKING", "the command"] {
                reply = self.read(&to).await?;
                if let Frame::Error(m) = &reply {
                    let m = String::from_utf8_lossy(m).into_owned();
                    return Err(self.marker_failure(&to, &m));
                }
            }
            out.push((s, reply));
        }
        Ok(out)
    }

    /// A marker command refused by `addr` with `m`: a redirection or transient state is a
    /// connection failure (the caller refreshes the topology and retries), anything else fatal.
    fn marker_failure(&mut self, addr: &str, m: &str) -> Failure {
        let e = Error::Protocol {
            addr: addr.to_string(),
            what: format!("a replay marker could not be read or deleted: {m}"),
        };
        if self.unit_redirect(m).is_some() {
            Failure::Connection(e)
        } else {
            Failure::Fatal(e)
        }
    }

    /// A stream batch for a cluster target cut per slot (in order of first appearance), when
    /// batches are atomic and every command has a slot; `None` otherwise (a keyless barrier
    /// such as `FLUSHALL` goes as it is: the dispatcher saves the checkpoint around it).
    pub(super) fn slot_groups(&self, ops: &[Op]) -> Option<Vec<SlotGroup>> {
        if !self.atomic() || !self.map.is_cluster() || !all_stream(ops) {
            return None;
        }
        let mut groups: Vec<SlotGroup> = Vec::new();
        let mut index: HashMap<u16, usize> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            for (j, c) in op.unit.cmds().iter().enumerate() {
                let Route::Slot(slot) = c.route else {
                    return None;
                };
                let g = *index.entry(slot).or_insert_with(|| {
                    groups.push(SlotGroup {
                        slot,
                        cmds: Vec::new(),
                        last: op.position,
                    });
                    groups.len() - 1
                });
                groups[g].cmds.push((i, j));
                groups[g].last = op.position;
            }
        }
        Some(groups)
    }

    /// The groups whose slot marker does not yet cover them (after a broken connection).
    pub(super) async fn unapplied(
        &mut self,
        groups: Vec<SlotGroup>,
    ) -> std::result::Result<Vec<SlotGroup>, Failure> {
        let marker = self.marker.clone().expect("slot groups have a marker");
        let field = marker.lane.to_string().into_bytes();
        let slots: Vec<u16> = groups.iter().map(|g| g.slot).collect();
        let replies: HashMap<u16, Frame> = self
            .per_slot(&slots, |s| {
                vec![b"HGET".to_vec(), marker.slot_key(s), field.clone()]
            })
            .await?
            .into_iter()
            .collect();
        Ok(groups
            .into_iter()
            .filter(|g| {
                let applied = replies
                    .get(&g.slot)
                    .and_then(Frame::as_str)
                    .and_then(parse_marker)
                    .is_some_and(|(p, _)| p >= g.last);
                !applied
            })
            .collect())
    }

    /// Writes one transaction per slot group on the slot's owner: `MULTI`, the commands,
    /// `HSET <slot marker> <lane> <position>`, `EXEC`.
    pub(super) async fn send_slots(
        &mut self,
        ops: &[Op],
        groups: Vec<SlotGroup>,
    ) -> std::result::Result<SlotRound, Failure> {
        let marker = self.marker.clone().expect("slot groups have a marker");
        let field = marker.lane.to_string();
        // a transaction sent may be applied even if its reply is never read (a kill, a
        // failover): its slot's marker is this lane's to delete from now on (regression: slot
        // markers left behind after a master was killed mid-replay)
        self.touched.extend(groups.iter().map(|g| g.slot));
        let (order, per_node) = by_node(groups, |g| self.map.node(Route::Slot(g.slot)));
        let mut waits = HashMap::new();
        for addr in &order {
            let node = self.node(addr).await?;
            for g in &per_node[addr] {
                node.conn.queue(&["MULTI"]);
                for &(i, j) in &g.cmds {
                    queue(&mut node.conn, &ops[i].unit.cmds()[j]);
                }
                let value = marker.value(g.last);
                node.conn.queue(&[
                    b"HSET".as_slice(),
                    &marker.slot_key(g.slot),
                    field.as_bytes(),
                    value.as_bytes(),
                ]);
                node.conn.queue(&["EXEC"]);
            }
            let replicas = self.replicas_to_wait(addr);
            let node = self.node(addr).await?;
            if replicas > 0 {
                queue_wait(&mut node.conn, replicas);
                waits.insert(addr.clone(), replicas);
            }
            node.conn
                .flush()
                .await
                .map_err(|e| Self::conn_err(addr, e))?;
        }
        Ok(SlotRound {
            order,
            per_node,
            waits,
        })
    }

    /// Reads the replies of slot transactions: the groups to send again (redirected, refused
    /// for a transient reason, or aborted by a command refused when queued — which is reported
    /// and left out) and whether to wait first.
    pub(super) async fn read_slots(
        &mut self,
        ops: &[Op],
        round: SlotRound,
    ) -> std::result::Result<(Vec<SlotGroup>, bool), Failure> {
        let SlotRound {
            order,
            mut per_node,
            waits,
        } = round;
        let mut again = Vec::new();
        let mut wait = false;
        for addr in &order {
            let mut applied: Vec<(u16, Position)> = Vec::new();
            for mut g in per_node.remove(addr).unwrap_or_default() {
                if let Frame::Error(m) = self.read(addr).await? {
                    return Err(Failure::Fatal(Error::Protocol {
                        addr: addr.clone(),
                        what: format!("MULTI refused: {}", String::from_utf8_lossy(&m)),
                    }));
                }
                let mut retry: Option<bool> = None;
                let mut refused: Vec<((usize, usize), String)> = Vec::new();
                for &c in &g.cmds {
                    if let Frame::Error(m) = self.read(addr).await? {
                        let m = String::from_utf8_lossy(&m).into_owned();
                        match self.unit_redirect(&m) {
                            Some(w) => retry = Some(retry.unwrap_or(false) | w),
                            None => refused.push((c, m)),
                        }
                    }
                }
                if let Frame::Error(m) = self.read(addr).await? {
                    let m = String::from_utf8_lossy(&m).into_owned();
                    match self.unit_redirect(&m) {
                        Some(w) => retry = Some(retry.unwrap_or(false) | w),
                        None => {
                            return Err(Failure::Fatal(Error::Protocol {
                                addr: addr.clone(),
                                what: format!("the replay marker could not be written: {m}"),
                            }));
                        }
                    }
                }
                let exec = self.read(addr).await?;
                if let Some(w) = retry {
                    wait |= w;
                    again.push(g);
                    continue;
                }
                if !refused.is_empty() {
                    // EXECABORT: nothing of the slot applied; report, send the rest again
                    for ((i, j), m) in &refused {
                        self.record_error(addr, &ops[*i], &ops[*i].unit.cmds()[*j], m)?;
                    }
                    g.cmds.retain(|c| !refused.iter().any(|(r, _)| r == c));
                    again.push(g);
                    continue;
                }
                match exec {
                    Frame::Array(replies) => {
                        applied.push((g.slot, g.last));
                        for (&(i, j), r) in g.cmds.iter().zip(replies) {
                            if let Frame::Error(m) = r {
                                let m = String::from_utf8_lossy(&m).into_owned();
                                self.record_error(addr, &ops[i], &ops[i].unit.cmds()[j], &m)?;
                            }
                        }
                    }
                    Frame::Error(m) => {
                        let m = String::from_utf8_lossy(&m).into_owned();
                        let Some(w) = self.unit_redirect(&m) else {
                            return Err(Failure::Fatal(Error::Protocol {
                                addr: addr.clone(),
                                what: format!("EXEC of slot {} refused: {m}", g.slot),
                            }));
                        };
                        wait |= w;
                        again.push(g);
                    }
                    other => {
                        return Err(Failure::Fatal(Error::Protocol {
                            addr: addr.clone(),
                            what: format!("EXEC of slot {} answered {other:?}", g.slot),
                        }));
                    }
                }
            }
            let replicated = match waits.get(addr) {
                Some(&n) => {
                    let acked = self.read(addr).await?;
                    self.replicated(addr, n, &acked)
                }
                None => false,
            };
            if !replicated {
                for (slot, last) in applied {
                    self.acknowledged(Some(slot), addr, last);
                }
            }
        }
        Ok((again, wait))
    }

    /// Reads a slot round's replies and sends again what was redirected or refused for a
    /// transient reason, until every group is applied.
    pub(super) async fn finish_slots(
        &mut self,
        ops: &[Op],
        round: SlotRound,
    ) -> std::result::Result<(), Failure> {
        let (mut groups, mut wait) = self.read_slots(ops, round).await?;
        let mut patience = Patience::default();
        while !groups.is_empty() {
            let slots = groups.iter().map(|g| g.slot).collect();
            let position = ops[groups[0].cmds.first().map_or(0, |c| c.0)].position;
            self.pause(&mut patience, slots, wait, position).await?;
            let round = self.send_slots(ops, groups).await?;
            (groups, wait) = self.read_slots(ops, round).await?;
        }
        Ok(())
    }
}
