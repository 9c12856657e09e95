//! The demo's data: a population of every Redis data type, and a writer that keeps changing the
//! source while it is being captured.
//!
//! Commands are pipelined per node and every reply is checked, so a demo that says it wrote
//! something did write it.

use super::servers::Deployment;
use crate::net::Connection;
use crate::resp::Frame;
use anyhow::bail;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Pipelined writes to a standalone server or to the right master of a cluster.
pub struct Writes<'a> {
    dep: &'a Deployment,
    conns: Vec<Connection>,
    pending: Vec<usize>,
    /// Commands acknowledged so far.
    pub done: u64,
}

impl<'a> Writes<'a> {
    /// Connects to every node of `dep`.
    pub async fn open(dep: &'a Deployment) -> anyhow::Result<Writes<'a>> {
        let conns = dep.connect_all().await?;
        let pending = vec![0; conns.len()];
        Ok(Writes {
            dep,
            conns,
            pending,
            done: 0,
        })
    }

    /// Queues a command that touches `key` (routed to its node); sends every 256 commands.
    pub async fn cmd<A: AsRef<[u8]>>(&mut self, key: &[u8], args: &[A]) -> anyhow::Result<()> {
        let node = self.dep.node_for(key);
        self.conns[node].queue(args);
        self.pending[node] += 1;
        if self.pending[node] >= 256 {
            self.sync().await?;
        }
        Ok(())
    }

    /// Sends everything queued and checks every reply.
    pub async fn sync(&mut self) -> anyhow::Result<()> {
        for (conn, pending) in self.conns.iter_mut().zip(self.pending.iter_mut()) {
            if *pending == 0 {
                continue;
            }
            conn.flush().await?;
            while *pending > 0 {
                let (frame, _) = conn.read_frame().await?;
                *pending -= 1;
                if let Frame::Error(msg) = frame {
                    bail!(
                        "{} refused a demo write: {}",
                        conn.endpoint().addr(),
                        String::from_utf8_lossy(&msg)
                    );
                }
                self.done += 1;
            }
        }
        Ok(())
    }

    /// Sends a command to node `i` alone (e.g. `SELECT`), outside the pipeline.
    pub async fn on_node(&mut self, i: usize, args: &[&str]) -> anyhow::Result<Frame> {
        self.sync().await?;
        Ok(self.conns[i].request(args).await?)
    }
}

/// Writes `keys` small keys spread over strings, hashes, lists, sets and sorted sets (one in ten
/// with a TTL), plus one key of every other kind: a 20 000-field hash, a 10 000-element list,
/// a sorted set with infinite scores, a stream with a consumer group and pending entries, a
/// HyperLogLog, a geo set, a bitmap, an integer; and on a standalone server a second database.
/// Returns the number of commands written.
pub async fn populate(dep: &Deployment, keys: u64) -> anyhow::Result<u64> {
    let mut w = Writes::open(dep).await?;
    for i in 0..keys {
        let n = i.to_string();
        match i % 5 {
            0 => {
                let k = format!("user:{i}:name");
                w.cmd(k.as_bytes(), &["SET", &k, &format!("{:0>96}", i)])
                    .await?;
            }
            1 => {
                let k = format!("user:{i}:profile");
                let args = [
                    "HSET", &k, "name", "Ada", "lang", "Rust", "visits", &n, "city", "Lyon",
                ];
                w.cmd(k.as_bytes(), &args).await?;
            }
            2 => {
                let k = format!("queue:{i}");
                w.cmd(k.as_bytes(), &["RPUSH", &k, "a", "b", "c", &n, "-1"])
                    .await?;
            }
            3 => {
                let k = format!("tags:{i}");
                w.cmd(k.as_bytes(), &["SADD", &k, "red", "green", "blue", &n])
                    .await?;
            }
            _ => {
                let k = format!("scores:{i}");
                let args = ["ZADD", &k, "1.5", "alice", "2.25", "bob", &n, "carol"];
                w.cmd(k.as_bytes(), &args).await?;
            }
        }
        if i % 10 == 0 {
            let k = match i % 5 {
                0 => format!("user:{i}:name"),
                2 => format!("queue:{i}"),
                4 => format!("scores:{i}"),
                _ => continue,
            };
            w.cmd(k.as_bytes(), &["PEXPIRE", &k, "3600000"]).await?;
        }
    }
    for i in 0..20_000 {
        let f = format!("field:{i}");
        w.cmd(
            b"big:hash",
            &["HSET", "big:hash", &f, &format!("value-{i}")],
        )
        .await?;
    }
    for chunk in 0..100 {
        let mut args = vec!["RPUSH".to_string(), "big:list".to_string()];
        args.extend((0..100).map(|j| format!("item-{}", chunk * 100 + j)));
        w.cmd(b"big:list", &args).await?;
    }
    let z = [
        "ZADD",
        "leaderboard",
        "inf",
        "top",
        "-inf",
        "bottom",
        "3.14159",
        "pi",
    ];
    w.cmd(b"leaderboard", &z).await?;
    for i in 0..100 {
        let n = i.to_string();
        let args = ["XADD", "orders", "*", "item", "book", "qty", &n];
        w.cmd(b"orders", &args).await?;
    }
    w.cmd(b"orders", &["XGROUP", "CREATE", "orders", "billing", "0"])
        .await?;
    let read = [
        "XREADGROUP",
        "GROUP",
        "billing",
        "worker-1",
        "COUNT",
        "10",
        "STREAMS",
        "orders",
        ">",
    ];
    w.cmd(b"orders", &read).await?;
    let hll = ["PFADD", "visitors", "ada", "grace", "linus", "ken"];
    w.cmd(b"visitors", &hll).await?;
    let geo = [
        "GEOADD", "cities", "4.8357", "45.7640", "lyon", "2.3522", "48.8566", "paris",
    ];
    w.cmd(b"cities", &geo).await?;
    w.cmd(b"logins", &["SETBIT", "logins", "1000", "1"]).await?;
    w.cmd(b"counter", &["SET", "counter", "42"]).await?;
    w.cmd(b"greeting", &["SET", "greeting", "hello from shake"])
        .await?;
    w.sync().await?;
    if !dep.cluster {
        // A second database: shake keeps the database of every key.
        w.on_node(0, &["SELECT", "2"]).await?;
        for i in 0..100 {
            let k = format!("archive:{i}");
            w.cmd(k.as_bytes(), &["SET", &k, "kept in db 2"]).await?;
        }
        w.sync().await?;
        w.on_node(0, &["SELECT", "0"]).await?;
    }
    Ok(w.done)
}

/// A writer that keeps changing the source: counters, appends to a log, profile updates,
/// short-lived keys created and deleted, a leaderboard and a stream. Runs until `stop` is set;
/// counts acknowledged commands in `written`.
pub async fn keep_writing(
    dep: &Deployment,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut w = Writes::open(dep).await?;
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..20 {
            n += 1;
            let s = n.to_string();
            w.cmd(b"live:counter", &["INCR", "live:counter"]).await?;
            w.cmd(b"live:log", &["RPUSH", "live:log", &format!("event-{n}")])
                .await?;
            let p = format!("live:profile:{}", n % 100);
            w.cmd(p.as_bytes(), &["HSET", &p, "seen", &s]).await?;
            let t = format!("live:tmp:{n}");
            w.cmd(t.as_bytes(), &["SET", &t, "short-lived", "PX", "600000"])
                .await?;
            if n > 10 {
                let old = format!("live:tmp:{}", n - 10);
                w.cmd(old.as_bytes(), &["DEL", &old]).await?;
            }
            let player = format!("player-{}", n % 20);
            w.cmd(b"live:board", &["ZINCRBY", "live:board", "1", &player])
                .await?;
            w.cmd(b"live:events", &["XADD", "live:events", "*", "n", &s])
                .await?;
        }
        w.sync().await?;
        written.store(w.done, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.sync().await?;
    written.store(w.done, Ordering::Relaxed);
    Ok(())
}
