//! Sentinel: find the current master of a named group.

use super::{Connection, Endpoint, Error};
use crate::resp::Frame;

/// Asks a sentinel for the address of master `name` and returns an endpoint for it carrying the
/// sentinel endpoint's credentials and TLS setting (the usual deployment shares them; pass a
/// different endpoint's credentials by editing the result).
pub async fn resolve_master(sentinel: &mut Connection, name: &str) -> Result<Endpoint, Error> {
    let reply = sentinel
        .request(&["SENTINEL", "get-master-addr-by-name", name])
        .await?;
    let addr = sentinel.endpoint().addr();
    match &reply {
        Frame::Null => Err(Error::Unexpected {
            addr,
            command: "SENTINEL GET-MASTER-ADDR-BY-NAME".into(),
            detail: format!("this sentinel does not monitor a master named {name:?}"),
        }),
        Frame::Array(items) if items.len() == 2 => {
            let host = items[0].as_str();
            let port = items[1].as_int();
            match (host, port) {
                (Some(h), Some(p)) if (1..=65535).contains(&p) => {
                    Ok(sentinel.endpoint().with_addr(h, p as u16))
                }
                _ => Err(Error::Unexpected {
                    addr,
                    command: "SENTINEL GET-MASTER-ADDR-BY-NAME".into(),
                    detail: format!("bad address reply {reply:?}"),
                }),
            }
        }
        other => Err(Error::Unexpected {
            addr,
            command: "SENTINEL GET-MASTER-ADDR-BY-NAME".into(),
            detail: format!("expected [host, port], got {other:?}"),
        }),
    }
}
