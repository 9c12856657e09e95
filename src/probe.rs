//! `shake probe`: the pre-flight facts about a source, gathered from the live server(s).
//!
//! A capture fails in a few well-known ways — the replication backlog is too small to resume
//! after a short outage, the master's `client-output-buffer-limit replica` cuts the link during a
//! long full sync, or the ACL user may not run `PSYNC` — and each can be predicted from facts the
//! server will tell us. This module collects those facts (for every master of a cluster) and
//! turns them into warnings. It writes nothing to the server and never starts a sync.

use crate::net::topology::{self, Mode, Topology};
use crate::net::{ConnectOptions, Connection, Endpoint, Error};
use crate::resp::Frame;
use serde::Serialize;
use std::time::Duration;

/// Everything `shake probe` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The endpoint probed, without credentials.
    pub endpoint: String,
    /// Standalone, cluster or sentinel.
    pub mode: Mode,
    /// Shards, masters, replicas and slot ranges.
    pub topology: Topology,
    /// Facts of each server a capture would attach to: the server itself when standalone, each
    /// master of a cluster.
    pub servers: Vec<ServerFacts>,
    /// Problems a capture is likely to hit, in plain words.
    pub warnings: Vec<String>,
}

/// The facts of one server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerFacts {
    /// `host:port`.
    pub addr: String,
    /// `redis` or `valkey`.
    pub flavor: String,
    /// Server version, e.g. `7.0.15`.
    pub version: String,
    /// The RDB version this server writes (what a capture will receive), when known.
    pub rdb_version: Option<u32>,
    /// `master` or `replica`.
    pub role: String,
    /// The replication id and offset (what a capture would resume from).
    pub master_replid: Option<String>,
    /// Current replication offset.
    pub master_repl_offset: Option<u64>,
    /// `repl-backlog-size` in bytes.
    pub repl_backlog_size: Option<u64>,
    /// The `replica` class of `client-output-buffer-limit`.
    pub replica_output_buffer_limit: Option<OutputBufferLimit>,
    /// `maxmemory` in bytes (0 = none).
    pub maxmemory: Option<u64>,
    /// `proto-max-bulk-len`: the largest value a client can send this server.
    pub proto_max_bulk_len: Option<u64>,
    /// `repl-diskless-sync` (yes/no).
    pub repl_diskless_sync: Option<bool>,
    /// `repl-diskless-sync-delay` in seconds (a capture waits this long before its snapshot).
    pub repl_diskless_sync_delay: Option<u64>,
    /// `used_memory_dataset` (or `used_memory`) in bytes: a rough size of the snapshot to come.
    pub dataset_bytes: Option<u64>,
    /// Keys per database (`db0` → count).
    pub keys: Vec<(String, u64)>,
    /// Replication stream bytes per second, sampled over the probe's sampling time.
    pub write_rate_bytes_per_sec: Option<f64>,
    /// How the write rate was measured.
    pub write_rate_source: Option<String>,
    /// Loaded modules (name).
    pub modules: Vec<String>,
    /// Whether the probing user may run the commands a replica needs.
    pub psync_permission: Permission,
}

/// A `client-output-buffer-limit` class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutputBufferLimit {
    /// Hard limit in bytes (0 = none): the link is cut as soon as the buffer passes it.
    pub hard: u64,
    /// Soft limit in bytes (0 = none).
    pub soft: u64,
    /// How long the soft limit may be exceeded, in seconds.
    pub soft_seconds: u64,
}

/// The outcome of the ACL check for `PSYNC` and `REPLCONF`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "lowercase")]
pub enum Permission {
    /// The user may run `PSYNC` and `REPLCONF`.
    Allowed,
    /// The server said no; the text says which command and why.
    Denied(String),
    /// The server cannot tell us (no `ACL DRYRUN` before 7.0, or ACL commands not permitted).
    Unknown(String),
}

/// How a probe runs.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Connection settings (TLS, timeouts).
    pub connect: ConnectOptions,
    /// How long to watch the replication offset to estimate the write rate (0 = do not).
    pub sample: Duration,
    /// Resolve this Sentinel master name first (the endpoint is then a sentinel).
    pub sentinel_master: Option<String>,
}

/// Probes `endpoint` (and, for a cluster, each master) and builds the report.
pub async fn probe(endpoint: &Endpoint, options: &ProbeOptions) -> Result<Report, Error> {
    let mut endpoint = endpoint.clone();
    if let Some(name) = &options.sentinel_master {
        let mut sentinel = Connection::connect(&endpoint, &options.connect).await?;
        endpoint = crate::net::sentinel::resolve_master(&mut sentinel, name).await?;
        tracing::info!(master = %endpoint.addr(), name = %name, "sentinel resolved the master");
    }
    let mut conn = Connection::connect(&endpoint, &options.connect).await?;
    let topology = topology::discover(&mut conn).await?;
    let mut warnings = Vec::new();
    let mut servers = Vec::new();
    match topology.mode {
        Mode::Sentinel => warnings.push(
            "this is a Sentinel, not a data server: probe (and capture) it with --sentinel-master NAME".into(),
        ),
        Mode::Standalone => servers.push(server_facts(&mut conn, options.sample).await?),
        Mode::Cluster => {
            let uncovered = topology.uncovered_slots();
            if uncovered > 0 {
                warnings.push(format!(
                    "{uncovered} of 16384 slots are served by no master: keys in them cannot be captured"
                ));
            }
            for shard in &topology.shards {
                let ep = endpoint.with_addr(shard.master.host.clone(), shard.master.port);
                let mut c = Connection::connect(&ep, &options.connect).await?;
                servers.push(server_facts(&mut c, options.sample).await?);
            }
        }
    }
    for s in &servers {
        warnings.extend(warnings_for(s));
    }
    Ok(Report {
        endpoint: endpoint.to_string(),
        mode: topology.mode,
        topology,
        servers,
        warnings,
    })
}

fn field<'a>(info: &'a [(String, String)], name: &str) -> Option<&'a str> {
    info.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Which server this `INFO` describes: (`"redis"` or `"valkey"`, its version). Valkey reports
/// itself in `server_name` and keeps `redis_version` at a compatibility value, so its own
/// `valkey_version` is the one that says which RDB version it writes. Probe, replay and
/// compare all decide from this one reading.
pub fn product_version(info: &[(String, String)]) -> (&'static str, Option<String>) {
    let product = if field(info, "server_name") == Some("valkey") {
        "valkey"
    } else {
        "redis"
    };
    let version = field(info, "valkey_version")
        .filter(|_| product == "valkey")
        .or(field(info, "redis_version"))
        .map(str::to_string);
    (product, version)
}

/// The RDB version a server of this flavor and version writes.
pub fn rdb_version_for(flavor: &str, version: &str) -> Option<u32> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next()?;
    let minor = parts.next().unwrap_or(0);
    if flavor == "valkey" {
        return Some(match (major, minor) {
            (7, _) | (8, _) => 11,
            (9, 0) | (9, 1) => 80,
            (m, _) if m >= 9 => 81,
            _ => return None,
        });
    }
    Some(match (major, minor) {
        (2, 4) => 4,
        (2, 6) | (2, 8) | (3, 0) => 6,
        (3, 2) => 7,
        (4, _) => 8,
        (5, _) | (6, _) => 9,
        (7, 0) => 10,
        (7, 2) => 11,
        (7, _) | (8, _) => 12,
        _ => return None,
    })
}

async fn config_get(conn: &mut Connection, name: &str) -> Option<String> {
    match conn.request(&["CONFIG", "GET", name]).await {
        Ok(reply) => reply
            .field(name)
            .and_then(Frame::as_str)
            .map(str::to_string),
        Err(e) => {
            tracing::debug!("CONFIG GET {name} refused: {e}");
            None
        }
    }
}

/// Parses the `replica` (or `slave`) class out of `client-output-buffer-limit`.
pub fn parse_output_buffer_limit(text: &str) -> Option<OutputBufferLimit> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| *w == "replica" || *w == "slave")?;
    let num = |j: usize| -> Option<u64> { crate::units::parse_size(words.get(i + j)?).ok() };
    Some(OutputBufferLimit {
        hard: num(1)?,
        soft: num(2)?,
        soft_seconds: words.get(i + 3)?.parse().ok()?,
    })
}

async fn server_facts(conn: &mut Connection, sample: Duration) -> Result<ServerFacts, Error> {
    let info = conn.info("all").await?;
    let (flavor, version) = product_version(&info);
    let version = version.unwrap_or_else(|| "unknown".to_string());
    let role = match field(&info, "role") {
        Some("slave") => "replica",
        Some(r) => r,
        None => "unknown",
    }
    .to_string();
    let num = |k: &str| field(&info, k).and_then(|v| v.parse::<u64>().ok());
    let keys = info
        .iter()
        .filter(|(k, _)| k.starts_with("db") && k[2..].chars().all(|c| c.is_ascii_digit()))
        .filter_map(|(k, v)| {
            let n = v
                .split(',')
                .find_map(|p| p.strip_prefix("keys="))?
                .parse()
                .ok()?;
            Some((k.clone(), n))
        })
        .collect();
    let modules = info
        .iter()
        .filter(|(k, _)| k.starts_with("module"))
        .filter_map(|(_, v)| {
            v.split(',')
                .find_map(|p| p.strip_prefix("name="))
                .map(str::to_string)
        })
        .collect();
    let offset0 = num("master_repl_offset");
    let input0 = num("total_net_input_bytes");
    let (write_rate, write_rate_source) = if !sample.is_zero() && role == "master" {
        let t0 = std::time::Instant::now();
        tokio::time::sleep(sample).await;
        let later = conn.info("all").await?;
        let secs = t0.elapsed().as_secs_f64();
        let delta = |name: &str, before: Option<u64>| {
            let after = field(&later, name).and_then(|v| v.parse::<u64>().ok())?;
            Some(after.saturating_sub(before?))
        };
        match (
            delta("master_repl_offset", offset0),
            delta("total_net_input_bytes", input0),
        ) {
            // The offset only moves once a backlog exists (after a first replica attached).
            (Some(d), _) if d > 0 => (
                Some(d as f64 / secs),
                Some("replication offset".to_string()),
            ),
            (_, Some(d)) => (
                Some(d as f64 / secs),
                Some(
                    "network input bytes (an upper bound: reads count too; no backlog exists yet)"
                        .to_string(),
                ),
            ),
            _ => (None, None),
        }
    } else {
        (None, None)
    };
    let backlog = config_get(conn, "repl-backlog-size")
        .await
        .and_then(|v| crate::units::parse_size(&v).ok());
    let cobl = config_get(conn, "client-output-buffer-limit")
        .await
        .and_then(|v| parse_output_buffer_limit(&v));
    let maxmemory = config_get(conn, "maxmemory")
        .await
        .and_then(|v| v.parse().ok());
    let bulk = config_get(conn, "proto-max-bulk-len")
        .await
        .and_then(|v| v.parse().ok());
    let diskless = config_get(conn, "repl-diskless-sync")
        .await
        .map(|v| v == "yes");
    let delay = config_get(conn, "repl-diskless-sync-delay")
        .await
        .and_then(|v| v.parse().ok());
    let psync_permission = check_permission(conn).await;
    Ok(ServerFacts {
        addr: conn.endpoint().addr(),
        rdb_version: rdb_version_for(flavor, &version),
        flavor: flavor.into(),
        version,
        role,
        master_replid: field(&info, "master_replid").map(str::to_string),
        master_repl_offset: offset0,
        repl_backlog_size: backlog,
        replica_output_buffer_limit: cobl,
        maxmemory,
        proto_max_bulk_len: bulk,
        repl_diskless_sync: diskless,
        repl_diskless_sync_delay: delay,
        dataset_bytes: num("used_memory_dataset").or(num("used_memory")),
        keys,
        write_rate_bytes_per_sec: write_rate,
        write_rate_source,
        modules,
        psync_permission,
    })
}

async fn check_permission(conn: &mut Connection) -> Permission {
    let user = match conn.request(&["ACL", "WHOAMI"]).await {
        Ok(f) => f.as_str().unwrap_or("default").to_string(),
        Err(e) => {
            return Permission::Unknown(format!(
                "ACL WHOAMI failed ({e}); PSYNC permission cannot be checked without trying"
            ));
        }
    };
    let checks: [&[&str]; 2] = [&["PSYNC", "?", "-1"], &["REPLCONF", "capa", "eof"]];
    for cmd in checks {
        let mut args = vec!["ACL", "DRYRUN", user.as_str()];
        args.extend_from_slice(cmd);
        match conn.request_raw(&args).await {
            Ok(Frame::Simple(_)) => {}
            Ok(Frame::Bulk(msg)) => {
                return Permission::Denied(format!(
                    "user {user:?} may not run {}: {}",
                    cmd[0],
                    String::from_utf8_lossy(&msg)
                ));
            }
            Ok(Frame::Error(msg)) => {
                let msg = String::from_utf8_lossy(&msg).to_string();
                return if msg.contains("unknown subcommand") || msg.contains("Unknown subcommand") {
                    Permission::Unknown("the server has no ACL DRYRUN (before 7.0): PSYNC permission cannot be checked without trying".into())
                } else {
                    Permission::Unknown(format!("ACL DRYRUN refused: {msg}"))
                };
            }
            Ok(other) => {
                return Permission::Unknown(format!("unexpected ACL DRYRUN reply {other:?}"));
            }
            Err(e) => return Permission::Unknown(format!("ACL DRYRUN failed: {e}")),
        }
    }
    Permission::Allowed
}

/// Assumed snapshot transfer speed for the output-buffer estimate: a conservative figure for a
/// master forking, serializing and sending over a LAN.
const ASSUMED_SYNC_BYTES_PER_SEC: f64 = 100.0 * 1024.0 * 1024.0;
/// How long an interruption the backlog should cover so a capture resumes without a full sync.
const BACKLOG_HEADROOM_SECS: f64 = 60.0;

/// Turns one server's facts into warnings.
pub fn warnings_for(s: &ServerFacts) -> Vec<String> {
    let mut w = Vec::new();
    let at = &s.addr;
    if let Permission::Denied(why) = &s.psync_permission {
        w.push(format!(
            "{at}: {why}: capture will fail (grant +psync +replconf +ping)"
        ));
    }
    if s.role == "replica" {
        w.push(format!(
            "{at}: this server is a replica; capturing from it works (chained replication keeps the master's replid and offsets) and spares the master the fork"
        ));
    }
    let rate = s.write_rate_bytes_per_sec.unwrap_or(0.0);
    if let Some(backlog) = s.repl_backlog_size
        && rate > 0.0
    {
        let secs = backlog as f64 / rate;
        if secs < BACKLOG_HEADROOM_SECS {
            w.push(format!(
                "{at}: repl-backlog-size {} holds only {secs:.0}s of writes at the current {}/s: a capture interrupted longer needs a full resync; consider CONFIG SET repl-backlog-size {}",
                human(backlog),
                human(rate as u64),
                human((rate * BACKLOG_HEADROOM_SECS * 2.0) as u64)
            ));
        }
    }
    if let Some(limit) = s.replica_output_buffer_limit {
        let sync_secs = s.dataset_bytes.unwrap_or(0) as f64 / ASSUMED_SYNC_BYTES_PER_SEC
            + s.repl_diskless_sync_delay.unwrap_or(0) as f64;
        let buffered = rate * sync_secs;
        if limit.hard > 0 && buffered > limit.hard as f64 / 2.0 {
            w.push(format!(
                "{at}: client-output-buffer-limit replica hard limit {} may be hit: about {} of writes accumulate during a {sync_secs:.0}s full sync at the current rate; raise it or capture from a replica",
                human(limit.hard),
                human(buffered as u64)
            ));
        } else if limit.soft > 0
            && buffered > limit.soft as f64
            && sync_secs > limit.soft_seconds as f64
        {
            w.push(format!(
                "{at}: client-output-buffer-limit replica soft limit {} for {}s may be hit during a {sync_secs:.0}s full sync",
                human(limit.soft),
                limit.soft_seconds
            ));
        }
    }
    if s.rdb_version.is_none() {
        w.push(format!(
            "{at}: unknown server version {} {}: its RDB version is not known",
            s.flavor, s.version
        ));
    }
    w
}

/// Formats a byte count with binary units.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdb_versions() {
        assert_eq!(rdb_version_for("redis", "7.0.15"), Some(10));
        assert_eq!(rdb_version_for("redis", "6.2.14"), Some(9));
        assert_eq!(rdb_version_for("redis", "7.4.1"), Some(12));
        assert_eq!(rdb_version_for("valkey", "8.0.1"), Some(11));
        assert_eq!(rdb_version_for("redis", "1.0"), None);
    }

    #[test]
    fn output_buffer() {
        let l = parse_output_buffer_limit(
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
        )
        .unwrap();
        assert_eq!(
            l,
            OutputBufferLimit {
                hard: 268435456,
                soft: 67108864,
                soft_seconds: 60
            }
        );
        assert!(parse_output_buffer_limit("normal 0 0 0").is_none());
    }
}
