//! Integration tests

mod rdb_corpus;
mod rdb_props;
