//! Encoding commands and frames to RESP bytes.

use super::Frame;
use bytes::{BufMut, BytesMut};

/// Appends a command (`*N` array of bulk strings) to `out` — how every client request and every
/// replicated command travels.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut BytesMut) {
    let payload: usize = args.iter().map(|a| a.as_ref().len() + 16).sum();
    out.reserve(payload + 16);
    header(out, b'*', args.len() as i64);
    for arg in args {
        let arg = arg.as_ref();
        header(out, b'$', arg.len() as i64);
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

/// Appends any frame to `out`. Round-trips with [`super::parse`] for RESP2 frames and for the
/// RESP3 types that have a single encoding.
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) {
    match frame {
        Frame::Simple(s) => line(out, b'+', s),
        Frame::Error(s) => line(out, b'-', s),
        Frame::BigNumber(s) => line(out, b'(', s),
        Frame::Integer(i) => header(out, b':', *i),
        Frame::Bulk(b) => {
            header(out, b'$', b.len() as i64);
            out.put_slice(b);
            out.put_slice(b"\r\n");
        }
        Frame::Null => out.put_slice(b"$-1\r\n"),
        Frame::Array(items) => {
            header(out, b'*', items.len() as i64);
            for item in items {
                encode_frame(item, out);
            }
        }
        Frame::Map(pairs) => {
            header(out, b'%', pairs.len() as i64);
            for (k, v) in pairs {
                encode_frame(k, out);
                encode_frame(v, out);
            }
        }
        Frame::Double(d) => {
            let text = if d.is_nan() {
                "nan".to_string()
            } else if d.is_infinite() {
                if *d > 0.0 { "inf" } else { "-inf" }.to_string()
            } else {
                format!("{d:?}")
            };
            line(out, b',', text.as_bytes());
        }
        Frame::Boolean(b) => line(out, b'#', if *b { b"t" } else { b"f" }),
    }
}

/// Appends the `*N` header of a command of `n` arguments, for a command written piece by piece
/// ([`bulk`], [`bulk_header`]) when an argument is assembled from parts.
pub fn array_header(out: &mut BytesMut, n: usize) {
    header(out, b'*', n as i64);
}

/// Appends one bulk-string argument.
pub fn bulk(out: &mut BytesMut, arg: &[u8]) {
    header(out, b'$', arg.len() as i64);
    out.put_slice(arg);
    out.put_slice(b"\r\n");
}

/// Appends the `$len` header of a bulk string whose `len` bytes and final `\r\n` the caller
/// writes itself.
pub fn bulk_header(out: &mut BytesMut, len: usize) {
    header(out, b'$', len as i64);
}

/// Wire length of the header [`array_header`] writes for `n` arguments.
pub fn array_header_len(n: usize) -> usize {
    header_len(n)
}

/// Wire length of the header [`bulk_header`] writes for `len` bytes.
pub fn bulk_header_len(len: usize) -> usize {
    header_len(len)
}

/// Wire length of one bulk-string argument of `len` bytes, as [`bulk`] writes it.
pub fn bulk_len(len: usize) -> usize {
    header_len(len) + len + 2
}

/// Wire length of `header(_, _, n)`: kind byte, decimal digits, `\r\n`.
fn header_len(n: usize) -> usize {
    1 + n.checked_ilog10().map_or(1, |d| d as usize + 1) + 2
}

fn header(out: &mut BytesMut, kind: u8, n: i64) {
    out.put_u8(kind);
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
    out.put_slice(b"\r\n");
}

fn line(out: &mut BytesMut, kind: u8, text: &[u8]) {
    out.put_u8(kind);
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_match_what_is_written() {
        for n in [0, 1, 9, 10, 99, 100, 12345, 1 << 20] {
            let mut out = BytesMut::new();
            array_header(&mut out, n);
            assert_eq!(out.len(), array_header_len(n), "array of {n}");
            let mut out = BytesMut::new();
            bulk(&mut out, &vec![b'x'; n]);
            assert_eq!(out.len(), bulk_len(n), "bulk of {n}");
            let mut out = BytesMut::new();
            bulk_header(&mut out, n);
            assert_eq!(out.len(), bulk_header_len(n), "bulk header of {n}");
        }
    }
}
