//! A daemon's TLS keeper: every second it reloads its certificate when the files change,
//! renews it when two thirds of its life are gone ([`yard_tls::live::renewal_due`]) or when
//! its root is retiring (a rotation), takes the authority's newest revocation lists and roots
//! (from the authority's directory on its host, or from the fabric, where the center publishes
//! them), keeps its root file up to date with the roots it trusts, and cuts the links whose
//! peer's certificate is no longer good. The center also ends a rotation when its time is up.
//! What it does is decided by [`yard_tls::live::Live`]; this is its shell.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use yard_data::Value;
use yard_fabric::outbox::OverflowPolicy;
use yard_fabric::Endpoint;
use yard_tls::live::{renewal_due, CrlOutcome, Live, RootsOutcome};

/// The topic the center publishes the authority's revocation lists on (hex of each one's DER).
pub(crate) const CRL_TOPIC: &str = "<$>/ops/ca/crl";
/// The topic the center publishes the trust bundle on during a rotation (PEM).
pub(crate) const ROOTS_TOPIC: &str = "<$>/ops/ca/roots";
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
    /// The root file: rewritten with the roots trusted when they change.
    pub ca: PathBuf,
    pub renewal: Renewal,
}

/// Offers a bundle of roots; says what came of it.
fn take_roots(live: &Live, bundle: &str, from: &str) {
    match live.offer_roots(bundle) {
        Ok(RootsOutcome::Adopted(n)) => {
            tracing::info!(
                new = n,
                roots = live.roots(),
                "a new root is trusted (a rotation)"
            )
        }
        Ok(RootsOutcome::Known) => {}
        Err(e) => tracing::warn!("{from}: {e}"),
    }
}

/// Offers a revocation list; says what came of it.
fn take_crl(live: &Live, der: Vec<u8>, from: &str) -> bool {
    match live.offer_crl(der) {
        Ok(CrlOutcome::Adopted(n)) => {
            tracing::info!(crl = n, "a newer revocation list is in force");
            true
        }
        Ok(CrlOutcome::Stale(_)) => false,
        Err(e) => {
            tracing::warn!("{from}: {e}");
            false
        }
    }
}

/// Rewrites the root file when the roots trusted differ from it (so that a restart trusts
/// them too).
fn keep_root_file(live: &Live, path: &Path) {
    // An authority's own ca.crt is its own to write.
    if path.parent().is_some_and(|d| d.join("ca.key").exists()) {
        return;
    }
    let pem = live.ca_pem();
    if std::fs::read_to_string(path).ok().as_deref() != Some(pem.as_str()) {
        match yard_tls::ca::write_public(path, pem.as_bytes()) {
            Ok(()) => tracing::info!(roots = live.roots(), "{} rewritten", path.display()),
            Err(e) => tracing::warn!("cannot rewrite {}: {e}", path.display()),
        }
    }
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
            vec![CRL_TOPIC.into(), ROOTS_TOPIC.into()],
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
    let mut seen_roots = None;
    // During a rotation of the authority on this host: when its old root retires.
    let mut retiring: Option<u64> = None;
    let mut roots_held = live.ca_pem();
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
                    let from = format!("{} sent", m.topic);
                    match (m.topic.as_str(), &m.value) {
                        (ROOTS_TOPIC, Value::String(pem)) => take_roots(&live, pem, &from),
                        (_, Value::String(h)) if m.topic == CRL_TOPIC => {
                            match yard_auth::secret::unhex(h) {
                                Some(der) => {
                                    take_crl(&live, der, &from);
                                }
                                None => tracing::warn!("{}: not a revocation list", m.topic),
                            }
                        }
                        _ => tracing::warn!("{}: not a string", m.topic),
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
                    && (renewal_due(live.validity(), now_s()) || live.on_retiring_root())
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
                    // The roots first (a rotation's new root's list is signed by it), then the
                    // lists of every root.
                    let m = modified(&dir.join("ca.crt"));
                    if m != seen_roots {
                        match std::fs::read_to_string(dir.join("ca.crt")) {
                            Ok(pem) => {
                                take_roots(&live, &pem, "the authority's ca.crt");
                                seen_roots = m;
                                retiring = yard_tls::Authority::open(dir).ok().and_then(|ca| ca.retiring());
                            }
                            Err(e) => tracing::warn!("the authority's ca.crt: {e}"),
                        }
                    }
                    let m = modified(&dir.join("crl.der")).max(modified(&dir.join("previous").join("crl.der")));
                    if m.is_none() || m != seen_crl {
                        match yard_tls::Authority::open(dir).and_then(|ca| ca.crls(SystemTime::now())) {
                            Ok(lists) => {
                                let mut adopted = false;
                                for der in lists {
                                    adopted |= take_crl(&live, der, "the authority's revocation list");
                                }
                                if adopted {
                                    next_publish = tokio::time::Instant::now();
                                }
                                seen_crl = m;
                            }
                            Err(e) => tracing::warn!("the authority's revocation list: {e}"),
                        }
                    }
                    // The center ends a rotation when the old root's time is up.
                    if publish && retiring.is_some_and(|at| now_s() >= at) {
                        match yard_tls::Authority::open(dir).and_then(|mut ca| ca.finish_if_due(SystemTime::now())) {
                            Ok(true) => tracing::info!("the rotation is over: the old root is retired"),
                            Ok(false) => {}
                            Err(e) => tracing::warn!("cannot end the rotation: {e}"),
                        }
                    }
                }
                if publish && tokio::time::Instant::now() >= next_publish {
                    next_publish = tokio::time::Instant::now() + REPUBLISH;
                    // The roots first: a new root's list is taken only once it is trusted.
                    let mut out = Vec::new();
                    if live.roots() > 1 {
                        out.push((ROOTS_TOPIC, live.ca_pem()));
                    }
                    for crl in live.crls() {
                        out.push((CRL_TOPIC, yard_auth::secret::hex(crl.as_ref())));
                    }
                    for (topic, text) in out {
                        if let Err(e) = inbox.publish_system(topic.into(), Value::String(text)).await {
                            tracing::debug!("cannot publish on {topic}: {e}");
                        }
                    }
                }
                live.sweep();
                let roots = live.ca_pem();
                if roots != roots_held {
                    // Files given by hand (`--tls-cert`, `--tls-ca`) are their owner's to update.
                    if files.renewal != Renewal::Files {
                        keep_root_file(&live, &files.ca);
                    }
                    roots_held = roots;
                    next_publish = tokio::time::Instant::now();
                }
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
                yard_client::join::renew(center, &current, &files.live.ca_pem()).await?;
            // The center's bundle names a root it rotated to: trusted before the certificate
            // it signed is put in.
            take_roots(&files.live, &renewed.ca_pem, "the center's renewal");
            yard_tls::ca::replace_identity(&files.cert, &files.key, &renewed.cert_pem, &key_pem)?;
            Ok(renewed.serial)
        }
    }
}
