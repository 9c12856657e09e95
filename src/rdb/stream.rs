//! Stream values (types 15, 19, 21): entries in listpack nodes, metadata, consumer groups,
//! pending-entry lists and consumers.
//!
//! ```text
//! len nodes, nodes × { string node key (16 bytes: master ms BE, seq BE), string listpack }
//! len length, len last_id.ms, len last_id.seq
//! [v2+] len first_id.ms/seq, len max_deleted.ms/seq, len entries_added
//! len groups, groups × { string name, len last_id.ms/seq, [v2+] len entries_read,
//!     len pel, pel × { 16-byte ID, 8-byte LE delivery time, len delivery count },
//!     len consumers, consumers × { string name, 8-byte LE seen time, [v3] 8-byte LE active time,
//!         len n, n × 16-byte ID } }
//! ```
//! Node listpack: master entry `count deleted num_fields field… 0`, then per entry
//! `flags ms_diff seq_diff [num_fields] (field value… | value…) lp_count`; flag 1 = deleted
//! (tombstone, skipped), 2 = same fields as the master. IDs are master + diff with wrapping
//! arithmetic.
//!
//! Entries are produced node by node ([`Stream::entries`]); groups are read eagerly (their PELs
//! are held in memory — a PEL is bounded by unacknowledged deliveries, not by stream length).

use bytes::Bytes;

use super::decode::{BCursor, NodeQueue};
use super::elem::Elem;
use super::error::{MResult, Malformed};
use super::listpack::ListpackIter;

/// A stream entry ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl StreamId {
    fn from_be16(b: &[u8]) -> StreamId {
        StreamId {
            ms: u64::from_be_bytes(b[..8].try_into().unwrap()),
            seq: u64::from_be_bytes(b[8..16].try_into().unwrap()),
        }
    }
}

/// One live entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// Its ID.
    pub id: StreamId,
    /// Field/value pairs in order.
    pub fields: Vec<(Bytes, Bytes)>,
}

/// A pending (delivered, unacknowledged) entry of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    /// Entry ID.
    pub id: StreamId,
    /// Last delivery time, ms since the epoch.
    pub delivery_time_ms: i64,
    /// Number of deliveries.
    pub delivery_count: u64,
}

/// A consumer of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Name.
    pub name: Bytes,
    /// Last time it was seen, ms.
    pub seen_time_ms: i64,
    /// Last successful read (v3 only; v1/v2 readers take `seen_time_ms`).
    pub active_time_ms: Option<i64>,
    /// IDs of its pending entries (each is in the group PEL).
    pub pending: Vec<StreamId>,
}

/// A consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Name.
    pub name: Bytes,
    /// Last delivered ID.
    pub last_id: StreamId,
    /// Entries read (v2+); `u64::MAX` is Redis's −1 ("unknown"), not an error.
    pub entries_read: Option<u64>,
    /// The group PEL.
    pub pel: Vec<PendingEntry>,
    /// Consumers.
    pub consumers: Vec<Consumer>,
}

/// A decoded stream: metadata and groups read, entries available as an iterator.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Format version: 1 (type 15), 2 (19), 3 (21).
    pub version: u8,
    /// Number of live entries.
    pub length: u64,
    /// Last ID ever added.
    pub last_id: StreamId,
    /// First live ID (v2+).
    pub first_id: Option<StreamId>,
    /// Highest deleted ID (v2+).
    pub max_deleted_id: Option<StreamId>,
    /// Entries ever added (v2+).
    pub entries_added: Option<u64>,
    /// Consumer groups.
    pub groups: Vec<Group>,
    nodes: BCursor,
    node_count: u64,
}

impl Stream {
    pub(crate) fn decode(mut c: BCursor, version: u8) -> MResult<Stream> {
        let node_count = c.len("stream node count")?;
        let nodes = c.clone();
        for _ in 0..node_count {
            c.skip_string()?;
            c.skip_string()?;
        }
        let id = |c: &mut BCursor| -> MResult<StreamId> {
            Ok(StreamId {
                ms: c.len("stream ID ms")?,
                seq: c.len("stream ID seq")?,
            })
        };
        let length = c.len("stream length")?;
        let last_id = id(&mut c)?;
        let (mut first_id, mut max_deleted_id, mut entries_added) = (None, None, None);
        if version >= 2 {
            first_id = Some(id(&mut c)?);
            max_deleted_id = Some(id(&mut c)?);
            entries_added = Some(c.len("entries added")?);
        }
        let ngroups = c.len("group count")?;
        let mut groups = Vec::with_capacity((ngroups as usize).min(c.buf.len() - c.pos));
        for _ in 0..ngroups {
            let name = c.string()?;
            let last_id = id(&mut c)?;
            let entries_read = if version >= 2 {
                Some(c.len("entries read")?)
            } else {
                None
            };
            let npel = c.len("PEL size")?;
            let mut pel = Vec::with_capacity((npel as usize).min((c.buf.len() - c.pos) / 25));
            for _ in 0..npel {
                let id = StreamId::from_be16(&c.take(16, "PEL entry ID")?);
                let delivery_time_ms = c.i64_le("delivery time")?;
                let delivery_count = c.len("delivery count")?;
                pel.push(PendingEntry {
                    id,
                    delivery_time_ms,
                    delivery_count,
                });
            }
            let ncons = c.len("consumer count")?;
            let mut consumers = Vec::with_capacity((ncons as usize).min(c.buf.len() - c.pos));
            for _ in 0..ncons {
                let name = c.string()?;
                let seen_time_ms = c.i64_le("seen time")?;
                let active_time_ms = if version >= 3 {
                    Some(c.i64_le("active time")?)
                } else {
                    None
                };
                let n = c.len("consumer PEL size")?;
                let mut pending = Vec::with_capacity((n as usize).min((c.buf.len() - c.pos) / 16));
                for _ in 0..n {
                    let at = c.pos;
                    let id = StreamId::from_be16(&c.take(16, "consumer PEL ID")?);
                    if pel.binary_search_by_key(&id, |p| p.id).is_err()
                        && !pel.iter().any(|p| p.id == id)
                    {
                        return Err(Malformed::new(
                            at,
                            format!("consumer pending ID {id} to be in the group PEL"),
                        ));
                    }
                    pending.push(id);
                }
                consumers.push(Consumer {
                    name,
                    seen_time_ms,
                    active_time_ms,
                    pending,
                });
            }
            groups.push(Group {
                name,
                last_id,
                entries_read,
                pel,
                consumers,
            });
        }
        Ok(Stream {
            version,
            length,
            last_id,
            first_id,
            max_deleted_id,
            entries_added,
            groups,
            nodes,
            node_count,
        })
    }

    /// The live entries in ID order, decoded one node at a time (tombstones skipped).
    pub fn entries(&self) -> StreamEntries {
        StreamEntries {
            c: self.nodes.clone(),
            nodes_left: self.node_count,
            queue: NodeQueue::new(),
            failed: false,
        }
    }
}

/// Iterator over a stream's live entries.
#[derive(Debug)]
pub struct StreamEntries {
    c: BCursor,
    nodes_left: u64,
    queue: NodeQueue<StreamEntry>,
    failed: bool,
}

impl StreamEntries {
    fn load_node(&mut self) -> MResult<()> {
        let at = self.c.pos;
        let key = self.c.string()?;
        if key.len() != 16 {
            return Err(Malformed::new(
                at,
                format!("a 16-byte stream node key, found {} bytes", key.len()),
            ));
        }
        let master = StreamId::from_be16(&key);
        let at = self.c.pos;
        let lp = self.c.string()?;
        parse_node(master, lp, &mut self.queue).map_err(|e| e.shift(at))
    }
}

fn parse_node(master: StreamId, lp: Bytes, out: &mut NodeQueue<StreamEntry>) -> MResult<()> {
    let mut it = ListpackIter::new(lp)?;
    let mut next = |what: &'static str| -> MResult<Elem> {
        it.next().unwrap_or_else(|| {
            Err(Malformed::new(
                0,
                format!("stream node {what}, listpack ended"),
            ))
        })
    };
    let int = |e: Elem, what: &'static str| -> MResult<i64> {
        e.as_i64()
            .ok_or_else(|| Malformed::new(0, format!("an integer stream {what}")))
    };
    let count = int(next("count")?, "count")?;
    let deleted = int(next("deleted count")?, "deleted count")?;
    let nfields = int(next("master field count")?, "master field count")?;
    if count < 0 || deleted < 0 || !(0..=1 << 20).contains(&nfields) {
        return Err(Malformed::new(0, "non-negative stream node counts"));
    }
    let mut master_fields = Vec::with_capacity(nfields as usize);
    for _ in 0..nfields {
        master_fields.push(next("master field")?.into_bytes());
    }
    if int(next("master terminator")?, "master terminator")? != 0 {
        return Err(Malformed::new(0, "the stream master entry terminator 0"));
    }
    let total = count + deleted;
    let mut live = 0;
    for _ in 0..total {
        let flags = int(next("entry flags")?, "entry flags")?;
        let ms = int(next("entry ms delta")?, "ms delta")?;
        let seq = int(next("entry seq delta")?, "seq delta")?;
        let id = StreamId {
            ms: master.ms.wrapping_add(ms as u64),
            seq: master.seq.wrapping_add(seq as u64),
        };
        let mut fields = Vec::new();
        if flags & 2 != 0 {
            for f in &master_fields {
                fields.push((f.clone(), next("entry value")?.into_bytes()));
            }
        } else {
            let n = int(next("entry field count")?, "entry field count")?;
            if n < 0 {
                return Err(Malformed::new(0, "a non-negative entry field count"));
            }
            for _ in 0..n {
                let f = next("entry field")?.into_bytes();
                let v = next("entry value")?.into_bytes();
                fields.push((f, v));
            }
        }
        next("entry lp-count")?;
        if flags & 1 == 0 {
            live += 1;
            out.push_back(StreamEntry { id, fields });
        }
    }
    if live != count {
        return Err(Malformed::new(
            0,
            format!("{count} live entries in the stream node, found {live}"),
        ));
    }
    if it.next().is_some() {
        return Err(Malformed::new(0, "the end of the stream node listpack"));
    }
    Ok(())
}

impl Iterator for StreamEntries {
    type Item = MResult<StreamEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(e) = self.queue.pop_front() {
                return Some(Ok(e));
            }
            if self.nodes_left == 0 {
                return None;
            }
            self.nodes_left -= 1;
            if let Err(e) = self.load_node() {
                self.failed = true;
                return Some(Err(e));
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rdb::{length, listpack, string};

    /// One node: master 100-0 fields [a], entries 100-0 {a:1}, tombstone 101-0, 102-5 {b:2}.
    pub(crate) fn sample_stream(version: u8) -> Vec<u8> {
        let lp = listpack::encode(
            [
                "2", "1", "1", "a",
                "0", // master: count 2, deleted 1, 1 field "a", terminator
                "2", "0", "0", "1", "3", // SAMEFIELDS, +0 +0, value 1, lp-count
                "3", "1", "0", "9", "3", // DELETED|SAMEFIELDS, +1 +0, value 9
                "0", "2", "5", "1", "b", "2", "5", // own fields: 1 field b=2
            ]
            .iter()
            .map(|s| s.as_bytes()),
        );
        let mut v = Vec::new();
        length::encode(1, &mut v);
        let mut key = 100u64.to_be_bytes().to_vec();
        key.extend_from_slice(&0u64.to_be_bytes());
        string::encode_raw(&key, &mut v);
        string::encode_raw(&lp, &mut v);
        for n in [2u64, 102, 5] {
            length::encode(n, &mut v);
        }
        if version >= 2 {
            for n in [100u64, 0, 101, 0, 3] {
                length::encode(n, &mut v);
            }
        }
        length::encode(1, &mut v); // groups
        string::encode(b"g", &mut v);
        length::encode(102, &mut v);
        length::encode(5, &mut v);
        if version >= 2 {
            length::encode(u64::MAX, &mut v);
        }
        length::encode(1, &mut v); // PEL
        let mut id = 100u64.to_be_bytes().to_vec();
        id.extend_from_slice(&0u64.to_be_bytes());
        v.extend_from_slice(&id);
        v.extend_from_slice(&1234i64.to_le_bytes());
        length::encode(2, &mut v);
        length::encode(1, &mut v); // consumers
        string::encode(b"alice", &mut v);
        v.extend_from_slice(&1000i64.to_le_bytes());
        if version >= 3 {
            v.extend_from_slice(&999i64.to_le_bytes());
        }
        length::encode(1, &mut v);
        v.extend_from_slice(&id);
        v
    }

    #[test]
    fn entries_groups_pel_consumers_for_every_version() {
        for version in 1..=3u8 {
            let s = Stream::decode(BCursor::new(sample_stream(version).into()), version).unwrap();
            let e: Vec<_> = s.entries().map(Result::unwrap).collect();
            assert_eq!(e.len(), 2);
            assert_eq!(e[0].id, StreamId { ms: 100, seq: 0 });
            assert_eq!(e[0].fields, vec![("a".into(), "1".into())]);
            assert_eq!(e[1].id, StreamId { ms: 102, seq: 5 });
            assert_eq!(e[1].fields, vec![("b".into(), "2".into())]);
            assert_eq!(s.last_id, StreamId { ms: 102, seq: 5 });
            let g = &s.groups[0];
            assert_eq!(g.entries_read, (version >= 2).then_some(u64::MAX));
            assert_eq!(g.pel[0].delivery_count, 2);
            assert_eq!(g.consumers[0].pending, vec![StreamId { ms: 100, seq: 0 }]);
            assert_eq!(g.consumers[0].active_time_ms, (version == 3).then_some(999));
        }
    }
}
