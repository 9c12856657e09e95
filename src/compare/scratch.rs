//! The scratch server: a throwaway `redis-server` that compare starts on 127.0.0.1 to hold the
//! state a journal describes, so "does the destination hold what this journal says?" becomes a
//! comparison of two live servers.
//!
//! The state is computed exactly by the crate's own replay ([`crate::replay::run`]) — the same
//! code that wrote the destination, so a difference found is between the journal and the
//! destination, not between two interpretations of the journal. It costs the dataset's memory
//! once on the comparing machine. A cluster journal is replayed into the one standalone server
//! (every shard's keys).
//!
//! The server runs in a temporary directory with persistence off, on a free port, behind a
//! random password kept in a 0600 config file (not on its command line); it is killed and its
//! directory removed when [`Scratch`] is dropped — on success, on error, and (on Linux) when
//! shake itself dies, through `PR_SET_PDEATHSIG`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::net::{ConnectOptions, Connection, Endpoint, Secret};
use crate::replay::{ReplayOptions, Stats, Until};

use super::error::{Error, Result};

/// A running scratch server; dropped = killed and removed.
#[derive(Debug)]
pub struct Scratch {
    child: Child,
    dir: tempfile::TempDir,
    endpoint: Endpoint,
}

impl Scratch {
    /// Starts `binary` (a path, or a name looked up on PATH) and waits until it answers.
    pub async fn start(binary: &Path) -> Result<Scratch> {
        let bin = resolve(binary)?;
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(&bin).await {
                Ok(s) => return Ok(s),
                // A port taken between our probe and the server's bind: try another.
                Err(e) if e.to_string().contains("Address already in use") => last = e.to_string(),
                Err(e) => return Err(e),
            }
        }
        Err(Error::Scratch(last))
    }

    async fn try_start(bin: &Path) -> Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix("shake-compare-")
            .tempdir()
            .map_err(|e| Error::Scratch(format!("cannot create a temporary directory: {e}")))?;
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| Error::Scratch(format!("cannot find a free port: {e}")))?;
        let password = random_password()?;
        let conf = dir.path().join("scratch.conf");
        write_private(&conf, &format!("requirepass {password}\n"))?;
        let log = dir.path().join("redis.log");
        let mut cmd = Command::new(bin);
        cmd.arg(&conf)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| Error::Scratch(format!("cannot start {}: {e}", bin.display())))?;
        let mut endpoint = Endpoint::new("127.0.0.1", port);
        endpoint.password = Some(Secret::new(password));
        let mut scratch = Scratch {
            child,
            dir,
            endpoint,
        };
        scratch.wait_ready(&log).await?;
        tracing::info!(
            server = %bin.display(),
            addr = %scratch.endpoint.addr(),
            "scratch server started"
        );
        Ok(scratch)
    }

    async fn wait_ready(&mut self, log: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let opts = ConnectOptions {
            connect_timeout: Duration::from_secs(2),
            client_name: "shake-compare".into(),
            ..ConnectOptions::default()
        };
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(e) = self.child.stderr.as_mut() {
                    let _ = e.read_to_string(&mut err);
                }
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                return Err(Error::Scratch(format!(
                    "redis-server exited at start-up ({status}): {}{}",
                    err.trim(),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )));
            }
            if let Ok(mut c) = Connection::connect(&self.endpoint, &opts).await
                && c.request(&["PING"]).await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Scratch(format!(
                    "redis-server did not answer on {} within 20s",
                    self.endpoint.addr()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where it listens (with its password; prints without it).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Replays `journal` (up to `until_offset`) into the server with [`crate::replay::run`];
    /// any failed command or stopped shard is an error, since the state would not be exact.
    pub async fn load(&self, journal: &Path, until_offset: Option<u64>) -> Result<()> {
        let mut opts = ReplayOptions::new(journal.to_path_buf(), self.endpoint.clone());
        opts.until = Until {
            offset: until_offset,
            time_ms: None,
        };
        opts.checkpoint = None;
        opts.max_retries = 3;
        let stats = Arc::new(Stats::default());
        let dir = journal.display().to_string();
        let outcome = crate::replay::run(opts, Arc::new(AtomicBool::new(false)), stats)
            .await
            .map_err(|e| Error::ScratchReplay {
                dir: dir.clone(),
                cause: e.to_string(),
            })?;
        if let Some(e) = outcome.shards.iter().find_map(|o| o.error.as_ref()) {
            return Err(Error::ScratchReplay {
                dir,
                cause: e.to_string(),
            });
        }
        let s = &outcome.summary;
        if s.failed > 0 {
            return Err(Error::ScratchReplay {
                dir,
                cause: format!("{} commands failed (by kind: {:?})", s.failed, s.failures),
            });
        }
        if s.lossy > 0 {
            tracing::warn!(
                keys = s.lossy,
                "some journal keys could not be rebuilt exactly on the scratch server (older than the journal's source?): give --scratch-server a redis-server of the source's version or newer"
            );
        }
        tracing::info!(
            keys = s.keys,
            commands = s.commands,
            "journal replayed into the scratch server"
        );
        Ok(())
    }

    /// The temporary directory (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds the binary: a path with a `/` as given, a bare name on PATH.
fn resolve(binary: &Path) -> Result<PathBuf> {
    let missing = || {
        Error::Scratch(format!(
            "{} not found{}: a journal source needs a redis-server to replay into (install one, or give --scratch-server PATH)",
            binary.display(),
            if binary.components().count() > 1 {
                ""
            } else {
                " on PATH"
            }
        ))
    };
    if binary.components().count() > 1 {
        return if binary.is_file() {
            Ok(binary.to_path_buf())
        } else {
            Err(missing())
        };
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(binary))
                .find(|p| p.is_file())
        })
        .ok_or_else(missing)
}

fn random_password() -> Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| Error::Scratch(format!("cannot read /dev/urandom: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| Error::Scratch(format!("cannot write {}: {e}", path.display())))
}

#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child being started.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}
