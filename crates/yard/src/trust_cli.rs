//! `yard token create|list|revoke` (the credentials home's registry, on this host) and
//! `yard audit` (a daemon's audit log, over its API).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use yard_auth::policy::Policy;
use yard_auth::tokens::now_secs;
use yard_auth::{Home, Role};

use crate::ops_cli::dur;

#[derive(Args)]
pub(crate) struct HomeArg {
    /// The credentials home [default: $YARD_HOME, ./yard-data beside `yard up`, ~/.config/yard].
    #[arg(long)]
    home: Option<PathBuf>,
}

impl HomeArg {
    /// The home named with --home.
    pub(crate) fn dir(&self) -> Option<&std::path::Path> {
        self.home.as_deref()
    }

    pub(crate) fn open(&self) -> anyhow::Result<Home> {
        Ok(Home::open_or_init(yard_auth::home::resolve(
            self.home.as_deref(),
        ))?)
    }
}

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Make a token; it is printed once and only its hash is kept.
    Create {
        #[command(flatten)]
        home: HomeArg,
        /// Who holds it (shown in the audit log): letters, digits, -_.@
        name: String,
        /// admin, operator, viewer or app.
        #[arg(long, default_value = "operator")]
        role: String,
        /// A JSON policy file replacing the role's policy (see docs/SECURITY.md).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// How long it is valid, e.g. 12h or 30d [default: until revoked].
        #[arg(long)]
        ttl: Option<String>,
        /// Write a credentials bundle for the holder into this new directory instead of
        /// printing the token: `credentials` (the token, 0600), `ca.crt` (the root to check
        /// the daemons against) and, with --center, `env`. Copied to the holder's machine as
        /// ~/.config/yard (or named by YARD_HOME), it is all the CLI needs.
        #[arg(long, value_name = "DIR")]
        bundle: Option<PathBuf>,
        /// The center's address the bundle's `env` names (YARD_CENTER).
        #[arg(long, requires = "bundle")]
        center: Option<String>,
        /// The bundle holds a certificate for operator:NAME from this home's authority
        /// (`operator.crt`, `operator.key` 0600; for --ttl, 30 days unless given, at most
        /// 90) instead of the token's secret: the certificate is the credential, and this
        /// token (never shown) gives it its role.
        #[arg(long, requires = "bundle")]
        certificate: bool,
    },
    /// List the tokens (never their secrets).
    List {
        #[command(flatten)]
        home: HomeArg,
        #[arg(long)]
        json: bool,
    },
    /// Revoke every token with this id or name; every daemon sharing the home stops accepting
    /// it within a second.
    Revoke {
        #[command(flatten)]
        home: HomeArg,
        which: String,
    },
}

/// Makes `dir`, which must not exist or be empty, private to its owner.
fn make_bundle_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            anyhow::bail!(
                "{} is not empty: a bundle goes into a new directory",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", dir.display()))?;
    Ok(())
}

/// What a bundle's holder proves itself with.
enum Credential {
    Token(String),
    Certificate(Box<yard_tls::Issued>),
}

/// Writes the bundle's files; returns their names.
fn write_bundle(
    home: &Home,
    dir: &std::path::Path,
    credential: &Credential,
    center: Option<&str>,
) -> anyhow::Result<Vec<&'static str>> {
    let private = |name: &str, text: &str| {
        let p = dir.join(name);
        yard_auth::tokens::write_private(&p, text.as_bytes())
            .with_context(|| format!("cannot write {}", p.display()))
    };
    let mut wrote = match credential {
        Credential::Token(token) => {
            private("credentials", &format!("{token}\n"))?;
            vec!["credentials"]
        }
        Credential::Certificate(issued) => {
            private("operator.key", &issued.key_pem)?;
            std::fs::write(dir.join("operator.crt"), &issued.cert_pem)
                .with_context(|| format!("cannot write {}", dir.join("operator.crt").display()))?;
            vec!["operator.crt", "operator.key"]
        }
    };
    let root = home.dir.join("ca").join("ca.crt");
    match std::fs::read_to_string(&root) {
        Ok(pem) => {
            std::fs::write(dir.join("ca.crt"), pem)
                .with_context(|| format!("cannot write {}", dir.join("ca.crt").display()))?;
            wrote.push("ca.crt");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!(
            "yard: {} has no authority ({} is missing): the bundle holds no ca.crt, so its \
             holder must be given the root by hand (--ca FILE)",
            home.dir.display(),
            root.display()
        ),
        Err(e) => return Err(anyhow!("{}: {e}", root.display())),
    }
    if let Some(c) = center {
        private("env", &format!("export YARD_CENTER='{c}'\n"))?;
        wrote.push("env");
    }
    Ok(wrote)
}

pub(crate) fn token(c: TokenCommand) -> anyhow::Result<()> {
    match c {
        TokenCommand::Create {
            home,
            name,
            role,
            policy,
            ttl,
            bundle,
            center,
            certificate,
        } => {
            let role = Role::parse(&role).map_err(|e| anyhow!(e))?;
            if let Some(c) = &center {
                if c.is_empty() || c.contains(['\'', '\n', '"', '$', '`', '\\', ' ']) {
                    anyhow::bail!("--center {c:?}: an address such as 10.0.0.1:9900, without quotes, spaces, $ or `");
                }
            }
            let policy = match policy {
                None => None,
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read {}", p.display()))?;
                    Some(
                        serde_json::from_str::<Policy>(&text)
                            .with_context(|| format!("{} is not a policy", p.display()))?,
                    )
                }
            };
            let ttl = ttl.map(|t| dur("ttl", &t)).transpose()?;
            let home = home.open()?;
            // The authority and the certificate's subject and life are checked before the
            // token exists, as is the bundle's directory (made empty, 0700): a refusal leaves
            // no token behind that nobody holds.
            let authority = if certificate {
                let subject: yard_tls::Subject = format!("operator:{name}")
                    .parse()
                    .map_err(|e| anyhow!("--certificate: {e}"))?;
                let lifetime = ttl.unwrap_or(Duration::from_secs(30 * 24 * 3600));
                if lifetime > yard_tls::ca::MAX_CERT_LIFETIME {
                    anyhow::bail!("--certificate: --ttl is at most 90 days for a certificate");
                }
                let ca = yard_tls::Authority::open(&home.dir.join("ca")).with_context(|| {
                    format!(
                        "--certificate needs an authority in {} (yard ca init)",
                        home.dir.display()
                    )
                })?;
                Some((ca, subject, lifetime))
            } else {
                None
            };
            if let Some(dir) = &bundle {
                make_bundle_dir(dir)?;
            }
            let (record, token) = home.registry()?.create(&name, role, policy, ttl)?;
            if let Some(dir) = &bundle {
                let credential = match authority {
                    Some((ca, subject, lifetime)) => {
                        let req = yard_tls::Request {
                            subject,
                            hosts: vec![],
                            lifetime,
                        };
                        Credential::Certificate(Box::new(
                            ca.issue(&req, std::time::SystemTime::now())?,
                        ))
                    }
                    None => Credential::Token(token),
                };
                let wrote = write_bundle(&home, dir, &credential, center.as_deref())?;
                eprintln!(
                    "token {} for {} (role {}) in {}; its bundle in {}: {}",
                    record.id,
                    record.name,
                    record.role.name(),
                    home.dir.display(),
                    dir.display(),
                    wrote.join(", ")
                );
                eprintln!(
                    "on the holder's machine: copy the directory to ~/.config/yard, or set YARD_HOME to it{}",
                    if center.is_some() { " (and `. env` for YARD_CENTER)" } else { "" }
                );
                return Ok(());
            }
            eprintln!(
                "token {} for {} (role {}{}) in {}; it is shown once:",
                record.id,
                record.name,
                record.role.name(),
                record
                    .expires
                    .map(|e| format!(", expires in {}s", e.saturating_sub(now_secs())))
                    .unwrap_or_default(),
                home.dir.display()
            );
            println!("{token}");
            Ok(())
        }
        TokenCommand::List { home, json } => {
            let records = home.open()?.registry()?.records();
            if json {
                print!(
                    "{}",
                    crate::render::trust::tokens_json(&records, now_secs())
                );
                return Ok(());
            }
            print!("{}", crate::render::trust::tokens(&records, now_secs()));
            Ok(())
        }
        TokenCommand::Revoke { home, which } => {
            let ids = home.open()?.registry()?.revoke(&which)?;
            println!("revoked {}", ids.join(", "));
            Ok(())
        }
    }
}

#[derive(Args)]
pub(crate) struct AuditArgs {
    /// The daemon whose log to read (center, manager, agent or node gateway).
    #[arg(long, short = 'e', env = "YARD_CENTER", default_value = crate::ops_cli::CENTER_LISTEN)]
    endpoint: String,
    /// Only this principal (`operator:alice`, `anonymous`).
    #[arg(long)]
    principal: Option<String>,
    /// Only this result: ok, failed, denied, unauthenticated.
    #[arg(long)]
    result: Option<String>,
    /// Only actions containing this text (`POST /v1/commands`).
    #[arg(long)]
    action: Option<String>,
    /// Only records this recent, e.g. 1h.
    #[arg(long)]
    since: Option<String>,
    #[arg(long, short = 'n', default_value_t = 50)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn audit(a: AuditArgs) -> anyhow::Result<()> {
    let mut q = vec![format!("limit={}", a.limit)];
    for (k, v) in [
        ("principal", &a.principal),
        ("result", &a.result),
        ("action", &a.action),
    ] {
        if let Some(v) = v {
            q.push(format!("{k}={}", crate::client::url_escape(v, false)));
        }
    }
    if let Some(s) = &a.since {
        let back = dur("since", s)?.as_millis() as u64;
        q.push(format!(
            "since={}",
            yard_auth::audit::now_ms().saturating_sub(back)
        ));
    }
    let auth = crate::client::bearer(None);
    let records = yard_client::audit::records(&a.endpoint, auth.as_deref(), &q.join("&"))
        .await
        .map_err(|e| crate::client::node_error(&a.endpoint, e))
        .with_context(|| format!("GET /v1/audit from {}", a.endpoint))?;
    if a.json {
        println!("{}", serde_json::to_string(&records)?);
        return Ok(());
    }
    print!("{}", crate::render::trust::audit(&records));
    Ok(())
}
