//! A small blocking client for tests, over `shake::resp`: tests set data up and read it back
//! without going through the code under test's async connection.

use shake::resp::{self, Frame, Limits};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A blocking RESP2 connection.
pub struct Client {
    stream: TcpStream,
    buf: bytes::BytesMut,
}

impl Client {
    /// Connects to 127.0.0.1:`port`.
    pub fn connect(port: u16) -> std::io::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: bytes::BytesMut::new(),
        })
    }

    /// Sends a command and returns the reply (error replies included).
    pub fn try_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> std::io::Result<Frame> {
        let mut out = bytes::BytesMut::new();
        resp::encode_command(args, &mut out);
        self.stream.write_all(&out)?;
        self.read()
    }

    /// Reads one reply.
    pub fn read(&mut self) -> std::io::Result<Frame> {
        loop {
            match resp::decode(&mut self.buf, &Limits::default()) {
                Ok(Some((f, _))) => return Ok(f),
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a command; panics on I/O errors and on error replies.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Frame {
        let f = self.try_cmd(args).expect("redis command failed (I/O)");
        if let Frame::Error(e) = &f {
            let name = String::from_utf8_lossy(args[0].as_ref()).to_string();
            panic!("{name} failed: {}", String::from_utf8_lossy(e));
        }
        f
    }

    /// Sends a command whose reply is text (`INFO`, `CLUSTER NODES`) and returns it.
    pub fn text<A: AsRef<[u8]>>(&mut self, args: &[A]) -> String {
        self.cmd(args).as_str().unwrap_or_default().to_string()
    }

    /// `INFO section` field lookup.
    pub fn info_field(&mut self, section: &str, name: &str) -> Option<String> {
        let text = self.text(&["INFO", section]);
        shake::net::parse_info(&text)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}
