//! Talking to Redis over the network: endpoints and credentials, TLS, the tokio connection,
//! topology discovery (standalone, cluster, sentinel) and key → slot hashing.
//!
//! Every error here names the endpoint (`host:port`) and never the password: endpoints print
//! through [`Endpoint`]'s `Display`, which leaves credentials out, and server messages are
//! scrubbed of the password before they are wrapped (see [`Secret`]).

mod connection;
mod endpoint;
mod error;
pub mod sentinel;
pub mod slot;
mod tls;
pub mod topology;

pub use connection::{ConnectOptions, Connection, parse_info};
pub use endpoint::{Endpoint, Secret};
pub use error::{AuthFailure, Error};
pub use tls::TlsOptions;
