//! `yard ca init|show` and `yard cert issue|list|revoke`: the cluster's certificate authority,
//! kept in the credentials home (`HOME/ca`), and the certificates it issues (docs/SECURITY.md,
//! TLS). A revocation writes the authority's new list; the daemons on its host read it from
//! there within a second, and the center publishes it to every other daemon on the fabric.

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
    /// Its name, fingerprint and where it is; --pem prints the root certificate.
    Show {
        #[command(flatten)]
        home: HomeArg,
        #[arg(long)]
        pem: bool,
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
            let revoked = ca.revocations()?.revoked;
            println!("{:<34} {:<26} {:<10} HOSTS", "SERIAL", "SUBJECT", "STATE");
            for r in list {
                let state = if revoked.iter().any(|x| x.serial == r.serial) {
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
                "revocation list {} written to {}",
                ca.revocations()?.crl_number,
                ca.dir().join("crl.der").display()
            );
        }
    }
    Ok(())
}
