//! `shake demo`: the whole mission on throwaway local servers, in about a minute.
//!
//! It starts a source and a destination (`redis-server` from PATH, or `--redis-server`; with
//! `--cluster`, three masters each), populates every data type, captures the source while a
//! writer keeps writing, stops the capture once it holds every write, verifies and inspects the
//! journal (stats, biggest keys, one key's history), filters it, replays it onto the destination
//! and compares the destination with the source and with the journal. Each step prints the exact
//! `shake` command it runs, so a user can repeat any of them by hand; the servers are stopped and
//! their files removed at the end, while the journals stay in `--dir` for a look.
//!
//! The steps run the real subcommands as child processes of the same binary: the demo shows
//! what a user gets, not an in-process shortcut.
//!
//! # Layout
//!
//! | file | concept |
//! |------|---------|
//! | `mod.rs` | flags, the sequence of steps, the verdict |
//! | [`servers`] | throwaway local standalone servers and clusters |
//! | [`data`] | the population of every type, and the live writer |

pub mod data;
pub mod servers;

use super::GlobalArgs;
use crate::exit;
use anyhow::{Context as _, bail};
use clap::Args;
use servers::Deployment;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// Flags of `shake demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Use a 3-master cluster as the source and another as the destination.
    #[arg(long)]
    pub cluster: bool,
    /// Where the servers' files (removed at the end) and the journals (kept) go. Must be empty
    /// or absent; default: a new directory under the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// How long the capture runs while the writer keeps writing.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = crate::units::parse_duration)]
    pub duration: Duration,
    /// How many small keys to populate before the capture (plus one large key of each kind).
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub keys: u64,
    /// The `redis-server` binary to run (a name is looked up in PATH).
    #[arg(long, value_name = "PATH", default_value = "redis-server")]
    pub redis_server: PathBuf,
}

/// Looks `name` up in PATH unless it already names a file.
fn find_binary(name: &Path) -> anyhow::Result<PathBuf> {
    if name.components().count() > 1 {
        if name.is_file() {
            return Ok(name.to_path_buf());
        }
        bail!("{} does not exist", name.display());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{} was not found in PATH: install Redis (Debian: `apt-get install redis-server`; \
         `scripts/demo` does it for you) or pass --redis-server PATH",
        name.display()
    )
}

/// The demo's printing and child processes.
struct Runner {
    exe: PathBuf,
    step: usize,
    steps: usize,
    started: Instant,
}

impl Runner {
    fn step(&mut self, what: &str) {
        self.step += 1;
        println!(
            "\n==> [{}/{}] {what}   (t+{:.1}s)",
            self.step,
            self.steps,
            self.started.elapsed().as_secs_f64()
        );
    }

    fn command(&self, args: &[&str]) -> Command {
        let shown: Vec<String> = args.iter().map(|a| shell_word(a)).collect();
        println!("$ shake {}", shown.join(" "));
        let mut cmd = Command::new(&self.exe);
        cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// Runs `shake ARGS` with its output shown; returns its exit code.
    async fn run(&self, args: &[&str]) -> anyhow::Result<i32> {
        let status = self.command(args).status().await?;
        Ok(status.code().unwrap_or(-1))
    }

    /// Runs `shake ARGS`, requiring exit 0.
    async fn run_ok(&self, args: &[&str]) -> anyhow::Result<()> {
        let code = self.run(args).await?;
        if code != 0 {
            bail!("`shake {}` failed with exit code {code}", args.join(" "));
        }
        Ok(())
    }

    /// Runs `shake ARGS`, showing only the first `head` and last `tail` lines of its output.
    async fn run_excerpt(&self, args: &[&str], head: usize, tail: usize) -> anyhow::Result<()> {
        let out = self.command(args).stderr(Stdio::inherit()).output().await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() <= head + tail {
            lines.iter().for_each(|l| println!("{l}"));
        } else {
            lines[..head].iter().for_each(|l| println!("{l}"));
            println!("… {} more lines …", lines.len() - head - tail);
            lines[lines.len() - tail..]
                .iter()
                .for_each(|l| println!("{l}"));
        }
        if !out.status.success() {
            bail!("`shake {}` failed with {}", args.join(" "), out.status);
        }
        Ok(())
    }
}

/// Quotes a word for display when the shell would need it.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Creates the work directory: `--dir` (empty or absent) or a new temporary one.
fn work_dir(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match dir {
        Some(d) => d,
        None => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            std::env::temp_dir().join(format!("shake-demo-{stamp}-{}", std::process::id()))
        }
    };
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty: choose an empty or new --dir (the demo never overwrites files)",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(std::path::absolute(&dir)?)
}

/// Waits until every replica of every source master (the capture) has acknowledged the
/// master's whole replication stream: then the journal holds every write.
async fn wait_caught_up(source: &Deployment, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut conns = source.connect_all().await?;
    loop {
        let mut behind = 0u64;
        for conn in conns.iter_mut() {
            let info = conn.info("replication").await?;
            let master: u64 = info
                .iter()
                .find(|(k, _)| k == "master_repl_offset")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let replicas: Vec<u64> = info
                .iter()
                .filter(|(k, _)| k.starts_with("slave") && k[5..].parse::<u32>().is_ok())
                .filter_map(|(_, v)| {
                    v.split(',')
                        .find_map(|kv| kv.strip_prefix("offset="))
                        .and_then(|o| o.parse().ok())
                })
                .collect();
            match replicas.iter().max() {
                Some(&acked) => behind += master.saturating_sub(acked),
                None => behind += master.max(1),
            }
        }
        if behind == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the capture is still {behind} bytes behind the source after {} s",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the demo; Ctrl-C stops it, killing every server it started.
pub async fn run(args: DemoArgs, _global: &GlobalArgs) -> anyhow::Result<u8> {
    let redis = find_binary(&args.redis_server)?;
    let dir = work_dir(args.dir.clone())?;
    let servers_dir = dir.join("servers");
    let outcome = tokio::select! {
        r = demo(&args, &redis, &dir, &servers_dir) => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: stopping the demo's servers");
            Ok(exit::INTERRUPTED)
        }
    };
    // The servers were killed when their handles dropped; their files go too.
    let _ = std::fs::remove_dir_all(&servers_dir);
    outcome
}

async fn demo(args: &DemoArgs, redis: &Path, dir: &Path, servers_dir: &Path) -> anyhow::Result<u8> {
    let mut r = Runner {
        exe: std::env::current_exe().context("cannot find the shake binary")?,
        step: 0,
        steps: 9,
        started: Instant::now(),
    };
    let journal = dir.join("journal");
    let filtered = dir.join("journal-live-keys");
    let j = journal.to_string_lossy().into_owned();
    let fj = filtered.to_string_lossy().into_owned();
    let shape = if args.cluster {
        "3-master clusters"
    } else {
        "standalone servers"
    };
    println!(
        "shake demo: the whole chain on throwaway {shape}, in {}",
        dir.display()
    );

    r.step(&format!(
        "start a source and a destination ({})",
        redis.display()
    ));
    let (source, dest) = tokio::join!(
        Deployment::start(redis, servers_dir, "source", args.cluster),
        Deployment::start(redis, servers_dir, "destination", args.cluster)
    );
    let (mut source, mut dest) = (source?, dest?);
    let (src, dst) = (source.url(), dest.url());
    println!("source      {src}");
    println!("destination {dst}");

    r.step("populate the source with every data type");
    let t = Instant::now();
    let written = data::populate(&source, args.keys).await?;
    println!(
        "{written} commands: {} small keys (strings, hashes, lists, sets, sorted sets, one in ten \
         with a TTL), a 20 000-field hash, a 10 000-element list, a stream with a consumer group, \
         a HyperLogLog, a geo set, a bitmap{} ({:.1}s)",
        args.keys,
        if args.cluster {
            ""
        } else {
            ", a second database"
        },
        t.elapsed().as_secs_f64()
    );

    r.step("probe the source: a pre-flight check");
    r.run_ok(&["probe", "--source", &src]).await?;

    r.step(&format!(
        "capture the source for {} while a writer keeps writing",
        humantime::format_duration(args.duration)
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let live = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, live) = (stop.clone(), live.clone());
        let source = &source;
        async move { data::keep_writing(source, stop, live).await }
    };
    let capture = async {
        // Two runs: the first is stopped half-way (SIGINT seals the journal) while the writer
        // keeps writing; the second resumes the same journal with a partial resync.
        for run in 0..2 {
            if run == 1 {
                println!("capture again: it resumes the journal where it stopped (PSYNC)");
            }
            let mut child = r
                .command(&[
                    "capture",
                    "--source",
                    &src,
                    "--journal",
                    &j,
                    "--segment-size",
                    "4MiB",
                    "--progress",
                    "log",
                    "--progress-interval",
                    "2s",
                ])
                .spawn()?;
            tokio::time::sleep(args.duration / 2).await;
            if let Ok(Some(status)) = child.try_wait() {
                bail!("the capture stopped early with {status}");
            }
            if run == 1 {
                stop.store(true, Ordering::Relaxed);
                // Let the writer's last batch land, then wait for the capture to hold all of it.
                tokio::time::sleep(Duration::from_millis(200)).await;
                wait_caught_up(&source, Duration::from_secs(60)).await?;
            }
            let pid = child.id().context("capture exited")?;
            // SAFETY: sending SIGINT to our own child by pid; no memory is involved.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
            let status = child.wait().await?;
            if !matches!(status.code(), Some(0) | Some(130)) {
                bail!("the capture ended with {status}");
            }
        }
        anyhow::Ok(())
    };
    let (w, c) = tokio::join!(writer, capture);
    c?;
    w?;
    println!(
        "the writer made {} writes during the capture, across the stop and the resume; the \
         capture acknowledged every one and sealed the journal on SIGINT",
        live.load(Ordering::Relaxed)
    );

    r.step("verify the journal: every checksum, every seal, offset continuity");
    r.run_ok(&["verify", &j]).await?;

    r.step("inspect the journal: statistics, biggest keys, one key's history");
    r.run_ok(&["inspect", &j]).await?;
    r.run_ok(&["inspect", &j, "--big-keys", "5"]).await?;
    r.run_excerpt(&["inspect", &j, "--history", "live:counter"], 3, 3)
        .await?;

    r.step("filter: a smaller journal with only the live:* keys, itself verifiable");
    r.run_ok(&["filter", &j, "--out", &fj, "--keys", "live:*"])
        .await?;
    r.run_ok(&["verify", &fj]).await?;

    r.step("replay the whole journal onto the destination");
    r.run_ok(&["replay", &j, "--target", &dst, "--progress", "none"])
        .await?;

    r.step("compare the destination with the source, value by value, and with the journal");
    let by_source = r
        .run(&[
            "compare", "--source", &src, "--target", &dst, "--mode", "full",
        ])
        .await?;
    let by_journal = r
        .run(&[
            "compare", "--source", &j, "--target", &dst, "--mode", "quick",
        ])
        .await?;
    source.stop().await;
    dest.stop().await;

    println!();
    for (what, code) in [("source", by_source), ("journal", by_journal)] {
        match code {
            0 => {}
            3 => {
                println!("VERDICT: FAIL — the destination differs from the {what} (see above)");
                println!("journals kept in {}", dir.display());
                return Ok(exit::CHECK_FAILED);
            }
            c => bail!("`shake compare` against the {what} failed with exit code {c}"),
        }
    }
    println!(
        "VERDICT: PASS — the destination holds exactly the source's data ({:.1}s in all)",
        r.started.elapsed().as_secs_f64()
    );
    println!("the servers are stopped and removed; the journals are kept:");
    println!("  {j}");
    println!("  {fj}");
    println!("look again with: shake inspect {j} --big-keys 10");
    Ok(exit::SUCCESS)
}
