//! Snapshot values too large to hold whole: streamed from the journal to the target as one
//! `RESTORE`, chunk by chunk.
//!
//! The capture splits a value larger than a frame into a [`KeyRecord`] and [`ValueChunk`]s.
//! Reassembling such a value, then encoding it as a RESTORE payload, costs twice its size in
//! memory — gigabytes for a big hash. So a value above [`STREAM_ABOVE`] that goes by RESTORE
//! is not reassembled: the reader thread sends it itself on a connection of its own, writing
//! the RESP bulk header (its length is known from `value_len`), then each chunk as it is read
//! from the journal, then the DUMP footer (RDB version and CRC-64, computed on the way) and the
//! remaining arguments. Memory stays at one chunk. Only once the target acknowledged the key
//! does the reader hand the dispatcher an empty op at the key's last position, so the
//! checkpoint never passes an unapplied key.
//!
//! A broken connection, `MOVED`, `ASK`, `TRYAGAIN` or `LOADING` starts the key again from its
//! record, read again from the journal, with backoff (up to `--max-retries`). Other error
//! replies are reported against the key like any other command's. Large values that must go
//! through the command rewrite instead are rebuilt by [`super::rebuild`], on a connection made
//! and retried the same way.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

use crate::journal::{KeyRecord, Position, Record, ShardReader, ValueChunk};
use crate::net::slot::key_slot;
use crate::net::{ConnectOptions, Connection, Endpoint};
use crate::rdb::dump::DumpBuilder;
use crate::resp::Frame;

use super::op::OnBusy;
use super::router::{Redirect, SlotMap, parse_redirect, split_addr};

/// Values (encoded length) above this are streamed rather than reassembled.
pub const STREAM_ABOVE: u64 = 32 << 20;

/// How to reach the target from the reader thread.
pub struct BigKeys {
    /// The target (host, credentials, TLS).
    pub endpoint: Endpoint,
    /// Timeouts and TLS options.
    pub connect: ConnectOptions,
    /// Where each slot lives (a cluster target), corrected by `MOVED`.
    pub map: Mutex<SlotMap>,
    /// Attempts before giving up on a key.
    pub max_retries: u32,
}

/// One key to stream: where it is in the journal and the RESP around its payload.
pub struct BigKey<'a> {
    /// The key's record (its `value` part is read again from the journal).
    pub record: &'a KeyRecord,
    /// The journal position of the key's record.
    pub at: Position,
    /// Target database (standalone targets).
    pub db: u32,
    /// RESP before the payload's bytes: array header, `RESTORE`, key, expiry, bulk header.
    pub head: Bytes,
    /// RESP after the payload's `\r\n`: `ABSTTL` (with an expiry), `REPLACE`, `IDLETIME`/`FREQ`.
    pub tail: Bytes,
    /// The RDB version the footer carries.
    pub label: u16,
    /// What a `BUSYKEY` reply means.
    pub on_busy: OnBusy,
}

/// What became of a streamed key.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// The target holds it.
    Applied,
    /// It existed and the conflict policy says skip.
    Skipped,
    /// It existed and the conflict policy says stop.
    Conflict,
    /// The target refused it: the error reply (reported against the key).
    Refused(String),
    /// Its expiry passed before it could be written (a rebuild).
    Expired,
    /// It cannot be written as commands: why (a rebuild).
    Unreplayable(String),
}

/// Why streaming a key failed for good.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The journal could not be read again, or no longer holds the key as it did.
    #[error("reading the key again from the journal at {at}: {why}")]
    Journal {
        /// The key's position.
        at: Position,
        /// What went wrong.
        why: String,
    },
    /// The target stayed unreachable or kept redirecting.
    #[error("{addr}: {why} (after {attempts} attempts)")]
    Target {
        /// The node last tried.
        addr: String,
        /// The last failure.
        why: String,
        /// Attempts made.
        attempts: u32,
    },
}

/// Why one attempt failed.
pub(super) enum Attempt {
    /// Try again (after backoff when `wait`), at `ask` when an `ASK` said so.
    Again {
        why: String,
        wait: bool,
        ask: Option<String>,
    },
    /// Give up.
    Fatal(StreamError),
}

impl BigKeys {
    /// Streams `key` to the target from `reader` and reads the reply.
    pub async fn send(&self, reader: &ShardReader, key: &BigKey<'_>) -> Result<Sent, StreamError> {
        self.with_retries(
            &key.record.key,
            key.at,
            "streaming a large value",
            |addr, asking| self.attempt(reader, key, addr, asking),
        )
        .await
    }

    /// Runs `attempt` against the node that owns `key` until it settles: again after a broken
    /// connection or a transient refusal (with backoff), at once after `MOVED` (the map is
    /// corrected) or `ASK` (at the node it names), up to `--max-retries` attempts. `what` says
    /// what is being done, for the warnings.
    pub(super) async fn with_retries<T, F>(
        &self,
        key: &[u8],
        at: Position,
        what: &str,
        mut attempt: impl FnMut(String, bool) -> F,
    ) -> Result<T, StreamError>
    where
        F: std::future::Future<Output = Result<T, Attempt>>,
    {
        let mut backoff = Duration::from_millis(250);
        let mut ask: Option<String> = None;
        let attempts = self.max_retries.max(1);
        let mut n = 0;
        let mut warned: Option<std::time::Instant> = None;
        loop {
            n += 1;
            let addr = match &ask {
                Some(a) => a.clone(),
                None => self.owner(key),
            };
            match attempt(addr.clone(), ask.is_some()).await {
                Ok(done) => return Ok(done),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Again {
                    why,
                    wait,
                    ask: next,
                }) => {
                    tracing::warn!(%at, key = %super::error::printable_key(key), attempt = n, "{what} to {addr}: {why}");
                    if n >= attempts {
                        // a slot being migrated refuses two-key commands (the rebuild's
                        // RENAME) until the migration ends, however long it takes: wait it out
                        match self.migration(key).await {
                            Some((slot, other)) => {
                                if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                                    warned = Some(std::time::Instant::now());
                                    tracing::warn!(%at, key = %super::error::printable_key(key), "slot {slot} is being migrated ({addr} ↔ {other}) on the target: {what} waits for the migration to end");
                                }
                            }
                            // it just ended: the key gets its attempts afresh
                            None if warned.take().is_some() => n = 0,
                            None => {
                                return Err(StreamError::Target {
                                    addr,
                                    why,
                                    attempts: n,
                                });
                            }
                        }
                    }
                    ask = next;
                    if wait {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        }
    }

    /// The slot of `key` and the other node, when its owner reports it migrating or importing
    /// (`CLUSTER NODES`); `None` on a standalone target or when it cannot be asked.
    async fn migration(&self, key: &[u8]) -> Option<(u16, String)> {
        if !self.map.lock().unwrap().is_cluster() {
            return None;
        }
        let slot = key_slot(key);
        let mut conn = self.connect_node(&self.owner(key), 0).await.ok()?;
        let f = conn.request(&["CLUSTER", "NODES"]).await.ok()?;
        let text = String::from_utf8_lossy(f.as_bytes()?).into_owned();
        crate::net::topology::migrations(&text)
            .into_iter()
            .find(|(s, _)| *s == slot)
    }

    /// The node that owns `key` (the one node of a standalone target).
    fn owner(&self, key: &[u8]) -> String {
        let map = self.map.lock().unwrap();
        map.node(super::op::Route::Slot(key_slot(key)))
    }

    /// A connection of its own to node `addr`, in database `db` on a standalone target.
    pub(super) async fn connect_node(&self, addr: &str, db: u32) -> Result<Connection, Attempt> {
        let (host, port) = split_addr(addr).ok_or_else(|| {
            Attempt::Fatal(StreamError::Target {
                addr: addr.to_string(),
                why: "a node address that is not host:port".into(),
                attempts: 0,
            })
        })?;
        let mut ep = self.endpoint.with_addr(host, port);
        let cluster = self.map.lock().unwrap().is_cluster();
        ep.db = if cluster { 0 } else { db };
        Connection::connect(&ep, &self.connect)
            .await
            .map_err(|e| again(e.to_string()))
    }

    /// The next reply on `conn` (to `what`, for the message when none comes in time).
    pub(super) async fn reply(&self, conn: &mut Connection, what: &str) -> Result<Frame, Attempt> {
        match tokio::time::timeout(self.connect.reply_timeout, conn.read_frame()).await {
            Ok(Ok((f, _))) => Ok(f),
            Ok(Err(e)) => Err(again(e.to_string())),
            Err(_) => Err(again(format!("no reply to {what} in time"))),
        }
    }

    /// What an error reply `m` means for an attempt: `Ok(())` when it is the key's own
    /// (reported, or read by the conflict policy), else how to try again.
    pub(super) fn redirected(&self, m: &str) -> Result<(), Attempt> {
        match parse_redirect(m) {
            Some(Redirect::Moved { slot, addr }) => {
                self.map.lock().unwrap().set(slot, &addr);
                Err(Attempt::Again {
                    why: m.to_string(),
                    wait: false,
                    ask: None,
                })
            }
            Some(Redirect::Ask { addr, .. }) => Err(Attempt::Again {
                why: m.to_string(),
                wait: false,
                ask: Some(addr),
            }),
            None if super::writer::transient(m) => Err(again(m.to_string())),
            None => Ok(()),
        }
    }

    async fn attempt(
        &self,
        reader: &ShardReader,
        key: &BigKey<'_>,
        addr: String,
        asking: bool,
    ) -> Result<Sent, Attempt> {
        let mut conn = self.connect_node(&addr, key.db).await?;
        let mut expect = 1;
        if asking {
            conn.queue(&["ASKING"]);
            expect += 1;
        }
        conn.queue_raw(&key.head);
        conn.queue_raw(&[key.record.type_id]);
        let mut digest = DumpBuilder::new(key.record.type_id);
        let mut sent: u64 = 0;
        // the key's record, then its chunks, as the capture wrote them
        let mut entries = reader.entries_from(key.at);
        let mut next = 0u32;
        while next <= key.record.chunks {
            let e = entries
                .next()
                .ok_or_else(|| journal_error(key.at, "the journal ends inside the value".into()))?
                .map_err(|e| journal_error(key.at, e.to_string()))?;
            let bytes = match (&e.record, next) {
                (Record::Key(k), 0) if e.position == key.at && k.key == key.record.key => &k.value,
                (Record::ValueChunk(ValueChunk { index, data }), n) if *index == n && n > 0 => data,
                _ => {
                    return Err(journal_error(
                        e.position,
                        format!(
                            "expected part {next} of the value, found a {} record",
                            e.record.kind_name()
                        ),
                    ));
                }
            };
            digest.update(bytes);
            sent += bytes.len() as u64;
            conn.queue_raw(bytes);
            conn.flush().await.map_err(|e| again(e.to_string()))?;
            next += 1;
        }
        if sent != key.record.value_len {
            return Err(journal_error(
                key.at,
                format!(
                    "the value's parts add up to {sent} bytes, its record says {}",
                    key.record.value_len
                ),
            ));
        }
        conn.queue_raw(&digest.finish(key.label));
        conn.queue_raw(b"\r\n");
        conn.queue_raw(&key.tail);
        conn.flush().await.map_err(|e| again(e.to_string()))?;
        let mut reply = Frame::Null;
        for _ in 0..expect {
            reply = self.reply(&mut conn, "RESTORE").await?;
        }
        let Frame::Error(m) = reply else {
            return Ok(Sent::Applied);
        };
        let m = String::from_utf8_lossy(&m).into_owned();
        self.redirected(&m)?;
        if super::writer::error_kind(&m) == "BUSYKEY" {
            match key.on_busy {
                OnBusy::Skip => return Ok(Sent::Skipped),
                OnBusy::Stop => return Ok(Sent::Conflict),
                OnBusy::Fail | OnBusy::Replace => {}
            }
        }
        Ok(Sent::Refused(m))
    }
}

/// Try again after backoff, for `why`.
pub(super) fn again(why: String) -> Attempt {
    Attempt::Again {
        why,
        wait: true,
        ask: None,
    }
}

fn journal_error(at: Position, why: String) -> Attempt {
    Attempt::Fatal(StreamError::Journal { at, why })
}
