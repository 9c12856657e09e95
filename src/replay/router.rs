//! The cluster slot map of a target, and the redirections that update it.
//!
//! The map starts from the topology discovered at start and is corrected by `MOVED` (the slot
//! now lives elsewhere: update, resend) — which is cheaper and more current than re-reading
//! `CLUSTER SHARDS` on every change; a full refresh happens after connection failures.
//! `ASK` (a slot being migrated) is followed once with `ASKING` and does not change the map.
//! A standalone target is a map with one node that owns everything.

use crate::net::topology::{Mode, Topology};

use super::op::Route;

/// Slot → node address (`host:port`).
#[derive(Debug, Clone)]
pub struct SlotMap {
    nodes: Vec<String>,
    owner: Vec<u16>,
    cluster: bool,
    /// The masters, recomputed when an owner changes (routing asks for them per command).
    masters: Vec<String>,
    /// Healthy replicas per master address, as discovered (a node `MOVED` to later has none
    /// recorded until the next refresh).
    replicas: std::collections::HashMap<String, usize>,
}

/// A redirection reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// `MOVED slot host:port`.
    Moved {
        /// The slot.
        slot: u16,
        /// Its new owner.
        addr: String,
    },
    /// `ASK slot host:port`.
    Ask {
        /// The slot.
        slot: u16,
        /// Where to ask.
        addr: String,
    },
}

/// Parses a `MOVED`/`ASK` error message.
pub fn parse_redirect(msg: &str) -> Option<Redirect> {
    let mut parts = msg.split_whitespace();
    let kind = parts.next()?;
    let slot: u16 = parts.next()?.parse().ok()?;
    let addr = parts.next()?.to_string();
    match kind {
        "MOVED" => Some(Redirect::Moved { slot, addr }),
        "ASK" => Some(Redirect::Ask { slot, addr }),
        _ => None,
    }
}

/// Splits `host:port` (IPv6 hosts keep their colons).
pub fn split_addr(addr: &str) -> Option<(String, u16)> {
    let (h, p) = addr.rsplit_once(':')?;
    Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?))
}

impl SlotMap {
    /// The map of a discovered topology (`standalone_addr` for a standalone server).
    pub fn new(t: &Topology, standalone_addr: &str) -> SlotMap {
        if t.mode != Mode::Cluster {
            return SlotMap {
                nodes: vec![standalone_addr.to_string()],
                owner: vec![0; 16384],
                cluster: false,
                masters: vec![standalone_addr.to_string()],
                replicas: Default::default(),
            };
        }
        let mut m = SlotMap {
            nodes: Vec::new(),
            owner: vec![u16::MAX; 16384],
            cluster: true,
            masters: Vec::new(),
            replicas: Default::default(),
        };
        // Owners are filled directly and the masters computed once: going through `set` here
        // recomputed them per slot (16384²), seconds in a debug build.
        for s in &t.shards {
            let addr = s.master.addr();
            let healthy = s
                .replicas
                .iter()
                .filter(|r| !r.health.contains("fail"))
                .count();
            m.replicas.insert(addr.clone(), healthy);
            let i = match m.nodes.iter().position(|n| *n == addr) {
                Some(i) => i,
                None => {
                    m.nodes.push(addr);
                    m.nodes.len() - 1
                }
            };
            for &(a, b) in &s.slots {
                for slot in a..=b.min(16383) {
                    m.owner[slot as usize] = i as u16;
                }
            }
        }
        m.masters = m.compute_masters();
        m
    }

    /// Healthy replicas of the master at `addr` when the topology was read.
    pub fn replicas(&self, addr: &str) -> usize {
        self.replicas.get(addr).copied().unwrap_or(0)
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Records that `slot` is served by `addr`.
    pub fn set(&mut self, slot: u16, addr: &str) {
        let i = match self.nodes.iter().position(|n| n == addr) {
            Some(i) => i,
            None => {
                self.nodes.push(addr.to_string());
                self.nodes.len() - 1
            }
        };
        if self.owner[slot as usize] != i as u16 {
            self.owner[slot as usize] = i as u16;
            self.masters = self.compute_masters();
        }
    }

    /// The masters (nodes owning at least one slot).
    pub fn masters(&self) -> Vec<String> {
        self.masters.clone()
    }

    fn compute_masters(&self) -> Vec<String> {
        let mut used = vec![false; self.nodes.len()];
        for &o in &self.owner {
            if let Some(u) = used.get_mut(o as usize) {
                *u = true;
            }
        }
        self.nodes
            .iter()
            .zip(used)
            .filter(|(_, u)| *u)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The node for a route (for [`Route::All`], the caller expands to [`SlotMap::masters`]).
    pub fn node(&self, route: Route) -> String {
        match route {
            Route::Slot(s) if self.cluster => self
                .nodes
                .get(self.owner[s as usize] as usize)
                .cloned()
                // an uncovered slot: any node will answer with MOVED or CLUSTERDOWN
                .unwrap_or_else(|| self.nodes[0].clone()),
            _ => self
                .masters()
                .into_iter()
                .next()
                .unwrap_or_else(|| self.nodes[0].clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_parse() {
        assert_eq!(
            parse_redirect("MOVED 3999 127.0.0.1:6381"),
            Some(Redirect::Moved {
                slot: 3999,
                addr: "127.0.0.1:6381".into()
            })
        );
        assert!(matches!(
            parse_redirect("ASK 1 h:2"),
            Some(Redirect::Ask { slot: 1, .. })
        ));
        assert_eq!(parse_redirect("ERR x"), None);
        assert_eq!(split_addr("::1:7000"), Some(("::1".into(), 7000)));
    }
}
