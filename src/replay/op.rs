//! The unit of work between reading the journal and writing to the target: an [`Op`] is what one
//! journal record (or one snapshot key with its chunks) becomes — commands, their routing, and
//! what each reply means.

use crate::journal::Position;

use super::checkpoint::Phase;

/// One command argument vector.
pub type Argv = Vec<Vec<u8>>;

/// Where a command goes on a cluster target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The master owning this slot.
    Slot(u16),
    /// Any master (keyless commands).
    Any,
    /// Every master (`FLUSHALL`, `FUNCTION LOAD`, `SCRIPT FLUSH` …).
    All,
}

/// What a `BUSYKEY` (or "library already exists") reply means for this command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBusy {
    /// An ordinary failure.
    Fail,
    /// The key is kept: counted as skipped (`--on-conflict skip`).
    Skip,
    /// Stop the replay (`--on-conflict error`).
    Stop,
}

/// One command with its routing and reply meaning.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// Name and arguments.
    pub argv: Argv,
    /// Cluster routing.
    pub route: Route,
    /// BUSYKEY meaning.
    pub on_busy: OnBusy,
}

impl Cmd {
    /// A command routed by `route` whose BUSYKEY is an ordinary failure.
    pub fn new(argv: Argv, route: Route) -> Cmd {
        Cmd {
            argv,
            route,
            on_busy: OnBusy::Fail,
        }
    }

    /// Bytes on the wire, roughly (for `--max-bytes` and statistics).
    pub fn wire_len(&self) -> u64 {
        self.argv.iter().map(|a| a.len() as u64 + 16).sum::<u64>() + 8
    }

    /// The upper-case command name (two words for container commands), for reports.
    pub fn name(&self) -> String {
        let mut n = self
            .argv
            .first()
            .map(|a| String::from_utf8_lossy(a).to_uppercase())
            .unwrap_or_default();
        if matches!(
            n.as_str(),
            "FUNCTION" | "SCRIPT" | "XGROUP" | "CONFIG" | "OBJECT"
        ) && let Some(s) = self.argv.get(1)
        {
            n.push(' ');
            n.push_str(&String::from_utf8_lossy(s).to_uppercase());
        }
        n
    }
}

/// How an op's commands are sent.
#[derive(Debug, Clone)]
pub enum Unit {
    /// Independent commands, in order (each routed on its own on a cluster).
    Commands(Vec<Cmd>),
    /// `MULTI … EXEC` as one unit (all on one node; `SELECT`s inside already mapped).
    Transaction(Vec<Cmd>),
}

impl Unit {
    /// The commands.
    pub fn cmds(&self) -> &[Cmd] {
        match self {
            Unit::Commands(c) | Unit::Transaction(c) => c,
        }
    }
}

/// A check that must pass before the op is sent (rewrite path under `skip`/`error`).
#[derive(Debug, Clone)]
pub struct Guard {
    /// The key that must not exist on the target.
    pub key: Vec<u8>,
    /// Its route.
    pub route: Route,
    /// What to do when it exists.
    pub on_exists: OnBusy,
}

/// One journal record's worth of work.
#[derive(Debug, Clone)]
pub struct Op {
    /// The last journal position this op completes (the checkpoint advances to it).
    pub position: Position,
    /// Snapshot key or stream record.
    pub phase: Phase,
    /// Target database the op starts in.
    pub db: u32,
    /// Target database selected when the op ends (differs after a transaction with `SELECT`).
    pub end_db: u32,
    /// The key, for messages (snapshot keys and keyed commands).
    pub key: Option<Vec<u8>>,
    /// The commands.
    pub unit: Unit,
    /// Checked before sending.
    pub guard: Option<Guard>,
}

impl Op {
    /// Number of commands.
    pub fn len(&self) -> usize {
        self.unit.cmds().len()
    }

    /// Whether the op has no command (it only advances the checkpoint).
    pub fn is_empty(&self) -> bool {
        self.unit.cmds().is_empty()
    }

    /// Bytes on the wire, roughly.
    pub fn wire_len(&self) -> u64 {
        self.unit.cmds().iter().map(Cmd::wire_len).sum()
    }
}
