//! A daemon's TLS keeper: every second it reloads its certificate when the files change,
//! renews it when two thirds of its life are gone ([`yard_tls::live::renewal_due`]), takes the
//! authority's newest revocation list (from the authority's directory on its host, or from the
//! fabric, where the center publishes it), and cuts the links whose peer's certificate is no
//! longer good. What it does is decided by [`yard_tls::live::Live`]; this is its shell.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use yard_data::Value;
use yard_fabric::outbox::OverflowPolicy;
use yard_fabric::Endpoint;
use yard_tls::live::{renewal_due, CrlOutcome, Live};

/// The topic the center publishes the authority's revocation list on (hex of its DER).
pub(crate) const CRL_TOPIC: &str = "<$>/ops/ca/crl";
/// How often the center publishes it again (for daemons that were away).
const REPUBLISH: Duration = Duration::from_secs(5);
/// How long a failed renewal waits before the next try.
const RETRY: Duration = Duration::from_secs(10);

/// How a daemon's certificate is renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// Its files are someone else's to renew (`--tls-cert`): reloaded when they change.
    Files,
    /// The authority in this directory (on this host) issues the next one.
    Authority(PathBuf),
    /// The center at this address renews it (a joined host): the certificate is the
    /// credential, and a new key is made each time.
    Center(String),
}

/// A daemon's TLS and where its files are.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub live: Arc<Live>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub renewal: Renewal,
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn now_s() -> u64 {
    yard_auth::tokens::now_secs()
}

/// Runs until `shutdown`. `authority`: the directory of an authority on this host, whose list
/// is read from its file; `publish`: this daemon (the center) publishes the list on the fabric.
pub(crate) async fn run(
    files: TlsFiles,
    endpoint: Endpoint,
    authority: Option<PathBuf>,
    publish: bool,
    shutdown: CancellationToken,
) {
    let live = files.live.clone();
    let inbox = match endpoint
        .attach(
            "tls-keeper",
            vec![CRL_TOPIC.into()],
            8,
            OverflowPolicy::DropOldest,
        )
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("the TLS keeper cannot attach: {e}");
            return;
        }
    };
    let mut seen_cert = modified(&files.cert);
    let mut seen_crl = None;
    let mut next_renewal = tokio::time::Instant::now();
    let mut next_publish = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = inbox.recv_batch(&mut batch, 8) => {
                if r.is_err() {
                    return;
                }
                for m in batch.drain(..) {
                    let der = match &m.value {
                        Value::String(h) => yard_auth::secret::unhex(h),
                        _ => None,
                    };
                    match der.map(|d| live.offer_crl(d)) {
                        Some(Ok(CrlOutcome::Adopted(n))) => {
                            tracing::info!(crl = n, "a newer revocation list is in force")
                        }
                        Some(Ok(CrlOutcome::Stale(_))) => {}
                        Some(Err(e)) => tracing::warn!("{} sent {e}", m.topic),
                        None => tracing::warn!("{}: not a revocation list", m.topic),
                    }
                }
            }
            _ = tick.tick() => {
                // The files changed (renewed here, or by whoever owns them): reload.
                let now_mod = modified(&files.cert);
                if now_mod != seen_cert {
                    match yard_tls::Identity::load(&files.cert, &files.key)
                        .and_then(|id| live.renew(&id))
                    {
                        Ok(()) => {
                            seen_cert = now_mod;
                            tracing::info!(serial = %live.serial(), "the certificate was reloaded");
                        }
                        // A half-written pair, or a certificate not of the root: tried again.
                        Err(e) => tracing::warn!("cannot reload {}: {e}", files.cert.display()),
                    }
                }
                if files.renewal != Renewal::Files
                    && renewal_due(live.validity(), now_s())
                    && tokio::time::Instant::now() >= next_renewal
                {
                    match renew(&files).await {
                        Ok(serial) => {
                            tracing::info!(%serial, "the certificate was renewed");
                            seen_cert = None;
                        }
                        Err(e) => {
                            next_renewal = tokio::time::Instant::now() + RETRY;
                            tracing::warn!("renewing the certificate failed (tried again in {}s): {e:#}", RETRY.as_secs());
                        }
                    }
                }
                if let Some(dir) = &authority {
                    let m = modified(&dir.join("crl.der"));
                    if m.is_none() || m != seen_crl {
                        match yard_tls::Authority::open(dir).and_then(|ca| ca.crl(SystemTime::now())) {
                            Ok(der) => match live.offer_crl(der) {
                                Ok(CrlOutcome::Adopted(n)) => {
                                    tracing::info!(crl = n, "a newer revocation list is in force");
                                    seen_crl = modified(&dir.join("crl.der"));
                                    next_publish = tokio::time::Instant::now();
                                }
                                Ok(CrlOutcome::Stale(_)) => seen_crl = m,
                                Err(e) => tracing::warn!("the authority's revocation list: {e}"),
                            },
                            Err(e) => tracing::warn!("the authority's revocation list: {e}"),
                        }
                    }
                }
                if publish && tokio::time::Instant::now() >= next_publish {
                    next_publish = tokio::time::Instant::now() + REPUBLISH;
                    if let Some(crl) = live.crl() {
                        let hex = yard_auth::secret::hex(crl.as_ref());
                        if let Err(e) = inbox.publish_system(CRL_TOPIC.into(), Value::String(hex)).await {
                            tracing::debug!("cannot publish the revocation list: {e}");
                        }
                    }
                }
                live.sweep();
            }
        }
    }
}

/// Gets the next certificate and writes it over the files; returns its serial.
async fn renew(files: &TlsFiles) -> anyhow::Result<String> {
    match &files.renewal {
        Renewal::Files => anyhow::bail!("its files are renewed by their owner"),
        Renewal::Authority(dir) => {
            let (dir, serial) = (dir.clone(), files.live.serial());
            let (cert, key) = (files.cert.clone(), files.key.clone());
            tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
                let ca = yard_tls::Authority::open(&dir)?;
                let old = ca
                    .issued()?
                    .into_iter()
                    .find(|r| r.serial == serial)
                    .ok_or_else(|| {
                        anyhow::anyhow!("certificate {serial} is not in {}", dir.display())
                    })?;
                let lifetime = Duration::from_secs(
                    old.not_after
                        .saturating_sub(old.not_before + yard_tls::ca::BACKDATE.as_secs())
                        .max(1),
                );
                let issued = ca.issue(
                    &yard_tls::Request {
                        subject: old.subject,
                        hosts: old.hosts,
                        lifetime,
                    },
                    SystemTime::now(),
                )?;
                yard_tls::ca::replace_identity(&cert, &key, &issued.cert_pem, &issued.key_pem)?;
                Ok(issued.record.serial)
            })
            .await?
        }
        Renewal::Center(center) => {
            let current = yard_tls::Identity::load(&files.cert, &files.key)?;
            let (renewed, key_pem) =
                yard_client::join::renew(center, &current, files.live.ca_pem()).await?;
            yard_tls::ca::replace_identity(&files.cert, &files.key, &renewed.cert_pem, &key_pem)?;
            Ok(renewed.serial)
        }
    }
}
