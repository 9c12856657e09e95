//! RESP decoding throughput: shake's codec beside the `redis-protocol` crate on the same bytes.
//!
//! The input is a replication-stream-like buffer of `SET key:<i> <value>` commands. Each decoder
//! consumes the whole buffer frame by frame from a `BytesMut`, as a connection would. Best of 5
//! runs. Run with `cargo run --release --example resp_bench [commands] [value-bytes]`.

use bytes::BytesMut;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let value = vec![b'v'; size];
    let mut input = BytesMut::new();
    for i in 0..n {
        shake::resp::encode_command(
            &[&b"SET"[..], format!("key:{i}").as_bytes(), &value],
            &mut input,
        );
    }
    let input = input.freeze();
    let mb = input.len() as f64 / 1e6;
    println!("{n} commands, {size}-byte values, {mb:.1} MB of RESP");

    let best = |name: &str, f: &dyn Fn() -> usize| {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let frames = f();
            assert_eq!(frames, n, "{name} decoded {frames} frames");
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{name:>16}: {:8.1} MB/s {:10.0} frames/s",
            mb / best,
            n as f64 / best
        );
        best
    };
    let ours = best("shake::resp", &|| {
        let mut buf = BytesMut::from(&input[..]);
        let limits = shake::resp::Limits::default();
        let mut frames = 0;
        while let Some((_f, _len)) = shake::resp::decode(&mut buf, &limits).unwrap() {
            frames += 1;
        }
        frames
    });
    let peer = best("redis-protocol", &|| {
        let mut buf = BytesMut::from(&input[..]);
        let mut frames = 0;
        while let Some((_f, _len, _b)) =
            redis_protocol::resp2::decode::decode_bytes_mut(&mut buf).unwrap()
        {
            frames += 1;
        }
        frames
    });
    println!(
        "ratio (redis-protocol time / shake time): {:.2}",
        peer / ours
    );
}
