//! Property tests for the RDB engine: no byte sequence panics the reader or the decoders, and
//! random datasets written with the crate's encoders read back identically whatever the
//! chunking of the input.

use bytes::Bytes;
use proptest::prelude::*;
use shake::rdb::checksum::crc64;
use shake::rdb::decode::Value;
use shake::rdb::{
    Event, Flavor, ObjectType, Reader, ReaderOptions, decode, dump, length, listpack, string,
    ziplist,
};

/// Drives a reader over `bytes` cut into `step`-byte pieces; returns the events or the error.
fn read_all(
    bytes: &[u8],
    step: usize,
    opts: ReaderOptions,
) -> Result<Vec<Event>, shake::rdb::Error> {
    let mut r = Reader::new(opts);
    let mut out = Vec::new();
    for chunk in bytes.chunks(step.max(1)) {
        r.feed(chunk);
        while let Some(e) = r.next_event()? {
            out.push(e);
        }
    }
    r.finish()?;
    Ok(out)
}

/// Fully consumes a decoded value, returning its elements as strings (errors are fine).
fn drain(t: ObjectType, v: Bytes) -> Result<Vec<Vec<u8>>, shake::rdb::Malformed> {
    let mut out = Vec::new();
    match decode(t, v)? {
        Value::String(s) => out.push(s.to_vec()),
        Value::List(it) | Value::Set(it) => {
            for e in it {
                out.push(e?.to_vec());
            }
        }
        Value::Zset(it) => {
            for e in it {
                let (m, s) = e?;
                out.push(m.to_vec());
                out.push(s.to_string().into_bytes());
            }
        }
        Value::Hash(it) => {
            for f in it {
                let f = f?;
                out.push(f.field.to_vec());
                out.push(f.value.to_vec());
            }
        }
        Value::Stream(s) => {
            for e in s.entries() {
                out.push(e?.id.to_string().into_bytes());
            }
        }
        Value::Module(m) => out.push(m.raw.to_vec()),
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum Gen {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    Zset(Vec<(Vec<u8>, f64)>),
}

fn elem() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        any::<i64>().prop_map(|i| i.to_string().into_bytes()),
        (0..100i64).prop_map(|i| i.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 100..400),
    ]
}

fn gen_value() -> impl Strategy<Value = Gen> {
    prop_oneof![
        elem().prop_map(Gen::Str),
        prop::collection::vec(elem(), 1..20).prop_map(Gen::List),
        prop::collection::vec(elem(), 1..20).prop_map(Gen::Set),
        prop::collection::vec((elem(), elem()), 1..10).prop_map(Gen::Hash),
        prop::collection::vec(
            (
                elem(),
                prop_oneof![
                    any::<f64>().prop_filter("no NaN", |f| !f.is_nan()),
                    Just(f64::INFINITY)
                ]
            ),
            1..10
        )
        .prop_map(Gen::Zset),
    ]
}

/// Encodes one value with a randomly chosen encoding; returns the type and the value bytes.
fn encode(g: &Gen, variant: u8) -> (ObjectType, Vec<u8>) {
    let mut v = Vec::new();
    match g {
        Gen::Str(s) => {
            if variant.is_multiple_of(2) {
                string::encode(s, &mut v);
            } else {
                string::encode_lzf_literal(s, &mut v);
            }
            (ObjectType::String, v)
        }
        Gen::List(items) => match variant % 3 {
            0 => {
                length::encode(items.len() as u64, &mut v);
                items.iter().for_each(|e| string::encode(e, &mut v));
                (ObjectType::ListLinked, v)
            }
            1 => {
                length::encode(1, &mut v);
                string::encode_raw(&ziplist::encode(items.iter().map(Vec::as_slice)), &mut v);
                (ObjectType::ListQuicklist, v)
            }
            _ => {
                length::encode(items.len() as u64, &mut v);
                for e in items {
                    length::encode(2, &mut v);
                    string::encode_raw(&listpack::encode([e.as_slice()]), &mut v);
                }
                (ObjectType::ListQuicklist2, v)
            }
        },
        Gen::Set(items) => {
            if variant.is_multiple_of(2) {
                length::encode(items.len() as u64, &mut v);
                items.iter().for_each(|e| string::encode(e, &mut v));
                (ObjectType::Set, v)
            } else {
                string::encode_lzf_literal(
                    &listpack::encode(items.iter().map(Vec::as_slice)),
                    &mut v,
                );
                (ObjectType::SetListpack, v)
            }
        }
        Gen::Hash(pairs) => {
            let flat = pairs.iter().flat_map(|(f, x)| [f.as_slice(), x.as_slice()]);
            match variant % 3 {
                0 => {
                    length::encode(pairs.len() as u64, &mut v);
                    flat.for_each(|e| string::encode(e, &mut v));
                    (ObjectType::Hash, v)
                }
                1 => {
                    string::encode_raw(&ziplist::encode(flat), &mut v);
                    (ObjectType::HashZiplist, v)
                }
                _ => {
                    string::encode_raw(&listpack::encode(flat), &mut v);
                    (ObjectType::HashListpack, v)
                }
            }
        }
        Gen::Zset(pairs) => {
            if variant.is_multiple_of(2) {
                length::encode(pairs.len() as u64, &mut v);
                for (m, s) in pairs {
                    string::encode(m, &mut v);
                    v.extend_from_slice(&s.to_le_bytes());
                }
                (ObjectType::Zset2, v)
            } else {
                let scores: Vec<Vec<u8>> = pairs
                    .iter()
                    .map(|(_, s)| shake::rdb::rewrite::format_score(*s).into_bytes())
                    .collect();
                let flat = pairs
                    .iter()
                    .zip(&scores)
                    .flat_map(|((m, _), s)| [m.as_slice(), s.as_slice()]);
                string::encode_raw(&listpack::encode(flat), &mut v);
                (ObjectType::ZsetListpack, v)
            }
        }
    }
}

fn expected(g: &Gen) -> Vec<Vec<u8>> {
    match g {
        Gen::Str(s) => vec![s.clone()],
        Gen::List(i) | Gen::Set(i) => i.clone(),
        Gen::Hash(p) => p.iter().flat_map(|(f, v)| [f.clone(), v.clone()]).collect(),
        Gen::Zset(p) => p
            .iter()
            .flat_map(|(m, s)| [m.clone(), s.to_string().into_bytes()])
            .collect(),
    }
}

proptest! {
    // 128 cases by default; PROPTEST_CASES raises it for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    /// Regression guard for panics on arbitrary input after a valid header.
    #[test]
    fn random_bytes_never_panic_the_reader(body in prop::collection::vec(any::<u8>(), 0..600), step in 1usize..64) {
        for magic in [&b"REDIS0011"[..], b"REDIS0003", b"VALKEY080"] {
            let mut bytes = magic.to_vec();
            bytes.extend_from_slice(&body);
            let _ = read_all(&bytes, step, ReaderOptions { chunk_threshold: 64, ..Default::default() });
        }
        let _ = read_all(&body, step, ReaderOptions::default());
    }

    #[test]
    fn random_bytes_never_panic_the_decoders(body in prop::collection::vec(any::<u8>(), 0..400), t in 0u8..26) {
        for flavor in [Flavor::Redis, Flavor::Valkey] {
            if let Some(t) = ObjectType::from_byte(t, flavor) {
                let _ = drain(t, Bytes::from(body.clone()));
                let _ = shake::rdb::json::to_json(t, Bytes::from(body.clone()));
                let _ = shake::rdb::rewrite::rewrite(b"k", t, Bytes::from(body.clone()), None, &Default::default())
                    .map(|c| c.count());
            }
        }
        let _ = dump::parse(&body, Flavor::Redis);
    }

    #[test]
    fn random_datasets_round_trip(values in prop::collection::vec((gen_value(), any::<u8>(), any::<bool>()), 1..12),
                                  step in 1usize..200, threshold in 16usize..2000) {
        let mut rdb = b"REDIS0011".to_vec();
        rdb.extend_from_slice(&[0xFE, 0]);
        let mut encoded = Vec::new();
        for (i, (g, variant, expires)) in values.iter().enumerate() {
            let (t, v) = encode(g, *variant);
            if *expires {
                rdb.push(0xFC);
                rdb.extend_from_slice(&(1_700_000_000_000i64 + i as i64).to_le_bytes());
            }
            rdb.push(t.id());
            string::encode(format!("key:{i}").as_bytes(), &mut rdb);
            rdb.extend_from_slice(&v);
            encoded.push((t, v));
        }
        rdb.push(0xFF);
        let crc = crc64(&rdb);
        rdb.extend_from_slice(&crc.to_le_bytes());

        let events = read_all(&rdb, step, ReaderOptions { chunk_threshold: threshold, ..Default::default() }).unwrap();
        let mut keys = Vec::new();
        let mut big: Option<(shake::rdb::KeyMeta, Vec<u8>)> = None;
        for e in events {
            match e {
                Event::Key(k) => keys.push((k.meta, k.value.to_vec())),
                Event::BigKeyStart(m) => big = Some((m, Vec::new())),
                Event::BigKeyPiece(p) => big.as_mut().unwrap().1.extend_from_slice(&p),
                Event::BigKeyEnd => keys.push(big.take().unwrap()),
                _ => {}
            }
        }
        prop_assert_eq!(keys.len(), values.len());
        // the zero-copy API sees the same keys and exact bytes
        let mut r = Reader::new(ReaderOptions { chunk_threshold: threshold, ..Default::default() });
        let mut lent: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut big_lent: Option<(Vec<u8>, Vec<u8>)> = None;
        for chunk in rdb.chunks(step) {
            r.feed(chunk);
            while r.advance().unwrap() {
                match r.current().unwrap() {
                    shake::rdb::EventRef::Key(k) => lent.push((k.key.to_vec(), k.value.to_vec())),
                    shake::rdb::EventRef::Owned(Event::Key(k)) => lent.push((k.meta.key.to_vec(), k.value.to_vec())),
                    shake::rdb::EventRef::Owned(Event::BigKeyStart(m)) => big_lent = Some((m.key.to_vec(), Vec::new())),
                    shake::rdb::EventRef::Owned(Event::BigKeyPiece(p)) => big_lent.as_mut().unwrap().1.extend_from_slice(p),
                    shake::rdb::EventRef::Owned(Event::BigKeyEnd) => lent.push(big_lent.take().unwrap()),
                    _ => {}
                }
            }
        }
        r.finish().unwrap();
        let owned: Vec<(Vec<u8>, Vec<u8>)> = keys.iter().map(|(m, v)| (m.key.to_vec(), v.clone())).collect();
        prop_assert_eq!(lent, owned);
        for (i, ((meta, value), ((g, _, expires), (t, v)))) in keys.iter().zip(values.iter().zip(&encoded)).enumerate() {
            let name = format!("key:{i}");
            prop_assert_eq!(&meta.key[..], name.as_bytes());
            prop_assert_eq!(meta.object_type, *t);
            prop_assert_eq!(meta.expire_ms.is_some(), *expires);
            prop_assert_eq!(value, v, "exact value bytes");
            let got = drain(*t, Bytes::from(value.clone())).unwrap();
            prop_assert_eq!(got, expected(g));
            // and as a DUMP payload
            let payload = dump::build(t.id(), value, 11);
            let p = dump::parse(&payload, Flavor::Redis).unwrap();
            prop_assert_eq!(p.value, &value[..]);
        }
    }

    /// Valkey opcode 242 (inline RESP command): random commands come back argument for
    /// argument whatever the split, and flipped bytes in them never panic the reader.
    #[test]
    fn valkey_inline_commands_round_trip_and_survive_flips(
        argv in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6),
        step in 1usize..32,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let mut rdb = b"VALKEY081".to_vec();
        rdb.push(0xF2);
        rdb.extend_from_slice(format!("*{}\r\n", argv.len()).as_bytes());
        for a in &argv {
            rdb.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            rdb.extend_from_slice(a);
            rdb.extend_from_slice(b"\r\n");
        }
        rdb.push(0xFF);
        rdb.extend_from_slice(&[0; 8]);
        let opts = ReaderOptions { verify_checksum: false, ..Default::default() };
        let events = read_all(&rdb, step, opts.clone()).unwrap();
        let got: Vec<Vec<u8>> = events
            .iter()
            .find_map(|e| match e {
                Event::Update { argv, .. } => Some(argv.iter().map(|b| b.to_vec()).collect()),
                _ => None,
            })
            .unwrap();
        prop_assert_eq!(got, argv);
        let mut bad = rdb.clone();
        for (at, byte) in flips {
            let i = 9 + at.index(bad.len() - 9);
            bad[i] = byte;
        }
        let _ = read_all(&bad, step, opts);
    }

    #[test]
    fn flipped_bytes_in_valid_files_never_panic(values in prop::collection::vec((gen_value(), any::<u8>(), any::<bool>()), 1..5),
                                                 flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut rdb = b"REDIS0011".to_vec();
        for (i, (g, variant, _)) in values.iter().enumerate() {
            let (t, v) = encode(g, *variant);
            rdb.push(t.id());
            string::encode(format!("k{i}").as_bytes(), &mut rdb);
            rdb.extend_from_slice(&v);
        }
        rdb.push(0xFF);
        rdb.extend_from_slice(&[0; 8]);
        for (at, byte) in flips {
            let i = at.index(rdb.len());
            rdb[i] = byte;
        }
        let opts = ReaderOptions { verify_checksum: false, ..Default::default() };
        if let Ok(events) = read_all(&rdb, 7, opts) {
            for e in events {
                if let Event::Key(k) = e {
                    let _ = drain(k.meta.object_type, k.value);
                }
            }
        }
    }
}
