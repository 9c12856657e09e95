//! Logical equality of two decoded values ([`crate::rdb::Value`]), and where they differ.
//!
//! Two DUMP payloads of one value can differ byte for byte: a hash may be a listpack on one
//! server and a hash table on another (a different `*-max-listpack-entries`, or a value that
//! grew and shrank), an older server writes ziplists where a newer one writes listpacks, and the
//! RDB version in the footer differs between releases. So unequal payloads are decoded and
//! compared here before anything is called a difference: lists and streams in order, sets,
//! hashes and sorted sets as unordered collections (their stored order depends on the encoding),
//! scores as numbers, hash-field TTLs within the TTL tolerance.
//!
//! Stream consumer groups are compared by name, last delivered ID and the IDs pending;
//! delivery times, counts and `entries-read` are not (servers recompute or drop them when they
//! convert an older stream).

use bytes::Bytes;

use crate::rdb::Value;
use crate::rdb::decode::HashField;
use crate::rdb::stream::{Group, Stream};

use super::report::printable;

/// A payload the decoder rejected, with the side it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// `source` or `target`.
    pub side: &'static str,
    /// The decoder's message (position inside the value).
    pub why: String,
}

type R<T> = Result<T, Undecodable>;

fn err<E: std::fmt::Display>(side: &'static str) -> impl Fn(E) -> Undecodable {
    move |e| Undecodable {
        side,
        why: e.to_string(),
    }
}

/// Compares a source value `a` with a target value `b`. `Ok(None)` when they are the same
/// logical value, `Ok(Some(where))` otherwise, naming the first place found (a field, an index,
/// a member, a length).
pub fn compare(a: Value, b: Value, ttl_tolerance_ms: i64) -> R<Option<String>> {
    Ok(match (a, b) {
        (Value::String(x), Value::String(y)) => compare_bytes(&x, &y),
        (Value::List(x), Value::List(y)) => compare_sequence(
            x.map(|r| r.map_err(err("source"))),
            y.map(|r| r.map_err(err("target"))),
            "index",
        )?,
        (Value::Set(x), Value::Set(y)) => {
            let mut x = x.collect::<Result<Vec<_>, _>>().map_err(err("source"))?;
            let mut y = y.collect::<Result<Vec<_>, _>>().map_err(err("target"))?;
            x.sort();
            y.sort();
            compare_sorted(&x, &y, |m| (m.clone(), ()), "member", |_, _| None)
        }
        (Value::Zset(x), Value::Zset(y)) => {
            let mut x = x.collect::<Result<Vec<_>, _>>().map_err(err("source"))?;
            let mut y = y.collect::<Result<Vec<_>, _>>().map_err(err("target"))?;
            x.sort_by(|p, q| p.0.cmp(&q.0));
            y.sort_by(|p, q| p.0.cmp(&q.0));
            compare_sorted(
                &x,
                &y,
                |(m, s)| (m.clone(), *s),
                "member",
                |s, t| (s != t).then(|| format!("score {s} vs {t}")),
            )
        }
        (Value::Hash(x), Value::Hash(y)) => {
            let mut x = x.collect::<Result<Vec<_>, _>>().map_err(err("source"))?;
            let mut y = y.collect::<Result<Vec<_>, _>>().map_err(err("target"))?;
            x.sort_by(|p, q| p.field.cmp(&q.field));
            y.sort_by(|p, q| p.field.cmp(&q.field));
            let key = |f: &HashField| (f.field.clone(), (f.value.clone(), f.expire_ms));
            compare_sorted(&x, &y, key, "field", |(v, e), (w, f)| {
                if v != w {
                    Some(format!("{} vs {}", printable(v), printable(w)))
                } else {
                    match (e, f) {
                        (None, None) => None,
                        (Some(e), Some(f)) if (e - f).abs() <= ttl_tolerance_ms => None,
                        _ => Some(format!(
                            "field expiry {} vs {}",
                            show_expiry(*e),
                            show_expiry(*f)
                        )),
                    }
                }
            })
        }
        (Value::Stream(x), Value::Stream(y)) => compare_streams(&x, &y)?,
        (Value::Module(x), Value::Module(y)) => {
            if x.module_name != y.module_name {
                Some(format!(
                    "module type {} vs {}",
                    x.module_name, y.module_name
                ))
            } else if x.raw != y.raw {
                Some(format!(
                    "module value bytes differ ({} vs {} bytes)",
                    x.raw.len(),
                    y.raw.len()
                ))
            } else {
                None
            }
        }
        (a, b) => Some(format!("kind {} vs {}", kind(&a), kind(&b))),
    })
}

fn show_expiry(e: Option<i64>) -> String {
    e.map(|ms| format!("at {ms} ms"))
        .unwrap_or_else(|| "none".into())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::List(_) => "list",
        Value::Set(_) => "set",
        Value::Zset(_) => "zset",
        Value::Hash(_) => "hash",
        Value::Stream(_) => "stream",
        Value::Module(_) => "module",
    }
}

/// Strings: the length, or the first differing byte.
pub fn compare_bytes(x: &[u8], y: &[u8]) -> Option<String> {
    if x == y {
        return None;
    }
    if x.len() != y.len() {
        return Some(format!("length {} vs {}", x.len(), y.len()));
    }
    let at = x.iter().zip(y).position(|(a, b)| a != b).unwrap_or(0);
    Some(format!("byte {at} differs"))
}

/// Ordered sequences (list elements): the first differing index, or the lengths.
fn compare_sequence(
    mut x: impl Iterator<Item = R<Bytes>>,
    mut y: impl Iterator<Item = R<Bytes>>,
    what: &str,
) -> R<Option<String>> {
    let mut i = 0u64;
    let mut first: Option<String> = None;
    let (mut nx, mut ny) = (0u64, 0u64);
    loop {
        let a = x.next().transpose()?;
        let b = y.next().transpose()?;
        nx += a.is_some() as u64;
        ny += b.is_some() as u64;
        match (a, b) {
            (None, None) => break,
            (Some(a), Some(b)) if first.is_none() && a != b => {
                first = Some(format!(
                    "{what} {i}: {} vs {}",
                    printable(&a),
                    printable(&b)
                ));
            }
            _ => {}
        }
        i += 1;
    }
    Ok(if nx != ny {
        Some(format!("length {nx} vs {ny}"))
    } else {
        first
    })
}

/// Sorted collections of `(name, payload)`: the first name present on one side only, or the
/// first whose payloads differ (`diff`), or the lengths.
fn compare_sorted<T, P>(
    x: &[T],
    y: &[T],
    key: impl Fn(&T) -> (Bytes, P),
    what: &str,
    diff: impl Fn(&P, &P) -> Option<String>,
) -> Option<String> {
    let (mut i, mut j) = (0, 0);
    let mut first: Option<String> = None;
    while first.is_none() && (i < x.len() || j < y.len()) {
        let a = x.get(i).map(&key);
        let b = y.get(j).map(&key);
        match (a, b) {
            (Some((ka, pa)), Some((kb, pb))) => match ka.cmp(&kb) {
                std::cmp::Ordering::Equal => {
                    if let Some(d) = diff(&pa, &pb) {
                        first = Some(format!("{what} {}: {d}", printable(&ka)));
                    }
                    i += 1;
                    j += 1;
                }
                std::cmp::Ordering::Less => {
                    first = Some(format!("{what} {} only on source", printable(&ka)));
                }
                std::cmp::Ordering::Greater => {
                    first = Some(format!("{what} {} only on target", printable(&kb)));
                }
            },
            (Some((ka, _)), None) => {
                first = Some(format!("{what} {} only on source", printable(&ka)));
            }
            (None, Some((kb, _))) => {
                first = Some(format!("{what} {} only on target", printable(&kb)));
            }
            (None, None) => break,
        }
    }
    match first {
        Some(d) if x.len() != y.len() => Some(format!("length {} vs {}; {d}", x.len(), y.len())),
        other => other,
    }
}

fn compare_streams(x: &Stream, y: &Stream) -> R<Option<String>> {
    if x.length != y.length {
        return Ok(Some(format!("length {} vs {}", x.length, y.length)));
    }
    if x.last_id != y.last_id {
        return Ok(Some(format!(
            "last generated ID {} vs {}",
            x.last_id, y.last_id
        )));
    }
    let mut ex = x.entries();
    let mut ey = y.entries();
    loop {
        let a = ex.next().transpose().map_err(err("source"))?;
        let b = ey.next().transpose().map_err(err("target"))?;
        match (a, b) {
            (None, None) => break,
            (Some(a), Some(b)) => {
                if a.id != b.id {
                    return Ok(Some(format!("entry {} vs {}", a.id, b.id)));
                }
                if a.fields != b.fields {
                    return Ok(Some(format!("entry {}: fields differ", a.id)));
                }
            }
            (Some(a), None) => return Ok(Some(format!("entry {} only on source", a.id))),
            (None, Some(b)) => return Ok(Some(format!("entry {} only on target", b.id))),
        }
    }
    let mut gx: Vec<&Group> = x.groups.iter().collect();
    let mut gy: Vec<&Group> = y.groups.iter().collect();
    gx.sort_by(|a, b| a.name.cmp(&b.name));
    gy.sort_by(|a, b| a.name.cmp(&b.name));
    let names = |g: &[&Group]| g.iter().map(|g| g.name.clone()).collect::<Vec<_>>();
    if names(&gx) != names(&gy) {
        return Ok(Some(format!(
            "consumer groups [{}] vs [{}]",
            names(&gx)
                .iter()
                .map(|n| printable(n))
                .collect::<Vec<_>>()
                .join(", "),
            names(&gy)
                .iter()
                .map(|n| printable(n))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for (a, b) in gx.iter().zip(&gy) {
        let g = printable(&a.name);
        if a.last_id != b.last_id {
            return Ok(Some(format!(
                "group {g}: last delivered ID {} vs {}",
                a.last_id, b.last_id
            )));
        }
        let pel = |g: &Group| {
            let mut v: Vec<_> = g.pel.iter().map(|p| p.id).collect();
            v.sort();
            v
        };
        if pel(a) != pel(b) {
            return Ok(Some(format!(
                "group {g}: pending entries differ ({} vs {})",
                a.pel.len(),
                b.pel.len()
            )));
        }
        let consumers = |g: &Group| {
            let mut v: Vec<Bytes> = g.consumers.iter().map(|c| c.name.clone()).collect();
            v.sort();
            v
        };
        if consumers(a) != consumers(b) {
            return Ok(Some(format!("group {g}: consumers differ")));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::ObjectType;
    use crate::rdb::dump;
    use crate::rdb::{Flavor, decode};

    /// Encodes elements as an RDB "linked" collection: a length, then RDB strings.
    fn strings(items: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![items.len() as u8];
        for i in items {
            v.push(i.len() as u8);
            v.extend_from_slice(i);
        }
        v
    }

    fn value(t: ObjectType, body: Vec<u8>) -> Value {
        let payload = dump::build(t.id(), &body, 9);
        let p = dump::parse(&payload, Flavor::Redis).unwrap();
        decode(p.object_type, Bytes::copy_from_slice(p.value)).unwrap()
    }

    fn set(items: &[&[u8]]) -> Value {
        value(ObjectType::Set, strings(items))
    }

    fn hash(pairs: &[&[u8]]) -> Value {
        let mut body = strings(pairs);
        body[0] = (pairs.len() / 2) as u8;
        value(ObjectType::Hash, body)
    }

    fn list(items: &[&[u8]]) -> Value {
        value(ObjectType::ListLinked, strings(items))
    }

    #[test]
    fn sets_are_unordered() {
        let r = compare(set(&[b"a", b"b", b"c"]), set(&[b"c", b"a", b"b"]), 0).unwrap();
        assert_eq!(r, None);
        let r = compare(set(&[b"a", b"b"]), set(&[b"a", b"x"]), 0).unwrap();
        assert_eq!(r.as_deref(), Some("member \"b\" only on source"));
        let r = compare(set(&[b"a"]), set(&[b"a", b"z"]), 0).unwrap();
        assert_eq!(
            r.as_deref(),
            Some("length 1 vs 2; member \"z\" only on target")
        );
    }

    #[test]
    fn hashes_are_unordered_and_name_the_field() {
        let a = hash(&[b"f1", b"v1", b"f2", b"v2"]);
        let b = hash(&[b"f2", b"v2", b"f1", b"v1"]);
        assert_eq!(compare(a, b, 0).unwrap(), None);
        let a = hash(&[b"f1", b"v1", b"f2", b"v2"]);
        let b = hash(&[b"f2", b"XX", b"f1", b"v1"]);
        assert_eq!(
            compare(a, b, 0).unwrap().as_deref(),
            Some("field \"f2\": \"v2\" vs \"XX\"")
        );
    }

    #[test]
    fn lists_are_ordered() {
        assert_eq!(
            compare(list(&[b"a", b"b"]), list(&[b"a", b"b"]), 0).unwrap(),
            None
        );
        assert_eq!(
            compare(list(&[b"a", b"b"]), list(&[b"b", b"a"]), 0)
                .unwrap()
                .as_deref(),
            Some("index 0: \"a\" vs \"b\"")
        );
        assert_eq!(
            compare(list(&[b"a", b"b", b"c"]), list(&[b"a", b"b"]), 0)
                .unwrap()
                .as_deref(),
            Some("length 3 vs 2")
        );
    }

    #[test]
    fn strings_and_kinds() {
        let s = |b: &[u8]| value(ObjectType::String, strings(&[b])[1..].to_vec());
        assert_eq!(compare(s(b"abc"), s(b"abc"), 0).unwrap(), None);
        assert_eq!(
            compare(s(b"abc"), s(b"abd"), 0).unwrap().as_deref(),
            Some("byte 2 differs")
        );
        assert_eq!(
            compare(s(b"abc"), set(&[b"abc"]), 0).unwrap().as_deref(),
            Some("kind string vs set")
        );
    }

    #[test]
    fn same_hash_in_two_encodings_is_equal() {
        // A listpack-encoded hash (type 16) against the same fields as a hash table (type 4):
        // the case DUMP bytes cannot settle.
        let mut lp = Vec::new();
        let elems: [&[u8]; 4] = [b"f1", b"v1", b"f2", b"v2"];
        let mut body = Vec::new();
        for e in elems {
            body.push(0x80 | e.len() as u8); // 6-bit string header
            body.extend_from_slice(e);
            body.push(1 + e.len() as u8); // backlen
        }
        let total = 6 + body.len() + 1;
        lp.extend_from_slice(&(total as u32).to_le_bytes());
        lp.extend_from_slice(&(elems.len() as u16).to_le_bytes());
        lp.extend_from_slice(&body);
        lp.push(0xff);
        let mut v = vec![lp.len() as u8];
        v.extend_from_slice(&lp);
        let listpack = value(ObjectType::HashListpack, v);
        let table = hash(&[b"f2", b"v2", b"f1", b"v1"]);
        assert_eq!(compare(listpack, table, 0).unwrap(), None);
    }
}
