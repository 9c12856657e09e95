//! The journal side of a shard capture, on its own thread.
//!
//! The socket side (async, [`super::shard`]) must never wait for the disk: a master cuts a
//! replica whose output buffer grows past its limit. So the session hands everything it
//! receives to this thread through an unbounded channel and keeps reading; this thread parses
//! the RDB, compresses and writes frames, applies the fsync policy, and publishes the offset
//! that is durable, which is all the session acknowledges to the master. The bytes waiting in
//! the channel are counted, and the session reports (and, past a hard cap, pauses) when the
//! disk cannot keep up.

use super::snapshot::{SnapshotIngest, Summary};
use super::stream::Unit;
use crate::journal::{self, Command, Marker, Position, ShardWriter, Transaction};
use crate::rdb::ReaderOptions;
use crate::units::now_ms;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the session sends.
#[derive(Debug)]
pub enum Msg {
    /// A full resync starts a new epoch.
    FullResync {
        /// Master replid.
        replid: String,
        /// Snapshot offset.
        offset: u64,
    },
    /// RDB bytes.
    Rdb(Bytes),
    /// The RDB transfer is complete.
    RdbEnd,
    /// The snapshot transfer broke off: mark the epoch as interrupted.
    SnapshotAborted(String),
    /// A partial resync continued, possibly under a new replid.
    Continue {
        /// The replid now in force.
        replid: String,
        /// Last offset held.
        offset: u64,
    },
    /// A stream unit with its capture time.
    Unit(Unit, u64),
    /// Marker: a session started.
    SessionStart,
    /// Marker: a topology change worth recording.
    Topology(String),
    /// Stop: write the reason, seal, and exit.
    Stop(String),
}

/// What the writer thread publishes.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// The replication offset whose data is durable (what may be ACKed).
    pub durable_offset: u64,
    /// Set once the current epoch's snapshot is durable.
    pub snapshot_done: Option<Summary>,
    /// RDB bytes consumed in the current snapshot.
    pub rdb_bytes: u64,
    /// Keys written in the current snapshot.
    pub keys: u64,
    /// Stream units written since start.
    pub commands: u64,
    /// A fatal error, if the thread stopped on one.
    pub error: Option<String>,
    /// True once the thread has exited (after `Stop` or an error).
    pub finished: bool,
}

/// Handle to a running writer thread.
pub struct WriterHandle {
    tx: mpsc::Sender<Msg>,
    /// Bytes sent but not yet processed.
    pub queued: Arc<AtomicU64>,
    /// What the thread publishes.
    pub published: tokio::sync::watch::Receiver<Published>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WriterHandle {
    /// Sends a message (never blocks).
    pub fn send(&self, msg: Msg) -> Result<(), String> {
        let n = match &msg {
            Msg::Rdb(b) => b.len() as u64,
            Msg::Unit(u, _) => unit_size(u),
            _ => 0,
        };
        self.queued.fetch_add(n, Ordering::Relaxed);
        self.tx
            .send(msg)
            .map_err(|_| "the journal writer thread has stopped".to_string())
    }

    /// Waits for the thread to exit.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn unit_size(u: &Unit) -> u64 {
    match u {
        Unit::Command { argv, .. } => argv.iter().map(|a| a.len() as u64 + 8).sum(),
        Unit::Transaction { commands, .. } => {
            commands.iter().flatten().map(|a| a.len() as u64 + 8).sum()
        }
        _ => 8,
    }
}

/// Starts the thread for `writer`. `durable_offset` is where acknowledgements start (the
/// resume offset).
pub fn spawn(
    mut writer: ShardWriter,
    name: String,
    reader_options: ReaderOptions,
    chunk_size: usize,
    durable_offset: u64,
) -> WriterHandle {
    let (tx, rx) = mpsc::channel::<Msg>();
    let queued = Arc::new(AtomicU64::new(0));
    let (pub_tx, pub_rx) = tokio::sync::watch::channel(Published {
        durable_offset,
        ..Published::default()
    });
    let q = queued.clone();
    let thread = std::thread::Builder::new()
        .name(format!("journal-{name}"))
        .spawn(move || {
            let mut state = State {
                ingest: None,
                pending: VecDeque::new(),
                published: Published {
                    durable_offset,
                    ..Published::default()
                },
                reader_options,
                chunk_size,
                snapshot_offset: 0,
            };
            let result = run(&mut writer, &rx, &q, &pub_tx, &mut state);
            if let Err(e) = &result {
                tracing::error!(shard = %name, "journal writer stopped: {e}");
                state.published.error = Some(e.clone());
                // Seal what is there; the error is already the headline.
                let _ = writer.marker(Marker::CaptureStop {
                    time_ms: now_ms(),
                    reason: format!("error: {e}"),
                });
                let _ = writer.sync();
            }
            match writer.close() {
                Ok(Some(p)) => state.advance_to(p),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(shard = %name, "sealing the journal failed: {e}");
                    state.published.error.get_or_insert(e.to_string());
                }
            }
            state.published.finished = true;
            let _ = pub_tx.send(state.published.clone());
        })
        .expect("cannot spawn the journal writer thread");
    WriterHandle {
        tx,
        queued,
        published: pub_rx,
        thread: Some(thread),
    }
}

struct State {
    ingest: Option<SnapshotIngest>,
    /// Appended positions with the offset that becomes ACK-able once they are durable.
    pending: VecDeque<(Position, u64)>,
    published: Published,
    reader_options: ReaderOptions,
    chunk_size: usize,
    snapshot_offset: u64,
}

impl State {
    fn advance_to(&mut self, durable: Position) {
        while let Some((p, off)) = self.pending.front() {
            if *p > durable {
                break;
            }
            self.published.durable_offset = self.published.durable_offset.max(*off);
            self.pending.pop_front();
        }
    }

    fn mark(&mut self, writer: &ShardWriter, ack: u64) {
        if let Some(p) = writer.last_position() {
            // Coalesce: only the newest ack per position matters.
            if let Some(back) = self.pending.back_mut()
                && back.0 == p
            {
                back.1 = ack;
                return;
            }
            self.pending.push_back((p, ack));
        }
    }
}

fn run(
    writer: &mut ShardWriter,
    rx: &mpsc::Receiver<Msg>,
    queued: &AtomicU64,
    pub_tx: &tokio::sync::watch::Sender<Published>,
    st: &mut State,
) -> Result<(), String> {
    let mut last_flush = Instant::now();
    loop {
        let msg = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(m) => Some(m),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Some(Msg::Stop("the capture session ended".into()))
            }
        };
        let idle = msg.is_none();
        if let Some(msg) = msg {
            let stop = handle(writer, st, queued, msg)?;
            if stop {
                let p = writer.sync().map_err(|e| e.to_string())?;
                if let Some(p) = p {
                    st.advance_to(p);
                }
                let _ = pub_tx.send(st.published.clone());
                return Ok(());
            }
        }
        if idle || last_flush.elapsed() >= Duration::from_millis(100) {
            writer.flush().map_err(|e| e.to_string())?;
            // `shake ship --include-active` asks through a file in the shard directory.
            if writer.serve_seal_request().map_err(|e| e.to_string())? {
                tracing::info!("active segment sealed on request (shake ship)");
            }
            last_flush = Instant::now();
            if let Some(p) = writer.durable_position() {
                st.advance_to(p);
            }
            pub_tx.send_replace(st.published.clone());
        }
    }
}

fn handle(
    writer: &mut ShardWriter,
    st: &mut State,
    queued: &AtomicU64,
    msg: Msg,
) -> Result<bool, String> {
    let e = |e: journal::Error| e.to_string();
    match msg {
        Msg::SessionStart => {
            writer.capture_start(now_ms()).map_err(e)?;
        }
        Msg::Topology(description) => {
            writer
                .marker(Marker::Topology {
                    time_ms: now_ms(),
                    description,
                })
                .map_err(e)?;
        }
        Msg::FullResync { replid, offset } => {
            st.ingest = Some(SnapshotIngest::new(
                replid,
                offset,
                None,
                st.reader_options.clone(),
                st.chunk_size,
            ));
            st.snapshot_offset = offset;
            st.published.snapshot_done = None;
            st.published.rdb_bytes = 0;
            st.published.keys = 0;
        }
        Msg::Rdb(bytes) => {
            queued.fetch_sub(bytes.len() as u64, Ordering::Relaxed);
            let ingest = st
                .ingest
                .as_mut()
                .ok_or("RDB bytes without a full resync")?;
            ingest.feed(writer, &bytes).map_err(|e| e.to_string())?;
            st.published.rdb_bytes += bytes.len() as u64;
        }
        Msg::RdbEnd => {
            let ingest = st.ingest.take().ok_or("RDB end without a full resync")?;
            let summary = ingest.finish().map_err(|e| e.to_string())?;
            tracing::info!(
                keys = summary.keys,
                bytes = summary.bytes,
                "snapshot complete"
            );
            st.published.keys = summary.keys;
            st.published.snapshot_done = Some(summary);
            let off = st.snapshot_offset;
            st.mark(writer, off);
        }
        Msg::SnapshotAborted(reason) => {
            if st.ingest.take().is_some() {
                writer
                    .marker(Marker::CaptureStop {
                        time_ms: now_ms(),
                        reason: format!("snapshot interrupted: {reason}"),
                    })
                    .map_err(e)?;
            }
        }
        Msg::Continue { replid, offset } => {
            let current = writer.resume_point().map(|r| r.replid);
            if current.as_deref() != Some(replid.as_str()) {
                writer
                    .replid_changed(offset + 1, replid, current)
                    .map_err(e)?;
            }
        }
        Msg::Unit(unit, time_ms) => {
            queued.fetch_sub(unit_size(&unit), Ordering::Relaxed);
            let offset = unit.offset();
            match unit {
                Unit::Command { db, argv, offset } => {
                    writer
                        .command(
                            offset,
                            Command {
                                db,
                                time_ms,
                                argv: argv.into_iter().map(|a| a.to_vec()).collect(),
                            },
                        )
                        .map_err(e)?;
                    st.published.commands += 1;
                }
                Unit::Transaction {
                    db,
                    commands,
                    offset,
                } => {
                    let commands = commands
                        .into_iter()
                        .map(|c| c.into_iter().map(|a| a.to_vec()).collect())
                        .collect();
                    writer
                        .transaction(
                            offset,
                            Transaction {
                                db,
                                time_ms,
                                commands,
                            },
                        )
                        .map_err(e)?;
                    st.published.commands += 1;
                }
                Unit::Select { .. } | Unit::Keepalive { .. } => {}
            }
            st.mark(writer, offset);
        }
        Msg::Stop(reason) => {
            if let Some(ingest) = st.ingest.take() {
                let _ = ingest;
                writer
                    .marker(Marker::CaptureStop {
                        time_ms: now_ms(),
                        reason: format!("stopped during the snapshot: {reason}"),
                    })
                    .map_err(e)?;
            } else {
                writer
                    .marker(Marker::CaptureStop {
                        time_ms: now_ms(),
                        reason,
                    })
                    .map_err(e)?;
            }
            return Ok(true);
        }
    }
    Ok(false)
}
