//! The shipment format: `shipment.json`, `SHA256SUMS`, folder names, and the two state files
//! (`shipped.json` on the sending side, `received.json` on the receiving side). Tabled in
//! `docs/shipping.md` and pinned by `fixtures/shipment/`.
//!
//! Everything read from media is untrusted: [`Shipment::parse`] and [`parse_sums`] never
//! panic, bound what they accept, and refuse names that could leave the shipment folder.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{Error, Result, io};
use crate::journal::Position;
use crate::journal::manifest::valid_journal_id;
use crate::journal::segment;

/// Value of the `format` field of `shipment.json`.
pub const FORMAT_NAME: &str = "shake-shipment";
/// The shipment format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// The shipment's description, in the shipment folder.
pub const SHIPMENT_FILE: &str = "shipment.json";
/// The checksum list of every other file in the shipment, in `sha256sum` format.
pub const SUMS_FILE: &str = "SHA256SUMS";
/// The sending journal's record of what it shipped (in the journal directory).
pub const SHIPPED_FILE: &str = "shipped.json";
/// The receiving journal's record of what it received (in the journal directory).
pub const RECEIVED_FILE: &str = "received.json";
/// Suffix of the temporary folder a shipment is written into before its rename.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Infix of shipment folder names: `<journal id>-shipment-<NNNNNN>`.
pub const NAME_INFIX: &str = "-shipment-";
/// Largest `shipment.json` or `SHA256SUMS` read (a shipment lists at most a few thousand
/// segments; anything bigger is not ours).
pub const MAX_LIST_BYTES: u64 = 16 << 20;

/// `shipment.json`: what a shipment holds and what it follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    /// Always `"shake-shipment"`.
    pub format: String,
    /// [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// Version of shake that wrote the shipment.
    pub shake_version: String,
    /// Identity of the journal shipped (`journal_id` of its `journal.json`).
    pub journal_id: String,
    /// 1 for the first shipment of the journal, then +1 each time.
    pub sequence: u64,
    /// When the shipment was made, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// The shipment before this one: its sequence number and the SHA-256 of its
    /// `shipment.json`. `None` for shipment 1. This links shipments into a hash chain, so a
    /// skipped, repeated or reordered shipment is detected by content, not only by number.
    pub previous: Option<PreviousShipment>,
    /// Every shard of the journal, with the segments shipped (possibly none).
    pub shards: Vec<ShardShipment>,
}

/// The link to the previous shipment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousShipment {
    /// Its sequence number (this one's minus 1).
    pub sequence: u64,
    /// SHA-256 of its `shipment.json`, lower-case hex.
    pub sha256: String,
}

/// One shard's part of a shipment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardShipment {
    /// The shard's directory name.
    pub name: String,
    /// The last segment of this shard shipped before (name and SHA-256); `None` if none was.
    /// The receiving journal's last segment of the shard must be exactly this one.
    pub follows: Option<SegmentRef>,
    /// The sealed segments shipped, in order (files in the folder `<name>/`).
    pub segments: Vec<ShippedSegment>,
}

/// A segment named by file and content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// File name.
    pub file: String,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
}

/// A sealed segment in a shipment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedSegment {
    /// File name (in the shard's folder).
    pub file: String,
    /// Segment number in its shard.
    pub number: u64,
    /// First position.
    pub first: Position,
    /// Last position.
    pub last: Position,
    /// Length in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
}

impl ShippedSegment {
    /// The segment as a [`SegmentRef`].
    pub fn as_ref(&self) -> SegmentRef {
        SegmentRef {
            file: self.file.clone(),
            sha256: self.sha256.clone(),
        }
    }
}

impl Shipment {
    /// The folder name of this shipment.
    pub fn folder_name(&self) -> String {
        folder_name(&self.journal_id, self.sequence)
    }

    /// Segments over all shards.
    pub fn segment_count(&self) -> usize {
        self.shards.iter().map(|s| s.segments.len()).sum()
    }

    /// Segment bytes over all shards.
    pub fn segment_bytes(&self) -> u64 {
        self.shards
            .iter()
            .flat_map(|s| &s.segments)
            .map(|s| s.bytes)
            .sum()
    }

    /// The JSON bytes written to `shipment.json`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = serde_json::to_vec_pretty(self).expect("a shipment serializes");
        b.push(b'\n');
        b
    }

    /// Parses and validates `shipment.json` bytes from media. Never panics; every rule a
    /// receiver relies on is checked here: format and version, a well-formed journal id (it
    /// names folders), sequence ≥ 1 with a previous link exactly when > 1, shard names that
    /// stay inside the folder and are unique, canonical segment names that match their first
    /// position, hex digests, and segments in order within each shard.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Shipment, String> {
        if bytes.len() as u64 > MAX_LIST_BYTES {
            return Err(format!("{} bytes is too large", bytes.len()));
        }
        let s: Shipment = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if s.format != FORMAT_NAME {
            return Err(format!("format is {:?}, not {FORMAT_NAME:?}", s.format));
        }
        if s.format_version > FORMAT_VERSION || s.format_version == 0 {
            return Err(format!(
                "format version {} is not one this shake reads (1..={FORMAT_VERSION})",
                s.format_version
            ));
        }
        if !valid_journal_id(&s.journal_id) {
            return Err(format!("journal id {:?} is malformed", s.journal_id));
        }
        if s.sequence == 0 {
            return Err("sequence 0 (shipments are numbered from 1)".into());
        }
        match (&s.previous, s.sequence) {
            (None, 1) => {}
            (Some(p), n) if n > 1 && p.sequence == n - 1 && valid_sha(&p.sha256) => {}
            (p, n) => {
                return Err(format!(
                    "shipment {n} has a malformed link to its previous shipment: {p:?}"
                ));
            }
        }
        let mut names = BTreeSet::new();
        for sh in &s.shards {
            if !valid_shard_name(&sh.name) {
                return Err(format!("bad shard name {:?}", sh.name));
            }
            if !names.insert(&sh.name) {
                return Err(format!("shard {} listed twice", sh.name));
            }
            if let Some(f) = &sh.follows {
                check_ref(f).map_err(|e| format!("shard {}: follows: {e}", sh.name))?;
            }
            let mut prev: Option<&ShippedSegment> = None;
            for seg in &sh.segments {
                check_ref(&seg.as_ref()).map_err(|e| format!("shard {}: {e}", sh.name))?;
                if segment::parse_file_name(&seg.file) != Some(seg.first)
                    || segment::file_name(seg.first) != seg.file
                {
                    return Err(format!(
                        "shard {}: segment {} is not named by its first position {}",
                        sh.name, seg.file, seg.first
                    ));
                }
                if seg.last < seg.first {
                    return Err(format!(
                        "shard {}: segment {} ends before it starts",
                        sh.name, seg.file
                    ));
                }
                if let Some(p) = prev
                    && (Some(seg.number) != p.number.checked_add(1) || seg.first <= p.last)
                {
                    return Err(format!(
                        "shard {}: segment {} (number {}) does not follow {} (number {})",
                        sh.name, seg.file, seg.number, p.file, p.number
                    ));
                }
                prev = Some(seg);
            }
        }
        Ok(s)
    }
}

fn check_ref(r: &SegmentRef) -> std::result::Result<(), String> {
    if segment::parse_file_name(&r.file).is_none() || r.file.contains('/') {
        return Err(format!("{:?} is not a segment file name", r.file));
    }
    if !valid_sha(&r.sha256) {
        return Err(format!("{}: malformed SHA-256 {:?}", r.file, r.sha256));
    }
    Ok(())
}

/// 64 lower-case hex digits.
pub fn valid_sha(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A shard directory name that stays inside its parent (the journal's own rule, plus a length
/// bound and printable ASCII).
pub fn valid_shard_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && !n.starts_with('.')
        && n.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\')
}

/// `<journal id>-shipment-<sequence, 6 digits or more>`.
pub fn folder_name(journal_id: &str, sequence: u64) -> String {
    format!("{journal_id}{NAME_INFIX}{sequence:06}")
}

/// The temporary folder name of a shipment being written: hidden, and ending in `.partial`,
/// so neither a person nor `shake receive` takes it for a complete shipment.
pub fn partial_name(journal_id: &str, sequence: u64) -> String {
    format!(".{}{PARTIAL_SUFFIX}", folder_name(journal_id, sequence))
}

/// Parses a complete shipment folder name into (journal id, sequence).
pub fn parse_folder_name(name: &str) -> Option<(String, u64)> {
    let (id, seq) = name.rsplit_once(NAME_INFIX)?;
    if !valid_journal_id(id) || seq.len() < 6 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((id.to_string(), seq.parse().ok()?))
}

/// Whether `name` is the temporary folder of an unfinished shipment.
pub fn is_partial_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(PARTIAL_SUFFIX) && name.contains(NAME_INFIX)
}

/// `SHA256SUMS` content: one `<hex>  <path>` line per file, as `sha256sum` writes it (so
/// `sha256sum -c SHA256SUMS` checks a shipment without shake).
pub fn format_sums(entries: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, sha) in entries {
        out.extend_from_slice(format!("{sha}  {path}\n").as_bytes());
    }
    out
}

/// Parses `SHA256SUMS` from media into (relative path, sha256) pairs. Accepts the text and
/// binary markers of `sha256sum` (`"  "` and `" *"`); refuses escaped names, absolute paths,
/// `..` and duplicate paths. Never panics.
pub fn parse_sums(bytes: &[u8]) -> std::result::Result<Vec<(String, String)>, String> {
    if bytes.len() as u64 > MAX_LIST_BYTES {
        return Err(format!("{} bytes is too large", bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.is_empty() {
            continue;
        }
        let (sha, rest) = line
            .split_at_checked(64)
            .ok_or_else(|| format!("line {n}: too short"))?;
        if !valid_sha(sha) {
            return Err(format!("line {n}: {sha:?} is not a lower-case SHA-256"));
        }
        let path = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .ok_or_else(|| format!("line {n}: expected two spaces after the digest"))?;
        if !safe_relative(path) {
            return Err(format!("line {n}: unsafe path {path:?}"));
        }
        if !seen.insert(path.to_string()) {
            return Err(format!("line {n}: {path} listed twice"));
        }
        out.push((path.to_string(), sha.to_string()));
    }
    Ok(out)
}

/// A relative path of at most two plain components (`shard-000/file.seg`): no root, no `.`
/// or `..` (nor any hidden name), no backslash or control character.
fn safe_relative(p: &str) -> bool {
    let parts: Vec<&str> = p.split('/').collect();
    !p.is_empty()
        && parts.len() <= 2
        && parts.iter().all(|c| {
            !c.is_empty()
                && !c.starts_with('.')
                && c.chars().all(|ch| !ch.is_control() && ch != '\\')
        })
}

/// `shipped.json`, in the sending journal: every shipment made, so the next one sends only what
/// is new. Replaced atomically, and only once a shipment is complete on the media.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedState {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The journal identity the shipments carry.
    pub journal_id: String,
    /// The shipments, in order.
    pub shipments: Vec<ShippedRecord>,
}

/// One shipment made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedRecord {
    /// Its sequence number.
    pub sequence: u64,
    /// Its folder name.
    pub name: String,
    /// When it was made, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// SHA-256 of its `shipment.json` (the next shipment's `previous` link).
    pub sha256: String,
    /// The segments it held, per shard (only shards with segments).
    pub shards: Vec<ShippedShard>,
}

/// The segments of one shard in a shipment made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedShard {
    /// The shard.
    pub name: String,
    /// Its segments, in order.
    pub segments: Vec<SegmentRef>,
}

impl ShippedState {
    /// The last segment shipped of `shard`, if any.
    pub fn last_of(&self, shard: &str) -> Option<&SegmentRef> {
        self.shipments
            .iter()
            .rev()
            .flat_map(|s| &s.shards)
            .find(|s| s.name == shard)
            .and_then(|s| s.segments.last())
    }
}

/// `received.json`, in the receiving journal: every shipment received, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedState {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The journal identity.
    pub journal_id: String,
    /// The shipments, in order (sequence 1, 2, 3 …).
    pub shipments: Vec<ReceivedRecord>,
}

/// One shipment received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedRecord {
    /// Its sequence number.
    pub sequence: u64,
    /// Its folder name.
    pub name: String,
    /// SHA-256 of its `shipment.json`.
    pub sha256: String,
    /// When it was made on the sending side, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// When it was received here.
    pub received_unix_ms: u64,
    /// Segments added.
    pub segments: u64,
    /// Segment bytes added.
    pub bytes: u64,
}

/// Reads a JSON state file, or the default when it does not exist.
pub fn read_state<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::State {
            file: path.to_path_buf(),
            what: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Reads at most [`MAX_LIST_BYTES`] of a small file from media.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mut b = Vec::new();
    f.take(MAX_LIST_BYTES + 1)
        .read_to_end(&mut b)
        .map_err(io(path))?;
    Ok(b)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 and length of a file, streamed.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io(path))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex(&h.finalize()), n))
}

/// Copies `from` to a new file `to` (which must not exist), streaming, and syncs it. Returns
/// the SHA-256 and length of the bytes written.
pub fn copy_synced(from: &Path, to: &Path) -> Result<(String, u64)> {
    let mut src = std::fs::File::open(from).map_err(io(from))?;
    let mut dst = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(io(to))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = src.read(&mut buf).map_err(io(from))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        dst.write_all(&buf[..k]).map_err(io(to))?;
        n += k as u64;
    }
    dst.sync_all().map_err(io(to))?;
    Ok((hex(&h.finalize()), n))
}

/// Syncs a directory (creations, renames and removals in it become durable).
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    fn seg(number: u64, first: u64, last: u64) -> ShippedSegment {
        let first = Position::new(1, first, 0);
        ShippedSegment {
            file: segment::file_name(first),
            number,
            first,
            last: Position::new(1, last, 0),
            bytes: 100,
            sha256: sha('a'),
        }
    }

    fn shipment() -> Shipment {
        Shipment {
            format: FORMAT_NAME.into(),
            format_version: 1,
            shake_version: "0.1.0".into(),
            journal_id: "0123456789abcdef0123456789abcdef".into(),
            sequence: 2,
            created_unix_ms: 1,
            previous: Some(PreviousShipment {
                sequence: 1,
                sha256: sha('b'),
            }),
            shards: vec![ShardShipment {
                name: "shard-000".into(),
                follows: Some(seg(0, 1, 9).as_ref()),
                segments: vec![seg(1, 10, 19), seg(2, 20, 29)],
            }],
        }
    }

    #[test]
    fn shipment_round_trips() {
        let s = shipment();
        assert_eq!(Shipment::parse(&s.to_bytes()).unwrap(), s);
        assert_eq!(
            s.folder_name(),
            "0123456789abcdef0123456789abcdef-shipment-000002"
        );
        assert_eq!(
            parse_folder_name(&s.folder_name()),
            Some((s.journal_id.clone(), 2))
        );
        assert!(is_partial_name(&partial_name(&s.journal_id, 2)));
        assert_eq!(parse_folder_name(&partial_name(&s.journal_id, 2)), None);
    }

    #[test]
    fn shipment_rules_are_enforced() {
        type Mutation = Box<dyn Fn(&mut Shipment)>;
        let bad: Vec<(&str, Mutation)> = vec![
            ("format", Box::new(|s| s.format = "x".into())),
            ("version", Box::new(|s| s.format_version = 2)),
            ("id", Box::new(|s| s.journal_id = "../x".into())),
            ("seq 0", Box::new(|s| s.sequence = 0)),
            ("no previous", Box::new(|s| s.previous = None)),
            (
                "previous number",
                Box::new(|s| s.previous.as_mut().unwrap().sequence = 5),
            ),
            (
                "shard name",
                Box::new(|s| s.shards[0].name = "../etc".into()),
            ),
            (
                "dup shard",
                Box::new(|s| {
                    let c = s.shards[0].clone();
                    s.shards.push(c)
                }),
            ),
            (
                "segment name",
                Box::new(|s| s.shards[0].segments[0].file = "x.seg".into()),
            ),
            (
                "name not first",
                Box::new(|s| s.shards[0].segments[0].first = Position::new(1, 11, 0)),
            ),
            ("order", Box::new(|s| s.shards[0].segments[1].number = 7)),
            (
                "sha",
                Box::new(|s| s.shards[0].segments[0].sha256 = "XYZ".into()),
            ),
        ];
        for (what, f) in bad {
            let mut s = shipment();
            f(&mut s);
            assert!(Shipment::parse(&s.to_bytes()).is_err(), "{what} accepted");
        }
        let mut first = shipment();
        first.sequence = 1;
        assert!(Shipment::parse(&first.to_bytes()).is_err());
        first.previous = None;
        Shipment::parse(&first.to_bytes()).unwrap();
    }

    #[test]
    fn sums_round_trip_and_refuse_escapes() {
        let e = vec![
            ("journal.json".to_string(), sha('1')),
            ("shard-000/a.seg".to_string(), sha('2')),
        ];
        assert_eq!(parse_sums(&format_sums(&e)).unwrap(), e);
        assert_eq!(
            parse_sums(format!("{} *x\n", sha('1')).as_bytes()).unwrap()[0].0,
            "x"
        );
        for p in [
            "../x",
            "/etc/passwd",
            "a/../../b",
            "a/b/c",
            "a//b",
            "./a",
            ".",
            "\\x",
        ] {
            let l = format!("{}  {p}\n", sha('1'));
            assert!(parse_sums(l.as_bytes()).is_err(), "{p} accepted");
        }
        let dup = format!("{0}  a\n{0}  a\n", sha('1'));
        assert!(parse_sums(dup.as_bytes()).is_err());
        assert!(parse_sums(b"short  a\n").is_err());
        assert!(parse_sums("é".repeat(40).as_bytes()).is_err());
    }

    #[test]
    fn shipped_state_knows_the_last_segment_of_each_shard() {
        let r = |seq, shards: Vec<(&str, &str)>| ShippedRecord {
            sequence: seq,
            name: String::new(),
            created_unix_ms: 0,
            sha256: sha('0'),
            shards: shards
                .into_iter()
                .map(|(n, f)| ShippedShard {
                    name: n.into(),
                    segments: vec![SegmentRef {
                        file: f.into(),
                        sha256: sha('0'),
                    }],
                })
                .collect(),
        };
        let st = ShippedState {
            format_version: 1,
            journal_id: String::new(),
            shipments: vec![
                r(1, vec![("a", "a1"), ("b", "b1")]),
                r(2, vec![("a", "a2")]),
            ],
        };
        assert_eq!(st.last_of("a").unwrap().file, "a2");
        assert_eq!(st.last_of("b").unwrap().file, "b1");
        assert!(st.last_of("c").is_none());
    }
}
