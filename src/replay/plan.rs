//! What the target is: product, RDB version, `proto-max-bulk-len`, standalone or cluster — asked
//! once at start, because the restore-or-rewrite decision and the routing depend on it.

use crate::net::topology::{self, Mode, Topology};
use crate::net::{ConnectOptions, Connection, Endpoint};
use crate::rdb::dump::{Destination, Product};

use super::error::{Error, Result};

/// Facts about the target.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    /// Redis or Valkey.
    pub product: Product,
    /// Server version text (`7.0.15`).
    pub version: String,
    /// The RDB version its RESTORE accepts.
    pub rdb_version: u16,
    /// Largest bulk argument it takes (RESTORE payloads above it are rewritten as commands).
    pub proto_max_bulk_len: u64,
    /// The topology (one shard for a standalone server).
    pub topology: Topology,
}

impl TargetInfo {
    /// What RESTORE accepts, for [`crate::rdb::dump::compatibility`].
    pub fn destination(&self) -> Destination {
        Destination {
            product: self.product,
            rdb_version: self.rdb_version,
        }
    }

    /// Whether the target is a cluster.
    pub fn is_cluster(&self) -> bool {
        self.topology.mode == Mode::Cluster
    }

    /// `major * 100 + minor` of the server version (700 for 7.0.15).
    pub fn version_number(&self) -> u32 {
        let mut p = self
            .version
            .split('.')
            .map(|x| x.parse::<u32>().unwrap_or(0));
        p.next().unwrap_or(0) * 100 + p.next().unwrap_or(0)
    }
}

/// Connects to `target` and gathers [`TargetInfo`].
pub async fn inspect(target: &Endpoint, connect: &ConnectOptions) -> Result<TargetInfo> {
    let addr = target.addr();
    let net = |source| Error::Net {
        addr: addr.clone(),
        cause: source,
    };
    let mut conn = Connection::connect(target, connect).await.map_err(net)?;
    let info = conn.info("server").await.map_err(net)?;
    let (flavor, version) = crate::probe::product_version(&info);
    let version = version.unwrap_or_default();
    let rdb_version = crate::probe::rdb_version_for(flavor, &version).ok_or_else(|| {
        Error::Invalid(format!(
            "target {addr} runs {flavor} {version:?}, whose RDB version this build does not know"
        ))
    })? as u16;
    // Managed services may refuse CONFIG: fall back to Redis's default of 512 MiB.
    let proto_max_bulk_len = match conn.request(&["CONFIG", "GET", "proto-max-bulk-len"]).await {
        Ok(f) => f
            .as_array()
            .and_then(|a| a.get(1))
            .and_then(|v| v.as_int())
            .map(|v| v as u64)
            .unwrap_or(512 << 20),
        Err(_) => 512 << 20,
    };
    let topology = topology::discover(&mut conn).await.map_err(net)?;
    Ok(TargetInfo {
        product: if flavor == "valkey" {
            Product::Valkey
        } else {
            Product::Redis
        },
        version,
        rdb_version,
        proto_max_bulk_len,
        topology,
    })
}
