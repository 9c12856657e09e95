//! Prometheus metrics for a running replay (`--metrics-addr`, meant for `--follow`): per-shard
//! acknowledged and read offsets and lag, and the replay's counters, in the text exposition
//! format. The HTTP side is capture's ([`crate::capture::metrics::serve_page`]).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use super::report::Stats;

/// Renders the metrics page from the replay's counters.
pub fn render(stats: &Stats) -> String {
    let mut out = String::new();
    let shards = stats.shards();
    type Get = fn(&super::report::ShardProgress) -> u64;
    let per_shard: [(&str, &str, &str, Get); 3] = [
        (
            "shake_replay_acked_offset",
            "gauge",
            "Replication offset of the journal the target acknowledged (on every connection).",
            |p| p.acked_offset,
        ),
        (
            "shake_replay_read_offset",
            "gauge",
            "Replication offset of the journal's end as last read.",
            |p| p.read_offset,
        ),
        (
            "shake_replay_lag_bytes",
            "gauge",
            "Bytes of replication stream read from the journal but not yet acknowledged.",
            |p| p.lag(),
        ),
    ];
    for (name, kind, help, get) in per_shard {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (shard, p) in &shards {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", get(p));
        }
    }
    let _ = writeln!(
        out,
        "# HELP shake_replay_snapshot_phase 1 while the shard writes its snapshot.\n# TYPE shake_replay_snapshot_phase gauge"
    );
    for (shard, p) in &shards {
        let _ = writeln!(
            out,
            "shake_replay_snapshot_phase{{shard=\"{shard}\"}} {}",
            u8::from(p.snapshot)
        );
    }
    let counters = [
        (
            "shake_replay_snapshot_keys_total",
            "Snapshot keys written.",
            &stats.keys,
        ),
        (
            "shake_replay_records_total",
            "Stream records (commands, transactions) applied.",
            &stats.records,
        ),
        (
            "shake_replay_commands_total",
            "Commands acknowledged by the target.",
            &stats.commands,
        ),
        (
            "shake_replay_bytes_total",
            "Bytes of commands acknowledged.",
            &stats.bytes,
        ),
        (
            "shake_replay_failed_total",
            "Commands or keys that failed (error replies, unreplayable keys).",
            &stats.failed,
        ),
        (
            "shake_replay_redirects_total",
            "MOVED/ASK redirections followed.",
            &stats.redirects,
        ),
        (
            "shake_replay_reconnects_total",
            "Reconnections to the target.",
            &stats.reconnects,
        ),
        (
            "shake_replay_migrated_keys_total",
            "Keys moved between source masters during capture (RESTORE-ASKING in a multi-shard journal), replayed from two shards without order between them: check them.",
            &stats.migrated,
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v.load(Relaxed)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_has_shards_and_counters() {
        let s = Stats::default();
        s.read_to("shard-000", 100);
        s.acked_to("shard-000", 60, false);
        s.commands.fetch_add(7, Relaxed);
        let page = render(&s);
        assert!(page.contains("shake_replay_acked_offset{shard=\"shard-000\"} 60"));
        assert!(page.contains("shake_replay_lag_bytes{shard=\"shard-000\"} 40"));
        assert!(page.contains("shake_replay_commands_total 7"));
    }
}
