//! Every route of every listener against every built-in principal: the rule its classifier
//! gives and who passes it. A route the table does not list, or a documented route no
//! classifier covers, fails here; a route added to a router without a rule is refused by the
//! guard (closed by default), so it fails its own tests.

use yard_auth::http::{Body, Method, Rule};
use yard_auth::{Permission, Policy, Role};

/// Who may call: admin, operator, viewer, app, anonymous on loopback, anonymous beyond.
const WHO: [&str; 6] = ["admin", "operator", "viewer", "app", "anon-lo", "anon-net"];

fn policy(who: &str) -> Policy {
    match who {
        "admin" => Role::Admin.policy(),
        "operator" => Role::Operator.policy(),
        "viewer" => Role::Viewer.policy(),
        "app" => Role::App.policy(),
        "anon-lo" => Policy::anonymous_loopback(),
        "anon-net" => Policy::nothing(),
        _ => unreachable!(),
    }
}

type Classify = fn(&Method, &str) -> Option<Rule>;

fn node(m: &Method, p: &str) -> Option<Rule> {
    yard_gateway::classify(m, p)
}

/// The center's gateway: its own routes first, then the node's (as `serve_with` asks them).
fn center(m: &Method, p: &str) -> Option<Rule> {
    yard_ops::center::classify(m, p).or_else(|| yard_gateway::classify(m, p))
}

fn master(m: &Method, p: &str) -> Option<Rule> {
    yard_rm::master::server::classify(m, p)
}

fn agent(m: &Method, p: &str) -> Option<Rule> {
    yard_rm::agent::classify(m, p)
}

/// (listener, method, path, who passes: one letter per [`WHO`], `y` or `.`).
const TABLE: &[(&str, &str, &str, &str)] = &[
    // The node gateway (every daemon serves these).
    ("node", "GET", "/v1/health", "yyyyyy"),
    ("node", "GET", "/v1/messages/json", "yyyyy."),
    ("node", "GET", "/v1/status/json", "yyy..."),
    ("node", "GET", "/metrics", "yyy..."),
    ("node", "GET", "/v1/audit", "y....."),
    ("node", "GET", "/v1/peers", "yyy..."),
    ("node", "POST", "/v1/peers", "y....."),
    ("node", "DELETE", "/v1/peers", "y....."),
    ("node", "GET", "/v1/stores", "yyy..."),
    ("node", "POST", "/v1/stores", "y....."),
    ("node", "GET", "/v1/stores/users", "yyyy.."),
    ("node", "DELETE", "/v1/stores/users", "y....."),
    ("node", "GET", "/v1/stores/users/keys", "yyyy.."),
    ("node", "GET", "/v1/stores/users/keys/k", "yyyy.."),
    ("node", "PUT", "/v1/stores/users/keys/k", "yy.y.."),
    ("node", "DELETE", "/v1/stores/users/keys/k", "yy.y.."),
    ("node", "POST", "/v1/stores/users/ops", "yyyy.."),
    ("node", "GET", "/v1/stores/users/backup", "yyyy.."),
    ("node", "GET", "/v1/stores/users/dump", "yyyy.."),
    ("node", "POST", "/v1/stores/users/restore", "y....."),
    // The system's own stores: admin only (their contents steer the daemons).
    ("node", "GET", "/v1/stores/ops-center/dump", "y....."),
    ("node", "PUT", "/v1/stores/rm-local/keys/k", "y....."),
    ("node", "GET", "/v1/stores/ops%2Dcenter/dump", "y....."),
    // The center.
    ("center", "GET", "/v1/openapi.json", "yyyyyy"),
    ("center", "GET", "/v1/topology", "yyy..."),
    ("center", "GET", "/v1/clusters", "yyy..."),
    ("center", "GET", "/v1/clusters/local", "yyy..."),
    ("center", "GET", "/v1/clusters/local/links", "yyy..."),
    ("center", "GET", "/v1/nodes", "yyy..."),
    ("center", "GET", "/v1/events", "yyy..."),
    ("center", "GET", "/v1/commands", "yyy..."),
    ("center", "GET", "/v1/commands/1", "yyy..."),
    ("center", "GET", "/v1/logs/local/agent-1/web", "yyy..."),
    ("center", "POST", "/v1/commands", "yy...."),
    ("center", "POST", "/v1/artifacts", "yy...."),
    ("center", "GET", "/v1/metrics/query", "yyy..."),
    ("center", "GET", "/v1/metrics/series", "yyy..."),
    ("center", "GET", "/v1/stats", "yyy..."),
    ("center", "GET", "/metrics", "yyy..."),
    ("center", "GET", "/v1/stream", "yyy..."),
    ("center", "GET", "/v1/whoami", "yyyyyy"),
    // A cluster's resource manager, passed to its Mesos master (which checks again).
    ("center", "GET", "/v1/clusters/local/rm/state", "yyy..."),
    ("center", "GET", "/v1/clusters/local/rm/agents", "yyy..."),
    (
        "center",
        "GET",
        "/v1/clusters/local/rm/frameworks",
        "yyy...",
    ),
    ("center", "GET", "/v1/clusters/local/rm/tasks", "yyy..."),
    (
        "center",
        "GET",
        "/v1/clusters/local/rm/tasks/t1/log",
        "yyy...",
    ),
    ("center", "GET", "/v1/clusters/local/rm/services", "yyy..."),
    (
        "center",
        "GET",
        "/v1/clusters/local/rm/services/web",
        "yyy...",
    ),
    ("center", "POST", "/v1/clusters/local/rm/services", "yy...."),
    (
        "center",
        "POST",
        "/v1/clusters/local/rm/services/web/scale",
        "yy....",
    ),
    (
        "center",
        "DELETE",
        "/v1/clusters/local/rm/services/web",
        "yy....",
    ),
    // The code in the body is the credential: checked by the handler.
    ("center", "POST", "/v1/login", "yyyyyy"),
    ("center", "POST", "/v1/login/links", "y....."),
    ("center", "GET", "/v1/ca", "yyyyyy"),
    ("center", "GET", "/v1/ca/crl", "yyyyyy"),
    ("center", "POST", "/v1/join", "yyyyyy"),
    // The TLS client certificate is the credential: checked by the handler.
    ("center", "POST", "/v1/renew", "yyyyyy"),
    ("center", "GET", "/v1/join/tokens", "y....."),
    ("center", "POST", "/v1/join/tokens", "y....."),
    ("center", "DELETE", "/v1/join/tokens/x", "y....."),
    // The dashboard's files hold no data.
    ("center", "GET", "/", "yyyyyy"),
    ("center", "GET", "/ui/", "yyyyyy"),
    ("center", "GET", "/ui/views/topology.js", "yyyyyy"),
    // The Mesos master.
    ("master", "GET", "/version", "yyyyyy"),
    ("master", "GET", "/health", "yyyyyy"),
    ("master", "GET", "/master/state", "yyy..."),
    ("master", "GET", "/state.json", "yyy..."),
    ("master", "GET", "/master/slaves", "yyy..."),
    ("master", "GET", "/master/frameworks", "yyy..."),
    ("master", "GET", "/tasks", "yyy..."),
    ("master", "GET", "/metrics/snapshot", "yyy..."),
    ("master", "POST", "/api/v1", "yyy..."),
    ("master", "POST", "/api/v1/scheduler", "yy...."),
    ("master", "GET", "/services", "yyy..."),
    ("master", "POST", "/services", "yy...."),
    ("master", "GET", "/services/web", "yyy..."),
    ("master", "DELETE", "/services/web", "yy...."),
    ("master", "POST", "/services/web/scale", "yy...."),
    ("master", "POST", "/yard/tasks/kill", "yy...."),
    // The Mesos agent (the executor API is same-host only, checked in its handler).
    ("agent", "GET", "/version", "yyyyyy"),
    ("agent", "GET", "/state", "yyy..."),
    ("agent", "GET", "/slave(1)/state.json", "yyy..."),
    ("agent", "GET", "/monitor/statistics", "yyy..."),
    ("agent", "POST", "/api/v1/executor", "yyyyyy"),
    ("agent", "GET", "/files/read", "yyy..."),
    ("agent", "GET", "/slave(1)/files/read.json", "yyy..."),
];

fn listener(name: &str) -> Classify {
    match name {
        "node" => node,
        "center" => center,
        "master" => master,
        "agent" => agent,
        _ => unreachable!(),
    }
}

#[test]
fn every_route_of_every_listener_has_the_rule_the_table_says() {
    let mut wrong = Vec::new();
    for (l, m, path, expect) in TABLE {
        let method: Method = m.parse().unwrap();
        let Some(rule) = listener(l)(&method, path) else {
            wrong.push(format!("{l} {m} {path}: no rule"));
            continue;
        };
        for (who, e) in WHO.iter().zip(expect.chars()) {
            let got = policy(who).allows(&rule.permission);
            if got != (e == 'y') {
                wrong.push(format!(
                    "{l} {m} {path} ({}): {who} {}",
                    rule.permission,
                    if got { "passes" } else { "is refused" }
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn routes_outside_the_table_are_refused() {
    for (l, m, path) in [
        ("node", "GET", "/v1/nothing"),
        ("node", "POST", "/v1/status/json"),
        ("node", "PUT", "/v1/stores"),
        ("node", "POST", "/v1/stores/users/keys/k"),
        ("center", "DELETE", "/v1/commands/1"),
        ("center", "PUT", "/v1/topology"),
        ("center", "POST", "/ui/app.js"),
        ("center", "DELETE", "/v1/login"),
        ("center", "DELETE", "/v1/join"),
        ("center", "PUT", "/v1/join/tokens"),
        ("center", "POST", "/v1/ca/crl"),
        ("center", "GET", "/v1/renew"),
        ("center", "POST", "/v1/clusters/local/rm/api/v1"),
        ("center", "POST", "/v1/clusters/local/rm/state"),
        ("center", "GET", "/v1/clusters/local/rm/services/../state"),
        ("center", "PUT", "/v1/clusters/local/rm/services/web"),
        ("master", "GET", "/master/teardown"),
        ("master", "POST", "/master/state"),
        ("agent", "GET", "/files/browse"),
        ("agent", "POST", "/state"),
    ] {
        let method: Method = m.parse().unwrap();
        assert_eq!(listener(l)(&method, path), None, "{l} {m} {path}");
    }
}

/// Every route the center documents (docs/openapi.json) has a rule, so documenting a new route
/// without giving it a policy fails here.
#[test]
fn every_documented_center_route_has_a_rule_and_uploads_take_bytes() {
    let doc: serde_json::Value = serde_json::from_str(yard_ops::center::OPENAPI).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 10);
    for (path, ops) in paths {
        // `{name}` parameters become a sample segment.
        let concrete: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for method in ops.as_object().unwrap().keys() {
            let m: Method = method.to_uppercase().parse().unwrap();
            let rule = center(&m, &concrete)
                .unwrap_or_else(|| panic!("{method} {path} is documented but has no rule"));
            if path == "/v1/artifacts" {
                assert_eq!(rule.body, Body::Bytes);
            }
            // A change that is open checks its own credential (the login code).
            assert!(
                m == Method::GET || rule.permission != Permission::Open || rule.own_credential,
                "{method} {path} changes something and is open"
            );
        }
    }
}
