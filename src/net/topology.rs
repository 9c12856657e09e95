//! Topology discovery: is the server standalone, a cluster node or a sentinel, and for a cluster
//! every shard (master, replicas, slot ranges).
//!
//! Cluster layouts come from `CLUSTER SHARDS` (7.0+), falling back to `CLUSTER SLOTS` and then to
//! `CLUSTER NODES` text, because managed services rename or block some of them and older servers
//! lack SHARDS. Shards are sorted by their first slot so their order (and the journal's shard
//! names built from it) does not depend on which node answered.

use super::{Connection, Error};
use crate::resp::Frame;
use serde::Serialize;

/// What kind of server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A server outside a cluster (a master or a replica).
    Standalone,
    /// A node of a Redis Cluster.
    Cluster,
    /// A Sentinel.
    Sentinel,
}

/// A node's role within its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves writes and owns the shard's slots.
    Master,
    /// Follows the master.
    Replica,
}

/// One server of a topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Cluster node id (40 hex chars); `None` outside a cluster.
    pub id: Option<String>,
    /// Host or IP the node announces.
    pub host: String,
    /// Port to reach it on (the TLS port when connecting with TLS).
    pub port: u16,
    /// Master or replica.
    pub role: Role,
    /// `online`, `failed`, `loading`, or what the server reported.
    pub health: String,
}

impl Node {
    /// `host:port`.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A master with its replicas and the slot ranges it serves (empty outside a cluster).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shard {
    /// Inclusive slot ranges, sorted.
    pub slots: Vec<(u16, u16)>,
    /// The master.
    pub master: Node,
    /// Its replicas.
    pub replicas: Vec<Node>,
}

impl Shard {
    /// Number of slots served.
    pub fn slot_count(&self) -> u32 {
        self.slots
            .iter()
            .map(|(a, b)| (*b as u32) - (*a as u32) + 1)
            .sum()
    }
}

/// The layout behind an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// Standalone, cluster or sentinel.
    pub mode: Mode,
    /// The shards: one for a standalone server, one per master for a cluster, none for a
    /// sentinel.
    pub shards: Vec<Shard>,
    /// Which command described the cluster (`CLUSTER SHARDS`, `CLUSTER SLOTS`, `CLUSTER NODES`).
    pub described_by: Option<String>,
}

impl Topology {
    /// Slots not served by any shard (a cluster should have none).
    pub fn uncovered_slots(&self) -> u32 {
        if self.mode != Mode::Cluster {
            return 0;
        }
        16384 - self.shards.iter().map(Shard::slot_count).sum::<u32>()
    }
}

/// Discovers the topology behind `conn`.
pub async fn discover(conn: &mut Connection) -> Result<Topology, Error> {
    let info = conn.info("server").await?;
    let mode = match info
        .iter()
        .find(|(k, _)| k == "redis_mode")
        .map(|(_, v)| v.as_str())
    {
        Some("cluster") => Mode::Cluster,
        Some("sentinel") => Mode::Sentinel,
        _ => Mode::Standalone,
    };
    let addr = conn.endpoint().addr();
    match mode {
        Mode::Sentinel => Ok(Topology {
            mode,
            shards: vec![],
            described_by: None,
        }),
        Mode::Standalone => {
            let repl = conn.info("replication").await?;
            let role = match repl
                .iter()
                .find(|(k, _)| k == "role")
                .map(|(_, v)| v.as_str())
            {
                Some("slave") | Some("replica") => Role::Replica,
                _ => Role::Master,
            };
            let ep = conn.endpoint();
            Ok(Topology {
                mode,
                shards: vec![Shard {
                    slots: vec![],
                    master: Node {
                        id: None,
                        host: ep.host.clone(),
                        port: ep.port,
                        role,
                        health: "online".into(),
                    },
                    replicas: vec![],
                }],
                described_by: None,
            })
        }
        Mode::Cluster => {
            let tls = conn.endpoint().tls;
            let unexpected = |command: &str, detail: String| Error::Unexpected {
                addr: addr.clone(),
                command: command.into(),
                detail,
            };
            let mut last_err = None;
            match conn.request(&["CLUSTER", "SHARDS"]).await {
                Ok(f) => match parse_cluster_shards(&f, tls) {
                    Ok(shards) => return Ok(cluster(shards, "CLUSTER SHARDS")),
                    Err(e) => last_err = Some(unexpected("CLUSTER SHARDS", e)),
                },
                Err(e) => tracing::debug!("CLUSTER SHARDS unavailable, trying CLUSTER SLOTS: {e}"),
            }
            match conn.request(&["CLUSTER", "SLOTS"]).await {
                Ok(f) => match parse_cluster_slots(&f) {
                    Ok(shards) => return Ok(cluster(shards, "CLUSTER SLOTS")),
                    Err(e) => last_err = Some(unexpected("CLUSTER SLOTS", e)),
                },
                Err(e) => tracing::debug!("CLUSTER SLOTS unavailable, trying CLUSTER NODES: {e}"),
            }
            let f = conn.request(&["CLUSTER", "NODES"]).await?;
            let text = f
                .as_str()
                .ok_or_else(|| unexpected("CLUSTER NODES", "not text".into()))?;
            match parse_cluster_nodes(text) {
                Ok(shards) => Ok(cluster(shards, "CLUSTER NODES")),
                Err(e) => Err(last_err.unwrap_or_else(|| unexpected("CLUSTER NODES", e))),
            }
        }
    }
}

fn cluster(mut shards: Vec<Shard>, by: &str) -> Topology {
    for s in &mut shards {
        s.slots.sort();
        s.replicas.sort_by_key(|r| (r.host.clone(), r.port));
    }
    shards.sort_by_key(|s| {
        (
            s.slots.first().copied(),
            s.master.host.clone(),
            s.master.port,
        )
    });
    Topology {
        mode: Mode::Cluster,
        shards,
        described_by: Some(by.into()),
    }
}

fn slot(f: &Frame) -> Result<u16, String> {
    match f.as_int() {
        Some(v) if (0..16384).contains(&v) => Ok(v as u16),
        _ => Err(format!("invalid slot {f:?}")),
    }
}

/// Parses a `CLUSTER SHARDS` reply (RESP2 arrays of alternating names and values). Masters
/// without slots are left out: they hold no data to capture.
pub fn parse_cluster_shards(reply: &Frame, tls: bool) -> Result<Vec<Shard>, String> {
    let shards = reply.as_array().ok_or("expected an array of shards")?;
    let mut out = Vec::new();
    for shard in shards {
        let slots_f = shard
            .field("slots")
            .and_then(Frame::as_array)
            .ok_or("shard without slots")?;
        let mut slots = Vec::new();
        for pair in slots_f.chunks(2) {
            if pair.len() != 2 {
                return Err("odd slot list".into());
            }
            slots.push((slot(&pair[0])?, slot(&pair[1])?));
        }
        let nodes = shard
            .field("nodes")
            .and_then(Frame::as_array)
            .ok_or("shard without nodes")?;
        let mut master = None;
        let mut replicas = Vec::new();
        for n in nodes {
            let text = |k: &str| n.field(k).and_then(Frame::as_str).map(str::to_string);
            let port = if tls {
                n.field("tls-port").or(n.field("port"))
            } else {
                n.field("port").or(n.field("tls-port"))
            };
            let port = port.and_then(Frame::as_int).ok_or("node without port")? as u16;
            let host = text("ip")
                .or_else(|| text("endpoint"))
                .ok_or("node without ip")?;
            let role = if text("role").as_deref() == Some("master") {
                Role::Master
            } else {
                Role::Replica
            };
            let node = Node {
                id: text("id"),
                host,
                port,
                role,
                health: text("health").unwrap_or_else(|| "online".into()),
            };
            if role == Role::Master {
                master = Some(node);
            } else {
                replicas.push(node);
            }
        }
        if slots.is_empty() {
            continue;
        }
        let master = master.ok_or("shard with slots but no master")?;
        out.push(Shard {
            slots,
            master,
            replicas,
        });
    }
    Ok(out)
}

/// Parses a `CLUSTER SLOTS` reply, merging ranges of the same master into one shard.
pub fn parse_cluster_slots(reply: &Frame) -> Result<Vec<Shard>, String> {
    let ranges = reply.as_array().ok_or("expected an array of slot ranges")?;
    let mut out: Vec<Shard> = Vec::new();
    for r in ranges {
        let r = r.as_array().ok_or("slot range is not an array")?;
        if r.len() < 3 {
            return Err("slot range with fewer than 3 elements".into());
        }
        let node = |f: &Frame, role| -> Result<Node, String> {
            let n = f.as_array().ok_or("node is not an array")?;
            Ok(Node {
                host: n
                    .first()
                    .and_then(Frame::as_str)
                    .ok_or("node without host")?
                    .to_string(),
                port: n
                    .get(1)
                    .and_then(Frame::as_int)
                    .ok_or("node without port")? as u16,
                id: n.get(2).and_then(Frame::as_str).map(str::to_string),
                role,
                health: "online".into(),
            })
        };
        let range = (slot(&r[0])?, slot(&r[1])?);
        let master = node(&r[2], Role::Master)?;
        let replicas = r[3..]
            .iter()
            .map(|f| node(f, Role::Replica))
            .collect::<Result<Vec<_>, _>>()?;
        match out.iter_mut().find(|s| s.master.addr() == master.addr()) {
            Some(s) => s.slots.push(range),
            None => out.push(Shard {
                slots: vec![range],
                master,
                replicas,
            }),
        }
    }
    Ok(out)
}

/// The slots the node answering `CLUSTER NODES` (`text`) is migrating away or importing, from
/// the `[slot->-id]` / `[slot-<-id]` markers of its `myself` line, each with the address of
/// the other node (its id when the text does not list it).
pub fn migrations(text: &str) -> Vec<(u16, String)> {
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 8)
        .collect();
    let addr_of = |id: &str| {
        lines
            .iter()
            .find(|f| f[0] == id)
            .map(|f| f[1].split(['@', ',']).next().unwrap_or(id).to_string())
            .unwrap_or_else(|| id.to_string())
    };
    let Some(me) = lines
        .iter()
        .find(|f| f[2].split(',').any(|flag| flag == "myself"))
    else {
        return Vec::new();
    };
    me[8..]
        .iter()
        .filter_map(|m| {
            let m = m.strip_prefix('[')?.strip_suffix(']')?;
            let (slot, other) = m.split_once("->-").or_else(|| m.split_once("-<-"))?;
            Some((slot.parse().ok()?, addr_of(other)))
        })
        .collect()
}

/// Parses `CLUSTER NODES` text. Failed masters and masters without slots are left out.
pub fn parse_cluster_nodes(text: &str) -> Result<Vec<Shard>, String> {
    struct Line {
        id: String,
        host: String,
        port: u16,
        flags: Vec<String>,
        master_id: String,
        slots: Vec<(u16, u16)>,
    }
    let mut lines = Vec::new();
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 {
            return Err(format!("short CLUSTER NODES line {l:?}"));
        }
        let addr = f[1].split(['@', ',']).next().unwrap_or("");
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("bad address {addr:?}"))?;
        let port = port.parse().map_err(|_| format!("bad port in {addr:?}"))?;
        let mut slots = Vec::new();
        for s in &f[8..] {
            if s.starts_with('[') {
                continue; // migrating/importing markers
            }
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            let a: u16 = a.parse().map_err(|_| format!("bad slot {s:?}"))?;
            let b: u16 = b.parse().map_err(|_| format!("bad slot {s:?}"))?;
            if a > b || b >= 16384 {
                return Err(format!("bad slot range {s:?}"));
            }
            slots.push((a, b));
        }
        lines.push(Line {
            id: f[0].to_string(),
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            flags: f[2].split(',').map(str::to_string).collect(),
            master_id: f[3].to_string(),
            slots,
        });
    }
    let health = |flags: &[String]| {
        if flags.iter().any(|f| f == "fail" || f == "fail?") {
            "failed"
        } else {
            "online"
        }
        .to_string()
    };
    let mut out = Vec::new();
    for m in lines
        .iter()
        .filter(|l| l.flags.iter().any(|f| f == "master"))
    {
        if m.slots.is_empty() || health(&m.flags) == "failed" {
            continue;
        }
        let replicas = lines
            .iter()
            .filter(|r| r.master_id == m.id)
            .map(|r| Node {
                id: Some(r.id.clone()),
                host: r.host.clone(),
                port: r.port,
                role: Role::Replica,
                health: health(&r.flags),
            })
            .collect();
        out.push(Shard {
            slots: m.slots.clone(),
            master: Node {
                id: Some(m.id.clone()),
                host: m.host.clone(),
                port: m.port,
                role: Role::Master,
                health: "online".into(),
            },
            replicas,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_text() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,host1 myself,master - 0 0 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
";
        assert_eq!(
            migrations(text),
            vec![(5461, "127.0.0.1:30002".to_string())]
        );
        assert_eq!(
            migrations("a 127.0.0.1:1@2 myself,master - 0 0 1 connected 1-2 [7-<-zz]"),
            vec![(7, "zz".to_string())]
        );
        assert!(migrations("a 127.0.0.1:1@2 master - 0 0 1 connected [7-<-zz]").is_empty());
        let mut shards = parse_cluster_nodes(text).unwrap();
        shards.sort_by_key(|s| s.slots[0]);
        assert_eq!(shards.len(), 3);
        assert_eq!(shards[0].slots, vec![(0, 5460)]);
        assert_eq!(shards[0].master.port, 30001);
        assert_eq!(shards[0].replicas[0].port, 30004);
        assert_eq!(shards.iter().map(Shard::slot_count).sum::<u32>(), 16384);
    }

    #[test]
    fn slots_reply_merges_ranges() {
        let node = |p: i64| {
            Frame::Array(vec![
                Frame::bulk("127.0.0.1"),
                Frame::Integer(p),
                Frame::bulk(format!("id{p}")),
            ])
        };
        let reply = Frame::Array(vec![
            Frame::Array(vec![
                Frame::Integer(0),
                Frame::Integer(99),
                node(1),
                node(4),
            ]),
            Frame::Array(vec![Frame::Integer(100), Frame::Integer(16383), node(2)]),
            Frame::Array(vec![Frame::Integer(200), Frame::Integer(200), node(1)]),
        ]);
        let shards = parse_cluster_slots(&reply).unwrap();
        assert_eq!(shards.len(), 2);
        assert_eq!(shards[0].slots, vec![(0, 99), (200, 200)]);
        assert_eq!(shards[0].replicas.len(), 1);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_cluster_nodes("x y z").is_err());
        assert!(parse_cluster_slots(&Frame::Integer(3)).is_err());
        assert!(parse_cluster_shards(&Frame::Array(vec![Frame::Integer(1)]), false).is_err());
        assert!(parse_cluster_nodes("a 1.2.3.4:1@2 master - 0 0 1 connected 99999").is_err());
    }
}
