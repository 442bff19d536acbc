//! `yard node` configuration: one validated struct, from an optional TOML file plus flags.
//!
//! Every field has a default; a file may set any subset; unknown keys are an error. Flags given
//! on the command line override the file.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use yard_data::json::JsonOptions;
use yard_data::time::{parse_duration, TimestampPrecision};
use yard_fabric::{EndpointConfig, OverflowPolicy};
use yard_gateway::GatewayConfig;
use yard_store::{BackendSpec, CloneOptions};

/// The default address of the WebSocket/HTTP gateway (Broker's WebSocket port).
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:9997";

/// The `yard node` configuration file. Durations are timespans such as `"5s"` or `"250ms"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct NodeFile {
    /// Address of the WebSocket/HTTP gateway; loopback unless you mean otherwise.
    pub listen: String,
    /// Outbound queue of each WebSocket client, in messages.
    pub client_queue: usize,
    /// disconnect | drop_oldest | drop_newest.
    pub overflow_policy: String,
    /// Largest message a client may send, in bytes.
    pub max_message_size: usize,
    /// Time a client has to send its subscriptions.
    pub handshake_timeout: String,
    /// Interval of keepalive pings; three silent intervals close a client.
    pub ping_interval: String,
    /// Most WebSocket connections at once.
    pub max_clients: usize,
    /// Fraction digits of timestamps in JSON: ms | us | ns.
    pub timestamp_precision: String,
    /// Publications waiting for the router.
    pub data_queue: usize,
    /// This endpoint's id; empty for a random UUID.
    pub id: String,
    /// Addresses to peer with; each is re-dialed whenever its link drops.
    pub peers: Vec<String>,
    /// The mesh key peers prove they hold; empty to take the credentials home's `mesh.key`.
    pub token: String,
    /// The credentials home (tokens, mesh key, audit log of a plain node); empty for the usual
    /// search (`$YARD_HOME`, `./yard-data`, `~/.config/yard`).
    pub home: String,
    /// Host names HTTP requests may use besides IP addresses and `localhost`.
    pub allow_hosts: Vec<String>,
    /// What callers without a credential may do: `pubsub` (publish and subscribe on user
    /// topics) or `none`; empty for the default (pubsub on loopback, none beyond).
    pub anonymous: String,
    /// Outbound queue of each peer, in messages.
    pub peer_queue: usize,
    /// disconnect | drop_oldest | drop_newest, for peers.
    pub peer_overflow_policy: String,
    /// Hops a publication may take.
    pub ttl: u8,
    /// A peer silent this long is lost (it pings every fifth of it).
    pub peer_timeout: String,
    /// Longest wait between re-dials of a lost peer.
    pub redial_max: String,
    /// Directory for remote log streams; empty for none.
    pub log_dir: String,
    /// Size at which a log stream's file is rotated, in bytes.
    pub log_max_bytes: u64,
    /// Rotated files kept per stream.
    pub log_keep: usize,
    /// Stores this endpoint masters: `NAME` (memory) or `NAME=BACKEND`, where BACKEND is
    /// `memory` or `sqlite:PATH[?synchronous=normal|full&integrity_check=true]`.
    pub masters: Vec<String>,
    /// Stores this endpoint clones.
    pub clones: Vec<String>,
    /// A clone's reads fail with stale_data once its master has been silent this long; "never"
    /// to keep answering.
    pub stale_interval: String,
    /// Writes made through a clone while its master is out of reach are kept this long.
    pub mutation_buffer_interval: String,
    /// How often a clone retries reaching its master.
    pub resync_interval: String,
    /// This endpoint's certificate and key (PEM files, from `yard cert issue`): TLS 1.3 on the
    /// gateway and on every link it dials. Empty for plain text.
    pub tls_cert: String,
    pub tls_key: String,
    /// The cluster's root certificate (PEM): the servers this endpoint dials, and the
    /// certificates its callers present, are checked against it. Needed with `tls_cert`.
    pub tls_ca: String,
    /// With TLS, serve plain connections too (a loopback listener only; for local clients that
    /// cannot speak TLS).
    pub tls_plain: bool,
}

impl Default for NodeFile {
    fn default() -> Self {
        let g = GatewayConfig::default();
        let e = EndpointConfig::default();
        NodeFile {
            listen: DEFAULT_LISTEN.into(),
            client_queue: g.client_queue,
            overflow_policy: g.overflow_policy.name().into(),
            max_message_size: g.max_message_size,
            handshake_timeout: "10s".into(),
            ping_interval: "5s".into(),
            max_clients: g.max_clients,
            timestamp_precision: "ms".into(),
            data_queue: e.data_queue,
            id: String::new(),
            peers: Vec::new(),
            token: String::new(),
            home: String::new(),
            allow_hosts: Vec::new(),
            anonymous: String::new(),
            peer_queue: e.peer_queue,
            peer_overflow_policy: e.peer_overflow_policy.name().into(),
            ttl: e.ttl,
            peer_timeout: "10s".into(),
            redial_max: "5s".into(),
            log_dir: String::new(),
            log_max_bytes: 10 << 20,
            log_keep: 5,
            masters: Vec::new(),
            clones: Vec::new(),
            stale_interval: "300s".into(),
            mutation_buffer_interval: "120s".into(),
            resync_interval: "1s".into(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_ca: String::new(),
            tls_plain: false,
        }
    }
}

impl NodeFile {
    pub(crate) fn load(path: &Path) -> anyhow::Result<NodeFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }
}

/// The validated configuration a node runs with.
#[derive(Debug, Clone)]
pub(crate) struct NodeConfig {
    pub listen: SocketAddr,
    pub id: Option<String>,
    pub peers: Vec<String>,
    pub endpoint: EndpointConfig,
    pub gateway: GatewayConfig,
    pub logs: Option<yard_gateway::logs::LogConfig>,
    pub masters: Vec<(String, BackendSpec)>,
    pub clones: Vec<String>,
    pub clone_options: CloneOptions,
    /// The credentials home; `None` for the usual search.
    pub home: Option<std::path::PathBuf>,
    /// Host names HTTP requests may use besides IP addresses and `localhost`.
    pub allow_hosts: Vec<String>,
    /// The anonymous policy; `None` for the listener's default.
    pub anonymous: Option<yard_auth::Policy>,
    /// The daemon's TLS as it runs (renewed, revocations applied), with its files.
    pub tls: Option<crate::keeper::TlsFiles>,
}

/// Parses `NAME` or `NAME=BACKEND`.
pub(crate) fn parse_master(s: &str) -> anyhow::Result<(String, BackendSpec)> {
    let (name, backend) = s.split_once('=').unwrap_or((s, "memory"));
    yard_store::check_name(name).map_err(|e| anyhow::anyhow!("masters: {e}"))?;
    let spec = backend
        .parse()
        .map_err(|e: yard_store::backend::SpecError| anyhow::anyhow!("masters: {name}: {e}"))?;
    Ok((name.to_string(), spec))
}

/// The gateway's TLS and the dialer of its links, from the `tls_*` settings.
type TlsParts = (
    Option<yard_gateway::tls::GatewayTls>,
    yard_fabric::transport::SharedDialer,
    Option<crate::keeper::TlsFiles>,
);

fn tls_of(f: &NodeFile) -> anyhow::Result<TlsParts> {
    match (
        f.tls_cert.is_empty(),
        f.tls_key.is_empty(),
        f.tls_ca.is_empty(),
    ) {
        (true, true, true) if f.tls_plain => bail!("tls_plain: TLS is off (no tls_cert)"),
        (true, true, true) => return Ok((None, None, None)),
        (false, false, false) => {}
        _ => bail!("tls_cert, tls_key and tls_ca go together (`yard cert issue` writes all three)"),
    }
    let id = yard_tls::Identity::load(Path::new(&f.tls_cert), Path::new(&f.tls_key))?;
    let ca = std::fs::read_to_string(&f.tls_ca)
        .with_context(|| format!("tls_ca: cannot read {}", f.tls_ca))?;
    let live = yard_tls::live::Live::new(&id, &ca).context("tls_cert")?;
    let server = live.server().context("tls_cert")?;
    let dialer: Arc<dyn yard_fabric::transport::Dialer> =
        Arc::new(yard_gateway::tls::TlsDialer::live(live.clone()).context("tls_ca")?);
    Ok((
        Some(yard_gateway::tls::GatewayTls {
            server,
            plain: f.tls_plain,
            live: Some(live.clone()),
        }),
        Some(dialer),
        Some(crate::keeper::TlsFiles {
            live,
            cert: f.tls_cert.clone().into(),
            key: f.tls_key.clone().into(),
            ca: f.tls_ca.clone().into(),
            renewal: crate::keeper::Renewal::Files,
        }),
    ))
}

fn duration(field: &str, s: &str) -> anyhow::Result<Duration> {
    let d = parse_duration(s).map_err(|e| anyhow::anyhow!("{field}: {e}"))?;
    if d.is_zero() {
        bail!("{field} must be positive, got {s:?}");
    }
    Ok(d)
}

impl TryFrom<NodeFile> for NodeConfig {
    type Error = anyhow::Error;
    fn try_from(f: NodeFile) -> anyhow::Result<NodeConfig> {
        let listen: SocketAddr = f.listen.parse().map_err(|_| {
            anyhow::anyhow!(
                "listen: {:?} is not an address such as 127.0.0.1:9997",
                f.listen
            )
        })?;
        let overflow_policy: OverflowPolicy =
            f.overflow_policy
                .parse()
                .map_err(|e: yard_fabric::outbox::UnknownPolicy| {
                    anyhow::anyhow!("overflow_policy: {e}")
                })?;
        let timestamp_precision: TimestampPrecision = f
            .timestamp_precision
            .parse()
            .map_err(|e: yard_data::time::TimeError| anyhow::anyhow!("timestamp_precision: {e}"))?;
        let token = (!f.token.is_empty()).then(|| f.token.clone());
        let (tls, dialer, tls_files) = tls_of(&f)?;
        let gateway = GatewayConfig {
            tls,
            loopback: listen.ip().is_loopback(),
            client_queue: f.client_queue,
            overflow_policy,
            max_message_size: f.max_message_size,
            handshake_timeout: duration("handshake_timeout", &f.handshake_timeout)?,
            ping_interval: duration("ping_interval", &f.ping_interval)?,
            max_clients: f.max_clients,
            json: JsonOptions {
                timestamp_precision,
            },
            ..GatewayConfig::default()
        };
        gateway.validate().map_err(|e| anyhow::anyhow!(e))?;
        if f.data_queue == 0 {
            bail!("data_queue must be at least 1");
        }
        let peer_overflow_policy: OverflowPolicy =
            f.peer_overflow_policy
                .parse()
                .map_err(|e: yard_fabric::outbox::UnknownPolicy| {
                    anyhow::anyhow!("peer_overflow_policy: {e}")
                })?;
        if f.peer_queue == 0 {
            bail!("peer_queue must be at least 1");
        }
        if f.ttl == 0 {
            bail!("ttl must be at least 1");
        }
        let peer_timeout = duration("peer_timeout", &f.peer_timeout)?;
        for p in &f.peers {
            if p.rsplit_once(':')
                .is_none_or(|(h, port)| h.is_empty() || port.parse::<u16>().is_err())
            {
                bail!("peers: {p:?} is not an address such as 127.0.0.1:9997");
            }
        }
        if f.id.chars().any(|c| c.is_whitespace() || c.is_control()) || f.id.len() > 128 {
            bail!(
                "id: {:?} must be at most 128 characters without spaces",
                f.id
            );
        }
        let endpoint = EndpointConfig {
            data_queue: f.data_queue,
            peer_queue: f.peer_queue,
            peer_overflow_policy,
            ttl: f.ttl,
            peer_timeout,
            peer_ping: peer_timeout / 5,
            redial_max: duration("redial_max", &f.redial_max)?,
            mesh_key: token,
            listen: listen.to_string(),
            dialer,
            ..EndpointConfig::default()
        };
        let logs = if f.log_dir.is_empty() {
            None
        } else {
            if f.log_max_bytes < 1024 {
                bail!("log_max_bytes must be at least 1024");
            }
            Some(yard_gateway::logs::LogConfig {
                dir: f.log_dir.clone().into(),
                max_bytes: f.log_max_bytes,
                keep: f.log_keep,
            })
        };
        let mut masters = Vec::new();
        for m in &f.masters {
            masters.push(parse_master(m)?);
        }
        for c in &f.clones {
            yard_store::check_name(c).map_err(|e| anyhow::anyhow!("clones: {e}"))?;
            if masters.iter().any(|(n, _)| n == c) {
                bail!("store {c:?} is both mastered and cloned here; an endpoint holds one of the two");
            }
        }
        let clone_options = CloneOptions {
            stale_interval: match f.stale_interval.as_str() {
                "never" => None,
                s => Some(duration("stale_interval", s)?),
            },
            mutation_buffer_interval: duration(
                "mutation_buffer_interval",
                &f.mutation_buffer_interval,
            )?,
            resync_interval: duration("resync_interval", &f.resync_interval)?,
        };
        Ok(NodeConfig {
            masters,
            clones: f.clones.clone(),
            clone_options,
            listen,
            id: (!f.id.is_empty()).then(|| f.id.clone()),
            peers: f.peers.clone(),
            endpoint,
            gateway,
            logs,
            home: (!f.home.is_empty()).then(|| f.home.clone().into()),
            allow_hosts: f.allow_hosts.clone(),
            anonymous: match f.anonymous.as_str() {
                "" => None,
                "pubsub" => Some(yard_auth::Policy::anonymous_loopback()),
                "none" => Some(yard_auth::Policy::nothing()),
                other => bail!("anonymous: {other:?} is not pubsub or none"),
            },
            tls: tls_files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = NodeConfig::try_from(NodeFile::default()).unwrap();
        assert!(c.listen.ip().is_loopback());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let e =
            toml::from_str::<NodeFile>("listen = \"127.0.0.1:1\"\nclient_qeue = 5\n").unwrap_err();
        assert!(e.to_string().contains("client_qeue"), "{e}");
        let f: NodeFile = toml::from_str("overflow_policy = \"drop_everything\"").unwrap();
        let e = NodeConfig::try_from(f).unwrap_err();
        assert!(e.to_string().contains("overflow_policy"), "{e}");
        let f: NodeFile = toml::from_str("ping_interval = \"0s\"").unwrap();
        assert!(NodeConfig::try_from(f).is_err());
    }
}
