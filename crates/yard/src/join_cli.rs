//! Joining hosts: `yard join-token create|list|revoke` (an admin, through the center) and
//! `yard join TOKEN --as SUBJECT` (the new host), and the TLS a daemon takes when it is given
//! none: the identity its home joined with, or one its home's authority issues it.
//!
//! A joined home holds `tls/host.crt`, `tls/host.key` (0600), `tls/ca.crt`, `tls/joined.json`
//! (subject, center, serial, expiry) and the system's `mesh.key` (0600).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use yard_tls::join::JoinToken;
use yard_tls::Subject;

use crate::ops_cli::{dur, CenterArg};
use crate::trust_cli::HomeArg;
use crate::TlsArgs;

#[derive(Args)]
pub(crate) struct JoinArgs {
    /// The token `yard join-token create` printed.
    token: String,
    /// Whom this host joins as: manager:CLUSTER, agent:CLUSTER/AGENT or node:NAME.
    #[arg(long = "as", value_name = "SUBJECT")]
    subject: String,
    /// A name or address this host serves on (repeatable) [default: its host name and the
    /// address it reaches the center from].
    #[arg(long = "host")]
    hosts: Vec<String>,
    #[command(flatten)]
    home: HomeArg,
}

#[derive(Subcommand)]
pub(crate) enum JoinTokenCommand {
    /// A token for new hosts, printed once: it carries a secret, the authority's fingerprint
    /// and the center's address.
    Create {
        #[command(flatten)]
        center: CenterArg,
        /// Whom it lets a host join as: manager:C, agent:C/A, agent:C/*, node:N or node:*.
        allows: String,
        /// How many hosts may join with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it is good for (at most 7d).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// The center's address as the new hosts reach it [default: the address used here].
        #[arg(long, value_name = "HOST:PORT")]
        center_addr: Option<String>,
    },
    /// The tokens, their uses left and who joined with them.
    List {
        #[command(flatten)]
        center: CenterArg,
        #[arg(long)]
        json: bool,
    },
    /// Remove a token: nobody joins with it any more.
    Revoke {
        #[command(flatten)]
        center: CenterArg,
        id: String,
    },
}

/// What a joined home remembers of its join.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JoinedFile {
    pub subject: Subject,
    pub center: String,
    pub serial: String,
    pub not_after: u64,
}

fn tls_dir(home: &Path) -> PathBuf {
    home.join("tls")
}

/// Where a joined home keeps its identity, as a daemon's TLS settings.
pub(crate) fn joined_files(home: &Path) -> TlsArgs {
    let dir = tls_dir(home);
    TlsArgs {
        tls_cert: Some(dir.join("host.crt")),
        tls_key: Some(dir.join("host.key")),
        tls_ca: Some(dir.join("ca.crt")),
        tls_plain: false,
    }
}

/// The identity a home joined with, if it did.
pub(crate) fn joined(home: &Path) -> anyhow::Result<Option<JoinedFile>> {
    let path = tls_dir(home).join("joined.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("{}: {e}", path.display())),
    }
}

/// Joins with `token` as `subject` and keeps what the center gave in `home`.
pub(crate) async fn join_home(
    home: &Path,
    token: &str,
    subject: &Subject,
    hosts: &[String],
) -> anyhow::Result<JoinedFile> {
    let token: JoinToken = token.parse()?;
    let hosts = if hosts.is_empty() {
        default_hosts(&token.center).await
    } else {
        hosts.to_vec()
    };
    let (id, _) = yard_client::join::join(&token, subject, &hosts).await?;
    let home_handle = yard_auth::Home::open_or_init(home)?;
    let dir = tls_dir(&home_handle.dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let private = |name: &str, text: &str| {
        let p = dir.join(name);
        yard_auth::tokens::write_private(&p, text.as_bytes())
            .with_context(|| format!("cannot write {}", p.display()))
    };
    private("host.key", &id.key_pem)?;
    std::fs::write(dir.join("host.crt"), &id.joined.cert_pem)?;
    std::fs::write(dir.join("ca.crt"), &id.joined.ca_pem)?;
    // The system's mesh key replaces the one this home made for itself.
    yard_auth::tokens::write_private(
        &home_handle.dir.join("mesh.key"),
        id.joined.mesh_key.as_bytes(),
    )
    .context("cannot write the mesh key")?;
    let file = JoinedFile {
        subject: id.joined.subject.clone(),
        center: token.center.clone(),
        serial: id.joined.serial.clone(),
        not_after: id.joined.not_after,
    };
    std::fs::write(
        dir.join("joined.json"),
        serde_json::to_string_pretty(&file)? + "\n",
    )?;
    Ok(file)
}

/// The names a joining host serves on by default: its host name, and the address it reaches
/// the center from (what the others reach it on, in a flat network).
async fn default_hosts(center: &str) -> Vec<String> {
    let mut hosts = vec![];
    if let Ok(s) = tokio::net::TcpStream::connect(center).await {
        if let Ok(a) = s.local_addr() {
            hosts.push(a.ip().to_string());
        }
    }
    if let Some(h) = crate::ops_cli::host_name() {
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    hosts
}

pub(crate) async fn join(a: JoinArgs) -> anyhow::Result<()> {
    let subject: Subject = a.subject.parse().map_err(|e| anyhow!("--as: {e}"))?;
    let home = yard_auth::home::resolve(a.home.dir());
    let file = join_home(&home, &a.token, &subject, &a.hosts).await?;
    println!(
        "joined as {} (certificate {}, valid until {} unix seconds; renewed by the daemon)",
        file.subject, file.serial, file.not_after
    );
    println!("identity in {} (key 0600)", tls_dir(&home).display());
    println!(
        "start the daemon with this home (YARD_HOME={}); it takes this identity, e.g. `yard agent --manager MANAGER:9901 --name NAME`",
        home.display()
    );
    Ok(())
}

pub(crate) async fn join_token(c: JoinTokenCommand) -> anyhow::Result<()> {
    match c {
        JoinTokenCommand::Create {
            center,
            allows,
            uses,
            ttl,
            center_addr,
        } => {
            let ttl = dur("ttl", &ttl)?;
            let made =
                center
                    .client()
                    .join_token(&yard_ops::joins::TokenRequest {
                        allows,
                        uses: Some(uses),
                        ttl_s: Some(ttl.as_secs().max(1)),
                        center: Some(center_addr.unwrap_or_else(|| {
                            yard_client::trust::target(&center.center, true).addr
                        })),
                    })
                    .await
                    .map_err(crate::ops_cli::hint)?;
            println!("{}", made.token);
            eprintln!(
                "(token {} allows {} for {} join(s), until {} unix seconds; shown once)",
                made.record.id, made.record.allows, made.record.uses_left, made.record.expires
            );
        }
        JoinTokenCommand::List { center, json } => {
            let list = center
                .client()
                .join_tokens()
                .await
                .map_err(crate::ops_cli::hint)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!(
                "{:<10} {:<20} {:>5} {:<12} JOINED",
                "ID", "ALLOWS", "USES", "EXPIRES"
            );
            for t in list {
                println!(
                    "{:<10} {:<20} {:>5} {:<12} {}",
                    t.id,
                    t.allows,
                    t.uses_left,
                    t.expires,
                    t.joined.join(",")
                );
            }
        }
        JoinTokenCommand::Revoke { center, id } => {
            center
                .client()
                .revoke_join_token(&id)
                .await
                .map_err(crate::ops_cli::hint)?;
            println!("join token {id} revoked");
        }
    }
    Ok(())
}

/// The TLS of a daemon given none, and how it is renewed: the identity its home joined with
/// (which must be this daemon's subject; the center renews it), or a certificate of `lifetime`
/// the home's authority issues it now for the addresses it listens on (and renews). `None`: the
/// home has neither, and the daemon runs plain.
pub(crate) fn daemon_tls(
    home: &Path,
    subject: &Subject,
    listen: SocketAddr,
    lifetime: std::time::Duration,
) -> anyhow::Result<Option<(TlsArgs, crate::keeper::Renewal)>> {
    if let Some(j) = joined(home)? {
        if &j.subject != subject {
            bail!(
                "this home ({}) joined as {}, not {subject}: give this daemon a home of its own (YARD_HOME)",
                home.display(),
                j.subject
            );
        }
        return Ok(Some((
            joined_files(home),
            crate::keeper::Renewal::Center(j.center),
        )));
    }
    let ca_dir = home.join("ca");
    if !ca_dir.join("ca.key").exists() {
        return Ok(None);
    }
    let ca = yard_tls::Authority::open(&ca_dir)?;
    let mut hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
        hosts.insert(0, listen.ip().to_string());
    }
    if let Some(h) = crate::ops_cli::host_name() {
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    let tls = crate::ops_cli::issue_for(&ca, subject, hosts, lifetime, &home.join("certs"), false)?;
    Ok(Some((tls, crate::keeper::Renewal::Authority(ca_dir))))
}
