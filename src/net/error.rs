//! Network errors. Each names the endpoint as `host:port` (never with credentials) and says
//! what to do where that is clear.

use crate::resp;

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// `NOAUTH`: the server wants a password and none was given.
    PasswordRequired,
    /// `WRONGPASS` / `invalid password`: user or password is wrong (or the user is disabled).
    WrongCredentials,
    /// `NOPERM`: logged in, but this user may not run the command.
    NoPermission,
}

/// A failure talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint URL could not be understood (the URL shown has its password masked).
    #[error("invalid endpoint {url}: {why}")]
    Url {
        /// The URL with the password replaced by `***`.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// TCP connection failed (refused, unreachable, DNS).
    #[error("cannot connect to {addr}: {cause}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The OS error.
        cause: std::io::Error,
    },
    /// TLS set-up or handshake failed.
    #[error("TLS with {addr} failed: {why}")]
    Tls {
        /// `host:port`.
        addr: String,
        /// What went wrong (certificate, handshake, files).
        why: String,
    },
    /// A connect, handshake or reply took longer than the configured timeout.
    #[error("{addr} did not answer {what} within {secs:.1}s")]
    Timeout {
        /// `host:port`.
        addr: String,
        /// What we were waiting for.
        what: String,
        /// The timeout.
        secs: f64,
    },
    /// Authentication was refused.
    #[error("{addr}: {}: {message}", auth_hint(.kind))]
    Auth {
        /// `host:port`.
        addr: String,
        /// The kind of refusal.
        kind: AuthFailure,
        /// The server's message, scrubbed of the password.
        message: String,
    },
    /// The server answered a command with an error reply.
    #[error("{addr}: {command} failed: {message}")]
    Server {
        /// `host:port`.
        addr: String,
        /// The command name (never its arguments, which may hold secrets or data).
        command: String,
        /// The server's error message, scrubbed of the password.
        message: String,
    },
    /// The server sent bytes that are not RESP.
    #[error("{addr} sent invalid RESP: {cause}")]
    Protocol {
        /// `host:port`.
        addr: String,
        /// The codec's error, with the offset in the frame.
        cause: resp::Error,
    },
    /// The server answered with a reply of a shape we did not expect.
    #[error("{addr}: unexpected reply to {command}: {detail}")]
    Unexpected {
        /// `host:port`.
        addr: String,
        /// The command name.
        command: String,
        /// What was expected and what came.
        detail: String,
    },
    /// The connection was closed or broke while reading or writing.
    #[error("connection to {addr} lost: {cause}")]
    Io {
        /// `host:port`.
        addr: String,
        /// The OS error (`UnexpectedEof` when the server closed it).
        cause: std::io::Error,
    },
}

fn auth_hint(kind: &AuthFailure) -> &'static str {
    match kind {
        AuthFailure::PasswordRequired => {
            "the server requires a password (give it in the URL, in SHAKE_SOURCE_PASSWORD / SHAKE_TARGET_PASSWORD, or with --source-password-file / --target-password-file)"
        }
        AuthFailure::WrongCredentials => "authentication failed: wrong user name or password",
        AuthFailure::NoPermission => "this ACL user lacks a permission",
    }
}

impl Error {
    /// The authentication failure kind, if this is one.
    pub fn auth_failure(&self) -> Option<AuthFailure> {
        match self {
            Error::Auth { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// True when retrying later may help (network trouble, timeouts), false for configuration
    /// problems (credentials, TLS, bad URL) that a retry cannot fix.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. } | Error::Timeout { .. } | Error::Io { .. }
        )
    }
}
