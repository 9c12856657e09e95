//! Large snapshot values that cannot go by RESTORE, rebuilt with commands under a temporary
//! name, then renamed into place.
//!
//! A value goes by the command rewrite when the target is too old for its encoding, under
//! `--restore never`, or when its payload is above the target's `proto-max-bulk-len` — the
//! last is exactly the case of the largest values. Turned into one op, such a value would be
//! held whole twice (the value, then its commands). Instead the reader thread spills it to disk
//! as its chunks arrive ([`super::spill`]) and sends its commands itself, a group at a time, on
//! a connection of its own (made as [`super::bigkey`] makes its own), so memory stays at one group of
//! commands whatever the value's size.
//!
//! The commands build the value under a name of replay's own in the key's slot
//! (`shake-replay:{<slot tag>}:<journal id>:<shard>:rebuild`, see [`build_key`]), starting with
//! `DEL` of that name, ending with its `PEXPIREAT`; then `RENAME` (`--on-conflict replace`) or
//! `RENAMENX` (`skip`, `error`: a key that appeared meanwhile is kept) puts it in place in one
//! step. So the key is never seen half built, a build interrupted by a broken connection, a
//! target restart, `MOVED`, `ASK`, `TRYAGAIN` or `LOADING` starts again from `DEL` (with
//! backoff, up to `--max-retries`), and a replay killed mid-build leaves only the temporary
//! name, which the resumed run deletes when it rebuilds the same key (the checkpoint never
//! passed it) and which `shake compare` does not count (a `shake-replay:` key).
//!
//! An error reply to any command of the build (other than the transient ones above) stops the
//! build, deletes the temporary key and is reported against the key with the command's name:
//! a key is written whole or not at all.

use crate::journal::Position;
use crate::net::Connection;
use crate::net::slot::{key_slot, slot_tag};
use crate::rdb::rewrite::Commands;
use crate::resp::Frame;

use super::bigkey::{Attempt, BigKeys, Sent, StreamError, again};
use super::op::OnBusy;
use super::rate::Bucket;
use super::snapshot::NotWritten;

/// Values (encoded length) that go by commands are rebuilt from disk above this (or above
/// `--stream-values-above`, if lower): a value's commands, held as argument vectors, take about
/// twenty times its encoded size (measured: a 7 MiB list of 1 M elements, 140 MiB), so even a
/// value far below the RESTORE streaming threshold would cost hundreds of MiB whole.
pub const REBUILD_ABOVE: u64 = 2 << 20;

/// Commands sent before their replies are read.
const GROUP_COMMANDS: usize = 128;

/// Bytes of commands sent before their replies are read.
const GROUP_BYTES: usize = 4 << 20;

/// One key to rebuild.
pub struct Rebuild<'a> {
    /// The key's name on the target.
    pub key: &'a [u8],
    /// The temporary name it is built under ([`build_key`]).
    pub build: &'a [u8],
    /// The journal position of the key's record.
    pub at: Position,
    /// Target database (standalone targets).
    pub db: u32,
    /// What an existing key means (`Fail`: it is replaced).
    pub on_busy: OnBusy,
    /// The key's absolute expiry, to tell an expired build from a vanished one.
    pub expire_ms: Option<i64>,
}

/// What a rebuild did.
#[derive(Debug)]
pub struct Rebuilt {
    /// The outcome, as for a streamed RESTORE.
    pub sent: Sent,
    /// Commands the target accepted (the final attempt's).
    pub commands: u64,
    /// Their bytes.
    pub bytes: u64,
    /// What the commands could not reproduce exactly (see [`Commands::warnings`]).
    pub warnings: Vec<String>,
}

/// Where the commands come from: a fresh iterator per attempt, or why the key is not written
/// any more (its expiry passed between attempts).
pub type Source<'a> = dyn Fn() -> Result<Commands, NotWritten> + Sync + 'a;

/// The temporary name a large value of `key` is built under for `shard` of journal
/// `journal_id`: in `key`'s slot (so `RENAME` works on a cluster), one per shard (a shard's
/// reader rebuilds one key at a time).
pub fn build_key(journal_id: u64, shard: &str, key: &[u8]) -> Vec<u8> {
    format!(
        "shake-replay:{{{}}}:{journal_id}:{shard}:rebuild",
        slot_tag(key_slot(key))
    )
    .into_bytes()
}

impl BigKeys {
    /// Rebuilds `key` on the target with the commands `source` gives, a group at a time; the
    /// buckets rate-limit commands and bytes.
    pub async fn rebuild(
        &self,
        key: &Rebuild<'_>,
        source: &Source<'_>,
        buckets: &(Bucket, Bucket),
    ) -> Result<Rebuilt, StreamError> {
        self.with_retries(
            key.key,
            key.at,
            "rebuilding a large value",
            |addr, asking| self.build_once(key, source, buckets, addr, asking),
        )
        .await
    }

    async fn build_once(
        &self,
        key: &Rebuild<'_>,
        source: &Source<'_>,
        buckets: &(Bucket, Bucket),
        addr: String,
        asking: bool,
    ) -> Result<Rebuilt, Attempt> {
        let mut commands = match commands(source) {
            Ok(c) => c,
            Err(none) => return Ok(none),
        };
        let mut conn = self.connect_node(&addr, key.db).await?;
        let mut b = Build {
            conn: &mut conn,
            asking,
            commands: 0,
            bytes: 0,
        };
        if key.on_busy != OnBusy::Fail {
            let exists = b.call(self, &[b"EXISTS", key.key]).await?;
            if matches!(exists, Frame::Integer(n) if n > 0) {
                return Ok(done(busy(key.on_busy), 0, 0));
            }
        }
        let mut group: Vec<Vec<Vec<u8>>> = Vec::with_capacity(GROUP_COMMANDS);
        let mut group_bytes = 0;
        loop {
            let next = commands.next();
            let end = next.is_none();
            match next {
                Some(Ok(argv)) => {
                    group_bytes += wire_len(&argv) as usize;
                    group.push(argv);
                }
                Some(Err(e)) => {
                    b.discard(self, key).await;
                    return Ok(done(
                        Sent::Unreplayable(format!("value does not decode: {e}")),
                        0,
                        0,
                    ));
                }
                None => {}
            }
            if group.len() >= GROUP_COMMANDS || group_bytes >= GROUP_BYTES || end {
                buckets.0.take(group.len() as u64).await;
                buckets.1.take(group_bytes as u64).await;
                if let Some(refused) = b.send(self, &group).await? {
                    b.discard(self, key).await;
                    return Ok(done(Sent::Refused(refused), 0, 0));
                }
                group.clear();
                group_bytes = 0;
            }
            if end {
                break;
            }
        }
        let warnings = super::snapshot::warnings(&commands);
        let rename: &[u8] = if key.on_busy == OnBusy::Fail {
            b"RENAME"
        } else {
            b"RENAMENX"
        };
        let reply = b.call(self, &[rename, key.build, key.key]).await?;
        let sent = match reply {
            Frame::Error(m) => {
                let m = String::from_utf8_lossy(&m).into_owned();
                self.redirected(&m)?;
                let expired = key
                    .expire_ms
                    .is_some_and(|e| e <= crate::units::now_ms() as i64);
                if expired {
                    Sent::Expired
                } else if m.contains("no such key") {
                    // every field's own TTL had passed (the hash went with its last field),
                    // or an empty collection, which Redis keeps no key for either
                    tracing::warn!(at = %key.at, key = %super::error::printable_key(key.key), "nothing left to write: every field expired, or the value is empty");
                    Sent::Expired
                } else {
                    Sent::Refused(format!("{m} (to {})", String::from_utf8_lossy(rename)))
                }
            }
            Frame::Integer(0) => {
                b.discard(self, key).await;
                busy(key.on_busy)
            }
            _ => {
                b.commands += 1;
                b.bytes += wire_len(&[rename.to_vec(), key.build.to_vec(), key.key.to_vec()]);
                Sent::Applied
            }
        };
        Ok(Rebuilt {
            sent,
            commands: b.commands,
            bytes: b.bytes,
            warnings,
        })
    }
}

/// What a rebuild would send, counted without a target (`--dry-run`).
pub fn count(source: &Source<'_>) -> Rebuilt {
    let mut commands = match commands(source) {
        Ok(c) => c,
        Err(none) => return none,
    };
    let (mut n, mut bytes) = (1, 0); // the RENAME
    for c in commands.by_ref() {
        match c {
            Ok(argv) => {
                n += 1;
                bytes += wire_len(&argv);
            }
            Err(e) => {
                return done(
                    Sent::Unreplayable(format!("value does not decode: {e}")),
                    0,
                    0,
                );
            }
        }
    }
    Rebuilt {
        sent: Sent::Applied,
        commands: n,
        bytes,
        warnings: super::snapshot::warnings(&commands),
    }
}

/// An attempt's commands, or the outcome when the key is not written (expired, impossible).
fn commands(source: &Source<'_>) -> Result<Commands, Rebuilt> {
    source().map_err(|c| {
        let sent = match c {
            NotWritten::Expired => Sent::Expired,
            NotWritten::Impossible(why) => Sent::Unreplayable(why),
        };
        done(sent, 0, 0)
    })
}

/// Bytes of a command on the wire, roughly (as [`super::op::Cmd::wire_len`] counts).
fn wire_len(argv: &[Vec<u8>]) -> u64 {
    argv.iter().map(|a| a.len() as u64 + 16).sum::<u64>() + 8
}

fn done(sent: Sent, commands: u64, bytes: u64) -> Rebuilt {
    Rebuilt {
        sent,
        commands,
        bytes,
        warnings: Vec::new(),
    }
}

/// The outcome for a key that exists under `skip` or `error`.
fn busy(on_busy: OnBusy) -> Sent {
    match on_busy {
        OnBusy::Stop => Sent::Conflict,
        _ => Sent::Skipped,
    }
}

/// One attempt's connection and counts.
struct Build<'c> {
    conn: &'c mut Connection,
    /// Prefix every command with `ASKING` (an `ASK` redirected this attempt).
    asking: bool,
    commands: u64,
    bytes: u64,
}

impl Build<'_> {
    /// Sends `group` and reads its replies: `Some(reply)` names the first command refused for
    /// good; a redirection or a transient refusal ends the attempt.
    async fn send(
        &mut self,
        big: &BigKeys,
        group: &[Vec<Vec<u8>>],
    ) -> Result<Option<String>, Attempt> {
        for argv in group {
            if self.asking {
                self.conn.queue(&["ASKING"]);
            }
            self.conn.queue(argv);
        }
        self.conn.flush().await.map_err(|e| again(e.to_string()))?;
        let mut refused = None;
        for argv in group {
            if self.asking {
                big.reply(self.conn, "ASKING").await?;
            }
            let name = String::from_utf8_lossy(&argv[0]).into_owned();
            if let Frame::Error(m) = big.reply(self.conn, &name).await? {
                let m = String::from_utf8_lossy(&m).into_owned();
                big.redirected(&m)?;
                refused.get_or_insert_with(|| format!("{m} (to {name}, building the value)"));
            } else if refused.is_none() {
                self.commands += 1;
                self.bytes += wire_len(argv);
            }
        }
        Ok(refused)
    }

    /// Sends one command and reads its reply.
    async fn call(&mut self, big: &BigKeys, argv: &[&[u8]]) -> Result<Frame, Attempt> {
        if self.asking {
            self.conn.queue(&["ASKING"]);
        }
        self.conn.queue(argv);
        self.conn.flush().await.map_err(|e| again(e.to_string()))?;
        if self.asking {
            big.reply(self.conn, "ASKING").await?;
        }
        let name = String::from_utf8_lossy(argv[0]).into_owned();
        big.reply(self.conn, &name).await
    }

    /// Deletes the temporary key after a build that stopped (best effort: the next build of
    /// a key of the same slot deletes it first anyway).
    async fn discard(&mut self, big: &BigKeys, key: &Rebuild<'_>) {
        if let Err(e) = self.call(big, &[b"DEL", key.build]).await {
            let why = match e {
                Attempt::Again { why, .. } => why,
                Attempt::Fatal(e) => e.to_string(),
            };
            tracing::warn!(at = %key.at, "deleting the temporary key of a stopped rebuild: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_key_is_in_the_slot_of_the_key_and_a_replay_marker() {
        for key in [&b"big:hash"[..], b"{user1000}.following", b"a}b{", b""] {
            let b = build_key(1_700_000_000_000, "127.0.0.1_6379", key);
            assert_eq!(key_slot(&b), key_slot(key), "{key:?}");
            assert!(super::super::partition::is_marker_key(&b));
        }
    }
}
