//! Real `redis-server` processes: standalone, TLS, password, cluster nodes, sentinels.

use super::tls::{self, TlsFiles};
use super::{Client, free_port, redis_cli, redis_server, stack_modules, wait_until};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    version: String,
    args: Vec<String>,
    tls: bool,
    password: Option<String>,
    cluster: bool,
    modules: bool,
}

impl ServerBuilder {
    /// Adds `--name value` to the server's command line.
    pub fn arg(mut self, name: &str, value: &str) -> Self {
        self.args.push(format!("--{name}"));
        self.args.push(value.to_string());
        self
    }

    /// Serves TLS only (plain port 0), with certificates generated in the test; clients must
    /// present a certificate (`tls-auth-clients yes`, Redis' default).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Sets `requirepass`.
    pub fn password(mut self, pw: &str) -> Self {
        self.password = Some(pw.to_string());
        self
    }

    /// Starts as a cluster node (not yet joined).
    pub fn cluster(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// Loads Redis Stack's JSON, Bloom and TimeSeries modules (7.4 only).
    pub fn modules(mut self) -> Self {
        self.modules = true;
        self
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(self) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("shake-redis-")
            .tempdir()
            .unwrap();
        let tls = self.tls.then(|| tls::generate(dir.path()));
        let port = free_port();
        let mut server = Server {
            builder: self,
            port,
            dir,
            tls,
            child: None,
        };
        server.spawn();
        server
    }
}

/// A running `redis-server`, killed when dropped.
pub struct Server {
    builder: ServerBuilder,
    /// Its port on 127.0.0.1 (the TLS port for a TLS server).
    pub port: u16,
    /// Its working directory (RDB files, logs, nodes.conf).
    pub dir: tempfile::TempDir,
    /// Certificates, for a TLS server.
    pub tls: Option<TlsFiles>,
    child: Option<Child>,
}

impl Server {
    /// A builder for `version` with the test defaults: loopback only, no persistence,
    /// `DEBUG` enabled, no diskless-sync delay.
    pub fn builder(version: &str) -> ServerBuilder {
        ServerBuilder {
            version: version.to_string(),
            args: vec![],
            tls: false,
            password: None,
            cluster: false,
            modules: false,
        }
    }

    /// Starts a plain server of `version`.
    pub fn start(version: &str) -> Server {
        Server::builder(version).start()
    }

    /// The server's version as given to the builder.
    pub fn version(&self) -> &str {
        &self.builder.version
    }

    /// Its log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn command_line(&self) -> Vec<String> {
        let b = &self.builder;
        let d = self.dir.path().display().to_string();
        let mut a: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            d.clone(),
            "--daemonize".into(),
            "no".into(),
            "--logfile".into(),
            self.log_path().display().to_string(),
            "--repl-diskless-sync-delay".into(),
            "0".into(),
        ];
        if b.version.as_str() >= "7.0" {
            a.extend(["--enable-debug-command".into(), "yes".into()]);
        }
        match &self.tls {
            Some(t) => a.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                self.port.to_string(),
                "--tls-cert-file".into(),
                t.server_cert.display().to_string(),
                "--tls-key-file".into(),
                t.server_key.display().to_string(),
                "--tls-ca-cert-file".into(),
                t.ca.display().to_string(),
            ]),
            None => a.extend(["--port".into(), self.port.to_string()]),
        }
        if let Some(pw) = &b.password {
            a.extend(["--requirepass".into(), pw.clone()]);
        }
        if b.cluster {
            a.extend([
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                format!("{d}/nodes.conf"),
                "--cluster-node-timeout".into(),
                "3000".into(),
            ]);
        }
        if b.modules {
            let m = stack_modules();
            for lib in ["rejson.so", "redisbloom.so", "redistimeseries.so"] {
                a.extend(["--loadmodule".into(), m.join(lib).display().to_string()]);
            }
        }
        a.extend(b.args.iter().cloned());
        a
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.log_path());
        let bin = redis_server(&self.builder.version);
        let child = Command::new(&bin)
            .args(self.command_line())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(child);
        let log = self.log_path();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Ready to accept connections") {
                break;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "redis-server {} exited with {status} at start-up; log:\n{text}",
                    self.builder.version
                );
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "redis-server {} did not start in 20s; log:\n{text}",
                    self.builder.version
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `redis://[:password@]127.0.0.1:port` (or `rediss://`).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.builder.password {
            Some(pw) => format!("{scheme}://:{pw}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// The URL without any password.
    pub fn url_without_password(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A blocking client, logged in (not for TLS servers).
    pub fn client(&self) -> Client {
        assert!(self.tls.is_none(), "the test client does not speak TLS");
        let mut c = Client::connect(self.port).expect("cannot connect to test server");
        if let Some(pw) = &self.builder.password {
            c.cmd(&["AUTH", pw]);
        }
        c
    }

    /// `redis-cli` pointed at this server (password and TLS flags included).
    pub fn cli(&self) -> Command {
        let mut c = Command::new(redis_cli());
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(pw) = &self.builder.password {
            c.args(["--no-auth-warning", "-a", pw]);
        }
        if let Some(t) = &self.tls {
            c.arg("--tls")
                .arg("--cacert")
                .arg(&t.ca)
                .arg("--cert")
                .arg(&t.client_cert)
                .arg("--key")
                .arg(&t.client_key);
        }
        c
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL, then start again on the same port and directory: whatever the server saved
    /// (`SAVE`, or a file put in its directory) is loaded back.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A Redis Cluster of real servers made with `redis-cli --cluster create`.
pub struct Cluster {
    /// Every node, masters first in creation order.
    pub nodes: Vec<Server>,
}

impl Cluster {
    /// Starts `masters` masters with `replicas` replicas each and waits until every node says
    /// `cluster_state:ok` and every replica's link is up.
    pub fn start(version: &str, masters: usize, replicas: usize) -> Cluster {
        let total = masters * (1 + replicas);
        let nodes: Vec<Server> = (0..total)
            .map(|_| Server::builder(version).cluster().start())
            .collect();
        let mut cmd = Command::new(redis_cli());
        cmd.arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port));
        }
        cmd.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        let out = cmd.output().expect("cannot run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster { nodes };
        for n in &cluster.nodes {
            wait_until(30, "cluster_state:ok", || {
                n.client()
                    .text(&["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            });
        }
        for n in &cluster.nodes {
            wait_until(30, "replica links up", || {
                let mut c = n.client();
                c.info_field("replication", "role").as_deref() == Some("master")
                    || c.info_field("replication", "master_link_status").as_deref() == Some("up")
            });
        }
        // Every node must know every replica (gossip takes a moment), or topology answers differ
        // by which node is asked.
        for n in &cluster.nodes {
            wait_until(30, "every node to see every replica", || {
                let text = n.client().text(&["CLUSTER", "NODES"]);
                text.lines().count() == total
                    && text.matches("slave").count() == masters * replicas
                    && !text.contains("fail")
            });
        }
        cluster
    }

    /// A replica of the master listening on `port`.
    pub fn replica_of(&self, port: u16) -> &Server {
        self.nodes
            .iter()
            .find(|n| {
                n.client()
                    .info_field("replication", "master_port")
                    .as_deref()
                    == Some(&port.to_string())
            })
            .unwrap_or_else(|| panic!("no replica of the master on port {port}"))
    }

    /// Starts node `i` again (after a kill) and waits until every node says
    /// `cluster_state:ok` and node `i` is a replica with its link to its master up: a replica
    /// coming back, or a master that was failed over rejoining as a replica of its successor.
    pub fn rejoin_as_replica(&mut self, i: usize) {
        self.nodes[i].restart();
        for n in &self.nodes {
            wait_until(30, "the cluster to settle", || {
                n.client()
                    .text(&["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            });
        }
        let node = &self.nodes[i];
        wait_until(30, "the node to rejoin as a replica", || {
            let mut c = node.client();
            c.info_field("replication", "role").as_deref() == Some("slave")
                && c.info_field("replication", "master_link_status").as_deref() == Some("up")
        });
    }

    /// The nodes that are currently masters.
    pub fn masters(&self) -> Vec<&Server> {
        self.nodes
            .iter()
            .filter(|n| n.client().info_field("replication", "role").as_deref() == Some("master"))
            .collect()
    }

    /// A URL of one node (any node describes the whole cluster).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }
}

/// A Sentinel monitoring one master under the name `mymaster`.
pub struct Sentinel {
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Sentinel {
    /// Starts a sentinel for `master` (quorum 1) and waits until it knows the master.
    pub fn start(master: &Server) -> Sentinel {
        let dir = tempfile::Builder::new()
            .prefix("shake-sentinel-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {}/sentinel.log\nsentinel monitor mymaster 127.0.0.1 {} 1\nsentinel down-after-milliseconds mymaster 2000\n",
                dir.path().display(),
                dir.path().display(),
                master.port
            ),
        )
        .unwrap();
        let child = Command::new(redis_server(master.version()))
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start sentinel");
        let s = Sentinel { port, dir, child };
        wait_until(20, "sentinel to know mymaster", || {
            Client::connect(port)
                .and_then(|mut c| c.try_cmd(&["SENTINEL", "get-master-addr-by-name", "mymaster"]))
                .map(|f| f.as_array().is_some())
                .unwrap_or(false)
        });
        s
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The directory holding its config and log.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
