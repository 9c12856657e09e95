//! Endpoint URLs (`redis://[user[:password]@]host[:port][/db]`, `rediss://` for TLS) and the
//! [`Secret`] type that keeps passwords out of every printed string.

use super::Error;
use std::fmt;

/// A password. Its `Debug` and `Display` print `***`: a `Secret` can sit in any struct that gets
/// logged or printed without leaking. Only [`Secret::expose`] gives the bytes, and only the
/// `AUTH`/`HELLO` code path calls it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The password itself, for the authentication command only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces every occurrence of the password in `text` with `***` — applied to server
    /// messages and I/O errors before they are shown, in case a server or proxy echoes it.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "***")
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a Redis server is and how to log in to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (default 6379).
    pub port: u16,
    /// `rediss://`: connect with TLS.
    pub tls: bool,
    /// ACL user name; `None` logs in as `default`.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<Secret>,
    /// Database selected after connecting (the URL's `/db` path).
    pub db: u32,
}

impl Endpoint {
    /// Parses an endpoint URL. A bare `host:port` is accepted as `redis://host:port`.
    ///
    /// The error message repeats the URL with any password replaced by `***`.
    pub fn parse(text: &str) -> Result<Endpoint, Error> {
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("redis://{text}")
        };
        let shown = redact_url(&with_scheme);
        let bad = |why: String| Error::Url {
            url: shown.clone(),
            why,
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| bad(e.to_string()))?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(bad(format!(
                    "scheme {other:?} is not redis:// or rediss://"
                )));
            }
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(h) => h.to_string(),
            None => return Err(bad("no host".into())),
        };
        let username = match url.username() {
            "" => None,
            u => Some(percent_decode(u)),
        };
        let password = url.password().map(|p| Secret::new(percent_decode(p)));
        let db = match url.path().trim_matches('/') {
            "" => 0,
            p => p
                .parse()
                .map_err(|_| bad(format!("database {p:?} is not a number")))?,
        };
        Ok(Endpoint {
            host,
            port: url.port().unwrap_or(6379),
            tls,
            username,
            password,
            db,
        })
    }

    /// A plain endpoint at `host:port` with no credentials.
    pub fn new(host: impl Into<String>, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
            tls: false,
            username: None,
            password: None,
            db: 0,
        }
    }

    /// The same credentials and TLS setting at another address — how cluster nodes and
    /// sentinel-resolved masters are reached.
    pub fn with_addr(&self, host: impl Into<String>, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
            db: 0,
            ..self.clone()
        }
    }

    /// `host:port`, with IPv6 hosts bracketed: the form used in messages and topology output.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Prints the URL without the password: `redis://user@host:port/db`.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://")?;
        if let Some(u) = &self.username {
            write!(f, "{u}@")?;
        }
        write!(f, "{}", self.addr())?;
        if self.db != 0 {
            write!(f, "/{}", self.db)?;
        }
        Ok(())
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Replaces the password part of a URL-looking string with `***`, without parsing it (used for
/// messages about URLs that do not parse).
pub(crate) fn redact_url(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_string();
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{}{}{}", &text[..scheme_end + 3], masked, &rest[at..])
        }
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_url() {
        let e = Endpoint::parse("rediss://alice:s%40cret@127.0.0.1:7000/3").unwrap();
        assert_eq!(e.host, "127.0.0.1");
        assert_eq!(e.port, 7000);
        assert!(e.tls);
        assert_eq!(e.username.as_deref(), Some("alice"));
        assert_eq!(e.password.as_ref().unwrap().expose(), "s@cret");
        assert_eq!(e.db, 3);
        assert_eq!(e.to_string(), "rediss://alice@127.0.0.1:7000/3");
        assert!(!format!("{e:?}").contains("cret"));
    }

    #[test]
    fn bare_and_ipv6() {
        let e = Endpoint::parse("localhost").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.tls), ("localhost", 6379, false));
        let e = Endpoint::parse("redis://[::1]:6380").unwrap();
        assert_eq!(e.addr(), "[::1]:6380");
        let e = Endpoint::parse("redis://:pw@h").unwrap();
        assert_eq!(e.username, None);
        assert_eq!(e.password.unwrap().expose(), "pw");
    }

    #[test]
    fn errors_never_show_the_password() {
        for bad in [
            "http://u:topsecret@h",
            "redis://u:topsecret@h/notanumber",
            "redis://u:topsecret@h:99999",
        ] {
            let msg = Endpoint::parse(bad).unwrap_err().to_string();
            assert!(!msg.contains("topsecret"), "{msg}");
            assert!(msg.contains("***"), "{msg}");
        }
    }

    #[test]
    fn scrub() {
        let s = Secret::new("pw123");
        assert_eq!(s.scrub("bad pw123 here"), "bad *** here");
    }
}
