//! The executor HTTP API's pure parts (`POST /api/v1/executor` on the agent): parsing and
//! validating calls as Mesos does, the events the agent streams to an executor, and the
//! `MESOS_*` environment an executor starts with. The agent's actor owns the executors.

use crate::error::{ExecutorRefusal, Invalid};
use base64::Engine;
use serde_json::{json, Value};

use crate::mesos::{get_id, mid};

/// A call, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Subscribe,
    /// A TaskStatus from the executor.
    Update(Value),
    /// Base64 data for the framework.
    Message(String),
    Heartbeat,
}

/// A call's target and kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Addressed {
    pub framework_id: String,
    pub executor_id: String,
    pub call: Call,
}

/// Who may make an executor's calls (the agent's `--executor-auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutorAuth {
    /// Only a caller with the executor's own token (`MESOS_EXECUTOR_AUTHENTICATION_TOKEN`, sent
    /// as `Authorization: Bearer`), as Mesos's `--authenticate_http_executors` asks.
    Token,
    /// The executor's token; or, without one, a caller on this host whose socket belongs to the
    /// executor's account or to root (the kernel's socket table says). pymesos's executor driver
    /// sends no token: this keeps it working without letting other local users in.
    #[default]
    TokenOrAccount,
}

/// An `--executor-auth` value that is not one of the two.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--executor-auth {0:?}: expected token or token-or-account")]
pub struct UnknownExecutorAuth(pub String);

impl std::str::FromStr for ExecutorAuth {
    type Err = UnknownExecutorAuth;
    fn from_str(s: &str) -> Result<Self, UnknownExecutorAuth> {
        match s {
            "token" => Ok(ExecutorAuth::Token),
            "token-or-account" => Ok(ExecutorAuth::TokenOrAccount),
            other => Err(UnknownExecutorAuth(other.to_string())),
        }
    }
}

/// What an executor call carries to prove who sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proof {
    /// The `Bearer` credential, if the call sent one.
    pub token: Option<String>,
    /// The local uid holding the caller's socket, when the kernel's table names it.
    pub uid: Option<u32>,
}

/// Whether `proof` may act for the executor whose token is `token` and which runs as `uid`;
/// the error is the 401 answer's text.
pub fn admit(
    auth: ExecutorAuth,
    token: &str,
    uid: u32,
    proof: &Proof,
) -> Result<(), ExecutorRefusal> {
    match (&proof.token, auth) {
        (Some(t), _) if yard_auth::secret::ct_eq(t.as_bytes(), token.as_bytes()) => Ok(()),
        (Some(_), _) => Err(ExecutorRefusal::ForeignToken),
        (None, ExecutorAuth::Token) => Err(ExecutorRefusal::TokenRequired),
        (None, ExecutorAuth::TokenOrAccount) => match proof.uid {
            Some(u) if u == uid || u == 0 => Ok(()),
            Some(u) => Err(ExecutorRefusal::WrongAccount {
                expected: uid,
                got: u,
            }),
            None => Err(ExecutorRefusal::UnknownSocket),
        },
    }
}

/// Parses an `executor::Call`; the error is the 400 answer's text.
pub fn parse(v: &Value) -> Result<Addressed, Invalid> {
    parse_call(v).map_err(Invalid)
}

fn parse_call(v: &Value) -> Result<Addressed, String> {
    let bad = |m: &str| Err(format!("Failed to validate executor::Call: {m}"));
    let Some(kind) = v.get("type").and_then(Value::as_str) else {
        return bad("Expecting 'type' to be present");
    };
    let (Some(framework_id), Some(executor_id)) =
        (get_id(v, "framework_id"), get_id(v, "executor_id"))
    else {
        return bad("Expecting 'framework_id' and 'executor_id' to be present");
    };
    let call = match kind {
        "SUBSCRIBE" => Call::Subscribe,
        "HEARTBEAT" => Call::Heartbeat,
        "MESSAGE" => match v.pointer("/message/data").and_then(Value::as_str) {
            Some(d) if base64::engine::general_purpose::STANDARD.decode(d).is_ok() => {
                Call::Message(d.to_string())
            }
            Some(_) => return bad("'message.data' is not base64"),
            None => return bad("Expecting 'message.data' to be present"),
        },
        "UPDATE" => {
            let Some(s) = v.pointer("/update/status").filter(|s| s.is_object()) else {
                return bad("Expecting 'update.status' to be present");
            };
            validate_update(s, executor_id)
                .map_err(|m| format!("Failed to validate executor::Call: {m}"))?;
            Call::Update(s.clone())
        }
        other => return bad(&format!("unknown call type '{other}'")),
    };
    Ok(Addressed {
        framework_id: framework_id.to_string(),
        executor_id: executor_id.to_string(),
        call,
    })
}

/// The checks Mesos makes on an executor's status update.
fn validate_update(s: &Value, executor_id: &str) -> Result<(), String> {
    let uuid = s
        .get("uuid")
        .and_then(Value::as_str)
        .ok_or("status.uuid is missing")?;
    match base64::engine::general_purpose::STANDARD.decode(uuid) {
        Ok(b) if b.len() == 16 => {}
        _ => return Err(format!("status.uuid {uuid:?} is not a base64 16-byte UUID")),
    }
    if get_id(s, "task_id").is_none() {
        return Err("status.task_id is missing".into());
    }
    match s.get("source").and_then(Value::as_str) {
        Some("SOURCE_EXECUTOR") => {}
        other => {
            return Err(format!(
                "Received Call from executor with invalid source, '{}'",
                other.unwrap_or("none")
            ))
        }
    }
    match s.get("state").and_then(Value::as_str) {
        None => return Err("status.state is missing".into()),
        Some("TASK_STAGING") => {
            return Err("Received TASK_STAGING from executor which is not allowed".into())
        }
        Some(st) => {
            crate::mesos::state::TaskState::parse(st).map_err(|e| e.to_string())?;
        }
    }
    if let Some(e) = get_id(s, "executor_id") {
        if e != executor_id {
            return Err(format!(
                "ExecutorID in Call: '{executor_id}' does not match ExecutorID in TaskStatus: '{e}'"
            ));
        }
    }
    Ok(())
}

/// `{"type":"X","x":{...}}` (the body key is the lower-cased type; SHUTDOWN and HEARTBEAT
/// have none).
pub fn event(kind: &str, body: Option<Value>) -> Value {
    let mut e = json!({ "type": kind });
    if let Some(b) = body {
        e[kind.to_ascii_lowercase()] = b;
    }
    e
}

/// SUBSCRIBED: the executor's own info (with its framework id), its framework's info (with the
/// id: pymesos asserts both), the agent's info and the container.
pub fn subscribed(
    executor_info: &Value,
    framework_id: &str,
    framework_info: &Value,
    agent_info: Value,
    container_id: &str,
) -> Value {
    let mut ei = executor_info.clone();
    ei["framework_id"] = mid(framework_id);
    let mut fi = framework_info.clone();
    if !fi.is_object() {
        fi = json!({});
    }
    fi["id"] = mid(framework_id);
    event(
        "SUBSCRIBED",
        Some(
            json!({"executor_info": ei, "framework_info": fi, "agent_info": agent_info,
                    "container_id": mid(container_id)}),
        ),
    )
}

/// What the executor needs to find and address its agent.
pub struct EnvInput<'a> {
    pub framework_id: &'a str,
    pub executor_id: &'a str,
    pub agent_id: &'a str,
    /// `ip:port` of the agent API, reachable from the executor.
    pub agent_endpoint: &'a str,
    pub sandbox: &'a str,
    pub shutdown_grace_secs: u64,
    /// The executor's own credential for the executor API.
    pub token: &'a str,
}

/// The `MESOS_*` environment of a custom executor (Mesos's `executorEnvironment`).
/// `MESOS_CHECKPOINT` is left out on purpose: this agent does not recover executors across its
/// own restarts, and the pymesos driver reads any value (even `"0"`) as "checkpointing on", in
/// which case it would wait to reconnect instead of shutting down when the agent is gone.
pub fn environment(i: &EnvInput) -> Vec<(String, String)> {
    [
        ("MESOS_FRAMEWORK_ID", i.framework_id.to_string()),
        ("MESOS_EXECUTOR_ID", i.executor_id.to_string()),
        ("MESOS_DIRECTORY", i.sandbox.to_string()),
        ("MESOS_SANDBOX", i.sandbox.to_string()),
        ("MESOS_SLAVE_ID", i.agent_id.to_string()),
        ("MESOS_AGENT_ID", i.agent_id.to_string()),
        ("MESOS_SLAVE_PID", format!("slave(1)@{}", i.agent_endpoint)),
        ("MESOS_AGENT_ENDPOINT", i.agent_endpoint.to_string()),
        ("MESOS_HTTP_COMMAND_EXECUTOR", "0".to_string()),
        (
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
            format!("{}secs", i.shutdown_grace_secs),
        ),
        ("LIBPROCESS_PORT", "0".to_string()),
        ("MESOS_EXECUTOR_AUTHENTICATION_TOKEN", i.token.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl<'a> std::fmt::Debug for EnvInput<'a> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvInput").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "AAECAwQFBgcICQoLDA0ODw==";

    fn update(status: Value) -> Value {
        json!({"type": "UPDATE", "framework_id": {"value": "f"}, "executor_id": {"value": "e"},
               "update": {"status": status}})
    }

    #[test]
    fn parses_the_calls_pymesos_sends() {
        let s = json!({"task_id": {"value": "t"}, "state": "TASK_RUNNING", "uuid": UUID,
                       "source": "SOURCE_EXECUTOR", "timestamp": 1700000000});
        let a = parse(&update(s.clone())).unwrap();
        assert_eq!(a.framework_id, "f");
        assert_eq!(a.executor_id, "e");
        assert_eq!(a.call, Call::Update(s));
        let sub = json!({"type": "SUBSCRIBE", "framework_id": {"value": "f"}, "executor_id": {"value": "e"},
                         "subscribe": {"unacknowledged_tasks": [], "unacknowledged_updates": []}});
        assert_eq!(parse(&sub).unwrap().call, Call::Subscribe);
        let msg = json!({"type": "MESSAGE", "framework_id": {"value": "f"}, "executor_id": {"value": "e"},
                         "message": {"data": "aGk="}});
        assert_eq!(parse(&msg).unwrap().call, Call::Message("aGk=".into()));
    }

    #[test]
    fn rejects_what_mesos_rejects_with_the_reason() {
        let ok = json!({"task_id": {"value": "t"}, "state": "TASK_RUNNING", "uuid": UUID, "source": "SOURCE_EXECUTOR"});
        let cases = [
            (
                json!({"type": "SUBSCRIBE"}),
                "'framework_id' and 'executor_id'",
            ),
            (
                json!({"framework_id": {"value": "f"}, "executor_id": {"value": "e"}}),
                "'type'",
            ),
            (
                update(
                    json!({"task_id": {"value": "t"}, "state": "TASK_RUNNING", "source": "SOURCE_EXECUTOR"}),
                ),
                "uuid is missing",
            ),
            (
                update(
                    json!({"task_id": {"value": "t"}, "state": "TASK_RUNNING", "uuid": "aGk=", "source": "SOURCE_EXECUTOR"}),
                ),
                "16-byte",
            ),
            (
                update({
                    let mut s = ok.clone();
                    s["source"] = json!("SOURCE_MASTER");
                    s
                }),
                "invalid source",
            ),
            (
                update({
                    let mut s = ok.clone();
                    s["state"] = json!("TASK_STAGING");
                    s
                }),
                "TASK_STAGING",
            ),
            (
                update({
                    let mut s = ok.clone();
                    s["executor_id"] = json!({"value": "other"});
                    s
                }),
                "does not match",
            ),
            (
                json!({"type": "MESSAGE", "framework_id": {"value": "f"}, "executor_id": {"value": "e"}, "message": {"data": "%%"}}),
                "not base64",
            ),
            (
                json!({"type": "LAUNCH", "framework_id": {"value": "f"}, "executor_id": {"value": "e"}}),
                "unknown call type 'LAUNCH'",
            ),
        ];
        for (call, want) in cases {
            let e = parse(&call).unwrap_err();
            assert!(e.0.contains(want), "{call}: {e} should mention {want}");
        }
        assert!(parse(&update(ok)).is_ok());
    }

    #[test]
    fn subscribed_carries_the_ids_pymesos_asserts() {
        let ei = json!({"executor_id": {"value": "e"}, "command": {"value": "x"}});
        let fi = json!({"user": "root", "name": "n"});
        let e = subscribed(&ei, "f", &fi, json!({"id": {"value": "a"}}), "c");
        assert_eq!(e["type"], "SUBSCRIBED");
        let s = &e["subscribed"];
        assert_eq!(s["executor_info"]["executor_id"], json!({"value": "e"}));
        assert_eq!(s["framework_info"]["id"], json!({"value": "f"}));
        assert_eq!(s["agent_info"]["id"], json!({"value": "a"}));
        assert_eq!(event("SHUTDOWN", None), json!({"type": "SHUTDOWN"}));
        assert_eq!(
            event("KILL", Some(json!({"task_id": {"value": "t"}}))),
            json!({"type": "KILL", "kill": {"task_id": {"value": "t"}}})
        );
    }

    #[test]
    fn environment_has_what_the_pymesos_driver_reads() {
        let env = environment(&EnvInput {
            framework_id: "f",
            executor_id: "e",
            agent_id: "a",
            agent_endpoint: "127.0.0.1:5051",
            sandbox: "/s",
            shutdown_grace_secs: 5,
            token: "t0k",
        });
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("MESOS_AGENT_ENDPOINT"), Some("127.0.0.1:5051"));
        assert_eq!(get("MESOS_FRAMEWORK_ID"), Some("f"));
        assert_eq!(get("MESOS_EXECUTOR_ID"), Some("e"));
        assert_eq!(get("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"), Some("5secs"));
        assert_eq!(get("MESOS_SLAVE_PID"), Some("slave(1)@127.0.0.1:5051"));
        assert_eq!(get("MESOS_CHECKPOINT"), None);
        assert_eq!(get("MESOS_EXECUTOR_AUTHENTICATION_TOKEN"), Some("t0k"));
    }

    #[test]
    fn an_executor_call_needs_its_token_or_its_account() {
        let proof = |token: Option<&str>, uid: Option<u32>| Proof {
            token: token.map(str::to_string),
            uid,
        };
        let any = ExecutorAuth::TokenOrAccount;
        let strict = ExecutorAuth::Token;
        // The executor's own token passes in both modes, from any local account.
        assert_eq!(
            admit(any, "s3cret", 65534, &proof(Some("s3cret"), Some(1000))),
            Ok(())
        );
        assert_eq!(
            admit(strict, "s3cret", 65534, &proof(Some("s3cret"), None)),
            Ok(())
        );
        // Another executor's token never does, whoever sends it.
        assert_eq!(
            admit(any, "s3cret", 65534, &proof(Some("other"), Some(65534))),
            Err(ExecutorRefusal::ForeignToken)
        );
        // Without a token: the executor's account or root, not another local user.
        assert_eq!(
            admit(any, "s3cret", 65534, &proof(None, Some(65534))),
            Ok(())
        );
        assert_eq!(admit(any, "s3cret", 65534, &proof(None, Some(0))), Ok(()));
        let e = admit(any, "s3cret", 65534, &proof(None, Some(1000))).unwrap_err();
        assert_eq!(
            e,
            ExecutorRefusal::WrongAccount {
                expected: 65534,
                got: 1000
            }
        );
        assert!(e.to_string().contains("uid 65534") && e.to_string().contains("uid 1000"));
        assert_eq!(
            admit(any, "s3cret", 65534, &proof(None, None)),
            Err(ExecutorRefusal::UnknownSocket)
        );
        // `--executor-auth token` takes nothing else.
        let e = admit(strict, "s3cret", 65534, &proof(None, Some(65534))).unwrap_err();
        assert_eq!(e, ExecutorRefusal::TokenRequired);
        assert!(
            e.to_string()
                .contains("MESOS_EXECUTOR_AUTHENTICATION_TOKEN"),
            "{e}"
        );
    }

    #[test]
    fn executor_auth_modes_parse() {
        assert_eq!("token".parse(), Ok(ExecutorAuth::Token));
        assert_eq!("token-or-account".parse(), Ok(ExecutorAuth::TokenOrAccount));
        assert_eq!(
            "none".parse::<ExecutorAuth>(),
            Err(UnknownExecutorAuth("none".into()))
        );
    }
}
