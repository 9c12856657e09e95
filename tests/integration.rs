//! Integration tests

mod journal_roundtrip;
mod journal_util;
mod journal_crash;
mod journal_corruption;
