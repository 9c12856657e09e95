//! Integration tests

mod journal_corruption;
mod journal_crash;
mod journal_follower;
mod journal_golden;
mod journal_roundtrip;
mod journal_util;
