//! Throwaway local Redis servers for `shake demo`: a standalone server or a cluster of masters,
//! on 127.0.0.1, without persistence, killed when dropped.
//!
//! The cluster is assembled with plain `CLUSTER ADDSLOTS` and `CLUSTER MEET` rather than
//! `redis-cli --cluster create`, so the demo needs only `redis-server` and works with every
//! version shake supports.

use crate::net::{ConnectOptions, Connection, Endpoint};
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// One `redis-server` child process.
pub struct LocalServer {
    /// The process; `kill_on_drop` makes sure no server outlives the demo.
    child: Child,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// Its data and log directory.
    pub dir: PathBuf,
}

impl LocalServer {
    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the process now (SIGKILL: nothing of it is kept).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// A port on 127.0.0.1 that is free, and whose cluster bus port (+10000) is free too.
fn free_port() -> anyhow::Result<u16> {
    for _ in 0..200 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        if port > 55_000 {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port pair found on 127.0.0.1")
}

/// A source or destination: one standalone server, or the masters of a cluster with the slot
/// range each owns.
pub struct Deployment {
    /// What the demo calls it ("source", "destination").
    pub name: &'static str,
    /// The servers, in slot-range order for a cluster.
    pub servers: Vec<LocalServer>,
    /// Whether it is a cluster.
    pub cluster: bool,
}

impl Deployment {
    /// Starts `masters` servers (1 and `cluster == false` for a standalone server) under
    /// `root/NAME-N`, and for a cluster assigns slots evenly, joins the nodes and waits until
    /// every node reports `cluster_state:ok`.
    pub async fn start(
        binary: &Path,
        root: &Path,
        name: &'static str,
        cluster: bool,
    ) -> anyhow::Result<Deployment> {
        let count = if cluster { 3 } else { 1 };
        let mut servers = Vec::with_capacity(count);
        for i in 0..count {
            servers.push(start_server(binary, &root.join(format!("{name}-{i}")), cluster).await?);
        }
        let dep = Deployment {
            name,
            servers,
            cluster,
        };
        if cluster {
            dep.form_cluster().await?;
        }
        Ok(dep)
    }

    /// The URL shake is given: the first node (shake discovers the others).
    pub fn url(&self) -> String {
        self.servers[0].url()
    }

    /// The slot range `[lo, hi]` of master `i` of `n`.
    pub fn slot_range(i: usize, n: usize) -> (u16, u16) {
        let lo = (16_384 * i / n) as u16;
        let hi = (16_384 * (i + 1) / n - 1) as u16;
        (lo, hi)
    }

    /// Which server holds `key`.
    pub fn node_for(&self, key: &[u8]) -> usize {
        if !self.cluster {
            return 0;
        }
        let slot = crate::net::slot::key_slot(key);
        let n = self.servers.len();
        (0..n)
            .find(|&i| Self::slot_range(i, n).1 >= slot)
            .unwrap_or(n - 1)
    }

    /// Connects to every server, in order.
    pub async fn connect_all(&self) -> anyhow::Result<Vec<Connection>> {
        let mut conns = Vec::new();
        for s in &self.servers {
            conns.push(connect(s.port).await?);
        }
        Ok(conns)
    }

    async fn form_cluster(&self) -> anyhow::Result<()> {
        let n = self.servers.len();
        let mut conns = self.connect_all().await?;
        for (i, conn) in conns.iter_mut().enumerate() {
            let (lo, hi) = Self::slot_range(i, n);
            let mut args = vec!["CLUSTER".to_string(), "ADDSLOTS".to_string()];
            args.extend((lo..=hi).map(|s| s.to_string()));
            conn.request(&args).await?;
        }
        let first = self.servers[0].port.to_string();
        for conn in conns.iter_mut().skip(1) {
            conn.request(&["CLUSTER", "MEET", "127.0.0.1", first.as_str()])
                .await?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut ready = true;
            for conn in conns.iter_mut() {
                let info = conn.request(&["CLUSTER", "INFO"]).await?;
                let text = info.as_str().unwrap_or_default();
                let ok = text.contains("cluster_state:ok")
                    && text.contains(&format!("cluster_known_nodes:{n}"));
                ready &= ok;
            }
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the {} cluster did not become ready within 30 s", self.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops every server.
    pub async fn stop(&mut self) {
        for s in &mut self.servers {
            s.stop().await;
        }
    }
}

/// A plain connection to a local server.
pub async fn connect(port: u16) -> anyhow::Result<Connection> {
    let ep = Endpoint::new("127.0.0.1", port);
    let opts = ConnectOptions {
        client_name: "shake-demo".into(),
        ..ConnectOptions::default()
    };
    Ok(Connection::connect(&ep, &opts).await?)
}

async fn start_server(binary: &Path, dir: &Path, cluster: bool) -> anyhow::Result<LocalServer> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut last_err = None;
    // A port found free can be taken before the server binds it: try a few.
    for _ in 0..5 {
        let port = free_port()?;
        let mut cmd = Command::new(binary);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .args(["--logfile", "redis.log", "--repl-backlog-size", "64mb"])
            .args(["--client-output-buffer-limit", "replica 0 0 0"])
            // A full sync starts at once (the default waits 5 s for more replicas to share it).
            .args(["--repl-diskless-sync-delay", "0"]);
        if cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let child = cmd.spawn().with_context(|| {
            format!(
                "cannot start {} (install Redis, e.g. `apt-get install redis-server`, or pass --redis-server PATH)",
                binary.display()
            )
        })?;
        let mut server = LocalServer {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                last_err = Some(format!("exited with {status}"));
                break;
            }
            if let Ok(mut c) = connect(port).await
                && c.request(&["PING"]).await.is_ok()
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                server.stop().await;
                last_err = Some("did not answer PING within 10 s".into());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    bail!(
        "{} could not be started in {}: {}; see {}/redis.log",
        binary.display(),
        dir.display(),
        last_err.unwrap_or_default(),
        dir.display()
    )
}
