//! Prometheus metrics for a running capture (`--metrics-addr`): per-shard offsets, lag, bytes,
//! keys, commands, reconnects and full syncs, in the text exposition format.
//!
//! A tiny HTTP responder on tokio rather than a web framework: one read-only page, no routing,
//! no dependencies worth their build time.

use super::shard::ShardStatus;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One metric: name, type, help text, and how to read it from a shard's status.
type Metric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ShardStatus) -> Option<u64>,
);

/// Renders the metrics page for these shards.
pub fn render(shards: &[(String, Arc<Mutex<ShardStatus>>)]) -> String {
    let mut out = String::new();
    let metrics: [Metric; 10] = [
        (
            "shake_capture_offset",
            "gauge",
            "Replication offset received.",
            |s| Some(s.offset),
        ),
        (
            "shake_capture_durable_offset",
            "gauge",
            "Replication offset durable in the journal (what is acknowledged).",
            |s| Some(s.durable),
        ),
        (
            "shake_capture_master_offset",
            "gauge",
            "The master's replication offset, polled.",
            |s| s.master_offset,
        ),
        (
            "shake_capture_lag_bytes",
            "gauge",
            "Master offset minus durable offset.",
            |s| s.master_offset.map(|m| m.saturating_sub(s.durable)),
        ),
        (
            "shake_capture_snapshot_bytes",
            "counter",
            "RDB bytes received in the current snapshot.",
            |s| Some(s.rdb_received),
        ),
        (
            "shake_capture_snapshot_keys",
            "counter",
            "Snapshot keys written.",
            |s| Some(s.keys),
        ),
        (
            "shake_capture_stream_units_total",
            "counter",
            "Stream commands and transactions written.",
            |s| Some(s.commands),
        ),
        (
            "shake_capture_reconnects_total",
            "counter",
            "Reconnections of the replication link.",
            |s| Some(s.reconnects),
        ),
        (
            "shake_capture_full_syncs_total",
            "counter",
            "Full resyncs (new epochs).",
            |s| Some(s.full_syncs),
        ),
        (
            "shake_capture_queued_bytes",
            "gauge",
            "Bytes received but not yet written to the journal.",
            |s| Some(s.queued),
        ),
    ];
    for (name, kind, help, get) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (shard, st) in shards {
            if let Ok(s) = st.lock()
                && let Some(v) = get(&s)
            {
                let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {v}");
            }
        }
    }
    out
}

/// Serves the page on `addr` until the task is aborted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shards: Vec<(String, Arc<Mutex<ShardStatus>>)>,
) {
    serve_page(listener, move || render(&shards)).await
}

/// Serves the page `render` builds at each request on `listener` until the task is aborted:
/// the HTTP side shared by every command with `--metrics-addr` (capture, replay).
pub async fn serve_page(listener: tokio::net::TcpListener, render: impl Fn() -> String) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let body = render();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), sock.read(&mut buf)).await;
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
