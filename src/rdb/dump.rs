//! DUMP / RESTORE payloads, and whether a payload suits a destination.
//!
//! ```text
//! <type byte> <value, exactly as in an RDB key record> <RDB version u16 LE> <CRC-64 u64 LE>
//! ```
//! The CRC (Redis's CRC-64, as for RDB files) covers everything before it, version included.
//! A key record from the [`super::Reader`] becomes a payload without decoding: type byte + the
//! event's value bytes + the source version + CRC — which is how module values and types shake
//! cannot rebuild are forwarded byte-exact.
//!
//! RESTORE checks only the footer version against its own (`version ≤ own`, and Valkey ≥ 8
//! also refuses 12–79 in its default strict mode), then decodes the type byte. So a payload is
//! acceptable unchanged when its label passes and its type exists there; it can be *relabelled*
//! when only the label is too new but every encoding in it exists at the destination (verified:
//! 7.0 accepts a type-16 payload relabelled v9); otherwise it must be rewritten as commands
//! ([`super::rewrite`]), which is impossible for module values.

use bytes::BufMut;

use super::checksum::{Crc64, crc64};
use super::error::{Error, Malformed};
use super::version::{Flavor, Kind, ObjectType};
use super::walk::{measure, value_tasks};

/// Builds a payload from a type byte, the exact value bytes and the source RDB version.
pub fn build(type_id: u8, value: &[u8], rdb_version: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 11);
    write(&mut out, type_id, value, rdb_version);
    out
}

/// Appends the payload [`build`] returns to `out`: type byte, value, version, then the CRC
/// computed in one pass over the three where they now lie (one call costs less than the
/// three updates of a [`DumpBuilder`] on small values).
pub fn write<B: BufMut + AsRef<[u8]>>(out: &mut B, type_id: u8, value: &[u8], rdb_version: u16) {
    let start = out.as_ref().len();
    out.put_u8(type_id);
    out.put_slice(value);
    out.put_slice(&rdb_version.to_le_bytes());
    let crc = crc64(&out.as_ref()[start..]);
    out.put_slice(&crc.to_le_bytes());
}

/// Builds a payload incrementally from value pieces ([`super::Event::BigKeyPiece`]), so a huge
/// value can be streamed to the destination without being held whole.
pub struct DumpBuilder {
    digest: Crc64,
}

impl std::fmt::Debug for DumpBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DumpBuilder")
    }
}

impl DumpBuilder {
    /// Starts a payload; the caller sends `type_id` first.
    pub fn new(type_id: u8) -> Self {
        let mut digest = Crc64::new();
        digest.update(&[type_id]);
        DumpBuilder { digest }
    }

    /// Adds the next value bytes (the caller sends them too).
    pub fn update(&mut self, piece: &[u8]) {
        self.digest.update(piece);
    }

    /// The 10-byte footer (version + CRC) that ends the payload.
    pub fn finish(mut self, rdb_version: u16) -> [u8; 10] {
        let v = rdb_version.to_le_bytes();
        self.digest.update(&v);
        let crc = self.digest.value();
        let mut out = [0u8; 10];
        out[..2].copy_from_slice(&v);
        out[2..].copy_from_slice(&crc.to_le_bytes());
        out
    }
}

/// A checked payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload<'a> {
    /// The object type.
    pub object_type: ObjectType,
    /// The value bytes (what an RDB key record holds after the key).
    pub value: &'a [u8],
    /// The footer's RDB version.
    pub rdb_version: u16,
}

/// Checks a payload: size, CRC, known type for `flavor`, and that the value's structure ends
/// exactly at the footer (RESTORE itself misses trailing garbage; we do not).
pub fn parse(payload: &[u8], flavor: Flavor) -> Result<Payload<'_>, Error> {
    let corrupt = |offset: usize, expected: String| Error::Corrupt {
        offset: offset as u64,
        key: None,
        expected: expected.into(),
    };
    if payload.len() < 10 {
        return Err(corrupt(
            0,
            format!("a DUMP payload of at least 10 bytes, got {}", payload.len()),
        ));
    }
    let n = payload.len();
    let stored = u64::from_le_bytes(payload[n - 8..].try_into().unwrap());
    let computed = crc64(&payload[..n - 8]);
    if stored != computed {
        return Err(Error::Checksum {
            offset: (n - 8) as u64,
            stored,
            computed,
        });
    }
    let rdb_version = u16::from_le_bytes([payload[n - 10], payload[n - 9]]);
    if n < 11 {
        return Err(corrupt(
            0,
            "a type byte and a value before the footer".into(),
        ));
    }
    let type_id = payload[0];
    let object_type = ObjectType::from_byte(type_id, flavor).ok_or(Error::UnknownType {
        offset: 0,
        byte: type_id,
        version: rdb_version,
        key: None,
        why: "not an object type of this flavor",
    })?;
    let value = &payload[1..n - 10];
    let tasks = value_tasks(object_type).ok_or(Error::UnknownType {
        offset: 0,
        byte: type_id,
        version: rdb_version,
        key: None,
        why: "this type cannot be framed without its module",
    })?;
    let used = measure(tasks, value).map_err(|e: Malformed| e.at(1, None))?;
    if used != value.len() {
        return Err(corrupt(
            1 + used,
            format!(
                "the footer right after the value ({} stray bytes)",
                value.len() - used
            ),
        ));
    }
    Ok(Payload {
        object_type,
        value,
        rdb_version,
    })
}

/// The product a destination runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Product {
    /// Redis (or a fork that follows Redis's RDB versions).
    Redis,
    /// Valkey (any version: ≤ 8 speak RDB 11, 9+ speak 80+).
    Valkey,
}

/// What RESTORE on a destination accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Destination {
    /// The product.
    pub product: Product,
    /// Its own RDB version (Redis 6.2 → 9, 7.0 → 10, 7.2 → 11, 7.4+ → 12; Valkey 7.2/8 → 11,
    /// Valkey 9.0 → 80).
    pub rdb_version: u16,
}

impl Destination {
    /// Whether RESTORE's footer check passes for `label`.
    pub fn accepts_label(&self, label: u16) -> bool {
        label <= self.rdb_version
            && !(self.product == Product::Valkey && (12..=79).contains(&label))
    }

    /// Whether the destination can load objects of type `t`.
    pub fn knows_type(&self, t: ObjectType) -> bool {
        match (self.product, t) {
            (Product::Valkey, ObjectType::ValkeyHash2) => self.rdb_version >= 80,
            (Product::Valkey, ObjectType::ValkeyPathHash) => self.rdb_version >= 81,
            (Product::Valkey, _) => t
                .min_redis_version()
                .is_some_and(|v| v <= self.rdb_version.min(11)),
            (Product::Redis, _) => t.min_redis_version().is_some_and(|v| v <= self.rdb_version),
        }
    }

    /// The newest label the destination accepts, for relabelling.
    pub fn best_label(&self) -> u16 {
        self.rdb_version
    }
}

/// How to move a payload to a destination.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Compat {
    /// RESTORE the payload as it is.
    Unchanged,
    /// Rewrite the footer to this version (every encoding inside exists there), then RESTORE.
    Relabel {
        /// The new label.
        to: u16,
    },
    /// RESTORE cannot work; replay as commands ([`super::rewrite`]).
    Rewrite {
        /// Why.
        reason: String,
    },
    /// Neither RESTORE nor commands can carry it (a module value to a destination without that
    /// type, a stream to a server without streams).
    Impossible {
        /// Why.
        reason: String,
    },
}

/// Decides how a value of type `t` labelled `src_version` reaches `dest`.
///
/// For module values the answer assumes the destination has the module loaded (RESTORE fails
/// with "Bad data format" otherwise, verified on 6.2); nothing else can carry them.
pub fn compatibility(t: ObjectType, src_version: u16, dest: Destination) -> Compat {
    if !dest.knows_type(t) {
        let reason = format!(
            "a {:?} destination with RDB version {} has no type {} ({t:?})",
            dest.product,
            dest.rdb_version,
            t.id()
        );
        let commands_possible = match t.kind() {
            Kind::Module => false,
            Kind::Stream => dest.product == Product::Valkey || dest.rdb_version >= 9,
            _ => true,
        };
        return if commands_possible {
            Compat::Rewrite { reason }
        } else {
            Compat::Impossible { reason }
        };
    }
    if dest.accepts_label(src_version) {
        Compat::Unchanged
    } else {
        Compat::Relabel {
            to: dest.best_label(),
        }
    }
}

/// Replaces the footer of a payload with `to` and a fresh CRC.
pub fn relabel(payload: &[u8], to: u16) -> Vec<u8> {
    let n = payload.len();
    let mut out = payload[..n - 10].to_vec();
    out.extend_from_slice(&to.to_le_bytes());
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const APPENDIX_B: &[&str] = &[
        "000568656c6c6f0a006372df766534200a",
        "00c139300a009d94ea2793fc08b9",
        "10151500000004008266310382763103826632037b01ff0a004ac585b69f9c1e83",
        "0b0e0200000003000000fdff010002000a00d1b78ed9bc07c27f",
        "1202020d0d0000000200816102dfff02ff020a0a0000000100c12c02ff0a00c8082f0274def1e9",
        "111414000000040081610283312e35048162020201ff0a00fa02b425af188763",
    ];

    #[test]
    fn appendix_b_payloads_parse_and_rebuild_byte_exact() {
        for h in APPENDIX_B {
            let bytes = hex(h);
            let p = parse(&bytes, Flavor::Redis).unwrap();
            assert_eq!(p.rdb_version, 10);
            assert_eq!(build(p.object_type.id(), p.value, 10), bytes, "{h}");
            let mut b = DumpBuilder::new(p.object_type.id());
            for piece in p.value.chunks(3) {
                b.update(piece);
            }
            assert_eq!(&b.finish(10)[..], &bytes[bytes.len() - 10..]);
        }
    }

    #[test]
    fn bad_payloads_are_refused() {
        let mut bytes = hex(APPENDIX_B[0]);
        bytes[2] ^= 1;
        assert!(matches!(
            parse(&bytes, Flavor::Redis),
            Err(Error::Checksum { .. })
        ));
        // trailing garbage inside a valid CRC
        let good = hex(APPENDIX_B[0]);
        let mut value = good[1..good.len() - 10].to_vec();
        value.push(0);
        let padded = build(0, &value, 10);
        assert!(matches!(
            parse(&padded, Flavor::Redis),
            Err(Error::Corrupt { .. })
        ));
        assert!(parse(&[0; 5], Flavor::Redis).is_err());
        let relabelled = relabel(&good, 9);
        assert_eq!(parse(&relabelled, Flavor::Redis).unwrap().rdb_version, 9);
    }

    #[test]
    fn compatibility_decisions() {
        let redis = |v| Destination {
            product: Product::Redis,
            rdb_version: v,
        };
        let valkey = |v| Destination {
            product: Product::Valkey,
            rdb_version: v,
        };
        use ObjectType::*;
        assert_eq!(
            compatibility(HashListpack, 10, redis(10)),
            Compat::Unchanged
        );
        assert_eq!(
            compatibility(HashListpack, 11, redis(10)),
            Compat::Relabel { to: 10 }
        );
        assert!(matches!(
            compatibility(HashListpack, 10, redis(9)),
            Compat::Rewrite { .. }
        ));
        assert!(matches!(
            compatibility(SetListpack, 11, redis(10)),
            Compat::Rewrite { .. }
        ));
        assert_eq!(
            compatibility(String, 12, valkey(11)),
            Compat::Relabel { to: 11 }
        );
        assert_eq!(
            compatibility(String, 12, valkey(80)),
            Compat::Relabel { to: 80 }
        );
        assert_eq!(compatibility(String, 11, valkey(80)), Compat::Unchanged);
        assert!(matches!(
            compatibility(HashListpackEx, 12, valkey(80)),
            Compat::Rewrite { .. }
        ));
        assert!(matches!(
            compatibility(ValkeyHash2, 80, redis(12)),
            Compat::Rewrite { .. }
        ));
        assert!(matches!(
            compatibility(Module2, 9, redis(7)),
            Compat::Impossible { .. }
        ));
        assert!(matches!(
            compatibility(StreamListpacks2, 10, redis(8)),
            Compat::Impossible { .. }
        ));
        assert!(matches!(
            compatibility(StreamListpacks3, 11, redis(10)),
            Compat::Rewrite { .. }
        ));
    }
}
