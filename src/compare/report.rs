//! What a comparison found: counts per bucket, per-key details (the first `--show-diffs N` of
//! each bucket), how values were checked, and the two renderings (a table, one JSON document).
//!
//! Buckets follow RIOT's compare, plus `extra`: `missing` (on the source, not on the target),
//! `extra` (on the target, not on the source), `type`, `value`, `ttl`. A key is counted in one
//! bucket only — the first check that fails, in that order.

use std::io::Write;

use serde::Serialize;
use serde_json::json;

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Existence, type and TTL of every key.
    Quick,
    /// Quick, plus values.
    #[default]
    Full,
}

impl Mode {
    /// `quick` or `full`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Quick => "quick",
            Mode::Full => "full",
        }
    }
}

/// The kind of a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// On the source, not on the target.
    Missing,
    /// On the target, not on the source.
    Extra,
    /// Present on both with different types.
    Type,
    /// Same type, different value.
    Value,
    /// Same value (or not checked), TTLs further apart than the tolerance.
    Ttl,
}

impl Bucket {
    /// Every bucket, in report order.
    pub const ALL: [Bucket; 5] = [
        Bucket::Missing,
        Bucket::Extra,
        Bucket::Type,
        Bucket::Value,
        Bucket::Ttl,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Missing => "missing",
            Bucket::Extra => "extra",
            Bucket::Type => "type",
            Bucket::Value => "value",
            Bucket::Ttl => "ttl",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One key that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Which bucket.
    pub bucket: Bucket,
    /// The database.
    pub db: u32,
    /// The key, printable (see [`printable`]).
    pub key: String,
    /// What differs and where: `field "f7": "a" vs "b"`, `length 100000 vs 99999`, …
    pub detail: String,
}

/// How value checks were made (full mode), so a reader knows what "equal" rested on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ValueChecks {
    /// Equal DUMP payloads byte for byte (same RDB version on both sides).
    pub dump_bytes: u64,
    /// DUMP payloads decoded with shake's RDB decoder and compared logically (different RDB
    /// versions, or different encodings of one value).
    pub decoded: u64,
    /// Keys above `--chunk-threshold`, compared window by window.
    pub windowed: u64,
}

/// Keys left out on purpose, counted so nothing disappears silently.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Missing on the target with a source TTL within the tolerance (expiring anyway).
    pub expiring: u64,
    /// Listed by SCAN but gone from the source when read.
    pub vanished: u64,
    /// Differences seen once that a re-check did not confirm.
    pub cleared_on_recheck: u64,
}

/// The sample, in `--sample` mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Keys asked for.
    pub requested: u64,
    /// Keys drawn (fewer when the source has fewer).
    pub size: u64,
}

/// The result of a comparison.
#[derive(Debug, Clone)]
pub struct Report {
    /// The mode.
    pub mode: Mode,
    /// The source as printed (URL without password, or the journal directory).
    pub source: String,
    /// The target URL without password.
    pub target: String,
    /// Source keys compared.
    pub keys_compared: u64,
    /// Target keys checked for existence on the source (0 when extras are not checked).
    pub target_keys_scanned: u64,
    /// Replay markers found on the target (`shake-replay:*`: a replay running or killed) and
    /// left out of the extras.
    pub replay_markers: u64,
    /// Whether extras were looked for (not in sample mode).
    pub extras_checked: bool,
    /// The sample, if sampling.
    pub sample: Option<Sample>,
    /// Counts per bucket, in [`Bucket::ALL`] order.
    counts: [u64; 5],
    /// How values were checked.
    pub value_checks: ValueChecks,
    /// Keys left out on purpose.
    pub skipped: Skipped,
    /// Wall time, ms.
    pub duration_ms: u64,
    /// Details kept, at most `show` per bucket.
    pub diffs: Vec<Diff>,
    /// Details kept per bucket.
    pub show: usize,
}

impl Report {
    /// An empty report that keeps `show` details per bucket.
    pub fn new(mode: Mode, source: String, target: String, show: usize) -> Report {
        Report {
            mode,
            source,
            target,
            keys_compared: 0,
            target_keys_scanned: 0,
            replay_markers: 0,
            extras_checked: false,
            sample: None,
            counts: [0; 5],
            value_checks: ValueChecks::default(),
            skipped: Skipped::default(),
            duration_ms: 0,
            diffs: Vec::new(),
            show,
        }
    }

    /// Counts a difference, keeping its detail if the bucket has room.
    pub fn add(&mut self, diff: Diff) {
        let i = diff.bucket.index();
        if (self.counts[i] as usize) < self.show {
            self.diffs.push(diff);
        }
        self.counts[i] += 1;
    }

    /// The count of one bucket.
    pub fn count(&self, b: Bucket) -> u64 {
        self.counts[b.index()]
    }

    /// All differences.
    pub fn differences(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The JSON document of `--format json`.
    pub fn to_json(&self) -> serde_json::Value {
        let counts: serde_json::Map<String, serde_json::Value> = Bucket::ALL
            .iter()
            .map(|b| (b.name().to_string(), json!(self.count(*b))))
            .collect();
        let mut diffs = self.diffs.clone();
        diffs.sort_by(|a, b| (a.bucket, a.db, &a.key).cmp(&(b.bucket, b.db, &b.key)));
        json!({
            "mode": self.mode,
            "source": self.source,
            "target": self.target,
            "keys_compared": self.keys_compared,
            "target_keys_scanned": self.target_keys_scanned,
            "replay_markers": self.replay_markers,
            "extras_checked": self.extras_checked,
            "sample": self.sample,
            "differences": self.differences(),
            "counts": counts,
            "value_checks": self.value_checks,
            "skipped": self.skipped,
            "duration_ms": self.duration_ms,
            "diffs": diffs,
            "diffs_shown_per_bucket": self.show,
        })
    }

    /// The readable table.
    pub fn write_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "compare ({} → {}, mode {})",
            self.source,
            self.target,
            self.mode.name()
        )?;
        let secs = self.duration_ms as f64 / 1000.0;
        match &self.sample {
            Some(s) => writeln!(
                out,
                "  keys compared {} (random sample of {} requested) in {secs:.1}s",
                self.keys_compared, s.requested
            )?,
            None => writeln!(out, "  keys compared {} in {secs:.1}s", self.keys_compared)?,
        }
        if self.extras_checked {
            writeln!(
                out,
                "  target keys checked for extras {}",
                self.target_keys_scanned
            )?;
            if self.replay_markers > 0 {
                writeln!(
                    out,
                    "  replay markers on the target (not data, left out): {} — a replay is running, or was killed and not yet resumed",
                    self.replay_markers
                )?;
            }
        } else {
            writeln!(
                out,
                "  extras NOT checked (sample mode compares source keys only)"
            )?;
        }
        if self.mode == Mode::Full {
            let v = &self.value_checks;
            writeln!(
                out,
                "  values: {} equal by DUMP bytes, {} by decoded value, {} window by window",
                v.dump_bytes, v.decoded, v.windowed
            )?;
        }
        let s = &self.skipped;
        writeln!(
            out,
            "  skipped: {} expiring within the TTL tolerance, {} gone from the source, {} cleared on re-check",
            s.expiring, s.vanished, s.cleared_on_recheck
        )?;
        let counts: Vec<String> = Bucket::ALL
            .iter()
            .map(|b| format!("{} {}", b.name(), self.count(*b)))
            .collect();
        writeln!(
            out,
            "  differences {}: {}",
            self.differences(),
            counts.join("  ")
        )?;
        for b in Bucket::ALL {
            let shown: Vec<&Diff> = self.diffs.iter().filter(|d| d.bucket == b).collect();
            if shown.is_empty() {
                continue;
            }
            let n = self.count(b);
            writeln!(
                out,
                "  {} ({}{}):",
                b.name(),
                n,
                if n as usize > shown.len() {
                    format!(", first {} shown", shown.len())
                } else {
                    String::new()
                }
            )?;
            for d in shown {
                writeln!(out, "    db {} {}  {}", d.db, d.key, d.detail)?;
            }
        }
        Ok(())
    }
}

/// Key or value bytes as printable text: printable ASCII as is, `"` and `\` escaped, other bytes
/// `\xNN`, quoted, cut after 100 bytes with the full length noted (keys and values can be
/// binary and huge).
pub fn printable(b: &[u8]) -> String {
    crate::rdb::error::printable_bytes(b, 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(bucket: Bucket, key: &str) -> Diff {
        Diff {
            bucket,
            db: 0,
            key: printable(key.as_bytes()),
            detail: "x".into(),
        }
    }

    #[test]
    fn counts_everything_keeps_show_per_bucket() {
        let mut r = Report::new(Mode::Full, "s".into(), "t".into(), 2);
        for i in 0..5 {
            r.add(diff(Bucket::Value, &format!("v{i}")));
        }
        r.add(diff(Bucket::Missing, "m"));
        assert_eq!(r.count(Bucket::Value), 5);
        assert_eq!(r.count(Bucket::Missing), 1);
        assert_eq!(r.count(Bucket::Ttl), 0);
        assert_eq!(r.differences(), 6);
        assert_eq!(r.diffs.len(), 3);
    }

    #[test]
    fn json_has_counts_mode_and_sorted_diffs() {
        let mut r = Report::new(Mode::Quick, "s".into(), "t".into(), 10);
        r.add(diff(Bucket::Ttl, "b"));
        r.add(diff(Bucket::Missing, "a"));
        r.keys_compared = 7;
        let j = r.to_json();
        assert_eq!(j["mode"], "quick");
        assert_eq!(j["keys_compared"], 7);
        assert_eq!(j["differences"], 2);
        assert_eq!(j["counts"]["missing"], 1);
        assert_eq!(j["counts"]["ttl"], 1);
        assert_eq!(j["counts"]["extra"], 0);
        assert_eq!(j["diffs"][0]["bucket"], "missing");
        assert_eq!(j["diffs"][0]["key"], "\"a\"");
        assert_eq!(j["diffs"][1]["bucket"], "ttl");
        assert!(j["sample"].is_null());
    }

    #[test]
    fn table_names_buckets_and_says_when_cut() {
        let mut r = Report::new(Mode::Full, "src".into(), "tgt".into(), 1);
        r.add(diff(Bucket::Value, "k1"));
        r.add(diff(Bucket::Value, "k2"));
        r.sample = Some(Sample {
            requested: 10,
            size: 10,
        });
        let mut out = Vec::new();
        r.write_table(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("value (2, first 1 shown):"), "{text}");
        assert!(text.contains("db 0 \"k1\"  x"), "{text}");
        assert!(text.contains("extras NOT checked"), "{text}");
        assert!(text.contains("random sample of 10"), "{text}");
    }

    #[test]
    fn printable_escapes_and_cuts() {
        assert_eq!(printable(b"a\"b\\c\x00"), "\"a\\\"b\\\\c\\x00\"");
        let long = vec![b'x'; 150];
        assert!(printable(&long).ends_with("…(150 bytes)\""));
    }
}
