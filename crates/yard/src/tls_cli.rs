//! `yard ca init|show|rotate` and `yard cert issue|list|revoke`: the cluster's certificate
//! authority, kept in the credentials home (`HOME/ca`), and the certificates it issues
//! (docs/SECURITY.md, TLS). A revocation writes the authority's new list, and a rotation its
//! new root; the daemons on its host read them from there within a second, and the center
//! publishes them to every other daemon on the fabric.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{anyhow, bail};
use clap::Subcommand;
use yard_tls::ca::{write_identity, Authority, Request, Subject, CERT_LIFETIME};

use crate::ops_cli::dur;
use crate::trust_cli::HomeArg;

#[derive(Subcommand)]
pub(crate) enum CaCommand {
    /// Make the authority (its key is written 0600 and never leaves the home).
    Init {
        #[command(flatten)]
        home: HomeArg,
    },
    /// Its name, fingerprint and where it is; --pem prints what clients trust (the root, and
    /// during a rotation the old root and the cross certificate).
    Show {
        #[command(flatten)]
        home: HomeArg,
        #[arg(long)]
        pem: bool,
    },
    /// Replace the root with a new one, without a pause: the daemons trust both until the old
    /// root retires and renew their certificates under the new one within seconds.
    Rotate {
        #[command(flatten)]
        home: HomeArg,
        /// How long the old root stays trusted, at least 10s [default: until the last
        /// certificate it issued expires, at least 5 minutes].
        #[arg(long, conflicts_with = "finish")]
        overlap: Option<String>,
        /// Retire the old root now (certificates it issued are refused from then on).
        #[arg(long)]
        finish: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum CertCommand {
    /// Issue a certificate: center, manager:CLUSTER, agent:CLUSTER/AGENT, node:NAME or
    /// operator:NAME. Writes NAME.crt, NAME.key (0600) and ca.crt.
    Issue {
        #[command(flatten)]
        home: HomeArg,
        subject: String,
        /// A host name or address the holder serves on (repeatable; needed by all but operators).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// How long it is valid, e.g. 12h or 30d (at most 90d) [default: 24h].
        #[arg(long)]
        ttl: Option<String>,
        /// The directory to write to [default: HOME/certs].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The certificates issued, with their validity.
    List {
        #[command(flatten)]
        home: HomeArg,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a certificate by its serial, or every valid one of a subject (agent:web/a1):
    /// every daemon refuses it within seconds, and cuts the links it holds.
    Revoke {
        #[command(flatten)]
        home: HomeArg,
        /// A serial (`yard cert list`) or a subject.
        which: String,
    },
}

fn open(home: &HomeArg) -> anyhow::Result<(yard_auth::Home, Authority)> {
    let home = home.open()?;
    let ca = Authority::open(&home.ca_dir())?;
    Ok((home, ca))
}

pub(crate) fn ca(c: CaCommand) -> anyhow::Result<()> {
    match c {
        CaCommand::Init { home } => {
            let home = home.open()?;
            let ca = Authority::init(&home.ca_dir(), SystemTime::now())?;
            println!("made {} in {}", ca.name(), ca.dir().display());
            println!("fingerprint sha256:{}", ca.fingerprint());
        }
        CaCommand::Show { home, pem } => {
            let (_, ca) = open(&home)?;
            if pem {
                print!("{}", ca.cert_pem());
                return Ok(());
            }
            println!("name         {}", ca.name());
            println!("fingerprint  sha256:{}", ca.fingerprint());
            println!("root         {}", ca.dir().join("ca.crt").display());
            println!("issued       {}", ca.issued()?.len());
            if let Some(at) = ca.retiring() {
                println!(
                    "rotating     the old root retires at {at} (unix seconds; `yard ca rotate --finish` retires it now)"
                );
            }
        }
        CaCommand::Rotate {
            home,
            overlap,
            finish,
        } => {
            let (_, mut ca) = open(&home)?;
            if finish {
                if !ca.finish()? {
                    bail!("no rotation is under way (`yard ca show`)");
                }
                println!(
                    "the old root is retired: {} is {} alone",
                    ca.dir().join("ca.crt").display(),
                    ca.name()
                );
                println!("certificates it issued are refused from now on");
                return Ok(());
            }
            let overlap = overlap.as_deref().map(|o| dur("overlap", o)).transpose()?;
            let r = ca.rotate(overlap, SystemTime::now())?;
            println!("rotated to {}", ca.name());
            println!("new fingerprint sha256:{}", r.new);
            println!(
                "old fingerprint sha256:{} (retires at {}, unix seconds)",
                r.old, r.retires_at
            );
            println!(
                "the daemons trust both and renew under the new root within seconds; clients keep \
                 working with their old ca.crt until then, and should take {} (or a new bundle) before it",
                ca.dir().join("ca.crt").display()
            );
            println!("join tokens made before now name the old root: make new ones");
        }
    }
    Ok(())
}

/// A file name for a subject: `agent:web/a1` → `agent-web-a1`.
pub(crate) fn file_name(s: &Subject) -> String {
    s.to_string().replace([':', '/'], "-")
}

pub(crate) fn cert(c: CertCommand) -> anyhow::Result<()> {
    match c {
        CertCommand::Issue {
            home,
            subject,
            hosts,
            ttl,
            out,
        } => {
            let subject: Subject = subject.parse().map_err(|e| anyhow!("{e}"))?;
            let (home, ca) = open(&home)?;
            let lifetime = match ttl {
                Some(t) => dur("ttl", &t)?,
                None => CERT_LIFETIME,
            };
            let issued = ca.issue(
                &Request {
                    subject: subject.clone(),
                    hosts,
                    lifetime,
                },
                SystemTime::now(),
            )?;
            let dir = out.unwrap_or_else(|| home.certs_dir());
            let (cert, key) = write_identity(&dir, &file_name(&subject), &issued, ca.cert_pem())?;
            println!("issued {subject} (serial {})", issued.record.serial);
            println!("certificate  {}", cert.display());
            println!("key          {} (0600)", key.display());
            println!("root         {}", dir.join("ca.crt").display());
            println!("valid until  {} (unix seconds)", issued.record.not_after);
        }
        CertCommand::List { home, json } => {
            let (_, ca) = open(&home)?;
            let list = ca.issued()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            if list.is_empty() {
                bail!("no certificate issued yet (`yard cert issue SUBJECT --host HOST`)");
            }
            let now = yard_auth::tokens::now_secs();
            println!("{:<34} {:<26} {:<10} HOSTS", "SERIAL", "SUBJECT", "STATE");
            for r in list {
                let state = if ca.is_revoked(&r.serial)? {
                    "revoked"
                } else if r.not_after <= now {
                    "expired"
                } else {
                    "valid"
                };
                println!(
                    "{:<34} {:<26} {:<10} {}",
                    r.serial,
                    r.subject.to_string(),
                    state,
                    r.hosts.join(",")
                );
            }
        }
        CertCommand::Revoke { home, which } => {
            let (_, ca) = open(&home)?;
            let done = ca.revoke(&which, SystemTime::now())?;
            if done.is_empty() {
                println!("already revoked: {which}");
            }
            for r in &done {
                println!("revoked {} (serial {})", r.subject, r.serial);
            }
            println!(
                "revocation list written in {}: every daemon refuses it within seconds",
                ca.dir().display()
            );
        }
    }
    Ok(())
}
