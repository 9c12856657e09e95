//! Snapshot keys → ops: RESTORE when the target accepts the payload, the RDB engine's command
//! rewrite otherwise, with the conflict policy honoured on both paths (RedisShake's duplicated
//! lists on re-runs came from a policy one path ignored).
//!
//! RESTORE is `RESTORE key <expire ms> payload [ABSTTL] [REPLACE] [IDLETIME n | FREQ n]`: the expiry
//! stays absolute, so replaying hours later does not extend a TTL. The rewrite path is `DEL`
//! (under `replace`) then the writes then `PEXPIREAT`. Under `skip`/`error` the rewrite path
//! first asks `EXISTS` (an [`Guard`]); RESTORE drops `REPLACE` and reads `BUSYKEY`.

use bytes::{BufMut, Bytes, BytesMut};

use crate::resp;

use crate::journal::{KeyRecord, Position};
use crate::net::slot::key_slot;
use crate::rdb::decode::{StrAt, decode_string};
use crate::rdb::dump::{self, Compat};
use crate::rdb::rewrite::{Commands, RewriteOptions, rewrite};
use crate::rdb::string::{StrHeader, parse_header};
use crate::rdb::version::{Flavor, Kind, ObjectType};

use super::arena::Arena;
use super::checkpoint::Phase;
use super::op::{Cmd, Guard, OnBusy, Op, Route, Unit};
use super::options::{ConflictPolicy, RestoreMode};
use super::plan::TargetInfo;

/// What became of a key.
#[derive(Debug)]
pub enum Converted {
    /// Write it with this op. The strings say what the command rewrite could not reproduce
    /// exactly (field TTLs on a target without them, stream metadata …): reported per key.
    Op(Op, Vec<String>),
    /// Its expiry is already past: not written (Redis would drop it on load too).
    Expired,
    /// It cannot reach this target; the reason names the type and the target.
    Impossible(String),
}

/// Why a large value is not rebuilt ([`KeyConverter::rebuild`]).
#[derive(Debug)]
pub enum NotWritten {
    /// Its expiry is already past.
    Expired,
    /// It cannot reach this target: why.
    Impossible(String),
}

/// Turns snapshot keys into ops for one target.
#[derive(Debug, Clone)]
pub struct KeyConverter {
    target: TargetInfo,
    restore: RestoreMode,
    conflict: ConflictPolicy,
    rewrite: RewriteOptions,
    cluster: bool,
    /// Write small strings without TTL as plain `SET`s (see [`KeyConverter::plain_strings`]).
    plain_strings: bool,
    /// The replay's counters, read for how many keys the target already held (see
    /// [`KeyConverter::watching`]).
    stats: Option<std::sync::Arc<super::report::Stats>>,
}

/// Keys found existing (and replaced) after which RESTOREs carry `REPLACE` from the start
/// ([`KeyConverter::watching`]).
const EXISTING_BEFORE_REPLACE: u64 = 64;

/// Largest encoded string value sent as a plain `SET` rather than RESTORE.
const PLAIN_STRING_MAX: usize = 64 << 10;

impl KeyConverter {
    /// A converter for `target` under these policies.
    pub fn new(target: &TargetInfo, restore: RestoreMode, conflict: ConflictPolicy) -> Self {
        let v = target.version_number();
        let valkey = target.product == dump::Product::Valkey;
        KeyConverter {
            rewrite: RewriteOptions {
                hash_field_ttl: if valkey { v >= 900 } else { v >= 704 },
                stream_v2_metadata: valkey || v >= 700,
                delete_first: true,
                string_chunk: (target.proto_max_bulk_len as usize / 2).clamp(1 << 20, 64 << 20),
                ..RewriteOptions::default()
            },
            cluster: target.is_cluster(),
            target: target.clone(),
            restore,
            conflict,
            plain_strings: false,
            stats: None,
        }
    }

    /// Under `--on-conflict replace`, sends RESTOREs without `REPLACE` while the target has
    /// held few of the keys (fewer than 64 so far, as `stats` counts them), and each refused
    /// with `BUSYKEY` again with it ([`OnBusy::Replace`]).
    ///
    /// Why: the target parses every argument of every RESTORE, about 600 instructions each
    /// (callgrind, docs/performance.md), a twentieth of what a small key costs it; replaying
    /// into an empty target, `REPLACE` changes nothing. Into one that already holds the keys
    /// (a second run) the resends would double the work, so past 64 existing keys `REPLACE`
    /// goes with every RESTORE again. The effect is the same either way: a key is replaced
    /// whatever it held, and a key resent after a crash is replaced too.
    pub fn watching(mut self, stats: std::sync::Arc<super::report::Stats>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Whether this RESTORE carries `REPLACE` (else it gets [`OnBusy::Replace`]).
    fn replace_at_once(&self) -> bool {
        self.replace()
            && self.stats.as_ref().is_none_or(|s| {
                s.replaced.load(std::sync::atomic::Ordering::Relaxed) >= EXISTING_BEFORE_REPLACE
            })
    }

    /// Under `--restore auto` and `--on-conflict replace`, writes a string key without TTL or
    /// LRU/LFU metadata (below 64 KiB) as `SET key value` instead of RESTORE: the target ends
    /// with the same key and value (`SET` replaces any type and drops a TTL, as
    /// `RESTORE … REPLACE` does), and the replay folds runs of them into `MSET`s
    /// ([`super::op::Op::fold`]), which costs the target far less per key than one
    /// RESTORE each (docs/performance.md, "Replay"). Off with `--no-fold`.
    pub fn plain_strings(mut self, on: bool) -> Self {
        self.plain_strings = on;
        self
    }

    /// Converts snapshot key `key` with `value` (encoded as in the RDB, reassembled from its
    /// chunks), whose record is `k` (its name and value fields are not read), of a snapshot
    /// written with `src_version`, into target db `db`. `position` is the key's last record;
    /// `now_ms` tells the time that decides what is already expired, asked only for a key with
    /// an expiry (reading the clock costs as much as converting a small key). A string value
    /// and an encoded RESTORE are built in `arena` (see [`super::arena`]).
    #[allow(clippy::too_many_arguments)]
    pub fn convert(
        &self,
        k: &KeyRecord,
        key: &Bytes,
        value: Bytes,
        src_version: u16,
        db: u32,
        position: Position,
        now_ms: impl FnOnce() -> i64,
        arena: &mut Arena,
    ) -> Converted {
        if k.expire_ms.is_some_and(|e| e <= now_ms()) {
            return Converted::Expired;
        }
        let Some(t) = object_type(k.type_id, src_version) else {
            return Converted::Impossible(format!("unknown RDB type {}", k.type_id));
        };
        let route = if self.cluster {
            Route::Slot(key_slot(key))
        } else {
            Route::Any
        };
        let mk = |key, unit, guard| Op {
            position,
            phase: Phase::Snapshot,
            db,
            end_db: db,
            key: Some(key),
            unit,
            guard,
            folded: Vec::new(),
        };
        if self.plain_strings
            && t == ObjectType::String
            && k.expire_ms.is_none()
            && k.idle.is_none()
            && k.freq.is_none()
            && self.conflict == ConflictPolicy::Replace
            && self.restore == RestoreMode::Auto
            && value.len() <= PLAIN_STRING_MAX
        {
            return match decode_string(&value) {
                Ok(at) => {
                    let s = match at {
                        StrAt::Slice(r) => value.slice(r),
                        StrAt::Owned(v) => arena.copy(&v),
                    };
                    let argv = vec![Bytes::from_static(b"SET"), key.clone(), s];
                    Converted::Op(
                        mk(
                            key.clone(),
                            Unit::Commands(vec![Cmd::new(argv, route)]),
                            None,
                        ),
                        Vec::new(),
                    )
                }
                Err(e) => Converted::Impossible(format!("value does not decode: {e}")),
            };
        }
        let restore_label = match self.restore_label(t, src_version, value.len() as u64) {
            Ok(l) => l,
            Err(why) => return Converted::Impossible(why),
        };
        if let Some(label) = restore_label {
            let at_once = self.replace_at_once();
            let wire = self.restore_wire(k, key, &value, label, at_once, arena);
            drop(value);
            let mut cmd = Cmd::encoded(b"RESTORE", wire, route);
            cmd.on_busy = if self.replace() && !at_once {
                OnBusy::Replace
            } else {
                self.on_busy()
            };
            return Converted::Op(mk(key.clone(), Unit::Commands(vec![cmd]), None), Vec::new());
        }
        let mut commands = match self.rewrite(k, t, value, key) {
            Ok(c) => c,
            Err(why) => return Converted::Impossible(why),
        };
        let mut cmds = Vec::new();
        for c in commands.by_ref() {
            match c {
                Ok(argv) => cmds.push(Cmd::new(argv.into_iter().map(Bytes::from).collect(), route)),
                Err(e) => return Converted::Impossible(format!("value does not decode: {e}")),
            }
        }
        let guard = (self.conflict != ConflictPolicy::Replace).then(|| Guard {
            key: key.to_vec(),
            route,
            on_exists: self.on_busy(),
        });
        let warnings = warnings(&commands);
        Converted::Op(mk(key.clone(), Unit::Commands(cmds), guard), warnings)
    }

    /// How a large value that does not go by RESTORE is rebuilt ([`super::rebuild`]): the
    /// commands that write it under the temporary name `build` (`DEL build` first, its expiry
    /// last), or why it is not written (expired at `now_ms`, or impossible on this target).
    /// `value` is the whole value, mapped from its spill file.
    pub fn rebuild(
        &self,
        k: &KeyRecord,
        value: Bytes,
        src_version: u16,
        build: &[u8],
        now_ms: i64,
    ) -> Result<Commands, NotWritten> {
        if k.expire_ms.is_some_and(|e| e <= now_ms) {
            return Err(NotWritten::Expired);
        }
        let Some(t) = object_type(k.type_id, src_version) else {
            return Err(NotWritten::Impossible(format!(
                "unknown RDB type {}",
                k.type_id
            )));
        };
        match self.restore_label(t, src_version, k.value_len) {
            Err(why) => return Err(NotWritten::Impossible(why)),
            // the caller streams what goes by RESTORE ([`KeyConverter::streamed_restore`])
            Ok(Some(_)) => {
                return Err(NotWritten::Impossible(
                    "a value for RESTORE was handed to the command rebuild".into(),
                ));
            }
            Ok(None) => {}
        }
        self.rewrite(k, t, value, build)
            .map_err(NotWritten::Impossible)
    }

    /// The command rewrite of `k`'s value (type `t`) written to key `name`.
    fn rewrite(
        &self,
        k: &KeyRecord,
        t: ObjectType,
        value: Bytes,
        name: &[u8],
    ) -> Result<Commands, String> {
        if t.kind() == Kind::Module {
            return Err(format!(
                "module value (type {}) has no command form and --restore never was given",
                k.type_id
            ));
        }
        if t == ObjectType::String
            && let Ok(Some((StrHeader::Raw { len: n } | StrHeader::Lzf { ulen: n, .. }, _))) =
                parse_header(&value)
            && n > self.target.proto_max_bulk_len
        {
            // APPEND refuses to grow a string past it: the target cannot hold this one
            return Err(format!(
                "a string of {n} bytes is longer than the target's proto-max-bulk-len ({})",
                self.target.proto_max_bulk_len
            ));
        }
        rewrite(name, t, value, k.expire_ms, &self.rewrite)
            .map_err(|e| format!("value does not decode: {e}"))
    }

    /// `RESTORE key <expire ms> <payload> [ABSTTL] [REPLACE] [IDLETIME n | FREQ n]` encoded as
    /// RESP in one buffer, the payload (type byte, value, version and CRC-64 footer) written
    /// straight into it. The buffer is allocated at its exact final size: frozen with spare
    /// capacity, it would cost `bytes` a second allocation (a shared header).
    fn restore_wire(
        &self,
        k: &KeyRecord,
        key: &[u8],
        value: &[u8],
        label: u16,
        replace: bool,
        arena: &mut Arena,
    ) -> Bytes {
        let (mut eb, mut mb) = (itoa::Buffer::new(), itoa::Buffer::new());
        let args = RestoreArgs::of(k, key, replace, &mut eb, &mut mb);
        let payload = 1 + value.len() + 10;
        let len = args.head_len(payload) + payload + 2 + args.tail_len();
        arena.build(len, |w| {
            args.head(w, payload);
            dump::write(w, k.type_id, value, label);
            w.put_slice(b"\r\n");
            args.tail(w);
        })
    }

    /// Whether a value of type `t` and `value_len` encoded bytes goes by RESTORE: the RDB
    /// version its payload's footer carries (`None`: the command rewrite), or why it cannot
    /// reach this target at all.
    fn restore_label(
        &self,
        t: ObjectType,
        src_version: u16,
        value_len: u64,
    ) -> Result<Option<u16>, String> {
        let compat = dump::compatibility(t, src_version, self.target.destination());
        // payload = type byte + value + 10-byte footer, sent as one bulk argument
        let too_big = value_len + 11 > self.target.proto_max_bulk_len;
        let fits = !too_big || self.restore == RestoreMode::Always;
        Ok(match (compat, self.restore) {
            (_, RestoreMode::Never) => None,
            (Compat::Impossible { reason }, _) => return Err(reason),
            (Compat::Unchanged, _) if fits => Some(src_version),
            (Compat::Relabel { to }, _) if fits => Some(to),
            (Compat::Rewrite { reason }, RestoreMode::Always) => {
                return Err(format!(
                    "--restore always, but RESTORE cannot carry it: {reason}"
                ));
            }
            _ => None,
        })
    }

    /// How a large value is streamed ([`super::bigkey`]) when it goes by RESTORE: the footer's
    /// RDB version, and the RESP around the payload (head, tail). `None`: the key is expired,
    /// or goes by the command rewrite or cannot reach this target — [`KeyConverter::convert`]
    /// handles (and reports) it whole.
    pub fn streamed_restore(
        &self,
        k: &KeyRecord,
        src_version: u16,
        now_ms: i64,
    ) -> Option<(u16, Bytes, Bytes)> {
        if k.expire_ms.is_some_and(|e| e <= now_ms) {
            return None;
        }
        let t = object_type(k.type_id, src_version)?;
        let label = self.restore_label(t, src_version, k.value_len).ok()??;
        let (mut eb, mut mb) = (itoa::Buffer::new(), itoa::Buffer::new());
        let args = RestoreArgs::of(k, &k.key, self.replace(), &mut eb, &mut mb);
        let payload = 1 + k.value_len as usize + 10;
        let mut head = BytesMut::with_capacity(args.head_len(payload));
        args.head(&mut head, payload);
        let mut tail = BytesMut::with_capacity(args.tail_len());
        args.tail(&mut tail);
        Some((label, head.freeze(), tail.freeze()))
    }

    /// Whether RESTOREs carry `REPLACE` (the `replace` conflict policy).
    fn replace(&self) -> bool {
        self.conflict == ConflictPolicy::Replace
    }

    /// What an existing key (`BUSYKEY`, a library that exists) means under the conflict policy.
    pub fn on_busy(&self) -> OnBusy {
        match self.conflict {
            ConflictPolicy::Replace => OnBusy::Fail,
            ConflictPolicy::Skip => OnBusy::Skip,
            ConflictPolicy::Error => OnBusy::Stop,
        }
    }

    /// A function library: `FUNCTION LOAD [REPLACE] code`, to every master.
    pub fn function(&self, code: &[u8], position: Position) -> Op {
        let mut argv = vec![Bytes::from_static(b"FUNCTION"), Bytes::from_static(b"LOAD")];
        if self.conflict == ConflictPolicy::Replace {
            argv.push(Bytes::from_static(b"REPLACE"));
        }
        argv.push(Bytes::copy_from_slice(code));
        let mut cmd = Cmd::new(argv, Route::All);
        cmd.on_busy = self.on_busy();
        Op {
            position,
            phase: Phase::Snapshot,
            db: 0,
            end_db: 0,
            key: None,
            unit: Unit::Commands(vec![cmd]),
            guard: None,
            folded: Vec::new(),
        }
    }
}

/// What the command rewrite could not reproduce exactly, as report lines.
pub fn warnings(commands: &Commands) -> Vec<String> {
    commands
        .warnings()
        .into_iter()
        .map(|w| format!("{w:?}"))
        .collect()
}

/// The object type `type_id` stands for in an RDB of `src_version` (Valkey's numbering from
/// version 80 on).
fn object_type(type_id: u8, src_version: u16) -> Option<ObjectType> {
    let flavor = if src_version >= 80 {
        Flavor::Valkey
    } else {
        Flavor::Redis
    };
    ObjectType::from_byte(type_id, flavor)
}

/// `wire`, an encoded `RESTORE` without `REPLACE` (built by [`KeyConverter::convert`]), with
/// `REPLACE` added as its last argument (RESTORE takes its options in any order); `None` when
/// `wire` does not start with an array header.
pub fn with_replace(wire: &[u8]) -> Option<Bytes> {
    let rest = wire.strip_prefix(b"*")?;
    let end = rest.iter().position(|&b| b == b'\r')?;
    let n: usize = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    let body = rest.get(end + 2..)?;
    let mut w = BytesMut::with_capacity(wire.len() + 20);
    resp::array_header(&mut w, n + 1);
    w.put_slice(body);
    resp::bulk(&mut w, b"REPLACE");
    Some(w.freeze())
}

/// The arguments of a key's RESTORE around its payload:
/// `RESTORE key <expiry ms> <payload> [ABSTTL] [REPLACE] [IDLETIME n | FREQ n]`, written by
/// both the in-memory path ([`KeyConverter::convert`]) and the streamed one
/// ([`super::bigkey`]). `ABSTTL` only with an expiry: with 0 (none) it changes nothing, and
/// the target parses one argument fewer per key.
struct RestoreArgs<'a> {
    key: &'a [u8],
    expire: &'a [u8],
    absttl: bool,
    replace: bool,
    meta: Option<(&'static [u8], &'a [u8])>,
}

impl<'a> RestoreArgs<'a> {
    /// The arguments of `k`'s RESTORE, numbers formatted into the caller's buffers.
    fn of(
        k: &KeyRecord,
        key: &'a [u8],
        replace: bool,
        expire: &'a mut itoa::Buffer,
        meta: &'a mut itoa::Buffer,
    ) -> Self {
        RestoreArgs {
            key,
            expire: expire.format(k.expire_ms.unwrap_or(0).max(0)).as_bytes(),
            absttl: k.expire_ms.is_some_and(|e| e > 0),
            replace,
            meta: match (k.idle, k.freq) {
                (Some(idle), _) => Some((b"IDLETIME".as_slice(), meta.format(idle).as_bytes())),
                (None, Some(freq)) => Some((b"FREQ".as_slice(), meta.format(freq).as_bytes())),
                (None, None) => None,
            },
        }
    }

    fn count(&self) -> usize {
        4 + usize::from(self.absttl)
            + usize::from(self.replace)
            + if self.meta.is_some() { 2 } else { 0 }
    }

    /// Bytes of [`RestoreArgs::head`].
    fn head_len(&self, payload_len: usize) -> usize {
        resp::array_header_len(self.count())
            + resp::bulk_len(b"RESTORE".len())
            + resp::bulk_len(self.key.len())
            + resp::bulk_len(self.expire.len())
            + resp::bulk_header_len(payload_len)
    }

    /// Up to the payload: array header, `RESTORE`, key, absolute expiry, the payload's bulk
    /// header (`payload_len`: type byte, value, 10-byte footer).
    fn head(&self, w: &mut BytesMut, payload_len: usize) {
        resp::array_header(w, self.count());
        resp::bulk(w, b"RESTORE");
        resp::bulk(w, self.key);
        resp::bulk(w, self.expire);
        resp::bulk_header(w, payload_len);
    }

    /// Bytes of [`RestoreArgs::tail`].
    fn tail_len(&self) -> usize {
        usize::from(self.absttl) * resp::bulk_len(b"ABSTTL".len())
            + if self.replace {
                resp::bulk_len(b"REPLACE".len())
            } else {
                0
            }
            + self.meta.map_or(0, |(name, v)| {
                resp::bulk_len(name.len()) + resp::bulk_len(v.len())
            })
    }

    /// After the payload's `\r\n`: `ABSTTL`, `REPLACE`, `IDLETIME n` or `FREQ n`.
    fn tail(&self, w: &mut BytesMut) {
        if self.absttl {
            resp::bulk(w, b"ABSTTL");
        }
        if self.replace {
            resp::bulk(w, b"REPLACE");
        }
        if let Some((name, v)) = self.meta {
            resp::bulk(w, name);
            resp::bulk(w, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_replace_adds_the_option_as_a_last_argument() {
        let wire = b"*4\r\n$7\r\nRESTORE\r\n$1\r\nk\r\n$1\r\n0\r\n$3\r\n\x00ab\r\n";
        let again = with_replace(wire).unwrap();
        assert_eq!(
            &again[..],
            &b"*5\r\n$7\r\nRESTORE\r\n$1\r\nk\r\n$1\r\n0\r\n$3\r\n\x00ab\r\n$7\r\nREPLACE\r\n"[..]
        );
        let mut long = b"*10\r\n".to_vec();
        long.extend_from_slice(&wire[4..]);
        assert!(
            with_replace(&long)
                .unwrap()
                .starts_with(b"*11\r\n$7\r\nRESTORE")
        );
        for bad in [&b""[..], b"$4\r\n", b"*x\r\n", b"*4", b"*4\r"] {
            assert!(with_replace(bad).is_none(), "{bad:?}");
        }
    }
}
