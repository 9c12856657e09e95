//! One connection to one Redis server over tokio: TCP or TLS, login, request/reply, and access
//! to the raw read buffer for the replica protocol's non-RESP parts.

use super::{AuthFailure, Endpoint, Error, TlsOptions};
use crate::resp::{self, Frame, Limits};
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How to connect: TLS settings, timeouts and the client name shown in `CLIENT LIST`.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// TLS settings, used when the endpoint is `rediss://`.
    pub tls: TlsOptions,
    /// Limit for TCP connect plus TLS handshake plus login.
    pub connect_timeout: Duration,
    /// Limit for each reply of [`Connection::request`].
    pub reply_timeout: Duration,
    /// Name set with `HELLO … SETNAME` / `CLIENT SETNAME` (operators see it in `CLIENT LIST`).
    pub client_name: String,
    /// Codec limits for frames read on this connection.
    pub limits: Limits,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            tls: TlsOptions::default(),
            connect_timeout: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(30),
            client_name: "shake".into(),
            limits: Limits::default(),
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A logged-in connection.
pub struct Connection {
    stream: Box<dyn Stream>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    endpoint: Endpoint,
    options: ConnectOptions,
    hello: Option<Frame>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("endpoint", &self.endpoint.to_string())
            .finish()
    }
}

impl Connection {
    /// Connects, sets up TLS for `rediss://`, logs in (`HELLO 2 AUTH … SETNAME`, falling back to
    /// `AUTH` + `CLIENT SETNAME` on servers before 6.0) and selects the URL's database.
    pub async fn connect(
        endpoint: &Endpoint,
        options: &ConnectOptions,
    ) -> Result<Connection, Error> {
        let addr = endpoint.addr();
        let limit = options.connect_timeout;
        let fut = Self::connect_inner(endpoint, options);
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| Error::Timeout {
                addr,
                what: "connect and login".into(),
                secs: limit.as_secs_f64(),
            })?
    }

    async fn connect_inner(
        endpoint: &Endpoint,
        options: &ConnectOptions,
    ) -> Result<Connection, Error> {
        let addr = endpoint.addr();
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|cause| Error::Connect {
                addr: addr.clone(),
                cause,
            })?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = if endpoint.tls {
            if options.tls.insecure {
                tracing::warn!(endpoint = %addr, "TLS certificate verification is disabled (--*-tls-insecure)");
            }
            let config = options.tls.client_config(&addr)?;
            let name = TlsOptions::server_name(&endpoint.host, &addr)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| Error::Tls {
                    addr: addr.clone(),
                    why: e.to_string(),
                })?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let mut conn = Connection {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(16 * 1024),
            endpoint: endpoint.clone(),
            options: options.clone(),
            hello: None,
        };
        conn.login().await?;
        if endpoint.db != 0 {
            conn.request(&["SELECT", &endpoint.db.to_string()]).await?;
        }
        Ok(conn)
    }

    async fn login(&mut self) -> Result<(), Error> {
        let name = self.options.client_name.clone();
        let mut hello: Vec<&str> = vec!["HELLO", "2"];
        let user = self
            .endpoint
            .username
            .clone()
            .unwrap_or_else(|| "default".into());
        let password = self.endpoint.password.clone();
        if let Some(pw) = &password {
            hello.extend(["AUTH", user.as_str(), pw.expose()]);
        }
        hello.extend(["SETNAME", name.as_str()]);
        let reply = self.request_raw(&hello).await?;
        match &reply {
            Frame::Error(msg) => {
                let msg = String::from_utf8_lossy(msg).to_string();
                if let Some(kind) = classify_auth(&msg) {
                    return Err(self.auth_error(kind, &msg));
                }
                // Before 6.0 (no HELLO) or HELLO denied by ACL: the classic sequence.
                if let Some(pw) = &password {
                    let reply = match self.endpoint.username.clone() {
                        Some(u) => self.request_raw(&["AUTH", u.as_str(), pw.expose()]).await?,
                        None => self.request_raw(&["AUTH", pw.expose()]).await?,
                    };
                    if let Frame::Error(msg) = reply {
                        let msg = String::from_utf8_lossy(&msg).to_string();
                        let kind = classify_auth(&msg).unwrap_or(AuthFailure::WrongCredentials);
                        return Err(self.auth_error(kind, &msg));
                    }
                }
                let reply = self.request_raw(&["CLIENT", "SETNAME", &name]).await?;
                if let Frame::Error(msg) = reply {
                    let msg = String::from_utf8_lossy(&msg).to_string();
                    if let Some(kind) = classify_auth(&msg) {
                        return Err(self.auth_error(kind, &msg));
                    }
                    tracing::debug!(endpoint = %self.endpoint.addr(), "CLIENT SETNAME refused: {msg}");
                }
            }
            _ => self.hello = Some(reply),
        }
        Ok(())
    }

    fn auth_error(&self, kind: AuthFailure, msg: &str) -> Error {
        Error::Auth {
            addr: self.endpoint.addr(),
            kind,
            message: self.scrub(msg),
        }
    }

    fn scrub(&self, text: &str) -> String {
        match &self.endpoint.password {
            Some(pw) => pw.scrub(text),
            None => text.to_string(),
        }
    }

    /// The endpoint this connection reached (credentials included; print it with `Display`,
    /// which leaves them out).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The reply to `HELLO 2` (server, version, mode, role, modules), when the server has HELLO.
    pub fn hello(&self) -> Option<&Frame> {
        self.hello.as_ref()
    }

    /// Queues a command in the write buffer without sending it (for pipelining).
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        resp::encode_command(args, &mut self.wbuf);
    }

    /// Queues bytes already encoded as RESP commands (see [`crate::resp::bulk`]).
    pub fn queue_raw(&mut self, encoded: &[u8]) {
        self.wbuf.extend_from_slice(encoded);
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let res = self.stream.write_all(&self.wbuf).await;
        self.wbuf.clear();
        res.map_err(|e| self.io_error(e))?;
        self.stream.flush().await.map_err(|e| self.io_error(e))
    }

    /// Sends one command now.
    pub async fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<(), Error> {
        self.queue(args);
        self.flush().await
    }

    /// Writes raw bytes (e.g. a replica's bare newline), flushing immediately.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| self.io_error(e))?;
        self.stream.flush().await.map_err(|e| self.io_error(e))
    }

    /// Reads the next frame, waiting as long as it takes, and returns it with its wire length.
    pub async fn read_frame(&mut self) -> Result<(Frame, usize), Error> {
        loop {
            match resp::decode(&mut self.rbuf, &self.options.limits) {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(source) => {
                    return Err(Error::Protocol {
                        addr: self.endpoint.addr(),
                        cause: source,
                    });
                }
            }
            self.read_more().await?;
        }
    }

    /// The next frame if it is already in the read buffer (no system call, no timer): replies
    /// of a pipelined batch mostly arrive many at a time.
    pub fn buffered_frame(&mut self) -> Result<Option<(Frame, usize)>, Error> {
        resp::decode(&mut self.rbuf, &self.options.limits).map_err(|source| Error::Protocol {
            addr: self.endpoint.addr(),
            cause: source,
        })
    }

    /// Reads more bytes from the socket into the read buffer; an orderly close is an error
    /// (`UnexpectedEof`), since every caller was expecting more.
    pub async fn read_more(&mut self) -> Result<usize, Error> {
        if self.rbuf.capacity() - self.rbuf.len() < 16 * 1024 {
            self.rbuf.reserve(64 * 1024);
        }
        let n = self
            .stream
            .read_buf(&mut self.rbuf)
            .await
            .map_err(|e| self.io_error(e))?;
        if n == 0 {
            return Err(self.io_error(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            )));
        }
        Ok(n)
    }

    /// The bytes read but not yet consumed. The replica protocol consumes the RDB bulk and the
    /// keepalive newlines from here directly.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }

    /// Sends a command and returns its reply, error replies included (as `Frame::Error`).
    pub async fn request_raw<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame, Error> {
        self.send(args).await?;
        let limit = self.options.reply_timeout;
        let command = command_name(args);
        match tokio::time::timeout(limit, self.read_frame()).await {
            Ok(res) => res.map(|(f, _)| f),
            Err(_) => Err(Error::Timeout {
                addr: self.endpoint.addr(),
                what: command,
                secs: limit.as_secs_f64(),
            }),
        }
    }

    /// Sends a command and returns its reply; an error reply becomes [`Error::Server`] (or
    /// [`Error::Auth`] for `NOAUTH`/`NOPERM`/`WRONGPASS`), naming the command but not its
    /// arguments.
    pub async fn request<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame, Error> {
        let reply = self.request_raw(args).await?;
        match reply {
            Frame::Error(msg) => {
                let msg = String::from_utf8_lossy(&msg).to_string();
                if let Some(kind) = classify_auth(&msg) {
                    return Err(self.auth_error(kind, &msg));
                }
                Err(Error::Server {
                    addr: self.endpoint.addr(),
                    command: command_name(args),
                    message: self.scrub(&msg),
                })
            }
            other => Ok(other),
        }
    }

    /// `INFO [section]` parsed into `(field, value)` pairs.
    pub async fn info(&mut self, section: &str) -> Result<Vec<(String, String)>, Error> {
        let reply = self.request(&["INFO", section]).await?;
        let text = reply.as_str().ok_or_else(|| Error::Unexpected {
            addr: self.endpoint.addr(),
            command: "INFO".into(),
            detail: "expected a bulk string".into(),
        })?;
        Ok(parse_info(text))
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        Error::Io {
            addr: self.endpoint.addr(),
            cause: std::io::Error::new(e.kind(), self.scrub(&e.to_string())),
        }
    }
}

/// Parses `INFO` text (`field:value` lines, `# Section` headers) into pairs in order.
pub fn parse_info(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn command_name<A: AsRef<[u8]>>(args: &[A]) -> String {
    let mut name = args
        .first()
        .map(|a| String::from_utf8_lossy(a.as_ref()).to_uppercase())
        .unwrap_or_default();
    // Two-word commands (CONFIG GET, CLUSTER SHARDS, ACL DRYRUN) are named in full; AUTH's and
    // HELLO's arguments never are.
    if let Some(sub) = args.get(1)
        && matches!(
            name.as_str(),
            "CONFIG" | "CLUSTER" | "ACL" | "CLIENT" | "SENTINEL" | "FUNCTION" | "COMMAND"
        )
    {
        name.push(' ');
        name.push_str(&String::from_utf8_lossy(sub.as_ref()).to_uppercase());
    }
    name
}

fn classify_auth(msg: &str) -> Option<AuthFailure> {
    if msg.starts_with("NOAUTH") {
        Some(AuthFailure::PasswordRequired)
    } else if msg.starts_with("WRONGPASS")
        || msg.contains("invalid password")
        || msg.contains("invalid username-password")
    {
        Some(AuthFailure::WrongCredentials)
    } else if msg.starts_with("NOPERM") {
        Some(AuthFailure::NoPermission)
    } else {
        None
    }
}
