//! One replication session with one master, seen from the replica.
//!
//! The session is pull-based: the caller asks for the next [`Event`] and decides what to do with
//! it (parse the RDB, write the journal). Between reads the session keeps the link alive on its
//! own: a bare `\n` every second while the snapshot is being received (a master drops a silent
//! replica after `repl-timeout`), and `REPLCONF ACK <durable offset>` every second once the
//! stream runs, where the durable offset is what the caller last reported with
//! [`ReplicaSession::set_durable`] — so the master's view of this replica never runs ahead of
//! disk, and `WAIT` on the source counts only what the journal holds.

use crate::net::{Connection, Error as NetError};
use crate::resp::{self, Frame, Limits};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// What can go wrong in a replication session.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection failed (network, TLS, auth, timeout).
    #[error(transparent)]
    Net(#[from] NetError),
    /// The master refused `PSYNC` for a reason that may pass (`-LOADING`, `-NOMASTERLINK`).
    #[error("{addr}: master not ready for a sync, retry later: {message}")]
    NotReady {
        /// `host:port`.
        addr: String,
        /// The master's message.
        message: String,
    },
    /// The master refused `PSYNC` (or a handshake step) outright.
    #[error("{addr}: {command} refused: {message}")]
    Refused {
        /// `host:port`.
        addr: String,
        /// The command.
        command: String,
        /// The master's message.
        message: String,
    },
    /// The master sent something the protocol does not allow at this point.
    #[error("{addr}: replication protocol violation at stream offset {offset}: {detail}")]
    Protocol {
        /// `host:port`.
        addr: String,
        /// The replication offset reached (or the RDB byte count during the transfer).
        offset: u64,
        /// What was wrong.
        detail: String,
    },
}

/// Where the session starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// `PSYNC ? -1`: a full sync.
    Full,
    /// `PSYNC <replid> <offset+1>`: continue after `offset`, the last byte already held.
    From {
        /// Replication id the offset belongs to.
        replid: String,
        /// Last offset already held (the session asks for the next byte).
        offset: u64,
    },
}

/// Handshake settings.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Port announced with `REPLCONF listening-port` (informational on the master; 0 is fine).
    pub listening_port: u16,
    /// Name of the PSYNC command (some managed services rename it).
    pub psync_command: String,
    /// How long without a byte from the master before the link is considered dead. The master
    /// pings every 10 s by default, and sends `\n` every second while preparing a snapshot.
    pub read_timeout: Duration,
    /// How often keepalives (`\n` during the snapshot, `REPLCONF ACK` after) are sent.
    pub ack_interval: Duration,
    /// Largest RDB chunk handed out in one [`Event::RdbData`].
    pub rdb_chunk: usize,
    /// Version announced with `REPLCONF version` (`None`: not sent). A Valkey ≥ 9 primary picks
    /// the RDB version of a diskless sync from it: without it, RDB 11, and Valkey 9.1 then
    /// fails the whole sync ("Can't store key … in RDB version 11") as soon as one hash has a
    /// field with a TTL. Redis answers an error, which is ignored.
    pub announce_version: Option<String>,
}

/// The version shake announces to Valkey: 9.0.0, whose RDB (`VALKEY080`) the reader parses.
/// Not 9.2.0: that would ask for RDB 81, whose `PATH_HASH` values are not read.
pub const ANNOUNCED_VALKEY_VERSION: &str = "9.0.0";

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            listening_port: 0,
            psync_command: "PSYNC".into(),
            read_timeout: Duration::from_secs(60),
            ack_interval: Duration::from_secs(1),
            rdb_chunk: 1 << 20,
            announce_version: Some(ANNOUNCED_VALKEY_VERSION.into()),
        }
    }
}

/// What the master sent, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `+FULLRESYNC`: a snapshot follows; the stream after it starts at `offset + 1`.
    FullResync {
        /// The master's replication id.
        replid: String,
        /// The offset the snapshot corresponds to.
        offset: u64,
    },
    /// The snapshot transfer starts. `size` is known for a disk-based transfer (`$<len>`), not
    /// for a diskless one (`$EOF:`).
    RdbBegin {
        /// Total RDB bytes, when announced.
        size: Option<u64>,
    },
    /// A piece of the RDB, in order.
    RdbData(Bytes),
    /// The whole RDB has arrived (for `$EOF:`, the end mark was seen and verified).
    RdbEnd {
        /// Total RDB bytes received.
        size: u64,
    },
    /// `+CONTINUE`: a partial resync; the stream continues after `offset`. A `replid`
    /// different from the one asked for means the master's history changed (failover or
    /// restart) and continues under the new id.
    Continue {
        /// The replication id the stream now belongs to.
        replid: String,
        /// The last offset already held.
        offset: u64,
    },
    /// A command of the stream. `offset` is the replication offset of its last byte.
    Command {
        /// The arguments, name first (case as the master sent it).
        argv: Vec<Bytes>,
        /// Replication offset after this command.
        offset: u64,
        /// Bytes it took on the wire.
        wire_len: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    BulkHeader,
    Rdb { remaining: Option<u64> },
    Stream,
}

/// A replication session over a logged-in connection.
pub struct ReplicaSession {
    conn: Connection,
    options: SessionOptions,
    phase: Phase,
    replid: String,
    offset: u64,
    durable: u64,
    eof_mark: Option<Vec<u8>>,
    rdb_received: u64,
    /// Last 40 bytes of the RDB transfer not yet handed out (they may be the `$EOF:` mark).
    held: Vec<u8>,
    last_keepalive: Instant,
    /// The RDB tail was handed out together with finding the mark: `RdbEnd` is due next.
    pending_end: bool,
    /// A `REPLCONF GETACK` was returned and not yet answered.
    getack_pending: bool,
    limits: Limits,
}

impl std::fmt::Debug for ReplicaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaSession")
            .field("master", &self.conn.endpoint().addr())
            .field("replid", &self.replid)
            .field("offset", &self.offset)
            .finish()
    }
}

const EOF_MARK_LEN: usize = 40;

impl ReplicaSession {
    /// Performs the handshake on `conn` (already logged in): `REPLCONF listening-port`,
    /// `REPLCONF capa eof capa psync2`, `REPLCONF version` (see
    /// [`SessionOptions::announce_version`]), each reply read before `PSYNC` is sent (trap 1),
    /// then `PSYNC`. The first event tells which sync the master chose.
    pub async fn start(
        mut conn: Connection,
        resume: &Resume,
        options: SessionOptions,
    ) -> Result<(ReplicaSession, Event), Error> {
        let addr = conn.endpoint().addr();
        let port = options.listening_port.to_string();
        conn.queue(&["REPLCONF", "listening-port", &port]);
        conn.queue(&["REPLCONF", "capa", "eof", "capa", "psync2"]);
        let mut steps = vec!["REPLCONF listening-port", "REPLCONF capa"];
        if let Some(v) = &options.announce_version {
            conn.queue(&["REPLCONF", "version", v]);
            steps.push("REPLCONF version");
        }
        conn.flush().await?;
        for step in steps {
            let (reply, _) = conn.read_frame().await?;
            if let Frame::Error(msg) = reply {
                let msg = String::from_utf8_lossy(&msg).to_string();
                if msg.starts_with("NOPERM") || msg.starts_with("NOAUTH") {
                    return Err(Error::Refused {
                        addr,
                        command: step.into(),
                        message: msg,
                    });
                }
                // Very old masters reject unknown REPLCONF options; the real replica ignores it.
                tracing::debug!(master = %addr, "{step} answered {msg}");
            }
        }
        let (id, off) = match resume {
            Resume::Full => ("?".to_string(), "-1".to_string()),
            Resume::From { replid, offset } => (replid.clone(), (offset + 1).to_string()),
        };
        conn.send(&[options.psync_command.as_str(), &id, &off])
            .await?;
        let mut session = ReplicaSession {
            conn,
            options,
            phase: Phase::Handshake,
            replid: String::new(),
            offset: 0,
            durable: 0,
            eof_mark: None,
            rdb_received: 0,
            held: Vec::new(),
            last_keepalive: Instant::now(),
            pending_end: false,
            getack_pending: false,
            limits: Limits {
                // The master is exempt from proto-max-bulk-len on the replication link.
                max_bulk: 1 << 40,
                ..Limits::default()
            },
        };
        let line = session.read_line().await?;
        let text = String::from_utf8_lossy(&line).to_string();
        let event = if let Some(rest) = text.strip_prefix("+FULLRESYNC ") {
            let mut parts = rest.split_whitespace();
            let replid = parts.next().unwrap_or("").to_string();
            let offset = parts.next().and_then(|o| o.parse().ok());
            let Some(offset) = offset.filter(|_| replid.len() == 40) else {
                return Err(session.protocol(format!("malformed +FULLRESYNC line {text:?}")));
            };
            session.replid = replid.clone();
            session.offset = offset;
            // nothing of this sync is durable until the caller says its snapshot is: an ACK
            // of `offset` now would tell the master (and `WAIT`) the snapshot is safe while
            // it is still being written (regression: tests saw a capture "caught up" whose
            // journal then held no complete snapshot)
            session.durable = 0;
            session.phase = Phase::BulkHeader;
            Event::FullResync { replid, offset }
        } else if let Some(rest) = text.strip_prefix("+CONTINUE") {
            let Resume::From { replid, offset } = resume else {
                return Err(session.protocol("+CONTINUE in answer to a full sync request".into()));
            };
            let new_id = rest.trim();
            session.replid = if new_id.is_empty() {
                replid.clone()
            } else {
                new_id.to_string()
            };
            session.offset = *offset;
            session.durable = *offset;
            session.phase = Phase::Stream;
            Event::Continue {
                replid: session.replid.clone(),
                offset: *offset,
            }
        } else if let Some(msg) = text.strip_prefix('-') {
            let addr = session.addr();
            return Err(
                if msg.starts_with("LOADING")
                    || msg.starts_with("NOMASTERLINK")
                    || msg.starts_with("MASTERDOWN")
                {
                    Error::NotReady {
                        addr,
                        message: msg.to_string(),
                    }
                } else {
                    Error::Refused {
                        addr,
                        command: session.options.psync_command.clone(),
                        message: msg.to_string(),
                    }
                },
            );
        } else {
            return Err(session.protocol(format!("unexpected answer to PSYNC: {text:?}")));
        };
        Ok((session, event))
    }

    fn addr(&self) -> String {
        self.conn.endpoint().addr()
    }

    fn protocol(&self, detail: String) -> Error {
        Error::Protocol {
            addr: self.addr(),
            offset: self.offset,
            detail,
        }
    }

    /// The replication id of the stream.
    pub fn replid(&self) -> &str {
        &self.replid
    }

    /// The replication offset of the last byte consumed.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reports the offset the caller has made durable: ACKs never exceed it.
    pub fn set_durable(&mut self, offset: u64) {
        self.durable = self.durable.max(offset.min(self.offset));
    }

    /// Sends `REPLCONF ACK <durable>` now (also done every `ack_interval` by [`Self::next`]).
    pub async fn ack(&mut self) -> Result<(), Error> {
        let off = self.durable.to_string();
        self.conn.send(&["REPLCONF", "ACK", &off]).await?;
        self.last_keepalive = Instant::now();
        Ok(())
    }

    /// Waits for more bytes, sending keepalives on time and failing after `read_timeout` of
    /// silence.
    async fn read_more(&mut self) -> Result<(), Error> {
        let silence_limit = self.options.read_timeout;
        let started = Instant::now();
        loop {
            let until_keepalive = self
                .options
                .ack_interval
                .saturating_sub(self.last_keepalive.elapsed());
            tokio::select! {
                res = self.conn.read_more() => { res?; return Ok(()); }
                _ = tokio::time::sleep(until_keepalive) => {
                    self.keepalive().await?;
                    if started.elapsed() > silence_limit {
                        return Err(NetError::Timeout {
                            addr: self.addr(),
                            what: "replication data".into(),
                            secs: silence_limit.as_secs_f64(),
                        }.into());
                    }
                }
            }
        }
    }

    async fn keepalive(&mut self) -> Result<(), Error> {
        match self.phase {
            // Waiting for the snapshot to start: send nothing. A diskless master starts its
            // BGSAVE only once every waiting replica has been idle for
            // `repl-diskless-sync-delay`; a keepalive from us would reset that idle time and
            // postpone the snapshot forever (found by the delay test).
            Phase::Handshake | Phase::BulkHeader => {
                self.last_keepalive = Instant::now();
                Ok(())
            }
            // During the transfer: a bare newline only refreshes our liveness; an ACK would
            // start the command stream early in `$EOF:` mode (trap 4).
            Phase::Rdb { .. } => {
                self.conn.send_raw(b"\n").await?;
                self.last_keepalive = Instant::now();
                Ok(())
            }
            Phase::Stream => self.ack().await,
        }
    }

    /// Reads one CRLF-terminated line of the handshake, skipping bare `\n` keepalives.
    async fn read_line(&mut self) -> Result<Vec<u8>, Error> {
        loop {
            let buf = self.conn.buffer_mut();
            while buf.first() == Some(&b'\n') {
                let _ = buf.split_to(1);
            }
            if let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let mut line = buf.split_to(i + 1).to_vec();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if buf.len() > 64 * 1024 {
                return Err(self.protocol("handshake line longer than 64 KiB".into()));
            }
            self.read_more().await?;
        }
    }

    /// The next event. Cancel-safe only between events; call it in a loop.
    pub async fn next(&mut self) -> Result<Event, Error> {
        loop {
            match self.phase {
                Phase::Handshake => return Err(self.protocol("session not started".into())),
                Phase::BulkHeader => {
                    let line = self.read_line().await?;
                    if let Some(mark) = line.strip_prefix(b"$EOF:") {
                        if mark.len() != EOF_MARK_LEN {
                            return Err(self.protocol(format!(
                                "$EOF: mark of {} bytes, expected 40",
                                mark.len()
                            )));
                        }
                        self.eof_mark = Some(mark.to_vec());
                        self.phase = Phase::Rdb { remaining: None };
                        return Ok(Event::RdbBegin { size: None });
                    }
                    if let Some(len) = line.strip_prefix(b"$") {
                        let size: u64 = std::str::from_utf8(len)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| {
                                self.protocol(format!(
                                    "bad bulk header {:?}",
                                    String::from_utf8_lossy(&line)
                                ))
                            })?;
                        self.phase = Phase::Rdb {
                            remaining: Some(size),
                        };
                        return Ok(Event::RdbBegin { size: Some(size) });
                    }
                    if let Some(msg) = line.strip_prefix(b"-") {
                        return Err(Error::Refused {
                            addr: self.addr(),
                            command: "full sync".into(),
                            message: String::from_utf8_lossy(msg).to_string(),
                        });
                    }
                    return Err(self.protocol(format!(
                        "expected the RDB bulk header, got {:?}",
                        String::from_utf8_lossy(&line[..line.len().min(64)])
                    )));
                }
                Phase::Rdb {
                    remaining: Some(remaining),
                } => {
                    if remaining == 0 {
                        self.phase = Phase::Stream;
                        return Ok(Event::RdbEnd {
                            size: self.rdb_received,
                        });
                    }
                    if self.conn.buffer_mut().is_empty() {
                        self.read_more().await?;
                    }
                    let buf = self.conn.buffer_mut();
                    let take = (buf.len() as u64)
                        .min(remaining)
                        .min(self.options.rdb_chunk as u64) as usize;
                    let chunk = buf.split_to(take).freeze();
                    self.rdb_received += take as u64;
                    self.phase = Phase::Rdb {
                        remaining: Some(remaining - take as u64),
                    };
                    return Ok(Event::RdbData(chunk));
                }
                Phase::Rdb { remaining: None } => {
                    // Diskless: the master sends nothing after the mark until our first ACK, so
                    // the mark is always at the end of what has arrived. Hold back the last 40
                    // bytes until we know whether they are the mark.
                    let mark = self.eof_mark.clone().unwrap_or_default();
                    let mut incoming = std::mem::take(self.conn.buffer_mut());
                    if !incoming.is_empty() {
                        let mut all = std::mem::take(&mut self.held);
                        all.extend_from_slice(&incoming);
                        incoming.clear();
                        if all.len() >= EOF_MARK_LEN && all[all.len() - EOF_MARK_LEN..] == mark[..]
                        {
                            let data_len = all.len() - EOF_MARK_LEN;
                            all.truncate(data_len);
                            self.rdb_received += data_len as u64;
                            self.phase = Phase::Stream;
                            self.ack().await?; // starts the command stream (trap 4)
                            if !all.is_empty() {
                                // Hand out the tail first; RdbEnd comes on the next call.
                                self.held.clear();
                                self.pending_end = true;
                                return Ok(Event::RdbData(Bytes::from(all)));
                            }
                            return Ok(Event::RdbEnd {
                                size: self.rdb_received,
                            });
                        }
                        let keep_from = all.len().saturating_sub(EOF_MARK_LEN);
                        self.held = all.split_off(keep_from);
                        if !all.is_empty() {
                            self.rdb_received += all.len() as u64;
                            return Ok(Event::RdbData(Bytes::from(all)));
                        }
                    }
                    self.read_more().await?;
                }
                Phase::Stream => {
                    if self.pending_end {
                        self.pending_end = false;
                        return Ok(Event::RdbEnd {
                            size: self.rdb_received,
                        });
                    }
                    if let Some(ev) = self.next_command()? {
                        return Ok(ev);
                    }
                    self.answer_getack().await?;
                    self.read_more().await?;
                    if self.last_keepalive.elapsed() >= self.options.ack_interval {
                        self.ack().await?;
                    }
                }
            }
        }
    }

    /// Decodes one command from the buffer, if a whole one is there. `REPLCONF GETACK` is
    /// answered here (with the durable offset) and still returned, since its bytes count.
    fn next_command(&mut self) -> Result<Option<Event>, Error> {
        let buf = self.conn.buffer_mut();
        // Bare newlines are tolerated in the stream and count toward the offset (trap 2).
        let mut newlines = 0;
        while buf.first() == Some(&b'\n') {
            let _ = buf.split_to(1);
            newlines += 1;
        }
        self.offset += newlines;
        let limits = self.limits;
        let decoded = resp::decode(self.conn.buffer_mut(), &limits)
            .map_err(|e| self.protocol(e.to_string()))?;
        let Some((frame, len)) = decoded else {
            return Ok(None);
        };
        self.offset += len as u64;
        let Frame::Array(items) = frame else {
            return Err(self.protocol(format!("stream item is not a command array: {frame:?}")));
        };
        let mut argv = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Frame::Bulk(b) => argv.push(b),
                other => {
                    return Err(
                        self.protocol(format!("command argument is not a bulk string: {other:?}"))
                    );
                }
            }
        }
        if argv.is_empty() {
            return Err(self.protocol("empty command array".into()));
        }
        if is_getack(&argv) {
            self.getack_pending = true;
        }
        Ok(Some(Event::Command {
            argv,
            offset: self.offset,
            wire_len: len as u64,
        }))
    }

    /// Answers a `REPLCONF GETACK` seen in the last returned command. Call it after recording
    /// the command (so that what the ACK reports is durable), or let [`Self::next`] do it at
    /// the next keepalive.
    pub async fn answer_getack(&mut self) -> Result<(), Error> {
        if self.getack_pending {
            self.getack_pending = false;
            self.ack().await?;
        }
        Ok(())
    }
}

/// True for `REPLCONF GETACK …` (case-insensitive).
pub fn is_getack(argv: &[Bytes]) -> bool {
    argv.len() >= 2
        && argv[0].eq_ignore_ascii_case(b"REPLCONF")
        && argv[1].eq_ignore_ascii_case(b"GETACK")
}
