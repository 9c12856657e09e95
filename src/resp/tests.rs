//! Codec tests: known frames, partial input, limits, and properties (round trip; random bytes
//! never panic).

use super::*;
use bytes::Bytes;
use proptest::prelude::*;

fn one(bytes: &[u8]) -> (Frame, usize) {
    let mut buf = BytesMut::from(bytes);
    decode(&mut buf, &Limits::default()).unwrap().unwrap()
}

#[test]
fn resp2_types() {
    assert_eq!(one(b"+OK\r\n"), (Frame::Simple(Bytes::from("OK")), 5));
    assert_eq!(one(b"-ERR x\r\n").0, Frame::Error(Bytes::from("ERR x")));
    assert_eq!(one(b":-42\r\n").0, Frame::Integer(-42));
    assert_eq!(one(b"$3\r\nfoo\r\n").0, Frame::bulk("foo"));
    assert_eq!(one(b"$0\r\n\r\n").0, Frame::bulk(""));
    assert_eq!(one(b"$-1\r\n").0, Frame::Null);
    assert_eq!(one(b"*-1\r\n").0, Frame::Null);
    assert_eq!(
        one(b"*2\r\n$1\r\na\r\n:1\r\n"),
        (Frame::Array(vec![Frame::bulk("a"), Frame::Integer(1)]), 15)
    );
}

#[test]
fn resp3_types() {
    assert_eq!(one(b"_\r\n").0, Frame::Null);
    assert_eq!(one(b"#t\r\n").0, Frame::Boolean(true));
    assert_eq!(one(b",1.5\r\n").0, Frame::Double(1.5));
    assert_eq!(one(b",-inf\r\n").0, Frame::Double(f64::NEG_INFINITY));
    assert_eq!(
        one(b"(123456789012345678901234\r\n").0.as_str(),
        Some("123456789012345678901234")
    );
    assert_eq!(one(b"=7\r\ntxt:abc\r\n").0, Frame::bulk("abc"));
    assert_eq!(one(b"!3\r\nbad\r\n").0, Frame::Error(Bytes::from("bad")));
    let (map, _) = one(b"%1\r\n+server\r\n+redis\r\n");
    assert_eq!(map.field("server").and_then(Frame::as_str), Some("redis"));
    // An attribute is skipped; the annotated reply is returned, and the length covers both.
    assert_eq!(one(b"|1\r\n+a\r\n+b\r\n:7\r\n"), (Frame::Integer(7), 16));
}

#[test]
fn binary_bulk_with_crlf_inside() {
    let (f, n) = one(b"$4\r\n\r\n\r\n\r\n");
    assert_eq!(f, Frame::bulk(&b"\r\n\r\n"[..]));
    assert_eq!(n, 10);
}

#[test]
fn incomplete_is_not_an_error() {
    let whole = b"*2\r\n$3\r\nfoo\r\n$3\r\nbar\r\n";
    for cut in 0..whole.len() {
        assert_eq!(check(&whole[..cut]), Ok(None), "cut at {cut}");
    }
    assert_eq!(check(whole), Ok(Some(whole.len())));
}

#[test]
fn decode_advances_by_wire_length_only() {
    let mut buf = BytesMut::from(&b"+PONG\r\n*1\r\n$4\r\nPING\r\n+partial"[..]);
    let l = Limits::default();
    assert_eq!(decode(&mut buf, &l).unwrap().unwrap().1, 7);
    assert_eq!(decode(&mut buf, &l).unwrap().unwrap().1, 14);
    assert_eq!(decode(&mut buf, &l).unwrap(), None);
    assert_eq!(&buf[..], b"+partial");
}

#[test]
fn errors_say_where() {
    assert_eq!(
        check(b"?x\r\n"),
        Err(Error::InvalidType {
            byte: b'?',
            offset: 0
        })
    );
    assert!(matches!(
        check(b"*1\r\n$x\r\n"),
        Err(Error::InvalidNumber { offset: 5, .. })
    ));
    assert_eq!(
        check(b"$1\r\nab\r\n"),
        Err(Error::MissingCrlf { offset: 5 })
    );
    let limits = Limits {
        max_bulk: 10,
        ..Limits::default()
    };
    assert!(matches!(
        check_with(b"$11\r\n", &limits),
        Err(Error::TooLarge { .. })
    ));
    let deep = "*1\r\n".repeat(100);
    assert!(matches!(check(deep.as_bytes()), Err(Error::TooDeep { .. })));
}

/// Regression: a huge declared array length must not allocate before the elements exist.
#[test]
fn regression_huge_aggregate_length_does_not_allocate() {
    assert_eq!(check(b"*4294967295\r\n"), Ok(None));
    let bytes = Bytes::from_static(b"*4294967295\r\n");
    assert!(parse(&bytes).is_err());
}

#[test]
fn command_encoding() {
    let mut out = BytesMut::new();
    encode_command(&[&b"SET"[..], b"k", b""], &mut out);
    assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        "[a-zA-Z0-9 ]{0,20}".prop_map(|s| Frame::Simple(Bytes::from(s))),
        "[a-zA-Z0-9 ]{0,20}".prop_map(|s| Frame::Error(Bytes::from(s))),
        any::<i64>().prop_map(Frame::Integer),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|v| Frame::Bulk(Bytes::from(v))),
        Just(Frame::Null),
        any::<bool>().prop_map(Frame::Boolean),
        (-1e300f64..1e300).prop_map(Frame::Double),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Frame::Array),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
        ]
    })
}

proptest! {
    #[test]
    fn round_trip(frame in arb_frame()) {
        let mut out = BytesMut::new();
        encode_frame(&frame, &mut out);
        let len = out.len();
        let (back, n) = decode(&mut out, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(n, len);
        prop_assert_eq!(back, frame);
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut buf = BytesMut::from(&data[..]);
        let _ = decode(&mut buf, &Limits::default());
        let _ = parse(&Bytes::from(data));
    }

    #[test]
    fn split_anywhere_gives_same_frames(frame in arb_frame(), cut in 0usize..512) {
        let mut whole = BytesMut::new();
        encode_frame(&frame, &mut whole);
        let cut = cut.min(whole.len());
        if cut < whole.len() {
            prop_assert_eq!(check(&whole[..cut]), Ok(None));
        }
        prop_assert_eq!(check(&whole), Ok(Some(whole.len())));
    }
}
