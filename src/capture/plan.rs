//! Planning a capture: which shards, where each finds its master, and the journal they go to
//! (created on first use, reused — and checked — on resume).

use super::replica::SessionOptions;
use super::shard::{Locator, ShardJob};
use crate::journal::{self, JournalManifest, ShardInfo, Source, WriterOptions};
use crate::net::topology::{self, Mode};
use crate::net::{ConnectOptions, Connection, Endpoint};
use crate::rdb::ReaderOptions;
use std::path::{Path, PathBuf};

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChoice {
    /// Detect from the server.
    Auto,
    /// Require a standalone server.
    Standalone,
    /// Require a cluster.
    Cluster,
}

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// The source (any cluster node, a standalone server, or a sentinel).
    pub source: Endpoint,
    /// Connection options.
    pub connect: ConnectOptions,
    /// `--mode`.
    pub mode: ModeChoice,
    /// `--sentinel-master`: the source is a sentinel; capture this master.
    pub sentinel_master: Option<String>,
    /// `--shards`: capture only these shards (names like `shard-001` or numbers like `1`).
    pub shards: Option<Vec<String>>,
    /// `--from-replicas`: attach to a replica of each shard.
    pub from_replicas: bool,
    /// The journal directory.
    pub journal_dir: PathBuf,
    /// Session options (PSYNC command name, timeouts).
    pub session: SessionOptions,
    /// Journal writer options.
    pub writer: WriterOptions,
    /// RDB reader options.
    pub reader: ReaderOptions,
    /// `--snapshot-only`.
    pub snapshot_only: bool,
    /// Consecutive failed connection attempts before a shard gives up (None: never).
    pub max_retries: Option<u32>,
}

/// A planning failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source could not be reached or described.
    #[error(transparent)]
    Net(#[from] crate::net::Error),
    /// The journal could not be created or read.
    #[error("journal {dir}: {source}")]
    Journal {
        /// The journal directory.
        dir: String,
        /// The journal error.
        source: journal::Error,
    },
    /// The request does not fit the source or the existing journal.
    #[error("{0}")]
    Mismatch(String),
}

/// Builds the shard jobs, creating the journal if it does not exist yet.
pub async fn plan(opts: &CaptureOptions) -> Result<Vec<ShardJob>, Error> {
    let jerr = |source| Error::Journal {
        dir: opts.journal_dir.display().to_string(),
        source,
    };
    let existing = if opts
        .journal_dir
        .join(journal::manifest::JOURNAL_MANIFEST)
        .exists()
    {
        Some(journal::read_journal(&opts.journal_dir).map_err(jerr)?)
    } else {
        None
    };
    let (kind, description, shards, locators): (String, String, Vec<ShardInfo>, Vec<Locator>) =
        if let Some(name) = &opts.sentinel_master {
            (
                "sentinel".into(),
                format!("sentinel {} master {name}", opts.source.addr()),
                vec![ShardInfo {
                    name: ShardInfo::name_for(0),
                    slots: vec![],
                }],
                vec![Locator::Sentinel {
                    sentinel: opts.source.clone(),
                    name: name.clone(),
                }],
            )
        } else {
            let mut conn = Connection::connect(&opts.source, &opts.connect).await?;
            let topo = topology::discover(&mut conn).await?;
            match (topo.mode, opts.mode) {
                (Mode::Sentinel, _) => {
                    return Err(Error::Mismatch(format!(
                        "{} is a Sentinel: give --sentinel-master NAME",
                        opts.source.addr()
                    )));
                }
                (Mode::Cluster, ModeChoice::Standalone)
                | (Mode::Standalone, ModeChoice::Cluster) => {
                    return Err(Error::Mismatch(format!(
                        "{} is {:?} but --mode asked otherwise",
                        opts.source.addr(),
                        topo.mode
                    )));
                }
                _ => {}
            }
            if topo.mode == Mode::Cluster {
                let uncovered = topo.uncovered_slots();
                if uncovered > 0 {
                    tracing::warn!(
                        "{uncovered} slots are served by no master: their keys cannot be captured"
                    );
                }
                let mut seeds = vec![opts.source.clone()];
                for s in &topo.shards {
                    for n in std::iter::once(&s.master).chain(&s.replicas) {
                        let ep = opts.source.with_addr(n.host.clone(), n.port);
                        if !seeds.iter().any(|e| e.addr() == ep.addr()) {
                            seeds.push(ep);
                        }
                    }
                }
                let shards: Vec<ShardInfo> = topo
                    .shards
                    .iter()
                    .enumerate()
                    .map(|(i, s)| ShardInfo {
                        name: ShardInfo::name_for(i),
                        slots: s.slots.clone(),
                    })
                    .collect();
                let desc = topo
                    .shards
                    .iter()
                    .map(|s| s.master.addr())
                    .collect::<Vec<_>>()
                    .join(",");
                let locators = shards
                    .iter()
                    .map(|s| Locator::Cluster {
                        seeds: seeds.clone(),
                        slot: s.slots[0].0,
                        from_replica: opts.from_replicas,
                    })
                    .collect();
                (
                    "cluster".into(),
                    format!("cluster {desc}"),
                    shards,
                    locators,
                )
            } else {
                let ep = opts.source.clone();
                if opts.from_replicas {
                    tracing::warn!(
                        "--from-replicas has no effect on a standalone source: give a replica's address as --source instead"
                    );
                }
                (
                    "standalone".into(),
                    format!("standalone {}", ep.addr()),
                    vec![ShardInfo {
                        name: ShardInfo::name_for(0),
                        slots: vec![],
                    }],
                    vec![Locator::Fixed(ep)],
                )
            }
        };
    // An existing journal decides the shards; the live topology only says where they are now.
    let (shards, locators) = match &existing {
        None => {
            let manifest = JournalManifest::new(
                crate::units::now_ms(),
                Source {
                    kind: kind.clone(),
                    description,
                },
                shards.clone(),
            );
            journal::create(&opts.journal_dir, &manifest).map_err(jerr)?;
            (shards, locators)
        }
        Some(m) => {
            if m.source.kind != kind {
                return Err(Error::Mismatch(format!(
                    "the journal in {} was captured from a {} source ({}), not a {kind} one",
                    opts.journal_dir.display(),
                    m.source.kind,
                    m.source.description
                )));
            }
            let locators = m
                .shards
                .iter()
                .map(|s| match (&locators[0], s.slots.first()) {
                    (
                        Locator::Cluster {
                            seeds,
                            from_replica,
                            ..
                        },
                        Some((slot, _)),
                    ) => Locator::Cluster {
                        seeds: seeds.clone(),
                        slot: *slot,
                        from_replica: *from_replica,
                    },
                    (other, _) => other.clone(),
                })
                .collect();
            if kind == "cluster" && m.shards.len() != shards.len() {
                tracing::warn!(
                    journal = m.shards.len(),
                    live = shards.len(),
                    "the cluster has a different number of masters than when the journal began: each journal shard follows the master of its first slot"
                );
            }
            (m.shards.clone(), locators)
        }
    };
    let selected = |i: usize, name: &str| match &opts.shards {
        None => true,
        Some(list) => list
            .iter()
            .any(|s| s == name || s.parse::<usize>().ok() == Some(i)),
    };
    let jobs: Vec<ShardJob> = shards
        .iter()
        .zip(locators)
        .enumerate()
        .filter(|(i, (s, _))| selected(*i, &s.name))
        .map(|(_, (s, locator))| ShardJob {
            name: s.name.clone(),
            locator,
            connect: opts.connect.clone(),
            session: opts.session.clone(),
            journal_dir: opts.journal_dir.clone(),
            writer: opts.writer.clone(),
            reader: opts.reader.clone(),
            snapshot_only: opts.snapshot_only,
            max_retries: opts.max_retries,
            queue_warn: 64 << 20,
            topology: None,
        })
        .collect();
    if jobs.is_empty() {
        return Err(Error::Mismatch(format!(
            "--shards selected none of the journal's shards ({})",
            shards
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(jobs)
}

/// Describes a cluster layout in one line: each master with its slot ranges, by first slot.
pub fn describe(t: &topology::Topology) -> String {
    t.shards
        .iter()
        .map(|s| {
            let ranges: Vec<String> = s.slots.iter().map(|(a, b)| format!("{a}-{b}")).collect();
            format!("{} {}", s.master.addr(), ranges.join(","))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A master's address and its inclusive slot ranges, as [`describe`] writes them.
pub type MasterSlots = (String, Vec<(u16, u16)>);

/// Reads back what [`describe`] wrote: each master's address and slot ranges, in order.
/// `None` when `description` is not in that form (a journal's topology marker is text meant
/// for people too; replay reads it to know which slots a source master served later on).
pub fn parse_description(description: &str) -> Option<Vec<MasterSlots>> {
    description
        .split("; ")
        .map(|master| {
            let (addr, ranges) = master.rsplit_once(' ')?;
            if addr.is_empty() || addr.contains([' ', ';']) {
                return None;
            }
            let ranges = ranges
                .split(',')
                .filter(|r| !r.is_empty())
                .map(|r| {
                    let (a, b) = r.split_once('-')?;
                    let (a, b) = (a.parse::<u16>().ok()?, b.parse::<u16>().ok()?);
                    (a <= b && b < crate::net::slot::SLOTS).then_some((a, b))
                })
                .collect::<Option<Vec<_>>>()?;
            Some((addr.to_string(), ranges))
        })
        .collect()
}

/// Watches a cluster's layout every `every`, through any of `seeds`, and publishes its
/// description when it changes. Runs until the receivers are gone.
pub async fn watch_topology(
    seeds: Vec<Endpoint>,
    connect: ConnectOptions,
    every: std::time::Duration,
    tx: tokio::sync::watch::Sender<String>,
) {
    let mut last = tx.borrow().clone();
    loop {
        tokio::time::sleep(every).await;
        if tx.is_closed() {
            return;
        }
        for seed in &seeds {
            let Ok(mut c) = Connection::connect(seed, &connect).await else {
                continue;
            };
            let Ok(t) = topology::discover(&mut c).await else {
                continue;
            };
            let desc = describe(&t);
            if desc != last {
                last = desc.clone();
                let _ = tx.send(desc);
            }
            break;
        }
    }
}

/// Captures an RDB file into a new one-shard journal. Returns what the snapshot held.
pub fn from_rdb(
    file: &Path,
    journal_dir: &Path,
    writer: WriterOptions,
    reader: ReaderOptions,
    progress: impl FnMut(u64),
) -> Result<super::snapshot::Summary, FromRdbError> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let manifest = JournalManifest::new(
        crate::units::now_ms(),
        Source {
            kind: "rdb-file".into(),
            description: name,
        },
        vec![ShardInfo {
            name: ShardInfo::name_for(0),
            slots: vec![],
        }],
    );
    journal::create(journal_dir, &manifest)?;
    let mut w = journal::ShardWriter::open(journal_dir, &ShardInfo::name_for(0), writer.clone())?;
    w.capture_start(crate::units::now_ms())?;
    let mut f = std::fs::File::open(file).map_err(|source| FromRdbError::Open {
        path: file.display().to_string(),
        source,
    })?;
    let mut ingest =
        super::snapshot::SnapshotIngest::new("0".repeat(40), 0, None, reader, writer.chunk_size);
    let result = ingest
        .feed_from(&mut w, &mut f, progress)
        .and_then(|_| ingest.finish());
    match result {
        Ok(summary) => {
            w.marker(journal::Marker::CaptureStop {
                time_ms: crate::units::now_ms(),
                reason: format!("end of {}", file.display()),
            })?;
            w.close()?;
            Ok(summary)
        }
        Err(e) => {
            // Leave the journal marked: what was written is a partial snapshot.
            let _ = w.marker(journal::Marker::CaptureStop {
                time_ms: crate::units::now_ms(),
                reason: format!("error: {e}"),
            });
            let _ = w.close();
            Err(FromRdbError::Snapshot {
                path: file.display().to_string(),
                source: e,
            })
        }
    }
}

/// A `capture --from-rdb` failure.
#[derive(Debug, thiserror::Error)]
pub enum FromRdbError {
    /// The journal could not be created or written.
    #[error("journal: {0}")]
    Journal(#[from] journal::Error),
    /// The file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The RDB is malformed or unreadable.
    #[error("{path}: {source}")]
    Snapshot {
        /// The file.
        path: String,
        /// What went wrong, with the byte offset.
        source: super::snapshot::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::topology::{Mode, Node, Role, Shard, Topology};

    fn master(host: &str, port: u16, slots: Vec<(u16, u16)>) -> Shard {
        Shard {
            slots,
            master: Node {
                id: None,
                host: host.into(),
                port,
                role: Role::Master,
                health: "online".into(),
            },
            replicas: vec![],
        }
    }

    #[test]
    fn a_description_reads_back_as_the_layout_it_describes() {
        let t = Topology {
            mode: Mode::Cluster,
            shards: vec![
                master("127.0.0.1", 7000, vec![(0, 99), (200, 5460)]),
                master("::1", 7001, vec![(100, 199), (5461, 16383)]),
                master("127.0.0.1", 7002, vec![]),
            ],
            described_by: None,
        };
        let d = describe(&t);
        assert_eq!(
            parse_description(&d).unwrap(),
            vec![
                ("127.0.0.1:7000".to_string(), vec![(0, 99), (200, 5460)]),
                ("[::1]:7001".to_string(), vec![(100, 199), (5461, 16383)]),
                ("127.0.0.1:7002".to_string(), vec![]),
            ]
        );
        for bad in ["", "x", "a 1-", "a 5-2", "a 0-16384", "a 1-2;b 3-4"] {
            assert_eq!(parse_description(bad), None, "{bad:?}");
        }
    }
}
