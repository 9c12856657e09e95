//! Integration tests

mod rdb_corpus;
