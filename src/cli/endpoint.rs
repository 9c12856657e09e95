//! The endpoint flags shared by every subcommand that talks to a server: the URL, where the
//! password comes from, and TLS.

use crate::net::{ConnectOptions, Endpoint, Secret, TlsOptions};
use anyhow::{Context, bail};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// `--source` and its companions.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Source URL, `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS. Prefer
    /// SHAKE_SOURCE_PASSWORD or --source-password-file to a password in the URL (visible in ps).
    #[arg(long, value_name = "URL")]
    pub source: String,
    /// Read the source password from this file (first line). The environment variable
    /// SHAKE_SOURCE_PASSWORD is used when neither the URL nor this flag gives one.
    #[arg(long, value_name = "FILE")]
    pub source_password_file: Option<PathBuf>,
    /// PEM file of CA certificates for the source's TLS certificate.
    #[arg(long, value_name = "FILE")]
    pub source_tls_ca: Option<PathBuf>,
    /// PEM client certificate for the source (servers with tls-auth-clients).
    #[arg(long, value_name = "FILE", requires = "source_tls_key")]
    pub source_tls_cert: Option<PathBuf>,
    /// PEM private key of the source client certificate.
    #[arg(long, value_name = "FILE", requires = "source_tls_cert")]
    pub source_tls_key: Option<PathBuf>,
    /// Do not verify the source's TLS certificate (explicit opt-out; logged as a warning).
    #[arg(long)]
    pub source_tls_insecure: bool,
    /// Time allowed to connect, finish TLS and log in.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::units::parse_duration)]
    pub connect_timeout: Duration,
}

impl SourceArgs {
    /// The endpoint (with its password resolved) and connection options.
    pub fn resolve(&self) -> anyhow::Result<(Endpoint, ConnectOptions)> {
        let tls = TlsOptions {
            ca_file: self.source_tls_ca.clone(),
            cert_file: self.source_tls_cert.clone(),
            key_file: self.source_tls_key.clone(),
            insecure: self.source_tls_insecure,
        };
        let endpoint = resolve_endpoint(
            &self.source,
            self.source_password_file.as_ref(),
            std::env::var("SHAKE_SOURCE_PASSWORD").ok().as_deref(),
            "source",
        )?;
        if !endpoint.tls && (tls.ca_file.is_some() || tls.cert_file.is_some() || tls.insecure) {
            bail!("--source-tls-* flags given but the source URL is not rediss://");
        }
        let options = ConnectOptions {
            tls,
            connect_timeout: self.connect_timeout,
            ..ConnectOptions::default()
        };
        Ok((endpoint, options))
    }
}

/// Parses `url` and fills in the password from, in order: the URL itself, the password file,
/// the environment. A URL password together with a password file is refused as ambiguous.
pub fn resolve_endpoint(
    url: &str,
    password_file: Option<&PathBuf>,
    password_env: Option<&str>,
    side: &str,
) -> anyhow::Result<Endpoint> {
    let mut endpoint = Endpoint::parse(url)?;
    if let Some(path) = password_file {
        if endpoint.password.is_some() {
            bail!("the {side} URL has a password and --{side}-password-file is given too: use one");
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --{side}-password-file {}", path.display()))?;
        let pw = text.lines().next().unwrap_or("").to_string();
        endpoint.password = Some(Secret::new(pw));
    } else if endpoint.password.is_none()
        && let Some(pw) = password_env.filter(|p| !p.is_empty())
    {
        endpoint.password = Some(Secret::new(pw));
    }
    Ok(endpoint)
}

/// `--target` and its companions.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Target URL, `redis://[user[:password]@]host[:port]`, or `rediss://` for TLS; any node of a
    /// cluster. Prefer SHAKE_TARGET_PASSWORD or --target-password-file to a password in the URL.
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// Read the target password from this file (first line). The environment variable
    /// SHAKE_TARGET_PASSWORD is used when neither the URL nor this flag gives one.
    #[arg(long, value_name = "FILE")]
    pub target_password_file: Option<PathBuf>,
    /// PEM file of CA certificates for the target's TLS certificate.
    #[arg(long, value_name = "FILE")]
    pub target_tls_ca: Option<PathBuf>,
    /// PEM client certificate for the target.
    #[arg(long, value_name = "FILE", requires = "target_tls_key")]
    pub target_tls_cert: Option<PathBuf>,
    /// PEM private key of the target client certificate.
    #[arg(long, value_name = "FILE", requires = "target_tls_cert")]
    pub target_tls_key: Option<PathBuf>,
    /// Do not verify the target's TLS certificate (explicit opt-out; logged as a warning).
    #[arg(long)]
    pub target_tls_insecure: bool,
    /// Time allowed to connect, finish TLS and log in.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::units::parse_duration)]
    pub target_connect_timeout: Duration,
}

impl TargetArgs {
    /// The endpoint (with its password resolved) and connection options.
    pub fn resolve(&self) -> anyhow::Result<(Endpoint, ConnectOptions)> {
        let tls = TlsOptions {
            ca_file: self.target_tls_ca.clone(),
            cert_file: self.target_tls_cert.clone(),
            key_file: self.target_tls_key.clone(),
            insecure: self.target_tls_insecure,
        };
        let endpoint = resolve_endpoint(
            &self.target,
            self.target_password_file.as_ref(),
            std::env::var("SHAKE_TARGET_PASSWORD").ok().as_deref(),
            "target",
        )?;
        if !endpoint.tls && (tls.ca_file.is_some() || tls.cert_file.is_some() || tls.insecure) {
            bail!("--target-tls-* flags given but the target URL is not rediss://");
        }
        let options = ConnectOptions {
            tls,
            connect_timeout: self.target_connect_timeout,
            client_name: "shake-replay".into(),
            ..ConnectOptions::default()
        };
        Ok((endpoint, options))
    }
}
