//! The guard every HTTP listener wraps its routes in. For each request, in this order:
//!
//! 1. **Host**: an IP literal, `localhost`, or a configured name (DNS rebinding gets 421).
//! 2. **Origin**: a browser request from another origin (`Origin` not this listener's, or
//!    `Sec-Fetch-Site: cross-site|same-site`) gets 403, WebSocket upgrades included.
//! 3. **Credential**: `Authorization: Bearer <token>` or `Basic base64(name:token)` (zeekpy's
//!    `ws://NAME:TOKEN@host/…`, Mesos clients' principal and secret), or, from a browser's
//!    WebSocket, the subprotocol `yard.bearer.<base64url token>`. A bad credential gets 401
//!    (never anonymous access), is audited, and slows that address down; none at all makes the
//!    caller anonymous, with the listener's anonymous policy.
//! 4. **Route policy**: the listener's classifier names the [`Permission`] and body type of
//!    every route; a route it does not know is refused (closed by default). Missing rights get
//!    401 (anonymous, with `WWW-Authenticate`) or 403 naming the permission.
//! 5. **Body**: a request that changes something must carry its route's content type
//!    (`application/json` for JSON routes), so no HTML form or `text/plain` fetch can reach it.
//!
//! Answers get security headers; every change and every refusal is audited.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::connect_info::Connected;
use axum::extract::{Request, State};
pub use axum::http::Method;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;

use crate::audit::{now_ms, AuditLog, AuditRecord};
use crate::policy::{Permission, Policy, Principal};
use crate::tokens::{AuthFailure, Registry};

/// The WebSocket subprotocol a browser asks for with its credential; the server selects it, so
/// the answer never echoes the credential.
pub const WEBSOCKET_PROTOCOL: &str = "yard.v1";
/// The prefix of the subprotocol that carries a credential: `yard.bearer.` and the token in
/// base64url without padding (a subprotocol may hold only token characters).
pub const WEBSOCKET_BEARER: &str = "yard.bearer.";

/// The token a WebSocket upgrade offers in `Sec-WebSocket-Protocol` (`yard.bearer.B64URL`),
/// if any. An offer that does not decode is a malformed credential, never anonymous access.
pub fn websocket_bearer(headers: &HeaderMap) -> Result<Option<String>, AuthFailure> {
    use base64::Engine;
    for value in headers.get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        let value = value.to_str().map_err(|_| AuthFailure::Malformed)?;
        for offer in value.split(',').map(str::trim) {
            if let Some(b) = offer.strip_prefix(WEBSOCKET_BEARER) {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(b)
                    .map_err(|_| AuthFailure::Malformed)?;
                let token = String::from_utf8(raw).map_err(|_| AuthFailure::Malformed)?;
                return Ok(Some(token));
            }
        }
    }
    Ok(None)
}

/// Both ends of a connection, as the listener accepted it
/// (`into_make_service_with_connect_info::<Remote>()`).
#[derive(Debug, Clone)]
pub struct Remote {
    /// The caller's address.
    pub addr: SocketAddr,
    /// The address the caller reached (this host's), when known.
    pub local: Option<SocketAddr>,
    /// The certificate the caller presented over TLS (checked by the handshake against the
    /// cluster's root and its revocation list), when it presented one.
    pub cert: Option<Arc<PeerCert>>,
}

/// A caller's TLS certificate, as the routes that take it for a credential read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// The principal it names (`agent:web/a1`), if it names one.
    pub principal: Option<String>,
    /// Its serial, hex.
    pub serial: String,
    /// DER.
    pub der: Vec<u8>,
}

impl Remote {
    /// Whether the caller is on this host: loopback, or this host's own address from itself.
    pub fn same_host(&self) -> bool {
        let ip = self.addr.ip();
        ip.is_loopback() || self.local.is_some_and(|l| l.ip() == ip)
    }

    /// The local uid holding the caller's end, for a caller on this host (the kernel's socket
    /// table says; see [`crate::owner`]).
    pub fn owner(&self) -> Option<u32> {
        let local = self.local?;
        if !self.same_host() {
            return None;
        }
        crate::owner::socket_owner(self.addr, local).ok().flatten()
    }
}

/// A served connection's own address (a TCP stream, or TLS over one).
pub trait LocalAddr {
    fn local_addr(&self) -> std::io::Result<SocketAddr>;

    /// The certificate the caller presented, over TLS.
    fn peer_cert(&self) -> Option<PeerCert> {
        None
    }
}

impl LocalAddr for tokio::net::TcpStream {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        tokio::net::TcpStream::local_addr(self)
    }
}

/// Listeners whose connections carry a [`Remote`] (implemented by each listener type served).
pub trait RemoteListener: axum::serve::Listener<Addr = SocketAddr, Io: LocalAddr> {}

impl RemoteListener for tokio::net::TcpListener {}

impl<'a, L: RemoteListener> Connected<axum::serve::IncomingStream<'a, L>> for Remote {
    fn connect_info(stream: axum::serve::IncomingStream<'a, L>) -> Self {
        Remote {
            addr: *stream.remote_addr(),
            local: LocalAddr::local_addr(stream.io()).ok(),
            cert: stream.io().peer_cert().map(Arc::new),
        }
    }
}

/// Who is calling; handlers take it from the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub remote: SocketAddr,
}

/// What a request's body must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `application/json` (or nothing, for a request without a body).
    Json,
    /// `application/octet-stream` (uploads, restores).
    Bytes,
}

/// A route's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub permission: Permission,
    pub body: Body,
    /// The route checks its own credential (the Mesos executor API's per-executor token): the
    /// guard leaves `Authorization` to the handler and lets the request through as anonymous,
    /// under `permission` and every other check.
    pub own_credential: bool,
}

impl Rule {
    pub fn new(permission: Permission) -> Rule {
        Rule {
            permission,
            body: Body::Json,
            own_credential: false,
        }
    }

    pub fn bytes(permission: Permission) -> Rule {
        Rule {
            body: Body::Bytes,
            ..Rule::new(permission)
        }
    }

    /// A route that checks its own credential (see [`Rule::own_credential`]).
    pub fn own_credential(self) -> Rule {
        Rule {
            own_credential: true,
            ..self
        }
    }
}

/// Names the rule of a request (method and raw path); `None` refuses it.
pub type Classifier = Arc<dyn Fn(&Method, &str) -> Option<Rule> + Send + Sync>;

/// Appends Prometheus text (families of its own) to a listener's `/metrics` answer.
pub type MetricsHook = Arc<dyn Fn(&mut String) + Send + Sync>;

/// What a daemon (center, manager, agent) adds to the listener of its endpoint: routes of its
/// own (already given their state), their rules (asked before the listener's own), and metrics
/// families.
#[derive(Default)]
pub struct Extension {
    pub routes: Option<axum::Router>,
    pub classify: Option<Classifier>,
    pub metrics: Option<MetricsHook>,
}

impl std::fmt::Debug for Extension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extension")
            .field("routes", &self.routes.is_some())
            .field("classify", &self.classify.is_some())
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

/// A listener's settings.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Whether the listener is on loopback: decides the default anonymous policy.
    pub loopback: bool,
    /// Host names requests may use besides IP literals and `localhost`.
    pub hosts: Vec<String>,
    /// Origins allowed besides the listener's own (`http://host:port`).
    pub origins: Vec<String>,
    /// The anonymous policy; `None` takes the default (loopback: user topics; beyond: nothing).
    pub anonymous: Option<Policy>,
    /// Realm in `WWW-Authenticate`.
    pub realm: String,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            loopback: true,
            hosts: vec![],
            origins: vec![],
            anonymous: None,
            realm: "yard".into(),
        }
    }
}

/// Failed credentials per address, for the slow-down.
struct Failures {
    by_ip: HashMap<IpAddr, (u32, Instant)>,
}

/// How long failed credentials are remembered per address.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Failures allowed before answers slow down.
const FREE_FAILURES: u32 = 3;
/// The longest delay before a 401.
const MAX_DELAY: Duration = Duration::from_secs(2);
/// Addresses remembered at most (the oldest are forgotten first).
const MAX_TRACKED: usize = 10_000;

/// One listener's guard.
pub struct Guard {
    cfg: GuardConfig,
    anonymous: Policy,
    pub registry: Arc<Registry>,
    pub audit: Arc<AuditLog>,
    /// Short critical sections only, never across `.await`.
    failures: Mutex<Failures>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("cfg", &self.cfg).finish()
    }
}

/// A JSON error answer (`{"code", "context"}`).
pub fn refusal(status: StatusCode, code: &str, context: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"code": code, "context": context.into()}).to_string(),
    )
        .into_response()
}

/// The host part of a `Host` header or an origin's authority (brackets of IPv6 removed).
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            authority
        }
    })
}

impl Guard {
    pub fn new(cfg: GuardConfig, registry: Arc<Registry>, audit: Arc<AuditLog>) -> Arc<Guard> {
        let anonymous = cfg.anonymous.clone().unwrap_or_else(|| {
            if cfg.loopback {
                Policy::anonymous_loopback()
            } else {
                Policy::nothing()
            }
        });
        Arc::new(Guard {
            cfg,
            anonymous,
            registry,
            audit,
            failures: Mutex::new(Failures {
                by_ip: HashMap::new(),
            }),
        })
    }

    /// `router`, with every request through this guard and `classify`.
    pub fn wrap(self: &Arc<Self>, router: Router, classify: Classifier) -> Router {
        let state = (self.clone(), classify);
        router.layer(axum::middleware::from_fn_with_state(state, guard))
    }

    /// [`Guard::wrap`] over the routes only: a path no route matches reaches the router's
    /// fallback (which must answer an error and nothing else) without the guard.
    pub fn wrap_routes(self: &Arc<Self>, router: Router, classify: Classifier) -> Router {
        let state = (self.clone(), classify);
        router.route_layer(axum::middleware::from_fn_with_state(state, guard))
    }

    /// The listener's settings.
    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    pub fn anonymous(&self) -> Principal {
        Principal::anonymous(self.anonymous.clone())
    }

    /// Whether a `Host` header names this listener (IP literal, localhost, configured name).
    pub fn host_ok(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
            return true;
        };
        let h = host_of(host);
        h.parse::<IpAddr>().is_ok()
            || h.eq_ignore_ascii_case("localhost")
            || self.cfg.hosts.iter().any(|n| n.eq_ignore_ascii_case(h))
    }

    /// Why a request is cross-origin, if it is.
    pub fn foreign_origin(&self, headers: &HeaderMap) -> Option<String> {
        let site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if let Some(o) = origin {
            if self.cfg.origins.iter().any(|a| a == o) {
                return None;
            }
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let authority = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"));
            if authority != Some(host) || host.is_empty() {
                return Some(format!(
                    "a request from origin {o:?} to {host:?}: this API answers its own origin only"
                ));
            }
            return None;
        }
        if site == "cross-site" || site == "same-site" {
            return Some(format!("a {site} browser request (Sec-Fetch-Site)"));
        }
        None
    }

    /// Reads the credential of a request: `Ok(anonymous)` without one. A browser's WebSocket
    /// cannot set `Authorization`; it offers the credential as a subprotocol instead
    /// ([`websocket_bearer`]).
    ///
    /// Without a header, an operator's TLS certificate (`cert`, checked by the handshake) is
    /// the credential: [`Registry::certificate`]. A header, when sent, decides.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        cert: Option<&PeerCert>,
    ) -> Result<Principal, AuthFailure> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return match websocket_bearer(headers)? {
                Some(t) => self.registry.authenticate(None, &t),
                None => match cert
                    .and_then(|c| c.principal.as_deref())
                    .and_then(|p| p.strip_prefix("operator:"))
                {
                    Some(name) => self.registry.certificate(name),
                    None => Ok(self.anonymous()),
                },
            };
        };
        let value = value.to_str().map_err(|_| AuthFailure::Malformed)?;
        if let Some(t) = value.strip_prefix("Bearer ") {
            return self.registry.authenticate(None, t.trim());
        }
        if let Some(b) = value.strip_prefix("Basic ") {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|_| AuthFailure::Malformed)?;
            let text = String::from_utf8(raw).map_err(|_| AuthFailure::Malformed)?;
            let (user, pass) = text.split_once(':').ok_or(AuthFailure::Malformed)?;
            return self.registry.authenticate(Some(user), pass);
        }
        Err(AuthFailure::Malformed)
    }

    /// The `401` for a request without (or with a bad) credential.
    pub fn unauthenticated(&self, context: impl Into<String>) -> Response {
        let mut r = refusal(StatusCode::UNAUTHORIZED, "unauthenticated", context);
        let realm = &self.cfg.realm;
        if let Ok(v) = HeaderValue::from_str(&format!(
            "Bearer realm=\"{realm}\", Basic realm=\"{realm}\", charset=\"UTF-8\""
        )) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }

    /// Refuses `caller` unless its policy allows `permission` (401 for anonymous, else 403).
    pub fn require(&self, caller: &Caller, permission: &Permission) -> Result<(), Box<Response>> {
        if caller.principal.policy.allows(permission) {
            return Ok(());
        }
        Err(Box::new(if caller.principal.is_anonymous() {
            self.unauthenticated(format!(
                "this needs a credential with the {permission} permission: send Authorization: Bearer <token> (yard token create; yard up writes one to yard-data/credentials)"
            ))
        } else {
            refusal(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{} lacks the {permission} permission", caller.principal),
            )
        }))
    }

    /// Appends an audit record for `caller`.
    pub fn record(
        &self,
        principal: &str,
        remote: SocketAddr,
        action: String,
        result: &str,
        status: Option<u16>,
        detail: String,
    ) {
        self.audit.record(AuditRecord {
            ts: now_ms(),
            principal: principal.to_string(),
            remote: remote.to_string(),
            action,
            result: result.to_string(),
            status,
            detail,
        });
    }

    /// Notes a failed credential from `ip`; returns how long to wait before answering.
    fn failed(&self, ip: IpAddr) -> Duration {
        let mut f = self.failures.lock().expect("failures");
        let now = Instant::now();
        if f.by_ip.len() >= MAX_TRACKED {
            f.by_ip
                .retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
            if f.by_ip.len() >= MAX_TRACKED {
                f.by_ip.clear();
            }
        }
        let e = f.by_ip.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) > FAILURE_WINDOW {
            *e = (0, now);
        }
        e.0 += 1;
        if e.0 <= FREE_FAILURES {
            Duration::ZERO
        } else {
            let shift = (e.0 - FREE_FAILURES).min(16);
            (Duration::from_millis(50) * (1u32 << shift)).min(MAX_DELAY)
        }
    }

    /// Prometheus families: audited decisions by result.
    pub fn metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP yard_audit_records_total Audited decisions (changes, commands, refusals, failed credentials) by result.\n# TYPE yard_audit_records_total counter"
        );
        for (result, n) in self.audit.counts() {
            let _ = writeln!(out, "yard_audit_records_total{{result=\"{result}\"}} {n}");
        }
    }
}

fn changes(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Adds the headers every answer carries.
fn harden(r: &mut Response) {
    let h = r.headers_mut();
    for (k, v) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
}

/// What a handler adds to its request's audit record: put it in the response's extensions
/// (a join says whom the host joined as, and with which token).
#[derive(Debug, Clone)]
pub struct AuditDetail(pub String);

async fn guard(
    State((g, classify)): State<(Arc<Guard>, Classifier)>,
    mut req: Request,
    next: Next,
) -> Response {
    let mut r = check(&g, &classify, &mut req).await;
    let r = match r.take() {
        Some(refused) => refused,
        None => {
            let caller = req.extensions().get::<Caller>().cloned();
            let action = format!("{} {}", req.method(), req.uri().path());
            let audited = changes(req.method());
            let resp = next.run(req).await;
            if let (true, Some(c)) = (audited, caller) {
                let status = resp.status();
                let result = if status.is_success() { "ok" } else { "failed" };
                let detail = resp
                    .extensions()
                    .get::<AuditDetail>()
                    .map(|d| d.0.clone())
                    .unwrap_or_default();
                g.record(
                    &c.principal.to_string(),
                    c.remote,
                    action,
                    result,
                    Some(status.as_u16()),
                    detail,
                );
            }
            resp
        }
    };
    let mut r = r;
    harden(&mut r);
    r
}

/// Runs the checks; `Some(answer)` refuses the request, `None` lets it through with its
/// [`Caller`] in the extensions.
async fn check(g: &Guard, classify: &Classifier, req: &mut Request) -> Option<Response> {
    let connected = req
        .extensions()
        .get::<axum::extract::ConnectInfo<Remote>>()
        .map(|c| c.0.clone());
    let remote = connected
        .as_ref()
        .map(|c| c.addr)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let cert = connected.and_then(|c| c.cert);
    let action = format!("{} {}", req.method(), req.uri().path());
    let headers = req.headers();
    if !g.host_ok(headers) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        g.record(
            "anonymous",
            remote,
            action,
            "denied",
            Some(421),
            format!("Host {host:?}"),
        );
        return Some(refusal(
            StatusCode::MISDIRECTED_REQUEST,
            "wrong_host",
            format!("this listener does not serve the host name {host:?}: use its address (or list the name with --allow-host)"),
        ));
    }
    if let Some(why) = g.foreign_origin(headers) {
        g.record(
            "anonymous",
            remote,
            action,
            "denied",
            Some(403),
            why.clone(),
        );
        return Some(refusal(StatusCode::FORBIDDEN, "cross_origin", why));
    }
    let rule = classify(req.method(), req.uri().path());
    let authenticated = if rule.as_ref().is_some_and(|r| r.own_credential) {
        Ok(g.anonymous())
    } else {
        g.authenticate(headers, cert.as_deref())
    };
    let principal = match authenticated {
        Ok(p) => p,
        Err(e) => {
            let wait = g.failed(remote.ip());
            g.record(
                "anonymous",
                remote,
                action,
                "unauthenticated",
                Some(401),
                e.to_string(),
            );
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            return Some(g.unauthenticated(format!("credential refused: {e}")));
        }
    };
    let caller = Caller { principal, remote };
    let Some(rule) = rule else {
        g.record(
            &caller.principal.to_string(),
            remote,
            action,
            "denied",
            Some(403),
            "no policy covers this route".into(),
        );
        return Some(refusal(
            StatusCode::FORBIDDEN,
            "no_policy",
            format!(
                "no policy covers {} {}: refused",
                req.method(),
                req.uri().path()
            ),
        ));
    };
    if let Err(r) = g.require(&caller, &rule.permission) {
        let result = if caller.principal.is_anonymous() {
            "unauthenticated"
        } else {
            "denied"
        };
        g.record(
            &caller.principal.to_string(),
            remote,
            action,
            result,
            Some(r.status().as_u16()),
            format!("needs {}", rule.permission),
        );
        return Some(*r);
    }
    if changes(req.method()) {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|c| {
                c.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let has_body = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|n| n != "0")
            || req.headers().contains_key(header::TRANSFER_ENCODING);
        let wanted = match rule.body {
            Body::Json => "application/json",
            Body::Bytes => "application/octet-stream",
        };
        let ok = match ct.as_deref() {
            None => !has_body,
            Some(c) => c == wanted,
        };
        if !ok {
            g.record(
                &caller.principal.to_string(),
                remote,
                action,
                "denied",
                Some(415),
                format!("Content-Type {ct:?}"),
            );
            return Some(refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "{} {} takes Content-Type: {wanted}",
                    req.method(),
                    req.uri().path()
                ),
            ));
        }
    }
    req.extensions_mut().insert(caller);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v.parse().unwrap());
        h
    }

    #[test]
    fn a_browser_websocket_offers_its_credential_as_a_subprotocol() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("alice.s3cr+t/");
        let h = offer(&format!("yard.v1, {WEBSOCKET_BEARER}{b64}"));
        assert_eq!(
            websocket_bearer(&h).unwrap().as_deref(),
            Some("alice.s3cr+t/")
        );
        assert_eq!(websocket_bearer(&offer("yard.v1")).unwrap(), None);
        assert_eq!(websocket_bearer(&HeaderMap::new()).unwrap(), None);
        assert!(matches!(
            websocket_bearer(&offer("yard.bearer.***")),
            Err(AuthFailure::Malformed)
        ));
    }
}
