//! Enumerating keys on one node: which databases hold keys, `SCAN … MATCH … COUNT` batches, and
//! random samples (`RANDOMKEY`, or reservoir sampling over a scan when a glob restricts the
//! keys or the sample is most of the database).
//!
//! Scanning goes to one node at a time (a cluster master's SCAN lists only its own slots), so
//! the caller runs one task per master.

use std::collections::HashSet;

use bytes::Bytes;

use crate::resp::Frame;

use super::error::{Error, Result};
use super::side::Side;

/// Databases of node `addr` holding keys, with their key counts, restricted to `only` when it
/// is not empty. A cluster node has db 0 only.
pub async fn databases(side: &mut Side, addr: &str, only: &[u32]) -> Result<Vec<(u32, u64)>> {
    let reply = side.request_on(addr, 0, &[b"INFO", b"keyspace"]).await?;
    let text = reply.as_str().ok_or_else(|| Error::Protocol {
        side: side.role(),
        addr: addr.to_string(),
        what: "INFO keyspace is not text".into(),
    })?;
    Ok(parse_keyspace(text)
        .into_iter()
        .filter(|(db, _)| only.is_empty() || only.contains(db))
        .collect())
}

/// Parses `INFO keyspace` (`db3:keys=2,expires=0,avg_ttl=0`) into `(db, keys)`.
pub fn parse_keyspace(text: &str) -> Vec<(u32, u64)> {
    crate::net::parse_info(text)
        .into_iter()
        .filter_map(|(k, v)| {
            let db = k.strip_prefix("db")?.parse().ok()?;
            let keys = v
                .split(',')
                .find_map(|kv| kv.strip_prefix("keys="))?
                .parse()
                .ok()?;
            Some((db, keys))
        })
        .collect()
}

/// A `SCAN` walk over one database of one node.
#[derive(Debug)]
pub struct Scan {
    addr: String,
    db: u32,
    cursor: Vec<u8>,
    pattern: Option<Vec<u8>>,
    count: usize,
    done: bool,
}

impl Scan {
    /// Starts a walk of `db` on `addr`, optionally restricted to keys matching `pattern`.
    pub fn new(addr: &str, db: u32, pattern: Option<&str>, count: usize) -> Scan {
        Scan {
            addr: addr.to_string(),
            db,
            cursor: b"0".to_vec(),
            pattern: pattern.map(|p| p.as_bytes().to_vec()),
            count: count.max(1),
            done: false,
        }
    }

    /// The next batch of keys (possibly empty while the walk goes on), or `None` at the end.
    /// SCAN may return a key twice; callers tolerate it (a key compared twice gives the same
    /// answer).
    pub async fn next(&mut self, side: &mut Side) -> Result<Option<Vec<Bytes>>> {
        if self.done {
            return Ok(None);
        }
        let count = self.count.to_string();
        let mut args: Vec<&[u8]> = vec![b"SCAN", &self.cursor];
        if let Some(p) = &self.pattern {
            args.extend([b"MATCH".as_slice(), p]);
        }
        args.extend([b"COUNT".as_slice(), count.as_bytes()]);
        let reply = side.request_on(&self.addr, self.db, &args).await?;
        let bad = || Error::Protocol {
            side: side.role(),
            addr: self.addr.clone(),
            what: "SCAN reply is not [cursor, [keys]]".into(),
        };
        let parts = reply.as_array().ok_or_else(bad)?;
        let (cursor, keys) = match parts {
            [c, Frame::Array(keys)] => (c.as_bytes().ok_or_else(bad)?, keys),
            _ => return Err(bad()),
        };
        let keys = keys
            .iter()
            .map(|k| match k {
                Frame::Bulk(b) => Ok(b.clone()),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>>>()?;
        self.cursor = cursor.to_vec();
        if cursor == b"0" {
            self.done = true;
        }
        Ok(Some(keys))
    }
}

/// A small, seedable random source (splitmix64): sampling needs uniformity, not secrecy, and
/// a fixed seed makes a sample reproducible in tests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock.
    pub fn from_time() -> Rng {
        Rng(crate::units::now_ms() ^ 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()))
    }

    /// A uniform number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        z % n.max(1)
    }
}

/// Splits a sample of `n` keys over `(node, db, keys)` groups proportionally to their sizes
/// (largest remainders), so every part of the keyspace is represented.
pub fn allocate(n: u64, groups: &[u64]) -> Vec<u64> {
    let total: u64 = groups.iter().sum();
    if total == 0 {
        return vec![0; groups.len()];
    }
    let n = n.min(total);
    let mut out: Vec<u64> = groups
        .iter()
        .map(|&g| (n as u128 * g as u128 / total as u128) as u64)
        .collect();
    let mut left = n - out.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&i| {
        std::cmp::Reverse((n as u128 * groups[i] as u128 % total as u128) as u64)
    });
    for i in order {
        if left == 0 {
            break;
        }
        if out[i] < groups[i] {
            out[i] += 1;
            left -= 1;
        }
    }
    out
}

/// Draws up to `want` distinct keys of `db` on `addr`. With no pattern and a sample well below
/// the database size, pipelined `RANDOMKEY`s (a few rounds, duplicates dropped); otherwise a
/// full `SCAN` with reservoir sampling (uniform over what the scan returns).
pub async fn sample(
    side: &mut Side,
    addr: &str,
    db: u32,
    db_keys: u64,
    want: u64,
    pattern: Option<&str>,
    rng: &mut Rng,
) -> Result<Vec<Bytes>> {
    if want == 0 {
        return Ok(Vec::new());
    }
    if pattern.is_none() && want.saturating_mul(2) < db_keys {
        let mut seen: HashSet<Bytes> = HashSet::new();
        for _ in 0..8 {
            let missing = want.saturating_sub(seen.len() as u64);
            if missing == 0 {
                break;
            }
            let round = (missing + missing / 4 + 1).min(10_000) as usize;
            let cmds = vec![vec![Bytes::from_static(b"RANDOMKEY")]; round];
            let replies = random_keys(side, addr, db, &cmds).await?;
            for k in replies {
                if (seen.len() as u64) < want {
                    seen.insert(k);
                }
            }
        }
        return Ok(seen.into_iter().collect());
    }
    let mut reservoir: Vec<Bytes> = Vec::new();
    let mut seen: u64 = 0;
    let mut scan = Scan::new(addr, db, pattern, 1000);
    while let Some(keys) = scan.next(side).await? {
        for k in keys {
            seen += 1;
            if (reservoir.len() as u64) < want {
                reservoir.push(k);
            } else {
                let j = rng.below(seen);
                if j < want {
                    reservoir[j as usize] = k;
                }
            }
        }
    }
    reservoir.sort();
    reservoir.dedup();
    Ok(reservoir)
}

/// Pipelined keyless commands to one node (RANDOMKEY rounds).
async fn random_keys(
    side: &mut Side,
    addr: &str,
    db: u32,
    cmds: &[Vec<Bytes>],
) -> Result<Vec<Bytes>> {
    let mut out = Vec::with_capacity(cmds.len());
    let replies = side.pipeline_on(addr, db, cmds).await?;
    for r in replies {
        match r {
            Frame::Bulk(b) => out.push(b),
            Frame::Null => {}
            other => {
                return Err(Error::Protocol {
                    side: side.role(),
                    addr: addr.to_string(),
                    what: format!("RANDOMKEY answered {other:?}"),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_parses() {
        let t =
            "# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=0\r\ndb5:keys=3,expires=0,avg_ttl=0\r\n";
        assert_eq!(parse_keyspace(t), vec![(0, 12), (5, 3)]);
    }

    #[test]
    fn allocation_is_proportional_and_exact() {
        assert_eq!(allocate(10, &[50, 50]), vec![5, 5]);
        assert_eq!(allocate(10, &[3, 100]).iter().sum::<u64>(), 10);
        assert_eq!(allocate(1000, &[3, 4]), vec![3, 4]);
        assert_eq!(allocate(5, &[0, 0]), vec![0, 0]);
        let a = allocate(7, &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(a.iter().sum::<u64>(), 7);
        assert!(a.iter().all(|&x| x <= 1));
    }

    #[test]
    fn rng_stays_in_range() {
        let mut r = Rng(1);
        for n in [1u64, 2, 7, 1000] {
            for _ in 0..100 {
                assert!(r.below(n) < n);
            }
        }
    }
}
