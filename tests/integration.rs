//! The one integration-test binary (`autotests = false`): one module per capability, all
//! against real `redis-server` processes started by `support`.

mod support;

mod capture;
mod cli_meta;
mod commands;
mod compare;
mod demo;
mod export;
mod filter;
mod guide;
mod harness;
mod inspect_journal;
mod inspect_rdb;
mod probe;
mod replay;
mod replica;
mod ship;

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
mod rdb_valkey;
