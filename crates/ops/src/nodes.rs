//! Node specifications and the cluster config file that places them on agents.
//!
//! A *node* is a process an agent supervises. The cluster config (TOML, read by the manager and
//! distributed to its agents) lists nodes and where they run: on named agents, on agents with a
//! role, or (neither given) on every agent. See docs/OPS.md for the format.

use crate::error::ConfigError;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use yard_data::time::parse_duration;

/// One supervised process, as configured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique in the cluster: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// The program (looked up on PATH when it has no slash).
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory [default: the agent's directory for this node].
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub health: Option<HealthSpec>,
    /// Agents (by name) that run this node.
    #[serde(default)]
    pub agents: Vec<String>,
    /// Roles whose agents run this node.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The account it runs as [default: the agent's `--node-user` when the agent runs as root,
    /// else the agent's own]. Its working directory and `HOME` are given to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart after any exit (with backoff).
    #[default]
    Always,
    /// Restart after a non-zero exit or a signal.
    OnFailure,
    Never,
}

/// How an agent decides that a node is healthy. Exactly one of `command`, `tcp`, `http`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// A program and its arguments; healthy when it exits 0.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// HOST:PORT; healthy when a connection opens.
    #[serde(default)]
    pub tcp: Option<String>,
    /// An `http://` URL; healthy on a 2xx or 3xx answer.
    #[serde(default)]
    pub http: Option<String>,
    #[serde(default = "default_interval")]
    pub interval: String,
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Consecutive failures before the node counts as unhealthy.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_interval() -> String {
    "2s".into()
}
fn default_timeout() -> String {
    "1s".into()
}
fn default_retries() -> u32 {
    3
}

impl HealthSpec {
    pub fn interval(&self) -> Duration {
        parse_duration(&self.interval).unwrap_or(Duration::from_secs(2))
    }
    pub fn timeout(&self) -> Duration {
        parse_duration(&self.timeout).unwrap_or(Duration::from_secs(1))
    }
}

/// The cluster config file: `[[node]]` tables.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeSpec>,
}

impl ClusterConfig {
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        ClusterConfig::parse(&text).map_err(|e| ConfigError::In {
            path: path.to_path_buf(),
            inner: Box::new(e),
        })
    }

    pub fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
        let c: ClusterConfig =
            toml::from_str(text).map_err(|e| ConfigError::Syntax { why: e.to_string() })?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name: &str, problem: String| {
            Err(ConfigError::Node {
                name: name.to_string(),
                problem,
            })
        };
        let mut seen = std::collections::BTreeSet::new();
        for n in &self.nodes {
            check_name("node", &n.name)?;
            if !seen.insert(&n.name) {
                return bad(&n.name, "listed twice".into());
            }
            if n.command.is_empty() {
                return bad(&n.name, "command is empty".into());
            }
            if let Some(h) = &n.health {
                let kinds = [h.command.is_some(), h.tcp.is_some(), h.http.is_some()];
                if kinds.iter().filter(|k| **k).count() != 1 {
                    return bad(
                        &n.name,
                        "a health check has exactly one of command, tcp, http".into(),
                    );
                }
                if h.command.as_ref().is_some_and(|c| c.is_empty()) {
                    return bad(&n.name, "health command is empty".into());
                }
                if let Some(u) = &h.http {
                    if !u.starts_with("http://") {
                        return bad(
                            &n.name,
                            format!("health http must be an http:// URL, got {u:?}"),
                        );
                    }
                }
                for (what, v) in [("interval", &h.interval), ("timeout", &h.timeout)] {
                    match parse_duration(v) {
                        Ok(d) if !d.is_zero() => {}
                        _ => {
                            return bad(
                                &n.name,
                                format!(
                                    "health {what} {v:?} is not a duration such as 500ms or 2s"
                                ),
                            )
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The nodes an agent with this name and these roles runs.
    pub fn nodes_for(&self, agent: &str, roles: &[String]) -> Vec<NodeSpec> {
        self.nodes
            .iter()
            .filter(|n| {
                (n.agents.is_empty() && n.roles.is_empty())
                    || n.agents.iter().any(|a| a == agent)
                    || n.roles.iter().any(|r| roles.contains(r))
            })
            .cloned()
            .collect()
    }
}

/// Names of nodes, agents, clusters: letters, digits, `.`, `_`, `-`, at most 64 bytes.
pub fn check_name(what: &'static str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        || name.starts_with('.')
    {
        return Err(ConfigError::Name {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_places_nodes_by_agent_role_or_everywhere() {
        let c = ClusterConfig::parse(
            r#"
            [[node]]
            name = "everywhere"
            command = "sleep"
            args = ["100"]
            [[node]]
            name = "web"
            command = "web"
            roles = ["front"]
            restart = "on-failure"
            [node.health]
            http = "http://127.0.0.1:8080/"
            [[node]]
            name = "db"
            command = "db"
            agents = ["a2"]
            "#,
        )
        .unwrap();
        let names = |v: Vec<NodeSpec>| v.into_iter().map(|n| n.name).collect::<Vec<_>>();
        assert_eq!(names(c.nodes_for("a1", &[])), ["everywhere"]);
        assert_eq!(
            names(c.nodes_for("a1", &["front".into()])),
            ["everywhere", "web"]
        );
        assert_eq!(names(c.nodes_for("a2", &[])), ["everywhere", "db"]);
        assert_eq!(c.nodes[1].restart, RestartPolicy::OnFailure);
        assert_eq!(
            c.nodes[1].health.as_ref().unwrap().interval(),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn bad_configs_are_refused_with_the_reason() {
        for (text, want) in [
            (
                "[[node]]\nname='a'\ncommand='x'\n[[node]]\nname='a'\ncommand='y'",
                "node \"a\": listed twice",
            ),
            ("[[node]]\nname='a b'\ncommand='x'", "not valid"),
            (
                "[[node]]\nname='a'\ncommand='x'\ncolour='red'",
                "unknown field `colour`",
            ),
            (
                "[[node]]\nname='a'\ncommand='x'\n[node.health]\ntcp='h:1'\nhttp='http://h/'",
                "exactly one",
            ),
            (
                "[[node]]\nname='a'\ncommand='x'\n[node.health]\ntcp='h:1'\ninterval='soon'",
                "not a duration",
            ),
            (
                "[[node]]\nname='a'\ncommand='x'\nrestart='sometimes'",
                "unknown variant",
            ),
        ] {
            let e = ClusterConfig::parse(text).unwrap_err();
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }
}
