//! A value as plain commands, for when RESTORE cannot be used (an older destination, a value
//! above its `proto-max-bulk-len`, a user's choice).
//!
//! Recipes follow Redis's own AOF rewrite (`aof.c`): `DEL` first (so nothing is appended to
//! existing data), then `SET` + `APPEND` chunks, `RPUSH`, `SADD`, `ZADD`, `HSET` (+
//! `HPEXPIREAT … FIELDS` for field TTLs), and for streams `XADD` with explicit IDs, `XSETID`,
//! `XGROUP CREATE … ENTRIESREAD`, `XGROUP CREATECONSUMER` and the PEL via
//! `XCLAIM … JUSTID FORCE`; finally `PEXPIREAT` for the key's TTL. Collections are cut into
//! commands of at most [`RewriteOptions::batch`] elements, produced lazily.
//!
//! Scores are printed with Rust's shortest round-trip form (`1.5`, `1e25`, `-0.0`, `inf`,
//! `-inf`), which Redis parses back to the identical double.
//!
//! Whatever the commands cannot reproduce exactly is reported as a [`Warning`] (complete once
//! the iterator is exhausted) and listed in `docs/rdb.md`; nothing is dropped silently.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::decode::{Value, decode};
use super::error::MResult;
use super::stream::{Stream, StreamId};
use super::version::ObjectType;

/// One command: its arguments, command name first.
pub type Argv = Vec<Vec<u8>>;

/// What the destination supports, and batching.
#[derive(Debug, Clone)]
pub struct RewriteOptions {
    /// Elements (or field/value pairs) per command (Redis's AOF rewrite uses 64).
    pub batch: usize,
    /// Largest string argument; longer strings are `SET` then `APPEND`ed in pieces.
    pub string_chunk: usize,
    /// The destination has `HPEXPIREAT` (Redis ≥ 7.4, Valkey ≥ 9).
    pub hash_field_ttl: bool,
    /// The destination has `XSETID … ENTRIESADDED … MAXDELETEDID` and `XGROUP CREATE …
    /// ENTRIESREAD` (Redis ≥ 7.0).
    pub stream_v2_metadata: bool,
    /// Emit `DEL key` first.
    pub delete_first: bool,
}

impl Default for RewriteOptions {
    fn default() -> Self {
        RewriteOptions {
            batch: 64,
            string_chunk: 64 << 20,
            hash_field_ttl: true,
            stream_v2_metadata: true,
            delete_first: true,
        }
    }
}

/// Something the commands cannot reproduce exactly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Warning {
    /// Module values have no command form; only RESTORE (with the module loaded) carries them.
    ModuleValue {
        /// Module type name.
        module: String,
    },
    /// Field TTLs were dropped because the destination lacks `HPEXPIREAT`.
    FieldTtlDropped {
        /// Fields whose TTL was lost.
        fields: u64,
    },
    /// `entries_added`, `max_deleted_id` and groups' `entries_read` were not set (destination
    /// older than 7.0, or a v1 source that never had them).
    StreamMetadataDropped,
    /// Consumers' seen/active times become the replay time.
    ConsumerTimesNotPreserved {
        /// Consumers affected.
        consumers: u64,
    },
    /// PEL entries whose stream entry was deleted cannot be recreated (`XCLAIM` ignores IDs not
    /// in the stream).
    PendingOfDeletedEntryDropped {
        /// Group name.
        group: String,
        /// How many.
        count: u64,
    },
    /// The value was an empty container; Redis itself skips such keys, so no key is created.
    EmptyValue,
}

/// The commands for one key, produced lazily. Check [`Commands::warnings`] after the iteration.
pub struct Commands {
    inner: Box<dyn Iterator<Item = MResult<Argv>> + Send>,
    warnings: Arc<Mutex<Vec<Warning>>>,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands")
            .field("warnings", &self.warnings())
            .finish()
    }
}

impl Commands {
    /// Warnings so far (complete once the iterator returned `None`).
    pub fn warnings(&self) -> Vec<Warning> {
        self.warnings.lock().unwrap().clone()
    }
}

impl Iterator for Commands {
    type Item = MResult<Argv>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

/// Formats a score so that parsing it gives back the identical double.
pub fn format_score(v: f64) -> String {
    if v == f64::INFINITY {
        "inf".into()
    } else if v == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        format!("{v:?}")
    }
}

fn id(i: StreamId) -> Vec<u8> {
    i.to_string().into_bytes()
}

/// Field TTLs remembered until the `HSET`s are out: (expiry ms, field).
type FieldTtls = Vec<(i64, Vec<u8>)>;

type Cmds = Box<dyn Iterator<Item = MResult<Argv>> + Send>;

/// Groups `items` (each a run of arguments) into commands `prefix + items…` of at most `batch`
/// items. Counts items into `count`.
fn batched<I>(prefix: Argv, items: I, batch: usize, count: Arc<Mutex<u64>>) -> Cmds
where
    I: Iterator<Item = MResult<Vec<Vec<u8>>>> + Send + 'static,
{
    let mut items = items.peekable();
    let batch = batch.max(1);
    Box::new(std::iter::from_fn(move || {
        items.peek()?;
        let mut cmd = prefix.clone();
        for _ in 0..batch {
            match items.next() {
                None => break,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(args)) => {
                    *count.lock().unwrap() += 1;
                    cmd.extend(args);
                }
            }
        }
        Some(Ok(cmd))
    }))
}

fn cmd(parts: &[&[u8]]) -> Argv {
    parts.iter().map(|p| p.to_vec()).collect()
}

/// The commands that rebuild `key` (type `t`, exact value bytes `value`) with absolute expiry
/// `expire_ms`.
pub fn rewrite(
    key: &[u8],
    t: ObjectType,
    value: Bytes,
    expire_ms: Option<i64>,
    opts: &RewriteOptions,
) -> MResult<Commands> {
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let k = key.to_vec();
    let count = Arc::new(Mutex::new(0u64));
    let mut parts: Vec<Cmds> = Vec::new();
    if opts.delete_first {
        parts.push(Box::new(std::iter::once(Ok(cmd(&[b"DEL", key])))));
    }
    let mut empty_check = true;
    match decode(t, value)? {
        Value::String(s) => {
            empty_check = false;
            let chunk = opts.string_chunk.max(1);
            let k2 = k.clone();
            let pieces: Vec<Bytes> = if s.is_empty() {
                vec![s]
            } else {
                (0..s.len())
                    .step_by(chunk)
                    .map(|i| s.slice(i..(i + chunk).min(s.len())))
                    .collect()
            };
            parts.push(Box::new(pieces.into_iter().enumerate().map(
                move |(i, p)| {
                    let verb: &[u8] = if i == 0 { b"SET" } else { b"APPEND" };
                    Ok(vec![verb.to_vec(), k2.clone(), p.to_vec()])
                },
            )));
        }
        Value::List(it) => parts.push(batched(
            cmd(&[b"RPUSH", key]),
            it.map(|e| e.map(|b| vec![b.to_vec()])),
            opts.batch,
            count.clone(),
        )),
        Value::Set(it) => parts.push(batched(
            cmd(&[b"SADD", key]),
            it.map(|e| e.map(|b| vec![b.to_vec()])),
            opts.batch,
            count.clone(),
        )),
        Value::Zset(it) => parts.push(batched(
            cmd(&[b"ZADD", key]),
            it.map(|e| e.map(|(m, s)| vec![format_score(s).into_bytes(), m.to_vec()])),
            opts.batch,
            count.clone(),
        )),
        Value::Hash(it) => {
            // TTLs are applied after all HSETs; they are remembered per field (bounded by the
            // number of fields that have one).
            let ttls: Arc<Mutex<FieldTtls>> = Arc::default();
            let t2 = ttls.clone();
            let with_ttl = opts.hash_field_ttl;
            parts.push(batched(
                cmd(&[b"HSET", key]),
                it.map(move |f| {
                    f.map(|f| {
                        if let Some(e) = f.expire_ms {
                            t2.lock().unwrap().push((e, f.field.to_vec()));
                        }
                        vec![f.field.to_vec(), f.value.to_vec()]
                    })
                }),
                opts.batch,
                count.clone(),
            ));
            let k2 = k.clone();
            let w = warnings.clone();
            parts.push(Box::new(std::iter::once(()).flat_map(move |_| {
                let mut ttls = std::mem::take(&mut *ttls.lock().unwrap());
                if !with_ttl {
                    if !ttls.is_empty() {
                        w.lock().unwrap().push(Warning::FieldTtlDropped {
                            fields: ttls.len() as u64,
                        });
                    }
                    ttls.clear();
                }
                ttls.sort();
                let mut out: Vec<MResult<Argv>> = Vec::new();
                for group in ttls.chunk_by(|a, b| a.0 == b.0) {
                    for fields in group.chunks(64) {
                        let mut c = vec![
                            b"HPEXPIREAT".to_vec(),
                            k2.clone(),
                            group[0].0.to_string().into_bytes(),
                            b"FIELDS".to_vec(),
                            fields.len().to_string().into_bytes(),
                        ];
                        c.extend(fields.iter().map(|f| f.1.clone()));
                        out.push(Ok(c));
                    }
                }
                out
            })));
        }
        Value::Stream(s) => {
            empty_check = false;
            parts.push(stream_commands(&k, *s, opts, warnings.clone()));
        }
        Value::Module(m) => {
            empty_check = false;
            warnings.lock().unwrap().push(Warning::ModuleValue {
                module: m.module_name,
            });
            parts.clear();
        }
    }
    let is_module = parts.is_empty();
    if let (Some(ms), false) = (expire_ms, is_module) {
        let k2 = k.clone();
        let c2 = count.clone();
        parts.push(Box::new(
            std::iter::once(())
                .filter(move |_| !empty_check || *c2.lock().unwrap() > 0)
                .map(move |_| {
                    Ok(vec![
                        b"PEXPIREAT".to_vec(),
                        k2.clone(),
                        ms.to_string().into_bytes(),
                    ])
                }),
        ));
    }
    if empty_check {
        let w = warnings.clone();
        parts.push(Box::new(std::iter::once(()).filter_map(move |_| {
            if *count.lock().unwrap() == 0 {
                w.lock().unwrap().push(Warning::EmptyValue);
            }
            None
        })));
    }
    Ok(Commands {
        inner: Box::new(parts.into_iter().flatten()),
        warnings,
    })
}

fn stream_commands(
    key: &[u8],
    s: Stream,
    opts: &RewriteOptions,
    warnings: Arc<Mutex<Vec<Warning>>>,
) -> Cmds {
    let k = key.to_vec();
    // PEL IDs whose entry we have seen alive (to report the ones XCLAIM will ignore).
    let pel_ids: HashMap<StreamId, bool> = s
        .groups
        .iter()
        .flat_map(|g| g.pel.iter().map(|p| (p.id, false)))
        .collect();
    let pel_ids = Arc::new(Mutex::new(pel_ids));
    let seen = pel_ids.clone();
    let k2 = k.clone();
    let entries = s.entries().map(move |e| {
        e.map(|e| {
            if let Some(v) = seen.lock().unwrap().get_mut(&e.id) {
                *v = true;
            }
            let mut c = vec![b"XADD".to_vec(), k2.clone(), id(e.id)];
            for (f, v) in e.fields {
                c.push(f.to_vec());
                c.push(v.to_vec());
            }
            c
        })
    });
    let k3 = k.clone();
    let opts = opts.clone();
    let tail = std::iter::once(()).flat_map(move |_| {
        let mut out: Vec<MResult<Argv>> = Vec::new();
        let mut w = warnings.lock().unwrap();
        // An empty stream still exists: create it with a throw-away entry trimmed away.
        if s.length == 0 {
            out.push(Ok(cmd(&[
                b"XADD", &k3, b"MAXLEN", b"0", b"0-1", b"x", b"y",
            ])));
        }
        let mut setid = vec![b"XSETID".to_vec(), k3.clone(), id(s.last_id)];
        match (opts.stream_v2_metadata, s.entries_added, s.max_deleted_id) {
            (true, Some(added), Some(maxdel)) => {
                setid.extend([b"ENTRIESADDED".to_vec(), added.to_string().into_bytes()]);
                setid.extend([b"MAXDELETEDID".to_vec(), id(maxdel)]);
            }
            _ => w.push(Warning::StreamMetadataDropped),
        }
        out.push(Ok(setid));
        let alive = pel_ids.lock().unwrap();
        let mut times = 0u64;
        for g in &s.groups {
            let mut c = vec![
                b"XGROUP".to_vec(),
                b"CREATE".to_vec(),
                k3.clone(),
                g.name.to_vec(),
                id(g.last_id),
            ];
            if opts.stream_v2_metadata
                && let Some(n) = g.entries_read
            {
                c.extend([b"ENTRIESREAD".to_vec(), (n as i64).to_string().into_bytes()]);
            }
            out.push(Ok(c));
            let pel: HashMap<StreamId, _> = g.pel.iter().map(|p| (p.id, p)).collect();
            let mut dropped = 0u64;
            for c in &g.consumers {
                times += 1;
                if c.pending.is_empty() {
                    out.push(Ok(vec![
                        b"XGROUP".to_vec(),
                        b"CREATECONSUMER".to_vec(),
                        k3.clone(),
                        g.name.to_vec(),
                        c.name.to_vec(),
                    ]));
                }
                for pid in &c.pending {
                    if !alive.get(pid).copied().unwrap_or(false) {
                        dropped += 1;
                        continue;
                    }
                    let p = pel[pid];
                    out.push(Ok(vec![
                        b"XCLAIM".to_vec(),
                        k3.clone(),
                        g.name.to_vec(),
                        c.name.to_vec(),
                        b"0".to_vec(),
                        id(*pid),
                        b"TIME".to_vec(),
                        p.delivery_time_ms.to_string().into_bytes(),
                        b"RETRYCOUNT".to_vec(),
                        p.delivery_count.to_string().into_bytes(),
                        b"FORCE".to_vec(),
                        b"JUSTID".to_vec(),
                    ]));
                }
            }
            if dropped > 0 {
                w.push(Warning::PendingOfDeletedEntryDropped {
                    group: String::from_utf8_lossy(&g.name).into_owned(),
                    count: dropped,
                });
            }
        }
        if times > 0 {
            w.push(Warning::ConsumerTimesNotPreserved { consumers: times });
        }
        out
    });
    Box::new(entries.chain(tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::{length, listpack, string};

    fn run(
        key: &[u8],
        t: ObjectType,
        v: Vec<u8>,
        exp: Option<i64>,
        o: &RewriteOptions,
    ) -> (Vec<String>, Vec<Warning>) {
        let mut c = rewrite(key, t, v.into(), exp, o).unwrap();
        let cmds: Vec<String> = c
            .by_ref()
            .map(|a| {
                a.unwrap()
                    .iter()
                    .map(|x| String::from_utf8_lossy(x).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        (cmds, c.warnings())
    }

    #[test]
    fn scores_round_trip_exactly() {
        for v in [
            1.5,
            0.1,
            -0.0,
            1e25,
            -4.329000123123131e28,
            9007199254740993.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            2.0,
        ] {
            let s = format_score(v);
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{s}");
        }
        assert_eq!(format_score(f64::INFINITY), "inf");
        assert_eq!(format_score(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn strings_chunk_into_set_and_append() {
        let mut v = Vec::new();
        string::encode_raw(b"abcdefgh", &mut v);
        let o = RewriteOptions {
            string_chunk: 3,
            ..Default::default()
        };
        let (c, w) = run(b"k", ObjectType::String, v, Some(123), &o);
        assert_eq!(
            c,
            [
                "DEL k",
                "SET k abc",
                "APPEND k def",
                "APPEND k gh",
                "PEXPIREAT k 123"
            ]
        );
        assert!(w.is_empty());
    }

    #[test]
    fn collections_are_batched() {
        let items: Vec<String> = (0..5).map(|i| format!("e{i}")).collect();
        let v = {
            let mut v = Vec::new();
            string::encode_raw(
                &listpack::encode(items.iter().map(|s| s.as_bytes())),
                &mut v,
            );
            v
        };
        let o = RewriteOptions {
            batch: 2,
            ..Default::default()
        };
        let (c, _) = run(b"s", ObjectType::SetListpack, v, None, &o);
        assert_eq!(c, ["DEL s", "SADD s e0 e1", "SADD s e2 e3", "SADD s e4"]);
        let zl = listpack::encode([&b"a"[..], b"1.5", b"b", b"-inf"]);
        let mut v = Vec::new();
        string::encode_raw(&zl, &mut v);
        let (c, _) = run(
            b"z",
            ObjectType::ZsetListpack,
            v,
            None,
            &RewriteOptions::default(),
        );
        assert_eq!(c, ["DEL z", "ZADD z 1.5 a -inf b"]);
    }

    #[test]
    fn hash_ttls_and_their_absence() {
        let mut v = 5i64.to_le_bytes().to_vec();
        string::encode_raw(
            &listpack::encode([&b"f"[..], b"v", b"1700000000000", b"g", b"w", b"0"]),
            &mut v,
        );
        let (c, w) = run(
            b"h",
            ObjectType::HashListpackEx,
            v.clone(),
            None,
            &RewriteOptions::default(),
        );
        assert_eq!(
            c,
            [
                "DEL h",
                "HSET h f v g w",
                "HPEXPIREAT h 1700000000000 FIELDS 1 f"
            ]
        );
        assert!(w.is_empty());
        let o = RewriteOptions {
            hash_field_ttl: false,
            ..Default::default()
        };
        let (c, w) = run(b"h", ObjectType::HashListpackEx, v, None, &o);
        assert_eq!(c, ["DEL h", "HSET h f v g w"]);
        assert_eq!(w, [Warning::FieldTtlDropped { fields: 1 }]);
    }

    #[test]
    fn empty_containers_and_modules_warn() {
        let mut v = Vec::new();
        length::encode(0, &mut v);
        let (c, w) = run(
            b"e",
            ObjectType::Set,
            v,
            Some(5),
            &RewriteOptions::default(),
        );
        assert_eq!(c, ["DEL e"]);
        assert_eq!(w, [Warning::EmptyValue]);
        let mut v = Vec::new();
        length::encode(12345 << 10, &mut v);
        v.push(0);
        let (c, w) = run(
            b"m",
            ObjectType::Module2,
            v,
            None,
            &RewriteOptions::default(),
        );
        assert!(c.is_empty());
        assert!(matches!(w[..], [Warning::ModuleValue { .. }]));
    }

    #[test]
    fn streams_with_groups_and_pel() {
        let v = crate::rdb::stream::tests::sample_stream(3);
        let (c, w) = run(
            b"x",
            ObjectType::StreamListpacks3,
            v,
            None,
            &RewriteOptions::default(),
        );
        assert_eq!(
            c,
            [
                "DEL x",
                "XADD x 100-0 a 1",
                "XADD x 102-5 b 2",
                "XSETID x 102-5 ENTRIESADDED 3 MAXDELETEDID 101-0",
                "XGROUP CREATE x g 102-5 ENTRIESREAD -1",
                "XCLAIM x g alice 0 100-0 TIME 1234 RETRYCOUNT 2 FORCE JUSTID",
            ]
        );
        assert_eq!(w, [Warning::ConsumerTimesNotPreserved { consumers: 1 }]);
        let v = crate::rdb::stream::tests::sample_stream(1);
        let (_, w) = run(
            b"x",
            ObjectType::StreamListpacks,
            v,
            None,
            &RewriteOptions::default(),
        );
        assert!(w.contains(&Warning::StreamMetadataDropped));
    }
}
