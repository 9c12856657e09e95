//! Progress output: an `indicatif` bar on a terminal, periodic `tracing` lines otherwise.
//!
//! Long jobs (a snapshot, a replay, a scan) report through a [`Progress`]; the mode comes from
//! `--progress auto|bar|log|none`. `auto` draws bars only when stderr is a terminal, so logs
//! captured by systemd or CI get structured lines instead of escape sequences.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ProgressMode {
    /// Bars on a terminal, log lines otherwise.
    #[default]
    Auto,
    /// Always bars.
    Bar,
    /// Always periodic log lines.
    Log,
    /// Nothing.
    None,
}

impl ProgressMode {
    /// Resolves `auto` against whether stderr is a terminal.
    pub fn resolve(self) -> ProgressMode {
        match self {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Log,
            other => other,
        }
    }
}

/// One unit of progress (bytes, keys, commands) for one task.
pub struct Progress {
    label: String,
    unit: &'static str,
    bar: Option<indicatif::ProgressBar>,
    log: Option<Mutex<LogState>>,
    every: Duration,
}

struct LogState {
    last: Instant,
    start: Instant,
    position: u64,
    total: Option<u64>,
}

impl Progress {
    /// Starts a progress report. `total`, when known, gives a percentage and an ETA.
    pub fn new(
        mode: ProgressMode,
        label: impl Into<String>,
        unit: &'static str,
        total: Option<u64>,
    ) -> Progress {
        let label = label.into();
        let mode = mode.resolve();
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let template = if total.is_some() {
                "{prefix} [{bar:30}] {pos}/{len} {msg} ({per_sec}, eta {eta})"
            } else {
                "{prefix} {spinner} {pos} {msg} ({per_sec})"
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        let log = (mode == ProgressMode::Log).then(|| {
            Mutex::new(LogState {
                last: now,
                start: now,
                position: 0,
                total,
            })
        });
        Progress {
            label,
            unit,
            bar,
            log,
            every: Duration::from_secs(10),
        }
    }

    /// Sets how often log-mode lines are written (default every 10 s).
    pub fn log_every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// Advances by `n` units.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
        if let Some(log) = &self.log {
            let mut s = log.lock().unwrap_or_else(|e| e.into_inner());
            s.position += n;
            if s.last.elapsed() >= self.every {
                s.last = Instant::now();
                self.line(&s, false);
            }
        }
    }

    /// The position so far.
    pub fn position(&self) -> u64 {
        if let Some(bar) = &self.bar {
            return bar.position();
        }
        self.log
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).position)
            .unwrap_or(0)
    }

    fn line(&self, s: &LogState, done: bool) {
        let secs = s.start.elapsed().as_secs_f64().max(1e-9);
        let rate = s.position as f64 / secs;
        let pct = s.total.map(|t| {
            if t == 0 {
                100.0
            } else {
                s.position as f64 * 100.0 / t as f64
            }
        });
        tracing::info!(
            task = %self.label,
            position = s.position,
            total = s.total,
            percent = pct.map(|p| format!("{p:.1}")),
            rate = format!("{rate:.0} {}/s", self.unit),
            done,
            "progress"
        );
    }

    /// Ends the report (a final log line in log mode).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        if let Some(log) = &self.log {
            let s = log.lock().unwrap_or_else(|e| e.into_inner());
            self.line(&s, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_in_every_mode() {
        for mode in [ProgressMode::Log, ProgressMode::None] {
            let p = Progress::new(mode, "t", "keys", Some(10)).log_every(Duration::ZERO);
            p.inc(3);
            p.inc(4);
            p.finish();
            if mode == ProgressMode::Log {
                assert_eq!(p.position(), 7);
            }
        }
        assert_eq!(ProgressMode::Log.resolve(), ProgressMode::Log);
    }
}
