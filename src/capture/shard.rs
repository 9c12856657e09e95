//! One shard's capture: connect to the shard's master (or a replica of it), resume from the
//! journal, and keep the link alive across errors, restarts and failovers, until stopped.

use super::journal_state::shard_state;
use super::replica::{self, Event, ReplicaSession, Resume, SessionOptions};
use super::stream::{StreamState, Unit};
use super::writer_thread::{self, Msg, Published, WriterHandle};
use crate::journal::{ShardWriter, WriterOptions};
use crate::net::{ConnectOptions, Connection, Endpoint};
use crate::rdb::ReaderOptions;
use crate::units::now_ms;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

/// How a shard finds its master on each (re)connection.
#[derive(Debug, Clone)]
pub enum Locator {
    /// Always this endpoint.
    Fixed(Endpoint),
    /// A cluster: ask these seed nodes which node serves `slot` now (and its replicas).
    Cluster {
        /// Nodes to ask, in order.
        seeds: Vec<Endpoint>,
        /// A slot the shard serves.
        slot: u16,
        /// Attach to a replica of the shard rather than its master.
        from_replica: bool,
    },
    /// Ask a sentinel for the master named `name`.
    Sentinel {
        /// The sentinel.
        sentinel: Endpoint,
        /// The master's name.
        name: String,
    },
}

/// Everything one shard's capture needs.
#[derive(Debug, Clone)]
pub struct ShardJob {
    /// Shard directory name (`shard-000`).
    pub name: String,
    /// How to find the server to replicate from.
    pub locator: Locator,
    /// Connection options.
    pub connect: ConnectOptions,
    /// Replica session options.
    pub session: SessionOptions,
    /// The journal directory.
    pub journal_dir: PathBuf,
    /// Journal writer options.
    pub writer: WriterOptions,
    /// RDB reader options.
    pub reader: ReaderOptions,
    /// Stop once the snapshot is durable.
    pub snapshot_only: bool,
    /// Give up after this many consecutive failed connections (None: never).
    pub max_retries: Option<u32>,
    /// Queued bytes (disk behind the socket) above which a warning is logged.
    pub queue_warn: u64,
    /// Descriptions of the cluster's layout, updated when it changes (slot migrations,
    /// failovers); each change is recorded as a topology marker in the shard's journal.
    pub topology: Option<watch::Receiver<String>>,
}

/// Live status of a shard, for progress output and metrics.
#[derive(Debug, Clone, Default)]
pub struct ShardStatus {
    /// What the shard is doing, in words.
    pub phase: String,
    /// The server it replicates from.
    pub server: String,
    /// Replication id in force.
    pub replid: String,
    /// Offset received.
    pub offset: u64,
    /// Offset durable in the journal.
    pub durable: u64,
    /// RDB size when announced.
    pub rdb_size: Option<u64>,
    /// RDB bytes received.
    pub rdb_received: u64,
    /// Snapshot keys written.
    pub keys: u64,
    /// Stream units written.
    pub commands: u64,
    /// Reconnections so far.
    pub reconnects: u64,
    /// Full syncs so far.
    pub full_syncs: u64,
    /// Bytes waiting for the journal writer.
    pub queued: u64,
    /// The master's own replication offset, polled every 2 s on a separate connection (the
    /// replication link must never carry a command that produces a reply).
    pub master_offset: Option<u64>,
    /// True once the shard has stopped.
    pub done: bool,
}

/// The outcome of a shard's capture.
#[derive(Debug, Clone)]
pub struct ShardOutcome {
    /// Shard name.
    pub name: String,
    /// The final status.
    pub status: ShardStatus,
    /// Why it stopped with an error, if it did.
    pub error: Option<String>,
}

async fn locate(locator: &Locator, connect: &ConnectOptions) -> Result<Endpoint, String> {
    match locator {
        Locator::Fixed(ep) => Ok(ep.clone()),
        Locator::Sentinel { sentinel, name } => {
            let mut c = Connection::connect(sentinel, connect)
                .await
                .map_err(|e| e.to_string())?;
            crate::net::sentinel::resolve_master(&mut c, name)
                .await
                .map_err(|e| e.to_string())
        }
        Locator::Cluster {
            seeds,
            slot,
            from_replica,
        } => {
            let mut last = String::from("no seed nodes");
            for seed in seeds {
                let mut c = match Connection::connect(seed, connect).await {
                    Ok(c) => c,
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                };
                match crate::net::topology::discover(&mut c).await {
                    Ok(t) => {
                        let Some(shard) = t
                            .shards
                            .iter()
                            .find(|s| s.slots.iter().any(|(a, b)| a <= slot && slot <= b))
                        else {
                            last = format!(
                                "no master serves slot {slot} according to {}",
                                seed.addr()
                            );
                            continue;
                        };
                        let node = if *from_replica {
                            shard
                                .replicas
                                .iter()
                                .find(|r| r.health == "online")
                                // 7.0 reports a replica as "loading" while its offset is 0.
                                .or_else(|| shard.replicas.iter().find(|r| r.health != "failed"))
                                .unwrap_or(&shard.master)
                        } else {
                            &shard.master
                        };
                        tracing::debug!(slot, master = %shard.master.addr(), replicas = ?shard.replicas, chosen = %node.addr(), "located the shard's server");
                        return Ok(seed.with_addr(node.host.clone(), node.port));
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            Err(last)
        }
    }
}

/// Runs one shard until `stop` turns true, the snapshot is done (`snapshot_only`), or retries
/// run out. Status is published on `status`.
pub async fn run(
    job: ShardJob,
    mut stop: watch::Receiver<bool>,
    status: Arc<std::sync::Mutex<ShardStatus>>,
) -> ShardOutcome {
    let set = |f: &dyn Fn(&mut ShardStatus)| {
        if let Ok(mut s) = status.lock() {
            f(&mut s)
        }
    };
    let fail = |e: String| {
        set(&|s| {
            s.done = true;
            s.phase = "failed".into()
        });
        ShardOutcome {
            name: job.name.clone(),
            status: status.lock().map(|s| s.clone()).unwrap_or_default(),
            error: Some(e),
        }
    };
    let writer = match ShardWriter::open(&job.journal_dir, &job.name, job.writer.clone()) {
        Ok(w) => w,
        Err(e) => return fail(format!("{}: cannot open the journal shard: {e}", job.name)),
    };
    let state = match shard_state(&job.journal_dir, &job.name, &writer) {
        Ok(s) => s,
        Err(e) => return fail(format!("{}: cannot read the journal shard: {e}", job.name)),
    };
    if let Some(why) = &state.full_reason {
        tracing::info!(shard = %job.name, "full sync: {why}");
    }
    let start_offset = match &state.resume {
        Resume::From { offset, .. } => *offset,
        Resume::Full => 0,
    };
    let handle = writer_thread::spawn(
        writer,
        job.name.clone(),
        job.reader.clone(),
        job.writer.chunk_size,
        start_offset,
    );
    let mut resume = state.resume.clone();
    let mut db = state.db;
    let mut failures = 0u32;
    let mut error = None;
    let _ = handle.send(Msg::SessionStart);
    loop {
        if *stop.borrow() {
            break;
        }
        let outcome = session(&job, &handle, &mut resume, &mut db, &mut stop, &status).await;
        match outcome {
            Ok(SessionEnd::Stopped) => break,
            Ok(SessionEnd::SnapshotDone) => break,
            Err(e) => {
                if let Some(err) = handle.published.borrow().error.clone() {
                    error = Some(format!("{}: journal: {err}", job.name));
                    break;
                }
                failures = if e.progressed { 1 } else { failures + 1 };
                if job.max_retries.is_some_and(|m| failures > m) {
                    error = Some(format!(
                        "{}: giving up after {failures} failed attempts: {}",
                        job.name, e.message
                    ));
                    break;
                }
                let wait = Duration::from_millis(500u64.saturating_mul(1 << failures.min(6)))
                    .min(Duration::from_secs(30));
                tracing::warn!(shard = %job.name, "replication link failed: {}; retrying in {:.1}s", e.message, wait.as_secs_f64());
                set(&|s| {
                    s.phase = format!("reconnecting: {}", e.message);
                    s.reconnects += 1;
                });
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
    let reason = match (&error, *stop.borrow()) {
        (Some(e), _) => format!("error: {e}"),
        (None, true) => "stopped by the operator".to_string(),
        (None, false) => "snapshot complete (--snapshot-only)".to_string(),
    };
    let _ = handle.send(Msg::Stop(reason));
    let mut published = handle.published.clone();
    let _ = tokio::task::spawn_blocking(move || handle.join()).await;
    let p: Published = published.borrow_and_update().clone();
    if error.is_none()
        && let Some(e) = p.error.clone()
    {
        error = Some(format!("{}: journal: {e}", job.name));
    }
    set(&|s| {
        s.durable = p.durable_offset;
        s.done = true;
        s.phase = if error.is_some() {
            "failed".into()
        } else {
            "stopped".into()
        };
    });
    ShardOutcome {
        name: job.name.clone(),
        status: status.lock().map(|s| s.clone()).unwrap_or_default(),
        error,
    }
}

/// Aborts a task when dropped (the offset poller lives as long as its session).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Polls `master_repl_offset` of the server a session replicates from, for the lag figure.
fn spawn_offset_poller(
    endpoint: Endpoint,
    connect: ConnectOptions,
    status: Arc<std::sync::Mutex<ShardStatus>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut conn = None;
        loop {
            if conn.is_none() {
                conn = Connection::connect(&endpoint, &connect).await.ok();
            }
            if let Some(c) = conn.as_mut() {
                match c.info("replication").await {
                    Ok(info) => {
                        let off = info
                            .iter()
                            .find(|(k, _)| k == "master_repl_offset")
                            .and_then(|(_, v)| v.parse().ok());
                        if let Ok(mut s) = status.lock() {
                            s.master_offset = off;
                        }
                    }
                    Err(_) => conn = None,
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

enum SessionEnd {
    Stopped,
    SnapshotDone,
}

struct SessionError {
    message: String,
    /// Data moved before the failure (resets the retry count).
    progressed: bool,
}

async fn session(
    job: &ShardJob,
    handle: &WriterHandle,
    resume: &mut Resume,
    db: &mut u32,
    stop: &mut watch::Receiver<bool>,
    status: &Arc<std::sync::Mutex<ShardStatus>>,
) -> Result<SessionEnd, SessionError> {
    let err = |message: String, progressed: bool| SessionError {
        message,
        progressed,
    };
    let set = |f: &mut dyn FnMut(&mut ShardStatus)| {
        if let Ok(mut s) = status.lock() {
            f(&mut s)
        }
    };
    set(&mut |s| s.phase = "locating the master".into());
    let endpoint = locate(&job.locator, &job.connect)
        .await
        .map_err(|e| err(e, false))?;
    set(&mut |s| {
        s.server = endpoint.addr();
        s.phase = "connecting".into();
    });
    let conn = Connection::connect(&endpoint, &job.connect)
        .await
        .map_err(|e| err(e.to_string(), false))?;
    let _poller = AbortOnDrop(spawn_offset_poller(
        endpoint.clone(),
        job.connect.clone(),
        status.clone(),
    ));
    set(&mut |s| {
        s.phase =
            "waiting for the master (PSYNC; a diskless master waits repl-diskless-sync-delay first)"
                .into()
    });
    let (mut session, first) = ReplicaSession::start(conn, resume, job.session.clone())
        .await
        .map_err(|e| err(e.to_string(), false))?;
    let send = |m: Msg| handle.send(m).map_err(|e| err(e, true));
    let mut in_snapshot = false;
    match first {
        Event::FullResync { replid, offset } => {
            tracing::info!(shard = %job.name, master = %endpoint.addr(), %replid, offset, "full resync: a new epoch starts with a snapshot");
            send(Msg::FullResync {
                replid: replid.clone(),
                offset,
            })?;
            in_snapshot = true;
            *db = 0;
            set(&mut |s| {
                s.replid = replid.clone();
                s.offset = offset;
                s.full_syncs += 1;
                s.rdb_received = 0;
                s.rdb_size = None;
                s.phase = "master is preparing the snapshot".into();
            });
        }
        Event::Continue { replid, offset } => {
            tracing::info!(shard = %job.name, master = %endpoint.addr(), %replid, offset, "partial resync: continuing the journal");
            send(Msg::Continue {
                replid: replid.clone(),
                offset,
            })?;
            *resume = Resume::From {
                replid: replid.clone(),
                offset,
            };
            set(&mut |s| {
                s.replid = replid.clone();
                s.offset = offset;
                s.phase = "streaming".into();
            });
        }
        other => return Err(err(format!("unexpected first event {other:?}"), false)),
    }
    let mut stream = StreamState::new(*db);
    let mut published = handle.published.clone();
    let mut warned_queue = false;
    let mut topology = job.topology.clone();
    loop {
        let topology_changed = async {
            match topology.as_mut() {
                Some(t) => t.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            ev = session.next() => ev,
            changed = topology_changed => {
                if changed {
                    let desc = topology.as_mut().map(|t| t.borrow_and_update().clone()).unwrap_or_default();
                    tracing::info!(shard = %job.name, "cluster topology changed: {desc}");
                    send(Msg::Topology(desc))?;
                } else {
                    topology = None;
                }
                continue;
            }
            _ = stop.changed() => {
                if in_snapshot {
                    let _ = handle.send(Msg::SnapshotAborted("stopped by the operator".into()));
                }
                return Ok(SessionEnd::Stopped);
            }
            _ = published.changed() => {
                let p = published.borrow_and_update().clone();
                session.set_durable(p.durable_offset);
                if p.error.is_some() || p.finished {
                    return Err(err(p.error.unwrap_or_else(|| "journal writer stopped".into()), true));
                }
                set(&mut |s| {
                    s.durable = p.durable_offset;
                    s.keys = p.keys.max(s.keys);
                    s.commands = p.commands;
                });
                if job.snapshot_only && p.snapshot_done.is_some() && !in_snapshot {
                    return Ok(SessionEnd::SnapshotDone);
                }
                continue;
            }
        };
        let event = match event {
            Ok(ev) => ev,
            Err(e) => {
                stream.discard_partial();
                if in_snapshot {
                    let _ = handle.send(Msg::SnapshotAborted(e.to_string()));
                    *resume = Resume::Full;
                }
                return Err(err(e.to_string(), !in_snapshot));
            }
        };
        match event {
            Event::RdbBegin { size } => {
                set(&mut |s| {
                    s.rdb_size = size;
                    s.phase = "receiving the snapshot".into();
                });
            }
            Event::RdbData(bytes) => {
                let n = bytes.len() as u64;
                send(Msg::Rdb(bytes))?;
                set(&mut |s| s.rdb_received += n);
            }
            Event::RdbEnd { size } => {
                send(Msg::RdbEnd)?;
                in_snapshot = false;
                if let Resume::Full = resume {
                    *resume = Resume::From {
                        replid: session.replid().to_string(),
                        offset: session.offset(),
                    };
                }
                tracing::info!(shard = %job.name, bytes = size, "snapshot received");
                set(&mut |s| {
                    s.phase = if job.snapshot_only {
                        "writing the snapshot".into()
                    } else {
                        "streaming".into()
                    }
                });
            }
            Event::Command { argv, offset, .. } => {
                let getack = replica::is_getack(&argv);
                match stream.push(argv, offset) {
                    Ok(Some(unit)) => {
                        if let Unit::Select { db: d, .. } = &unit {
                            *db = *d;
                        }
                        if let Unit::Transaction {
                            db: d, commands, ..
                        } = &unit
                        {
                            *db = super::stream::db_after(*d, commands);
                        }
                        // Resume after the last *journaled* unit only: keepalives and SELECTs
                        // are not journaled, and bytes a failed-over master sent that its
                        // successor never saw (sentinel hellos, PINGs) must not push the resume
                        // point past what the successor can continue from.
                        let journaled =
                            matches!(unit, Unit::Command { .. } | Unit::Transaction { .. });
                        send(Msg::Unit(unit, now_ms()))?;
                        if journaled {
                            *resume = Resume::From {
                                replid: session.replid().to_string(),
                                offset,
                            };
                        }
                    }
                    Ok(None) => {}
                    Err(e) => return Err(err(format!("{}: {e}", endpoint.addr()), true)),
                }
                if getack {
                    session
                        .answer_getack()
                        .await
                        .map_err(|e| err(e.to_string(), true))?;
                }
                set(&mut |s| s.offset = offset);
            }
            Event::FullResync { .. } | Event::Continue { .. } => {
                return Err(err(
                    "unexpected resync event in the middle of a session".into(),
                    true,
                ));
            }
        }
        let queued = handle.queued.load(Ordering::Relaxed);
        set(&mut |s| s.queued = queued);
        if queued > job.queue_warn && !warned_queue {
            warned_queue = true;
            tracing::warn!(shard = %job.name, queued_mib = queued >> 20, "the journal disk is behind the network: data is buffered in memory while the socket keeps being read");
        } else if queued < job.queue_warn / 2 {
            warned_queue = false;
        }
    }
}
