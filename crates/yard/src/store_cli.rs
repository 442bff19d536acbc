//! `yard store …`: the stores of a running endpoint, over its HTTP API. Keys are plain strings
//! and values are in the literal syntax of `yard pub`; with `--json` both are JSON value
//! objects.

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value as Json};
use yard_data::json::{self as wire, JsonOptions};
use yard_data::time::TimestampPrecision;
use yard_data::{literal, Value};

use crate::client::{http, http_bytes, parse_value_args};
use crate::EndpointArg;

#[derive(Args)]
pub(crate) struct StoreArgs {
    #[command(flatten)]
    endpoint: EndpointArg,
    /// The credential to send (or set YARD_API_TOKEN) [default: the credentials file found].
    #[arg(long, env = "YARD_API_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Keys and values are JSON value objects; answers are printed as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand)]
pub(crate) enum StoreCommand {
    /// The stores attached to the endpoint.
    List,
    /// One store's role, size, position and (master) clones or (clone) connection.
    Info { store: String },
    /// Attach a master (with --backend) or a clone of a store to the running endpoint.
    Attach {
        store: String,
        /// Attach a clone instead of a master.
        #[arg(long)]
        clone: bool,
        /// The master's backend: memory or sqlite:PATH[?synchronous=full].
        #[arg(long, default_value = "memory")]
        backend: String,
    },
    /// Stop the endpoint's master or clone of a store (a SQLite file stays).
    Detach { store: String },
    /// Set KEY to VALUE.
    Put {
        store: String,
        key: String,
        value: String,
        #[arg(long)]
        expiry: Option<String>,
    },
    /// Set KEY to VALUE only if KEY is absent; prints whether it did.
    PutUnique {
        store: String,
        key: String,
        value: String,
        #[arg(long)]
        expiry: Option<String>,
    },
    /// Print KEY's value.
    Get { store: String, key: String },
    /// Print whether KEY exists.
    Exists { store: String, key: String },
    /// Remove KEY.
    Erase { store: String, key: String },
    /// Remove every key.
    Clear { store: String },
    /// List the keys (string keys starting with --prefix only, if given).
    Keys {
        store: String,
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Add AMOUNT (default 1) to KEY (count, integer, real; timestamp by a timespan).
    Incr {
        store: String,
        key: String,
        amount: Option<String>,
        #[arg(long)]
        expiry: Option<String>,
    },
    /// Subtract AMOUNT (default 1) from KEY.
    Decr {
        store: String,
        key: String,
        amount: Option<String>,
        #[arg(long)]
        expiry: Option<String>,
    },
    /// Append a string to KEY.
    Append {
        store: String,
        key: String,
        value: String,
        #[arg(long)]
        expiry: Option<String>,
    },
    /// Insert INDEX into a set, or INDEX → VALUE into a table or vector.
    Insert {
        store: String,
        key: String,
        index: String,
        value: Option<String>,
        #[arg(long)]
        expiry: Option<String>,
    },
    /// Remove INDEX from a set, table or vector.
    Remove {
        store: String,
        key: String,
        index: String,
        #[arg(long)]
        expiry: Option<String>,
    },
    /// Append VALUE to a vector.
    Push {
        store: String,
        key: String,
        value: String,
        #[arg(long)]
        expiry: Option<String>,
    },
    /// Remove a vector's last element and print it.
    Pop {
        store: String,
        key: String,
        #[arg(long)]
        expiry: Option<String>,
    },
    /// Look INDEX up inside KEY's container.
    Index {
        store: String,
        key: String,
        index: String,
    },
    /// Wait until every write in flight is applied on the master and all clones.
    AwaitIdle {
        store: String,
        #[arg(long, default_value = "15s")]
        timeout: String,
    },
    /// Write a consistent backup of the store to FILE (taken while writes continue).
    Backup {
        store: String,
        file: std::path::PathBuf,
    },
    /// Replace a master's contents with a backup file's.
    Restore {
        store: String,
        file: std::path::PathBuf,
    },
    /// Print every entry as a JSON line.
    Dump { store: String },
}

fn one(arg: &str, json: bool) -> anyhow::Result<Value> {
    let mut v = parse_value_args(&[arg.to_string()], json)?;
    match v.len() {
        1 => Ok(v.pop().expect("one")),
        0 => bail!("no value in {arg:?}"),
        _ => bail!("{arg:?} holds several values; give one (quote it, or use a vector [a, b])"),
    }
}

fn value_json(v: &Value) -> Json {
    let opts = JsonOptions {
        timestamp_precision: TimestampPrecision::Nanos,
    };
    serde_json::from_str(&wire::encode_value(v, opts)).expect("our own JSON")
}

fn check(code: u16, body: &str) -> anyhow::Result<Json> {
    let j: Json = serde_json::from_str(body)
        .map_err(|_| anyhow!("unexpected answer (HTTP {code}): {}", body.trim()))?;
    if code >= 400 {
        bail!(
            "{}: {}",
            j["code"].as_str().unwrap_or("error"),
            j["context"].as_str().unwrap_or(body)
        );
    }
    Ok(j)
}

pub(crate) async fn main(args: StoreArgs) -> anyhow::Result<()> {
    let addr = args.endpoint.endpoint.as_str();
    let token = args.token.as_deref();
    let json = args.json;
    let v = |s: &str| one(s, json);
    // Keys are plain strings (as in the HTTP paths) unless --json gives a typed value object.
    let k = |s: &str| -> anyhow::Result<Value> {
        if json {
            one(s, true)
        } else {
            Ok(Value::String(s.to_string()))
        }
    };
    let op = |store: &str, body: Json| -> (String, Json) { (store.to_string(), body) };
    let (store, body) = match &args.command {
        StoreCommand::List => {
            let (code, body) = http("GET", addr, "/v1/stores", None, None).await?;
            let j = check(code, &body)?;
            if json {
                println!("{j}");
                return Ok(());
            }
            let stores = j.as_array().cloned().unwrap_or_default();
            if stores.is_empty() {
                println!("no stores attached (yard node --master NAME, --clone NAME, or yard store attach)");
            }
            for s in stores {
                println!(
                    "{:<20} {:<6} {:<28} {:>8} entries  seq {}",
                    s["name"].as_str().unwrap_or("?"),
                    s["role"].as_str().unwrap_or("?"),
                    s["backend"].as_str().unwrap_or("?"),
                    s["entries"],
                    s["seq"]
                );
            }
            return Ok(());
        }
        StoreCommand::Info { store } => {
            let (code, body) =
                http("GET", addr, &format!("/v1/stores/{store}"), None, None).await?;
            println!("{}", serde_json::to_string_pretty(&check(code, &body)?)?);
            return Ok(());
        }
        StoreCommand::Attach {
            store,
            clone,
            backend,
        } => {
            let role = if *clone { "clone" } else { "master" };
            let body = json!({"name": store, "role": role, "backend": backend}).to_string();
            let (code, text) = http("POST", addr, "/v1/stores", Some(&body), token).await?;
            check(code, &text)?;
            println!("attached {role} of {store}");
            return Ok(());
        }
        StoreCommand::Detach { store } => {
            let (code, text) =
                http("DELETE", addr, &format!("/v1/stores/{store}"), None, token).await?;
            check(code, &text)?;
            println!("detached {store}");
            return Ok(());
        }
        StoreCommand::Backup { store, file } => {
            let (code, bytes) = http_bytes(
                "GET",
                addr,
                &format!("/v1/stores/{store}/backup"),
                &[],
                None,
            )
            .await?;
            if code != 200 {
                check(code, &String::from_utf8_lossy(&bytes))?;
            }
            let backup = yard_store::backup::read(&bytes)
                .map_err(|e| anyhow!("the endpoint sent a bad backup: {e}"))?;
            let tmp = file.with_extension("partial");
            std::fs::write(&tmp, &bytes)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, file)
                .with_context(|| format!("cannot write {}", file.display()))?;
            println!(
                "backed up {store}: {} entries to {}",
                backup.entries.len(),
                file.display()
            );
            return Ok(());
        }
        StoreCommand::Restore { store, file } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            // Check here first: a clear message without a round trip.
            let backup =
                yard_store::backup::read(&bytes).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            let (code, text) = http_bytes(
                "POST",
                addr,
                &format!("/v1/stores/{store}/restore"),
                &bytes,
                token,
            )
            .await?;
            check(code, &String::from_utf8_lossy(&text))?;
            println!(
                "restored {store} from {} ({} entries, a backup of {:?})",
                file.display(),
                backup.entries.len(),
                backup.store
            );
            return Ok(());
        }
        StoreCommand::Dump { store } => {
            let (code, text) =
                http("GET", addr, &format!("/v1/stores/{store}/dump"), None, None).await?;
            if code != 200 {
                check(code, &text)?;
            }
            print!("{text}");
            return Ok(());
        }
        StoreCommand::Keys { store, prefix } => {
            let path = match prefix {
                Some(p) => format!("/v1/stores/{store}/keys?prefix={}", urlencode(p)),
                None => format!("/v1/stores/{store}/keys"),
            };
            let (code, text) = http("GET", addr, &path, None, None).await?;
            let j = check(code, &text)?;
            for k in j.as_array().cloned().unwrap_or_default() {
                if json {
                    println!("{k}");
                } else {
                    println!("{}", literal::format(&wire::decode_value(&k)?));
                }
            }
            return Ok(());
        }
        StoreCommand::Put {
            store,
            key,
            value,
            expiry,
        } => op(
            store,
            json!({"op": "put", "key": value_json(&k(key)?), "value": value_json(&v(value)?), "expiry": expiry}),
        ),
        StoreCommand::PutUnique {
            store,
            key,
            value,
            expiry,
        } => op(
            store,
            json!({"op": "put_unique", "key": value_json(&k(key)?), "value": value_json(&v(value)?), "expiry": expiry}),
        ),
        StoreCommand::Get { store, key } => {
            op(store, json!({"op": "get", "key": value_json(&k(key)?)}))
        }
        StoreCommand::Exists { store, key } => {
            op(store, json!({"op": "exists", "key": value_json(&k(key)?)}))
        }
        StoreCommand::Erase { store, key } => {
            op(store, json!({"op": "erase", "key": value_json(&k(key)?)}))
        }
        StoreCommand::Clear { store } => op(store, json!({"op": "clear"})),
        StoreCommand::Incr {
            store,
            key,
            amount,
            expiry,
        }
        | StoreCommand::Decr {
            store,
            key,
            amount,
            expiry,
        } => {
            let name = if matches!(args.command, StoreCommand::Incr { .. }) {
                "increment"
            } else {
                "decrement"
            };
            let amount = match amount {
                Some(a) => v(a)?,
                None => Value::Count(1),
            };
            op(
                store,
                json!({"op": name, "key": value_json(&k(key)?), "amount": value_json(&amount), "expiry": expiry}),
            )
        }
        StoreCommand::Append {
            store,
            key,
            value,
            expiry,
        } => op(
            store,
            json!({"op": "append", "key": value_json(&k(key)?), "value": value_json(&Value::String(value.clone())), "expiry": expiry}),
        ),
        StoreCommand::Insert {
            store,
            key,
            index,
            value,
            expiry,
        } => {
            let mut body = json!({"op": "insert_into", "key": value_json(&k(key)?), "index": value_json(&v(index)?), "expiry": expiry});
            if let Some(x) = value {
                body["value"] = value_json(&v(x)?);
            }
            op(store, body)
        }
        StoreCommand::Remove {
            store,
            key,
            index,
            expiry,
        } => op(
            store,
            json!({"op": "remove_from", "key": value_json(&k(key)?), "index": value_json(&v(index)?), "expiry": expiry}),
        ),
        StoreCommand::Push {
            store,
            key,
            value,
            expiry,
        } => op(
            store,
            json!({"op": "push", "key": value_json(&k(key)?), "value": value_json(&v(value)?), "expiry": expiry}),
        ),
        StoreCommand::Pop { store, key, expiry } => op(
            store,
            json!({"op": "pop", "key": value_json(&k(key)?), "expiry": expiry}),
        ),
        StoreCommand::Index { store, key, index } => op(
            store,
            json!({"op": "get_index_from_value", "key": value_json(&k(key)?), "index": value_json(&v(index)?)}),
        ),
        StoreCommand::AwaitIdle { store, timeout } => {
            op(store, json!({"op": "await_idle", "timeout": timeout}))
        }
    };
    let (code, text) = http(
        "POST",
        addr,
        &format!("/v1/stores/{store}/ops"),
        Some(&body.to_string()),
        token,
    )
    .await?;
    let j = check(code, &text)?;
    if code == 202 {
        eprintln!("buffered: the master is out of reach; the write is replayed when it returns");
        return Ok(());
    }
    if let Some(idle) = j.get("idle") {
        if idle == true {
            println!("idle");
            return Ok(());
        }
        bail!("not idle within the timeout");
    }
    if json {
        println!("{j}");
    } else {
        let value = wire::decode_value(&j).context("the answer is not a valid value")?;
        if value != Value::None {
            println!("{}", literal::format(&value));
        }
    }
    Ok(())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
