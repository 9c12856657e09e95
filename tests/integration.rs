//! The one integration-test binary (`autotests = false`): one module per capability, all
//! against real `redis-server` processes started by `support`.

mod support;

mod harness;
mod probe;
mod replica;
