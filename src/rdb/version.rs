//! RDB header (magic + version), the object type ids and the opcodes, and what each version
//! contains.
//!
//! Magic and version are checked together because the same type byte means different things in
//! the two product families: 22 is Redis 7.4's pre-GA `HASH_METADATA` but Valkey 9's `HASH_2`.
//! So a type byte is only ever interpreted through [`ObjectType::from_byte`] with the file's
//! [`Flavor`].

use super::error::{Error, printable_key};

/// Highest Redis RDB version this build reads (Redis 7.4 … 8.4).
pub const REDIS_MAX_VERSION: u16 = 12;
/// Lowest and highest Valkey-magic versions this build reads (Valkey 9.0, 9.2).
pub const VALKEY_VERSIONS: (u16, u16) = (80, 81);

/// Which product family wrote the file, decided by the magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Flavor {
    /// `REDISnnnn`: Redis of any version, Valkey ≤ 8, KeyDB, and so on.
    Redis,
    /// `VALKEYnnn`: Valkey ≥ 9.
    Valkey,
}

/// The 9-byte RDB header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Header {
    /// Product family, from the magic.
    pub flavor: Flavor,
    /// The version number.
    pub version: u16,
}

impl Header {
    /// Length of the header in bytes.
    pub const LEN: usize = 9;

    /// Parses and checks the 9-byte header. `accept_newer` lets a version above the highest
    /// known through (objects of unknown types will still stop the reader).
    pub fn parse(bytes: &[u8; 9], accept_newer: bool) -> Result<Header, Error> {
        let bad = || Error::BadMagic {
            found: printable_key(bytes),
        };
        let digits = |d: &[u8]| -> Option<u16> {
            if d.iter().all(u8::is_ascii_digit) {
                std::str::from_utf8(d).ok()?.parse().ok()
            } else {
                None
            }
        };
        let (flavor, version) = if &bytes[..5] == b"REDIS" {
            (Flavor::Redis, digits(&bytes[5..]).ok_or_else(bad)?)
        } else if &bytes[..6] == b"VALKEY" {
            (Flavor::Valkey, digits(&bytes[6..]).ok_or_else(bad)?)
        } else {
            return Err(bad());
        };
        let header = Header { flavor, version };
        match flavor {
            Flavor::Redis if version == 0 => Err(bad()),
            Flavor::Redis if version > REDIS_MAX_VERSION && !accept_newer => {
                Err(Error::UnsupportedVersion {
                    version,
                    magic: "REDIS",
                    known: "REDIS 1–12",
                })
            }
            Flavor::Valkey if version < VALKEY_VERSIONS.0 => Err(bad()),
            Flavor::Valkey if version > VALKEY_VERSIONS.1 && !accept_newer => {
                Err(Error::UnsupportedVersion {
                    version,
                    magic: "VALKEY",
                    known: "VALKEY 80–81",
                })
            }
            _ => Ok(header),
        }
    }

    /// The 9 header bytes.
    pub fn to_bytes(self) -> [u8; 9] {
        let s = match self.flavor {
            Flavor::Redis => format!("REDIS{:04}", self.version),
            Flavor::Valkey => format!("VALKEY{:03}", self.version),
        };
        let mut out = [0u8; 9];
        out.copy_from_slice(&s.as_bytes()[..9]);
        out
    }

    /// Whether an 8-byte CRC-64 trailer follows the EOF opcode (RDB ≥ 5).
    pub fn has_checksum(self) -> bool {
        self.version >= 5
    }
}

/// Record opcodes (bytes that are not object types).
pub mod opcode {
    /// End of file; the checksum follows (RDB ≥ 5).
    pub const EOF: u8 = 0xFF;
    /// Switch database: a length.
    pub const SELECTDB: u8 = 0xFE;
    /// Expiry of the next key in seconds, 4 bytes LE (old writers).
    pub const EXPIRETIME: u8 = 0xFD;
    /// Expiry of the next key in milliseconds, 8 bytes LE.
    pub const EXPIRETIME_MS: u8 = 0xFC;
    /// Sizing hint: two lengths.
    pub const RESIZEDB: u8 = 0xFB;
    /// Auxiliary field: two strings.
    pub const AUX: u8 = 0xFA;
    /// LFU counter of the next key: 1 byte.
    pub const FREQ: u8 = 0xF9;
    /// LRU idle seconds of the next key: a length.
    pub const IDLE: u8 = 0xF8;
    /// Module auxiliary data.
    pub const MODULE_AUX: u8 = 0xF7;
    /// Redis 7.0-rc function record (name, engine, description, code).
    pub const FUNCTION_PRE_GA: u8 = 0xF6;
    /// Function library (Redis ≥ 7.0 GA): one string.
    pub const FUNCTION2: u8 = 0xF5;
    /// Redis ≥ 7.4 cluster slot hint: three lengths.
    pub const SLOT_INFO: u8 = 0xF4;
    /// Valkey 9 in-progress slot import: a string and a list of ranges.
    pub const SLOT_IMPORT: u8 = 0xF3;
    /// Valkey ≥ 9.2 (RDB 81) forkless-save inline command: the opcode, then the command as a
    /// RESP multi-bulk (`*<n>\r\n` + n × `$<len>\r\n<bytes>\r\n`). Read under the VALKEY magic only.
    pub const UPDATE: u8 = 0xF2;
    /// Redis Enterprise RAM LRU hint: one length (skipped by librdb too).
    pub const ENT_RAM_LRU: u8 = 107;
    /// Redis Enterprise slot number: one length.
    pub const ENT_SLOT_NUM: u8 = 121;
}

/// An object type, as resolved from a type byte and the file's [`Flavor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[allow(missing_docs)] // the variant names are the `RDB_TYPE_*` names; see `docs/rdb.md`
pub enum ObjectType {
    String,
    ListLinked,
    Set,
    ZsetV1,
    Hash,
    Zset2,
    ModulePreGa,
    Module2,
    HashZipmap,
    ListZiplist,
    SetIntset,
    ZsetZiplist,
    HashZiplist,
    ListQuicklist,
    StreamListpacks,
    HashListpack,
    ZsetListpack,
    ListQuicklist2,
    StreamListpacks2,
    SetListpack,
    StreamListpacks3,
    /// Redis 7.4-rc type 22.
    HashMetadataPreGa,
    /// Redis 7.4-rc type 23.
    HashListpackExPreGa,
    /// Redis ≥ 7.4 type 24.
    HashMetadata,
    /// Redis ≥ 7.4 type 25.
    HashListpackEx,
    /// Valkey 9 type 22.
    ValkeyHash2,
    /// Valkey 9.2 type 23 (its RDB layout could not be checked against the source; refused).
    ValkeyPathHash,
}

/// The logical kind of an object, independent of its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Strings (including HyperLogLogs and bitmaps).
    String,
    /// Lists.
    List,
    /// Sets.
    Set,
    /// Sorted sets.
    Zset,
    /// Hashes, with or without field TTLs.
    Hash,
    /// Streams.
    Stream,
    /// Module values.
    Module,
}

impl Kind {
    /// Lower-case name as `TYPE` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::Zset => "zset",
            Kind::Hash => "hash",
            Kind::Stream => "stream",
            Kind::Module => "module",
        }
    }
}

impl ObjectType {
    /// Resolves a type byte. `None` when the byte is not an object type of that flavor.
    pub fn from_byte(byte: u8, flavor: Flavor) -> Option<ObjectType> {
        use ObjectType::*;
        Some(match byte {
            0 => String,
            1 => ListLinked,
            2 => Set,
            3 => ZsetV1,
            4 => Hash,
            5 => Zset2,
            6 => ModulePreGa,
            7 => Module2,
            9 => HashZipmap,
            10 => ListZiplist,
            11 => SetIntset,
            12 => ZsetZiplist,
            13 => HashZiplist,
            14 => ListQuicklist,
            15 => StreamListpacks,
            16 => HashListpack,
            17 => ZsetListpack,
            18 => ListQuicklist2,
            19 => StreamListpacks2,
            20 => SetListpack,
            21 => StreamListpacks3,
            22 if flavor == Flavor::Redis => HashMetadataPreGa,
            23 if flavor == Flavor::Redis => HashListpackExPreGa,
            24 if flavor == Flavor::Redis => HashMetadata,
            25 if flavor == Flavor::Redis => HashListpackEx,
            22 => ValkeyHash2,
            23 => ValkeyPathHash,
            _ => return None,
        })
    }

    /// The type byte.
    pub fn id(self) -> u8 {
        use ObjectType::*;
        match self {
            String => 0,
            ListLinked => 1,
            Set => 2,
            ZsetV1 => 3,
            Hash => 4,
            Zset2 => 5,
            ModulePreGa => 6,
            Module2 => 7,
            HashZipmap => 9,
            ListZiplist => 10,
            SetIntset => 11,
            ZsetZiplist => 12,
            HashZiplist => 13,
            ListQuicklist => 14,
            StreamListpacks => 15,
            HashListpack => 16,
            ZsetListpack => 17,
            ListQuicklist2 => 18,
            StreamListpacks2 => 19,
            SetListpack => 20,
            StreamListpacks3 => 21,
            HashMetadataPreGa | ValkeyHash2 => 22,
            HashListpackExPreGa | ValkeyPathHash => 23,
            HashMetadata => 24,
            HashListpackEx => 25,
        }
    }

    /// The logical kind.
    pub fn kind(self) -> Kind {
        use ObjectType::*;
        match self {
            String => Kind::String,
            ListLinked | ListZiplist | ListQuicklist | ListQuicklist2 => Kind::List,
            Set | SetIntset | SetListpack => Kind::Set,
            ZsetV1 | Zset2 | ZsetZiplist | ZsetListpack => Kind::Zset,
            Hash | HashZipmap | HashZiplist | HashListpack | HashMetadataPreGa
            | HashListpackExPreGa | HashMetadata | HashListpackEx | ValkeyHash2
            | ValkeyPathHash => Kind::Hash,
            StreamListpacks | StreamListpacks2 | StreamListpacks3 => Kind::Stream,
            ModulePreGa | Module2 => Kind::Module,
        }
    }

    /// The encoding name, in the words `OBJECT ENCODING` or the RDB source uses.
    pub fn encoding(self) -> &'static str {
        use ObjectType::*;
        match self {
            String => "string",
            ListLinked => "linkedlist",
            Set | Hash => "hashtable",
            ZsetV1 | Zset2 => "skiplist",
            ModulePreGa | Module2 => "module",
            HashZipmap => "zipmap",
            ListZiplist | ZsetZiplist | HashZiplist => "ziplist",
            SetIntset => "intset",
            ListQuicklist => "quicklist",
            ListQuicklist2 => "quicklist2",
            StreamListpacks => "stream-v1",
            StreamListpacks2 => "stream-v2",
            StreamListpacks3 => "stream-v3",
            HashListpack | ZsetListpack | SetListpack => "listpack",
            HashMetadataPreGa | HashMetadata => "hashtable-ttl",
            HashListpackExPreGa | HashListpackEx => "listpack-ttl",
            ValkeyHash2 => "hashtable-ttl-valkey",
            ValkeyPathHash => "path-hash",
        }
    }

    /// The lowest Redis-flavor RDB version that has this type (what a destination must load to
    /// accept the encoding), or `None` for Valkey-only types.
    pub fn min_redis_version(self) -> Option<u16> {
        use ObjectType::*;
        Some(match self {
            String | ListLinked | Set | ZsetV1 | Hash => 1,
            HashZipmap | ListZiplist | SetIntset | ZsetZiplist => 2,
            HashZiplist => 4,
            ListQuicklist => 7,
            Zset2 | ModulePreGa | Module2 => 8,
            StreamListpacks => 9,
            HashListpack | ZsetListpack | ListQuicklist2 | StreamListpacks2 => 10,
            SetListpack | StreamListpacks3 => 11,
            HashMetadataPreGa | HashListpackExPreGa | HashMetadata | HashListpackEx => 12,
            ValkeyHash2 | ValkeyPathHash => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        let h = Header::parse(b"REDIS0011", false).unwrap();
        assert_eq!(
            h,
            Header {
                flavor: Flavor::Redis,
                version: 11
            }
        );
        assert_eq!(&h.to_bytes(), b"REDIS0011");
        let v = Header::parse(b"VALKEY080", false).unwrap();
        assert_eq!(v.flavor, Flavor::Valkey);
        assert_eq!(&v.to_bytes(), b"VALKEY080");
        assert!(matches!(
            Header::parse(b"REDIS0013", false),
            Err(Error::UnsupportedVersion { version: 13, .. })
        ));
        assert!(Header::parse(b"REDIS0013", true).is_ok());
        assert!(matches!(
            Header::parse(b"VALKEY082", false),
            Err(Error::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            Header::parse(b"VALKEY011", false),
            Err(Error::BadMagic { .. })
        ));
        assert!(matches!(
            Header::parse(b"REDIS00x1", false),
            Err(Error::BadMagic { .. })
        ));
        assert!(matches!(
            Header::parse(b"GARBAGE!!", false),
            Err(Error::BadMagic { .. })
        ));
    }

    #[test]
    fn type_ids_depend_on_flavor() {
        assert_eq!(
            ObjectType::from_byte(22, Flavor::Redis),
            Some(ObjectType::HashMetadataPreGa)
        );
        assert_eq!(
            ObjectType::from_byte(22, Flavor::Valkey),
            Some(ObjectType::ValkeyHash2)
        );
        assert_eq!(ObjectType::from_byte(24, Flavor::Valkey), None);
        assert_eq!(ObjectType::from_byte(8, Flavor::Redis), None);
        for b in 0..=255u8 {
            for f in [Flavor::Redis, Flavor::Valkey] {
                if let Some(t) = ObjectType::from_byte(b, f) {
                    assert_eq!(t.id(), b);
                }
            }
        }
    }
}
