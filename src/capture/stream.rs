//! From stream commands to journal units.
//!
//! The master's stream is a flat sequence of commands. What a journal (and a replay) needs is
//! units: a data command with the db it applies to; a `MULTI … EXEC` transaction kept whole so
//! replay can keep it atomic; a db switch; a keepalive. A unit ends at a command boundary outside
//! a transaction, which is exactly where a real replica advances its applied offset (design
//! reference §1.4): the offset of the last unit returned is the one that may be acknowledged
//! and resumed from.

use bytes::Bytes;

/// One unit of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    /// A data command.
    Command {
        /// Database it applies to.
        db: u32,
        /// Its arguments, name first.
        argv: Vec<Bytes>,
        /// Replication offset after it.
        offset: u64,
    },
    /// A whole `MULTI … EXEC` block (without the `MULTI`/`EXEC` themselves). A `SELECT` inside
    /// is kept as one of the commands: it changes the db of the commands after it when the
    /// block runs, and stays in force after `EXEC`.
    Transaction {
        /// The db in force at `MULTI`.
        db: u32,
        /// The queued commands, `SELECT`s included, in order.
        commands: Vec<Vec<Bytes>>,
        /// Replication offset after `EXEC`.
        offset: u64,
    },
    /// A `SELECT` outside a transaction: no data, but the db must be remembered with the
    /// position, since a partial resync does not repeat it (trap 7).
    Select {
        /// The new database.
        db: u32,
        /// Replication offset after it.
        offset: u64,
    },
    /// `PING`, `REPLCONF …`: not data, but their bytes count in the offset.
    Keepalive {
        /// Replication offset after it.
        offset: u64,
    },
}

impl Unit {
    /// The replication offset after this unit.
    pub fn offset(&self) -> u64 {
        match self {
            Unit::Command { offset, .. }
            | Unit::Transaction { offset, .. }
            | Unit::Select { offset, .. }
            | Unit::Keepalive { offset } => *offset,
        }
    }
}

/// A problem in the stream's structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `SELECT` with a database that is not a number.
    #[error("SELECT with invalid database {arg:?} at offset {offset}")]
    BadSelect {
        /// The argument (lossy UTF-8).
        arg: String,
        /// Offset after the command.
        offset: u64,
    },
    /// `MULTI` inside `MULTI`, or `EXEC` without `MULTI`.
    #[error("unbalanced {command} at offset {offset}")]
    Unbalanced {
        /// The command.
        command: &'static str,
        /// Offset after the command.
        offset: u64,
    },
}

/// The database a `SELECT n` command switches to; `None` for any other command (or a
/// `SELECT` whose argument is not a number). One place for every reader of the stream.
pub fn select_db<A: AsRef<[u8]>>(argv: &[A]) -> Option<u32> {
    if !argv.first()?.as_ref().eq_ignore_ascii_case(b"SELECT") {
        return None;
    }
    std::str::from_utf8(argv.get(1)?.as_ref())
        .ok()?
        .parse()
        .ok()
}

/// The db in force after a transaction that started in `db` and ran `commands`.
pub fn db_after<A: AsRef<[u8]>>(db: u32, commands: &[Vec<A>]) -> u32 {
    commands
        .iter()
        .fold(db, |db, argv| select_db(argv).unwrap_or(db))
}

/// Tracks the db and an open transaction across stream commands.
#[derive(Debug, Clone)]
pub struct StreamState {
    db: u32,
    multi: Option<Vec<Vec<Bytes>>>,
    multi_db: u32,
}

impl StreamState {
    /// Starts with the db in force (0 after a full sync — the master re-selects anyway; the
    /// journal's last db after a partial resync).
    pub fn new(db: u32) -> StreamState {
        StreamState {
            db,
            multi: None,
            multi_db: db,
        }
    }

    /// The db in force after the last complete unit.
    pub fn db(&self) -> u32 {
        self.db
    }

    /// True while inside `MULTI … EXEC`.
    pub fn in_transaction(&self) -> bool {
        self.multi.is_some()
    }

    /// Drops an unfinished transaction (the link broke inside it): the real replica discards
    /// it too and resumes from the offset before `MULTI`.
    pub fn discard_partial(&mut self) {
        self.multi = None;
    }

    /// Feeds one command with the offset after it; returns the unit it completes, if any.
    pub fn push(&mut self, argv: Vec<Bytes>, offset: u64) -> Result<Option<Unit>, Error> {
        let name = argv
            .first()
            .map(|n| n.to_ascii_uppercase())
            .unwrap_or_default();
        match name.as_slice() {
            b"MULTI" => {
                if self.multi.is_some() {
                    return Err(Error::Unbalanced {
                        command: "MULTI",
                        offset,
                    });
                }
                self.multi = Some(Vec::new());
                self.multi_db = self.db;
                Ok(None)
            }
            b"EXEC" => {
                let Some(commands) = self.multi.take() else {
                    return Err(Error::Unbalanced {
                        command: "EXEC",
                        offset,
                    });
                };
                let db = self.db;
                self.db = self.multi_db;
                Ok(Some(Unit::Transaction {
                    db,
                    commands,
                    offset,
                }))
            }
            b"SELECT" => {
                let arg = argv.get(1).cloned().unwrap_or_default();
                let db = std::str::from_utf8(&arg)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| Error::BadSelect {
                        arg: String::from_utf8_lossy(&arg).into_owned(),
                        offset,
                    })?;
                if let Some(cmds) = &mut self.multi {
                    self.multi_db = db;
                    cmds.push(argv);
                    Ok(None)
                } else {
                    self.db = db;
                    Ok(Some(Unit::Select { db, offset }))
                }
            }
            b"PING" | b"REPLCONF" if self.multi.is_none() => Ok(Some(Unit::Keepalive { offset })),
            // Sentinels' hello messages travel as PUBLISH through the replication stream; they
            // are cluster chatter, not data, and journaling them would make a capture diverge
            // from a promoted replica that never received the last ones.
            b"PUBLISH"
                if self.multi.is_none()
                    && argv.get(1).is_some_and(|c| c.starts_with(b"__sentinel__:")) =>
            {
                Ok(Some(Unit::Keepalive { offset }))
            }
            _ => match &mut self.multi {
                Some(cmds) => {
                    cmds.push(argv);
                    Ok(None)
                }
                None => Ok(Some(Unit::Command {
                    db: self.db,
                    argv,
                    offset,
                })),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(words: &str) -> Vec<Bytes> {
        words
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn select_multi_exec() {
        let mut s = StreamState::new(0);
        assert_eq!(
            s.push(cmd("SELECT 2"), 10).unwrap(),
            Some(Unit::Select { db: 2, offset: 10 })
        );
        assert_eq!(
            s.push(cmd("set a 1"), 20).unwrap(),
            Some(Unit::Command {
                db: 2,
                argv: cmd("set a 1"),
                offset: 20
            })
        );
        assert_eq!(s.push(cmd("MULTI"), 30).unwrap(), None);
        assert!(s.in_transaction());
        assert_eq!(s.push(cmd("SELECT 5"), 40).unwrap(), None);
        assert_eq!(s.push(cmd("incr c"), 50).unwrap(), None);
        assert_eq!(s.db(), 2, "SELECT inside MULTI takes effect at EXEC");
        let unit = s.push(cmd("EXEC"), 60).unwrap().unwrap();
        assert_eq!(
            unit,
            Unit::Transaction {
                db: 2,
                commands: vec![cmd("SELECT 5"), cmd("incr c")],
                offset: 60
            }
        );
        assert_eq!(s.db(), 5);
        assert_eq!(db_after(2, &[cmd("SELECT 5"), cmd("incr c")]), 5);
        assert_eq!(
            s.push(cmd("ping"), 70).unwrap(),
            Some(Unit::Keepalive { offset: 70 })
        );
        assert_eq!(
            s.push(cmd("REPLCONF GETACK *"), 80).unwrap(),
            Some(Unit::Keepalive { offset: 80 })
        );
    }

    #[test]
    fn errors() {
        let mut s = StreamState::new(0);
        assert!(matches!(
            s.push(cmd("EXEC"), 1),
            Err(Error::Unbalanced { .. })
        ));
        assert!(matches!(
            s.push(cmd("SELECT x"), 2),
            Err(Error::BadSelect { .. })
        ));
        s.push(cmd("MULTI"), 3).unwrap();
        assert!(matches!(
            s.push(cmd("MULTI"), 4),
            Err(Error::Unbalanced { .. })
        ));
        s.discard_partial();
        assert!(!s.in_transaction());
    }
}
