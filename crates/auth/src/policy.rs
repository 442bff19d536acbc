//! Who is calling, and what they may do.
//!
//! A [`Principal`] is whoever makes a request or holds a connection: an operator or an
//! application (by the name of its token), or anonymous. Daemons and peers prove themselves on
//! the peering handshake instead (see the fabric's `peer` module). Names are written as a
//! certificate will carry them later: `operator:alice`, `app:ingest`, `anonymous`.
//!
//! A [`Policy`] says what a principal may do: a set of [`Grant`]s for the HTTP routes, and
//! allow/deny lists of topic prefixes and store names for the fabric. The built-in [`Role`]s are
//! policies; a token may carry a custom one instead. Deny wins over allow; nothing is allowed
//! unless a list or grant says so.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// The built-in roles a token is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, tokens and the audit log included.
    Admin,
    /// Commands, deploys, services, Mesos frameworks; reads; publish and subscribe; user stores.
    Operator,
    /// Reads everything but secrets; subscribes; reads user stores.
    Viewer,
    /// Publish and subscribe on user topics, read and write user stores (narrowed by a custom
    /// policy's lists).
    App,
}

/// A role name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: use admin, operator, viewer or app")]
pub struct UnknownRole(pub String);

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::App => "app",
        }
    }

    pub fn parse(s: &str) -> Result<Role, UnknownRole> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            "app" => Ok(Role::App),
            other => Err(UnknownRole(other.to_string())),
        }
    }

    /// The policy this role stands for.
    pub fn policy(self) -> Policy {
        use Grant::*;
        let all = Rules::all();
        match self {
            Role::Admin => Policy {
                grants: [Metrics, Read, Outputs, Command, Peer, Stores, Admin]
                    .into_iter()
                    .collect(),
                publish: all.clone(),
                subscribe: all.clone(),
                store_read: all.clone(),
                store_write: all.clone(),
                system_stores: true,
                events: true,
                control: true,
            },
            Role::Operator => Policy {
                grants: [Metrics, Read, Outputs, Command].into_iter().collect(),
                publish: all.clone(),
                subscribe: all.clone(),
                store_read: all.clone(),
                store_write: all,
                system_stores: false,
                events: true,
                control: false,
            },
            Role::Viewer => Policy {
                grants: [Metrics, Read, Outputs].into_iter().collect(),
                publish: Rules::none(),
                subscribe: all.clone(),
                store_read: all,
                store_write: Rules::none(),
                system_stores: false,
                events: true,
                control: false,
            },
            Role::App => Policy {
                grants: BTreeSet::new(),
                publish: all.clone(),
                subscribe: all.clone(),
                store_read: all.clone(),
                store_write: all,
                system_stores: false,
                events: false,
                control: false,
            },
        }
    }
}

/// A permission an HTTP route asks for (see each listener's route table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// Anyone, anonymous beyond loopback included (health and version probes, the API document).
    Open,
    /// Prometheus text and the endpoint's status.
    Metrics,
    /// The system's state: topology, clusters, peers, events, figures, Mesos state.
    Read,
    /// What programs printed and wrote: command outputs, node logs, task sandboxes.
    Outputs,
    /// Reading store `name`.
    StoreRead(String),
    /// Changing the contents of store `name`.
    StoreWrite(String),
    /// Attaching, detaching and restoring stores.
    Stores,
    /// Commands, deploys, artifacts, services, Mesos scheduler and operator calls.
    Command,
    /// Adding and removing peers.
    Peer,
    /// Credentials and the audit log.
    Admin,
    /// The WebSocket API: the policy's topic and store lists decide each message.
    Stream,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Permission::Open => write!(f, "open"),
            Permission::Metrics => write!(f, "metrics"),
            Permission::Read => write!(f, "read"),
            Permission::Outputs => write!(f, "outputs"),
            Permission::StoreRead(s) => write!(f, "store_read({s})"),
            Permission::StoreWrite(s) => write!(f, "store_write({s})"),
            Permission::Stores => write!(f, "stores"),
            Permission::Command => write!(f, "command"),
            Permission::Peer => write!(f, "peer"),
            Permission::Admin => write!(f, "admin"),
            Permission::Stream => write!(f, "stream"),
        }
    }
}

/// What a policy grants on the HTTP routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    Metrics,
    Read,
    Outputs,
    Command,
    Peer,
    Stores,
    Admin,
}

/// Allow and deny lists of prefixes (topics) or names (stores; a trailing `*` matches a prefix).
/// `"*"` alone matches everything. Deny wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

impl Rules {
    pub fn all() -> Rules {
        Rules {
            allow: vec!["*".into()],
            deny: vec![],
        }
    }

    pub fn none() -> Rules {
        Rules::default()
    }

    /// Whether a topic (or a subscription prefix) is allowed: it must lie under an allowed
    /// prefix and under no denied one. A subscription prefix broader than every allowed prefix
    /// is refused (it would receive topics outside them).
    pub fn topic(&self, topic: &str) -> bool {
        let under = |p: &String| p == "*" || topic.starts_with(p.as_str());
        self.allow.iter().any(under) && !self.deny.iter().any(under)
    }

    /// Whether a subscription prefix may receive anything denied (a broad prefix over a denied
    /// one): such a subscription is refused rather than silently narrowed.
    pub fn covers_denied(&self, prefix: &str) -> bool {
        self.deny.iter().any(|d| d == "*" || d.starts_with(prefix))
    }

    /// Whether a store name is allowed (`name`, `prefix*` or `*`).
    pub fn name(&self, name: &str) -> bool {
        let m = |p: &String| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        };
        self.allow.iter().any(m) && !self.deny.iter().any(m)
    }
}

/// What a principal may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// HTTP permissions.
    #[serde(default)]
    pub grants: BTreeSet<Grant>,
    /// User topics it may publish on.
    #[serde(default)]
    pub publish: Rules,
    /// User topic prefixes it may subscribe to.
    #[serde(default)]
    pub subscribe: Rules,
    /// Stores it may read.
    #[serde(default)]
    pub store_read: Rules,
    /// Stores it may change.
    #[serde(default)]
    pub store_write: Rules,
    /// Whether the system's own stores (`ops-*`, `rm-*`, `yard-*`) are within its store lists.
    #[serde(default)]
    pub system_stores: bool,
    /// Whether it may watch the endpoint's local events (`<$>/local/data/…`: statuses, errors,
    /// store changes).
    #[serde(default)]
    pub events: bool,
    /// Whether it may receive control traffic (`<$>/ops/`, `<$>/store/`, `<$>/reply/`).
    #[serde(default)]
    pub control: bool,
}

/// Why a topic or store operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(
        "{principal} may not publish on {topic:?} (its policy's publish list does not allow it)"
    )]
    Publish { principal: String, topic: String },
    #[error("{principal} may not subscribe to {prefix:?}: {why}")]
    Subscribe {
        principal: String,
        prefix: String,
        why: &'static str,
    },
    #[error(
        "{principal} may not {what} store {store:?} (missing permission store_{what}({store}))"
    )]
    Store {
        principal: String,
        store: String,
        what: &'static str,
    },
}

/// User-visible topics only the system publishes on (live metrics).
pub const SYSTEM_TOPICS: &str = "yard/";

/// The system's own stores, never written by clients unless a policy says so.
pub fn is_system_store(name: &str) -> bool {
    ["ops-", "rm-", "yard-"].iter().any(|p| name.starts_with(p))
}

impl Policy {
    /// The default policy of anonymous callers on a loopback listener: publish and subscribe on
    /// user topics (Broker's WebSocket clients carry no credentials), nothing else.
    pub fn anonymous_loopback() -> Policy {
        Policy {
            publish: Rules::all(),
            subscribe: Rules::all(),
            ..Policy::default()
        }
    }

    /// The default policy of anonymous callers beyond loopback: nothing.
    pub fn nothing() -> Policy {
        Policy::default()
    }

    pub fn has(&self, g: Grant) -> bool {
        self.grants.contains(&g)
    }

    /// Whether this policy allows an HTTP permission.
    pub fn allows(&self, p: &Permission) -> bool {
        match p {
            Permission::Open => true,
            // A connection that could do nothing is refused at the upgrade (a 401 or 403
            // tells the client why, where a closed stream would not).
            Permission::Stream => {
                !(self.publish.allow.is_empty()
                    && self.subscribe.allow.is_empty()
                    && self.store_read.allow.is_empty()
                    && self.store_write.allow.is_empty()
                    && !self.events
                    && !self.control)
            }
            Permission::Metrics => self.has(Grant::Metrics),
            Permission::Read => self.has(Grant::Read),
            Permission::Outputs => self.has(Grant::Outputs),
            Permission::StoreRead(s) => self.may_store(s, false),
            Permission::StoreWrite(s) => self.may_store(s, true),
            Permission::Stores => self.has(Grant::Stores),
            Permission::Command => self.has(Grant::Command),
            Permission::Peer => self.has(Grant::Peer),
            Permission::Admin => self.has(Grant::Admin),
        }
    }

    fn may_store(&self, name: &str, write: bool) -> bool {
        if is_system_store(name) && !self.system_stores {
            return false;
        }
        if write {
            self.store_write.name(name)
        } else {
            self.store_read.name(name) || self.store_write.name(name)
        }
    }

    /// The reserved prefixes whose messages this policy may receive (the router drops every
    /// other reserved message on its way to the client).
    pub fn reserved_grants(&self) -> Vec<String> {
        if self.control {
            vec![yard_data::topic::RESERVED.to_string()]
        } else if self.events {
            vec![yard_data::topic::LOCAL.to_string() + "data/"]
        } else {
            vec![]
        }
    }
}

/// Whoever makes a request or holds a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: Kind,
    /// The token's name (empty for anonymous).
    pub name: String,
    pub policy: Policy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A person: tokens with the admin, operator or viewer role.
    Operator,
    /// A program: tokens with the app role or a custom policy.
    App,
    Anonymous,
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Operator => write!(f, "operator:{}", self.name),
            Kind::App => write!(f, "app:{}", self.name),
            Kind::Anonymous => write!(f, "anonymous"),
        }
    }
}

impl Principal {
    pub fn anonymous(policy: Policy) -> Principal {
        Principal {
            kind: Kind::Anonymous,
            name: String::new(),
            policy,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.kind == Kind::Anonymous
    }

    /// Checks a publication on a user topic. The `yard/` prefix (live metrics) is the
    /// system's: only a policy with the control grant publishes there.
    pub fn may_publish(&self, topic: &str) -> Result<(), Denied> {
        let system = topic.starts_with(SYSTEM_TOPICS) && !self.policy.control;
        if !system && self.policy.publish.topic(topic) {
            Ok(())
        } else {
            Err(Denied::Publish {
                principal: self.to_string(),
                topic: topic.to_string(),
            })
        }
    }

    /// Checks a subscription prefix. Reserved prefixes need the `events` or `control` right;
    /// user prefixes must lie within the subscribe list and cover nothing it denies.
    pub fn may_subscribe(&self, prefix: &str) -> Result<(), Denied> {
        use yard_data::topic::{LOCAL, RESERVED};
        let refuse = |why| {
            Err(Denied::Subscribe {
                principal: self.to_string(),
                prefix: prefix.to_string(),
                why,
            })
        };
        if prefix.starts_with(RESERVED) {
            let events = format!("{LOCAL}data/");
            if self.policy.control {
                return Ok(());
            }
            if prefix.starts_with(&events) {
                return if self.policy.events {
                    Ok(())
                } else {
                    refuse("the endpoint's local events need a credential with the viewer role or above")
                };
            }
            return refuse("control traffic (<$>/…) is for the system's own daemons");
        }
        if !self.policy.subscribe.topic(prefix) {
            return refuse("its policy's subscribe list does not allow it");
        }
        if self.policy.subscribe.covers_denied(prefix) {
            return refuse("the prefix covers topics its policy denies");
        }
        Ok(())
    }

    /// Checks a store operation.
    pub fn may_store(&self, store: &str, write: bool) -> Result<(), Denied> {
        if self.policy.may_store(store, write) {
            Ok(())
        } else {
            Err(Denied::Store {
                principal: self.to_string(),
                store: store.to_string(),
                what: if write { "write" } else { "read" },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role) -> Principal {
        Principal {
            kind: Kind::Operator,
            name: role.name().into(),
            policy: role.policy(),
        }
    }

    #[test]
    fn roles_grant_what_their_documentation_says() {
        use Permission::*;
        let perms = [
            Open,
            Metrics,
            Read,
            Outputs,
            StoreRead("users".into()),
            StoreWrite("users".into()),
            StoreRead("ops-center".into()),
            StoreWrite("rm-local".into()),
            Stores,
            Command,
            Peer,
            Admin,
        ];
        let table = |p: &Policy| -> Vec<bool> { perms.iter().map(|x| p.allows(x)).collect() };
        let t = true;
        let f = false;
        assert_eq!(table(&Role::Admin.policy()), vec![t; 12]);
        assert_eq!(
            table(&Role::Operator.policy()),
            vec![t, t, t, t, t, t, f, f, f, t, f, f]
        );
        assert_eq!(
            table(&Role::Viewer.policy()),
            vec![t, t, t, t, t, f, f, f, f, f, f, f]
        );
        assert_eq!(
            table(&Role::App.policy()),
            vec![t, f, f, f, t, t, f, f, f, f, f, f]
        );
        assert_eq!(
            table(&Policy::anonymous_loopback()),
            vec![t, f, f, f, f, f, f, f, f, f, f, f]
        );
        assert_eq!(
            table(&Policy::nothing()),
            vec![t, f, f, f, f, f, f, f, f, f, f, f]
        );
    }

    #[test]
    fn control_traffic_is_refused_to_every_client_role_but_admin() {
        for role in [Role::Operator, Role::Viewer, Role::App] {
            let p = who(role);
            for prefix in ["<$>/ops/", "<$>/store/", "<$>/reply/", "<$>/", "<$>"] {
                assert!(p.may_subscribe(prefix).is_err(), "{role:?} {prefix}");
            }
        }
        let anon = Principal::anonymous(Policy::anonymous_loopback());
        assert!(anon.may_subscribe("<$>/ops/").is_err());
        assert!(anon.may_subscribe("<$>/local/data/statuses").is_err());
        assert!(anon.may_subscribe("/demo/").is_ok());
        // A broad prefix is allowed, and the router keeps reserved topics from it.
        assert!(anon.may_subscribe("").is_ok());
        assert_eq!(anon.policy.reserved_grants(), Vec::<String>::new());
        assert!(who(Role::Viewer)
            .may_subscribe("<$>/local/data/statuses")
            .is_ok());
        assert_eq!(
            who(Role::Viewer).policy.reserved_grants(),
            vec!["<$>/local/data/".to_string()]
        );
        assert!(who(Role::Admin).may_subscribe("<$>/ops/").is_ok());
        let nobody = Principal::anonymous(Policy::nothing());
        assert!(nobody.may_subscribe("/demo/").is_err());
        assert!(nobody.may_publish("/demo/a").is_err());
    }

    #[test]
    fn custom_lists_narrow_topics_and_stores() {
        let p = Principal {
            kind: Kind::App,
            name: "ingest".into(),
            policy: Policy {
                publish: Rules {
                    allow: vec!["/app/".into()],
                    deny: vec!["/app/secret/".into()],
                },
                subscribe: Rules {
                    allow: vec!["/app/".into()],
                    deny: vec!["/app/secret/".into()],
                },
                store_read: Rules {
                    allow: vec!["users".into(), "cache-*".into()],
                    deny: vec![],
                },
                store_write: Rules {
                    allow: vec!["cache-*".into()],
                    deny: vec!["cache-frozen".into()],
                },
                ..Policy::default()
            },
        };
        assert!(p.may_publish("/app/x").is_ok());
        assert!(p.may_publish("/app/secret/x").is_err());
        assert!(p.may_publish("/other").is_err());
        assert!(p.may_subscribe("/app/x/").is_ok());
        assert!(p.may_subscribe("/app/").is_err(), "covers a denied prefix");
        assert!(p.may_subscribe("/").is_err(), "broader than allowed");
        assert!(p.may_store("users", false).is_ok());
        assert!(p.may_store("users", true).is_err());
        assert!(p.may_store("cache-1", true).is_ok());
        assert!(p.may_store("cache-frozen", true).is_err());
        assert!(p.may_store("rm-local", false).is_err());
    }
}
