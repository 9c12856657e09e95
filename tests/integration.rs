//! The one integration-test binary (`autotests = false`): one module per capability, all
//! against real `redis-server` processes started by `support`.

mod support;

mod capture;
mod commands;
mod compare;
mod export;
mod filter;
mod harness;
mod inspect_journal;
mod inspect_rdb;
mod probe;
mod replay;
mod replica;

mod journal_corruption;
mod journal_crash;
mod journal_follower;
mod journal_golden;
mod journal_roundtrip;
mod journal_util;
mod journal_verify_cli;
mod rdb_corpus;
mod rdb_props;
mod rdb_server;
