//! Decoded values as JSON, for `shake inspect --format jsonl` and for comparing with other
//! tools' dumps (librdb's `*_data.json`).
//!
//! Shapes: string → string; list and set → array; sorted set → object member → score (a number,
//! or `"inf"`/`"-inf"`); hash → object field → value; stream → object with `entries` (`id`,
//! `items`), metadata and `groups`; module → `{module, encoding_version, bytes}`. Byte strings
//! that are valid UTF-8 are emitted as is; other bytes are written `\xNN` (display only: not
//! reversible when the data itself contains such text). Hash field TTLs go into a separate map
//! so the value keeps the same shape with or without them.

use bytes::Bytes;
use serde_json::{Map, Value as J, json};

use super::decode::{Value, decode};
use super::error::MResult;
use super::version::ObjectType;

/// A value converted to JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonValue {
    /// The value.
    pub value: J,
    /// For hashes with field TTLs: field → absolute expiry in ms.
    pub field_expire_ms: Option<Map<String, J>>,
}

/// Renders bytes as a JSON string (UTF-8 as is, other bytes as `\xNN`).
pub fn text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            let mut s = String::with_capacity(b.len() * 2);
            for chunk in b.utf8_chunks() {
                s.push_str(chunk.valid());
                for x in chunk.invalid() {
                    s.push_str(&format!("\\x{x:02x}"));
                }
            }
            s
        }
    }
}

/// A score as JSON: a number when finite, `"inf"` / `"-inf"` otherwise.
pub fn score(v: f64) -> J {
    if v.is_finite() {
        json!(v)
    } else if v > 0.0 {
        json!("inf")
    } else {
        json!("-inf")
    }
}

/// Decodes `value` (of type `t`) and renders it as JSON.
pub fn to_json(t: ObjectType, value: Bytes) -> MResult<JsonValue> {
    let mut field_expire_ms = None;
    let value = match decode(t, value)? {
        Value::String(s) => J::String(text(&s)),
        Value::List(it) | Value::Set(it) => J::Array(
            it.map(|e| e.map(|b| J::String(text(&b))))
                .collect::<MResult<_>>()?,
        ),
        Value::Zset(it) => {
            let mut m = Map::new();
            for r in it {
                let (k, v) = r?;
                m.insert(text(&k), score(v));
            }
            J::Object(m)
        }
        Value::Hash(it) => {
            let mut m = Map::new();
            let mut ttl = Map::new();
            for r in it {
                let f = r?;
                let name = text(&f.field);
                if let Some(e) = f.expire_ms {
                    ttl.insert(name.clone(), json!(e));
                }
                m.insert(name, J::String(text(&f.value)));
            }
            if !ttl.is_empty() {
                field_expire_ms = Some(ttl);
            }
            J::Object(m)
        }
        Value::Stream(s) => {
            let entries = s
                .entries()
                .map(|e| {
                    e.map(|e| {
                        let items: Map<String, J> = e
                            .fields
                            .iter()
                            .map(|(f, v)| (text(f), J::String(text(v))))
                            .collect();
                        json!({"id": e.id.to_string(), "items": items})
                    })
                })
                .collect::<MResult<Vec<_>>>()?;
            let groups: Vec<J> = s
                .groups
                .iter()
                .map(|g| {
                    json!({
                        "name": text(&g.name),
                        "last_id": g.last_id.to_string(),
                        "entries_read": g.entries_read.map(|n| n as i64),
                        "pel": g.pel.iter().map(|p| json!({
                            "id": p.id.to_string(),
                            "delivery_time_ms": p.delivery_time_ms,
                            "delivery_count": p.delivery_count,
                        })).collect::<Vec<_>>(),
                        "consumers": g.consumers.iter().map(|c| json!({
                            "name": text(&c.name),
                            "seen_time_ms": c.seen_time_ms,
                            "active_time_ms": c.active_time_ms,
                            "pending": c.pending.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "entries": entries,
                "length": s.length,
                "last_id": s.last_id.to_string(),
                "first_id": s.first_id.map(|i| i.to_string()),
                "max_deleted_id": s.max_deleted_id.map(|i| i.to_string()),
                "entries_added": s.entries_added,
                "groups": groups,
            })
        }
        Value::Module(m) => json!({
            "module": m.module_name,
            "encoding_version": m.encoding_version,
            "bytes": m.raw.len(),
        }),
    };
    Ok(JsonValue {
        value,
        field_expire_ms,
    })
}
