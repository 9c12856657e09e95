//! Manifests: `journal.json` at the top of a journal and `shard.json` in each shard directory.
//!
//! Manifests are JSON so an operator can read them with any tool years from now. They are
//! replaced atomically: written to a temporary file, synced, renamed over the old one, and the
//! directory synced, so a crash leaves either the old or the new manifest, never a mix.
//!
//! The shard manifest lists the *sealed* segments with their SHA-256; the segment being
//! written is not listed (it is found by listing the directory), which is why sealing is the
//! only manifest update on the hot path.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::io;
use super::{Error, FORMAT_VERSION, Position, Result};

/// Name of the journal manifest file.
pub const JOURNAL_MANIFEST: &str = "journal.json";
/// Name of the shard manifest file.
pub const SHARD_MANIFEST: &str = "shard.json";
/// Value of the `format` field of `journal.json`.
pub const FORMAT_NAME: &str = "shake-journal";

/// `journal.json`: what the journal is and which shards it has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalManifest {
    /// Always `"shake-journal"`.
    pub format: String,
    /// Format version of the journal ([`FORMAT_VERSION`] when written by this build).
    pub format_version: u32,
    /// Version of shake that created the journal.
    pub shake_version: String,
    /// Creation time, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// A random, unique identity (32 lower-case hex digits) given at creation, so shipments of
    /// this journal can be told from any other's (`shake ship`/`receive`). Journals written
    /// before it existed have none; `shake ship` assigns one on first use and records it here.
    /// Absent from the JSON when `None`, so older readers and the v1 fixtures are unaffected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_id: Option<String>,
    /// Where the data comes from, without credentials.
    pub source: Source,
    /// The shards, each a sub-directory named by [`ShardInfo::name`].
    pub shards: Vec<ShardInfo>,
}

impl JournalManifest {
    /// A manifest for a new journal written by this build, with a fresh
    /// [`JournalManifest::journal_id`].
    pub fn new(created_unix_ms: u64, source: Source, shards: Vec<ShardInfo>) -> Self {
        JournalManifest {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            shake_version: env!("CARGO_PKG_VERSION").into(),
            created_unix_ms,
            journal_id: Some(new_journal_id()),
            source,
            shards,
        }
    }
}

/// A fresh journal identity: 128 random bits from the kernel (`/dev/urandom`) as 32 lower-case
/// hex digits. Should the kernel source be unreadable, a SHA-256 of the time, process id and a
/// counter stands in (unique in practice, which is all an identity needs).
pub fn new_journal_id() -> String {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut b = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !random {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut h = Sha256::new();
        h.update(now.as_nanos().to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        h.update(
            COUNTER
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .to_le_bytes(),
        );
        b.copy_from_slice(&h.finalize()[..16]);
    }
    super::writer::hex(&b)
}

/// Whether `id` has the form of a journal identity: 8 to 64 lower-case hex digits (it names
/// shipment folders, so nothing else is accepted).
pub fn valid_journal_id(id: &str) -> bool {
    (8..=64).contains(&id.len()) && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The source a journal was captured from. Never holds credentials: [`create`] refuses a
/// description that looks like it carries a password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// `standalone`, `cluster`, `sentinel` or `rdb-file`.
    pub kind: String,
    /// Human-readable description: host:port list, master name, file name.
    pub description: String,
}

/// One shard of the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Directory name, stable across failovers: `shard-000`, `shard-001` … (never a node id).
    pub name: String,
    /// Slot ranges `[start, end]` inclusive the shard served when the journal was created
    /// (empty for a standalone source).
    pub slots: Vec<(u16, u16)>,
}

impl ShardInfo {
    /// The conventional stable name of shard number `n`.
    pub fn name_for(n: usize) -> String {
        format!("shard-{n:03}")
    }
}

/// `shard.json`: the epochs of the shard and its sealed segments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardManifest {
    /// Format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The shard's name (its directory name).
    pub shard: String,
    /// One entry per epoch, in order.
    pub epochs: Vec<EpochInfo>,
    /// Sealed segments, in order. Never modified once listed.
    pub sealed: Vec<SealedSegment>,
}

/// Which replication ids an epoch's offsets belong to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochInfo {
    /// The epoch number.
    pub epoch: u64,
    /// Offset of the epoch's snapshot.
    pub start_offset: u64,
    /// Replication ids in force, in order: the first from the full resync, later ones from
    /// partial resyncs that continued under a new id (failover, restart).
    pub replids: Vec<ReplIdSpan>,
}

/// A replication id in force from `from_offset` on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplIdSpan {
    /// First offset this id applies to.
    pub from_offset: u64,
    /// The master's replid.
    pub replid: String,
    /// The master's replid2, if any.
    pub replid2: Option<String>,
}

/// A sealed segment as recorded in the shard manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSegment {
    /// File name in the shard directory.
    pub file: String,
    /// Segment number.
    pub number: u64,
    /// First position.
    pub first: Position,
    /// Last position.
    pub last: Position,
    /// Record frames.
    pub frames: u64,
    /// Records.
    pub records: u64,
    /// File length in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
}

/// Creates a journal directory: `journal.json` and one empty directory per shard. Fails if the
/// directory already holds a journal, or if the source description looks like it carries
/// credentials.
pub fn create(dir: &Path, manifest: &JournalManifest) -> Result<()> {
    if looks_like_credentials(&manifest.source.description) {
        return Err(Error::Invalid(
            "source description seems to carry credentials (user:password@); strip them".into(),
        ));
    }
    // A journal holds every value of the source: a new journal directory is private to its
    // owner (0700), whatever the umask (`docs/security.md`).
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    let path = dir.join(JOURNAL_MANIFEST);
    if path.exists() {
        return Err(Error::Invalid(format!(
            "{} already holds a journal",
            dir.display()
        )));
    }
    for s in &manifest.shards {
        if s.name.is_empty() || s.name.contains(['/', '\\']) || s.name.starts_with('.') {
            return Err(Error::Invalid(format!("bad shard name {:?}", s.name)));
        }
        let sd = dir.join(&s.name);
        std::fs::create_dir_all(&sd).map_err(io(&sd))?;
        write_json_atomic(
            &sd.join(SHARD_MANIFEST),
            &ShardManifest {
                format_version: FORMAT_VERSION,
                shard: s.name.clone(),
                ..Default::default()
            },
        )?;
    }
    write_json_atomic(&path, manifest)
}

/// Reads `journal.json`, refusing newer format versions.
pub fn read_journal(dir: &Path) -> Result<JournalManifest> {
    let path = dir.join(JOURNAL_MANIFEST);
    let m: JournalManifest = read_json(&path)?;
    if m.format != FORMAT_NAME {
        return Err(Error::Manifest {
            file: path,
            what: format!("format is {:?}, not {FORMAT_NAME:?}", m.format),
        });
    }
    if m.format_version > FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            file: path,
            found: m.format_version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(m)
}

/// Reads a shard's `shard.json`.
pub fn read_shard(shard_dir: &Path) -> Result<ShardManifest> {
    let path = shard_dir.join(SHARD_MANIFEST);
    let m: ShardManifest = read_json(&path)?;
    if m.format_version > FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            file: path,
            found: m.format_version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(m)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let b = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&b).map_err(|e| Error::Manifest {
        file: path.to_path_buf(),
        what: e.to_string(),
    })
}

/// Writes `value` as pretty JSON to `path` atomically (temp file, sync, rename, sync dir).
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut b = serde_json::to_vec_pretty(value).expect("manifests serialize");
    b.push(b'\n');
    write_atomic(path, &b)
}

/// Replaces `path` with `bytes` atomically: write `path.tmp`, sync it, rename, sync the
/// directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write_synced(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Creates or truncates `path`, writes `bytes` and syncs the file.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Syncs a directory, so that file creations, renames and removals in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io(dir))
}

/// `scheme://user:pass@host` or `user:pass@host`: a password would end up in the manifest.
fn looks_like_credentials(s: &str) -> bool {
    s.split([' ', ','])
        .map(|w| w.split_once("://").map_or(w, |(_, rest)| rest))
        .any(|w| {
            w.split_once('@')
                .is_some_and(|(userinfo, _)| userinfo.contains(':') || !userinfo.is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_refused() {
        assert!(looks_like_credentials("redis://u:secret@host:6379"));
        assert!(looks_like_credentials("redis://:secret@host"));
        assert!(!looks_like_credentials("redis://host:6379"));
        assert!(!looks_like_credentials("10.0.0.1:6379,10.0.0.2:6379"));
        assert!(!looks_like_credentials("dump.rdb"));
    }

    #[test]
    fn a_new_journal_directory_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("j");
        let m = JournalManifest::new(
            0,
            Source {
                kind: "standalone".into(),
                description: "127.0.0.1:6379".into(),
            },
            vec![ShardInfo {
                name: "shard-000".into(),
                slots: vec![],
            }],
        );
        create(&dir, &m).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn journal_ids_are_fresh_and_well_formed() {
        let (a, b) = (new_journal_id(), new_journal_id());
        assert_ne!(a, b);
        assert!(valid_journal_id(&a) && a.len() == 32, "{a}");
        assert!(!valid_journal_id("ABCDEF0123"));
        assert!(!valid_journal_id("../../etc"));
    }

    #[test]
    fn manifests_without_an_id_still_read_and_write_without_one() {
        let old = br#"{"format":"shake-journal","format_version":1,"shake_version":"0.1.0",
            "created_unix_ms":1,"source":{"kind":"standalone","description":"h:1"},"shards":[]}"#;
        let m: JournalManifest = serde_json::from_slice(old).unwrap();
        assert_eq!(m.journal_id, None);
        assert!(!serde_json::to_string(&m).unwrap().contains("journal_id"));
    }
}
