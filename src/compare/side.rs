//! One side of a comparison (the source or the target): what it is, and a handle that sends
//! pipelined batches of per-key commands to the right nodes.
//!
//! [`SideInfo`] is discovered once (topology, flavor, RDB version). Every worker task then takes
//! its own [`Side`] — its own connections, opened on first use — so tasks never wait on each
//! other's sockets. A batch is grouped by owning node (slot routing on a cluster), queued and
//! flushed to every node before any reply is read, so one batch costs one round trip per node.
//! `MOVED` updates the slot map and resends the command; `ASK` is followed once with `ASKING`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;

use crate::net::slot::key_slot;
use crate::net::topology::{self, Mode, Topology};
use crate::net::{ConnectOptions, Connection, Endpoint};
use crate::rdb::Flavor;
use crate::replay::op::Route;
use crate::replay::router::{Redirect, SlotMap, parse_redirect, split_addr};
use crate::resp::Frame;

use super::error::{Error, Result};

/// Facts about one side, gathered once at start.
#[derive(Debug, Clone)]
pub struct SideInfo {
    /// `source` or `target`: every message names the side.
    pub role: &'static str,
    /// The endpoint given (credentials inside; prints without them).
    pub endpoint: Endpoint,
    /// TLS and timeouts.
    pub connect: ConnectOptions,
    /// Standalone or cluster, with each master's slots.
    pub topology: Topology,
    /// Server version text (`7.0.15`).
    pub version: String,
    /// The RDB version its DUMP payloads carry: equal versions allow a byte comparison.
    pub rdb_version: u16,
    /// How DUMP payloads of this side are parsed.
    pub flavor: Flavor,
    /// `host:port` of every master (the standalone server itself outside a cluster).
    pub masters: Vec<String>,
    /// Slot owners at discovery, copied into every handle (and corrected there by MOVED).
    slots: SlotMap,
}

impl SideInfo {
    /// Connects to `endpoint` and learns what it is. A sentinel is refused: compare needs the
    /// data nodes.
    pub async fn discover(
        role: &'static str,
        endpoint: Endpoint,
        connect: ConnectOptions,
    ) -> Result<SideInfo> {
        let addr = endpoint.addr();
        let net = |cause| Error::Net {
            side: role,
            addr: addr.clone(),
            cause,
        };
        let mut conn = Connection::connect(&endpoint, &connect)
            .await
            .map_err(net)?;
        let info = conn.info("server").await.map_err(net)?;
        let (product, version) = crate::probe::product_version(&info);
        let version = version.unwrap_or_default();
        let rdb_version = crate::probe::rdb_version_for(product, &version).ok_or_else(|| {
            Error::Invalid(format!(
                "{role} {addr} runs {product} {version:?}, whose RDB version this build does not know"
            ))
        })? as u16;
        let topology = topology::discover(&mut conn).await.map_err(net)?;
        let masters = match topology.mode {
            Mode::Sentinel => {
                return Err(Error::Invalid(format!(
                    "{role} {addr} is a sentinel: give the URL of the master (or of any cluster node)"
                )));
            }
            Mode::Standalone => vec![addr.clone()],
            Mode::Cluster => topology.shards.iter().map(|s| s.master.addr()).collect(),
        };
        Ok(SideInfo {
            role,
            endpoint,
            connect,
            version,
            rdb_version,
            flavor: if rdb_version >= 80 {
                Flavor::Valkey
            } else {
                Flavor::Redis
            },
            masters,
            slots: SlotMap::new(&topology, &addr),
            topology,
        })
    }

    /// Whether this side is a cluster (only db 0 exists there).
    pub fn is_cluster(&self) -> bool {
        self.topology.mode == Mode::Cluster
    }

    /// A new handle with its own connections.
    pub fn handle(&self) -> Side {
        Side {
            slots: self.slots.clone(),
            info: self.clone(),
            conns: HashMap::new(),
        }
    }
}

/// One command about one key: the key routes it, `args` is the whole command.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// The key (routing on a cluster).
    pub key: Bytes,
    /// The command and its arguments.
    pub args: Vec<Bytes>,
}

impl Cmd {
    /// `NAME key extra…`.
    pub fn new(name: &'static str, key: &Bytes, extra: &[&[u8]]) -> Cmd {
        let mut args = Vec::with_capacity(2 + extra.len());
        args.push(Bytes::from_static(name.as_bytes()));
        args.push(key.clone());
        args.extend(extra.iter().map(|e| Bytes::copy_from_slice(e)));
        Cmd {
            key: key.clone(),
            args,
        }
    }

    /// `NAME SUB key extra…`, for container commands (`XINFO STREAM key`).
    pub fn sub(name: &'static str, sub: &'static str, key: &Bytes, extra: &[&[u8]]) -> Cmd {
        let mut c = Cmd::new(sub, key, extra);
        c.args.insert(0, Bytes::from_static(name.as_bytes()));
        c
    }
}

struct NodeConn {
    conn: Connection,
    db: u32,
}

/// A worker's connections to one side.
pub struct Side {
    info: SideInfo,
    slots: SlotMap,
    conns: HashMap<String, NodeConn>,
}

impl std::fmt::Debug for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Side")
            .field("role", &self.info.role)
            .field("nodes", &self.conns.len())
            .finish()
    }
}

impl Side {
    /// What this side is.
    pub fn info(&self) -> &SideInfo {
        &self.info
    }

    /// `source` or `target`.
    pub fn role(&self) -> &'static str {
        self.info.role
    }

    fn net(&self, addr: &str) -> impl Fn(crate::net::Error) -> Error + use<> {
        let side = self.info.role;
        let addr = addr.to_string();
        move |cause| Error::Net {
            side,
            addr: addr.clone(),
            cause,
        }
    }

    /// The connection to `addr` with `db` selected, opened on first use.
    async fn conn(&mut self, addr: &str, db: u32) -> Result<&mut Connection> {
        if !self.conns.contains_key(addr) {
            let (host, port) = split_addr(addr).ok_or_else(|| Error::Protocol {
                side: self.info.role,
                addr: addr.to_string(),
                what: "not a host:port address".into(),
            })?;
            let endpoint = self.info.endpoint.with_addr(host, port);
            let conn = Connection::connect(&endpoint, &self.info.connect)
                .await
                .map_err(self.net(addr))?;
            self.conns
                .insert(addr.to_string(), NodeConn { conn, db: 0 });
        }
        let net = self.net(addr);
        let role = self.info.role;
        let Some(node) = self.conns.get_mut(addr) else {
            return Err(Error::Protocol {
                side: role,
                addr: addr.to_string(),
                what: "connection vanished".into(),
            });
        };
        if node.db != db {
            node.conn
                .request(&["SELECT", &db.to_string()])
                .await
                .map_err(net)?;
            node.db = db;
        }
        Ok(&mut node.conn)
    }

    /// Sends one keyless command to node `addr` with `db` selected; an error reply is an error.
    pub async fn request_on(&mut self, addr: &str, db: u32, args: &[&[u8]]) -> Result<Frame> {
        let net = self.net(addr);
        let timeout = self.info.connect.reply_timeout;
        let conn = self.conn(addr, db).await?;
        with_timeout(timeout, addr, args, conn.request(args))
            .await
            .map_err(net)
    }

    /// Sends keyless commands to node `addr` as one pipeline; replies in order, error replies
    /// as frames.
    pub async fn pipeline_on(
        &mut self,
        addr: &str,
        db: u32,
        cmds: &[Vec<Bytes>],
    ) -> Result<Vec<Frame>> {
        let net = self.net(addr);
        let timeout = self.info.connect.reply_timeout;
        let conn = self.conn(addr, db).await?;
        for c in cmds {
            conn.queue(c);
        }
        conn.flush().await.map_err(&net)?;
        let mut out = Vec::with_capacity(cmds.len());
        for c in cmds {
            let (f, _) = with_timeout(timeout, addr, c, conn.read_frame())
                .await
                .map_err(&net)?;
            out.push(f);
        }
        Ok(out)
    }

    /// Sends `cmds` as one pipeline per node and returns the replies in order. Error replies
    /// are returned as frames (the caller knows which are acceptable); redirections are
    /// followed.
    pub async fn batch(&mut self, db: u32, cmds: &[Cmd]) -> Result<Vec<Frame>> {
        let mut by_node: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            let node = self.slots.node(Route::Slot(key_slot(&c.key)));
            match by_node.iter_mut().find(|(n, _)| *n == node) {
                Some((_, v)) => v.push(i),
                None => by_node.push((node, vec![i])),
            }
        }
        for (node, idx) in &by_node {
            let net = self.net(node);
            let conn = self.conn(node, db).await?;
            for &i in idx {
                conn.queue(&cmds[i].args);
            }
            conn.flush().await.map_err(net)?;
        }
        let mut out: Vec<Option<Frame>> = vec![None; cmds.len()];
        let timeout = self.info.connect.reply_timeout;
        for (node, idx) in &by_node {
            let net = self.net(node);
            let conn = self.conn(node, db).await?;
            for &i in idx {
                let (frame, _) = with_timeout(timeout, node, &cmds[i].args, conn.read_frame())
                    .await
                    .map_err(&net)?;
                out[i] = Some(frame);
            }
        }
        let mut replies = Vec::with_capacity(cmds.len());
        for (i, f) in out.into_iter().enumerate() {
            let f = f.unwrap_or(Frame::Null);
            let f = match redirect_of(&f) {
                Some(r) => self.follow(db, &cmds[i], r).await?,
                None => f,
            };
            replies.push(f);
        }
        Ok(replies)
    }

    /// Resends a redirected command until it lands (at most five hops).
    async fn follow(&mut self, db: u32, cmd: &Cmd, mut r: Redirect) -> Result<Frame> {
        for _ in 0..5 {
            let reply = match &r {
                Redirect::Moved { slot, addr } => {
                    self.slots.set(*slot, addr);
                    let addr = addr.clone();
                    let net = self.net(&addr);
                    let conn = self.conn(&addr, db).await?;
                    conn.request_raw(&cmd.args).await.map_err(net)?
                }
                Redirect::Ask { addr, .. } => {
                    let addr = addr.clone();
                    let net = self.net(&addr);
                    let conn = self.conn(&addr, db).await?;
                    conn.queue(&["ASKING"]);
                    conn.queue(&cmd.args);
                    conn.flush().await.map_err(&net)?;
                    let _ = conn.read_frame().await.map_err(&net)?;
                    conn.read_frame().await.map_err(&net)?.0
                }
            };
            match redirect_of(&reply) {
                Some(next) => r = next,
                None => return Ok(reply),
            }
        }
        Err(Error::Protocol {
            side: self.info.role,
            addr: self.info.endpoint.addr(),
            what: format!(
                "key {} (db {db}) still redirected after 5 hops",
                super::report::printable(&cmd.key)
            ),
        })
    }
}

fn redirect_of(f: &Frame) -> Option<Redirect> {
    let msg = f.as_error()?;
    let text = std::str::from_utf8(msg).ok()?;
    if text.starts_with("MOVED ") || text.starts_with("ASK ") {
        parse_redirect(text)
    } else {
        None
    }
}

async fn with_timeout<T, A: AsRef<[u8]>>(
    limit: Duration,
    addr: &str,
    args: &[A],
    fut: impl Future<Output = std::result::Result<T, crate::net::Error>>,
) -> std::result::Result<T, crate::net::Error> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(crate::net::Error::Timeout {
            addr: addr.to_string(),
            what: args
                .first()
                .map(|a| String::from_utf8_lossy(a.as_ref()).to_uppercase())
                .unwrap_or_default(),
            secs: limit.as_secs_f64(),
        }),
    }
}
