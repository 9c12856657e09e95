//! Fuzzes the RESP decoder: any bytes, fed whole or split at any point, must give frames or an
//! error, never a panic, and `check` and `decode` must agree on frame lengths.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use shake::resp::{self, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_bulk: 1 << 20, ..Limits::default() };
    let mut buf = BytesMut::from(data);
    loop {
        let checked = resp::check_with(&buf, &limits);
        match resp::decode(&mut buf, &limits) {
            Ok(Some((_frame, len))) => assert_eq!(checked, Ok(Some(len))),
            Ok(None) => {
                assert_eq!(checked, Ok(None));
                break;
            }
            Err(_) => break,
        }
    }
    let _ = resp::parse(&Bytes::copy_from_slice(data));
});
