//! `yard store …`: the stores of a running endpoint, over its HTTP API. Keys are plain strings
//! and values are in the literal syntax of `yard pub`; with `--json` both are JSON value
//! objects.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use yard_client::node::{Node, OpAnswer};
use yard_data::time::parse_duration;
use yard_data::Value;
use yard_gateway::stores::{AttachRequest, Op};
use yard_store::{Mutation, Query, Role};

use crate::client::{bearer, node_error, parse_value_args};
use crate::{render, EndpointArg};

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

/// A positive span from a flag, in nanoseconds (the one duration grammar of every flag).
fn span(flag: &str, s: &str) -> anyhow::Result<i64> {
    let d = parse_duration(s).map_err(|e| anyhow!("{flag}: {e}"))?;
    if d.is_zero() {
        bail!("{flag} must be positive, got {s}");
    }
    Ok(d.as_nanos().min(i64::MAX as u128) as i64)
}

fn expiry(e: &Option<String>) -> anyhow::Result<Option<i64>> {
    e.as_deref().map(|s| span("--expiry", s)).transpose()
}

fn write(store: &str, m: Mutation) -> Option<(&str, Op)> {
    Some((store, Op::Write(m)))
}

fn read(store: &str, q: Query) -> Option<(&str, Op)> {
    Some((store, Op::Read(q)))
}

/// The operation a command names, with its keys and values read; None for the commands that
/// are routes of their own (list, attach, backup…).
fn operation(command: &StoreCommand, json: bool) -> anyhow::Result<Option<(&str, Op)>> {
    let v = |s: &str| one(s, json);
    // Keys are plain strings (as in the HTTP paths) unless --json gives a typed value object.
    let k = |s: &str| -> anyhow::Result<Value> {
        if json {
            one(s, true)
        } else {
            Ok(Value::String(s.to_string()))
        }
    };
    use StoreCommand as C;
    Ok(match command {
        C::Put {
            store,
            key,
            value,
            expiry: e,
        } => write(
            store,
            Mutation::Put {
                key: k(key)?,
                value: v(value)?,
                expiry: expiry(e)?,
            },
        ),
        C::PutUnique {
            store,
            key,
            value,
            expiry: e,
        } => write(
            store,
            Mutation::PutUnique {
                key: k(key)?,
                value: v(value)?,
                expiry: expiry(e)?,
            },
        ),
        C::Get { store, key } => read(store, Query::Get { key: k(key)? }),
        C::Exists { store, key } => read(store, Query::Exists { key: k(key)? }),
        C::Erase { store, key } => write(store, Mutation::Erase { key: k(key)? }),
        C::Clear { store } => write(store, Mutation::Clear),
        C::Incr {
            store,
            key,
            amount,
            expiry: e,
        }
        | C::Decr {
            store,
            key,
            amount,
            expiry: e,
        } => {
            let (key, expiry) = (k(key)?, expiry(e)?);
            let amount = match amount {
                Some(a) => v(a)?,
                None => Value::Count(1),
            };
            let m = if matches!(command, C::Incr { .. }) {
                Mutation::Increment {
                    key,
                    amount,
                    expiry,
                }
            } else {
                Mutation::Decrement {
                    key,
                    amount,
                    expiry,
                }
            };
            write(store, m)
        }
        C::Append {
            store,
            key,
            value,
            expiry: e,
        } => write(
            store,
            Mutation::Append {
                key: k(key)?,
                value: Value::String(value.clone()),
                expiry: expiry(e)?,
            },
        ),
        C::Insert {
            store,
            key,
            index,
            value,
            expiry: e,
        } => write(
            store,
            Mutation::InsertInto {
                key: k(key)?,
                index: v(index)?,
                value: value.as_deref().map(v).transpose()?,
                expiry: expiry(e)?,
            },
        ),
        C::Remove {
            store,
            key,
            index,
            expiry: e,
        } => write(
            store,
            Mutation::RemoveFrom {
                key: k(key)?,
                index: v(index)?,
                expiry: expiry(e)?,
            },
        ),
        C::Push {
            store,
            key,
            value,
            expiry: e,
        } => write(
            store,
            Mutation::Push {
                key: k(key)?,
                value: v(value)?,
                expiry: expiry(e)?,
            },
        ),
        C::Pop {
            store,
            key,
            expiry: e,
        } => write(
            store,
            Mutation::Pop {
                key: k(key)?,
                expiry: expiry(e)?,
            },
        ),
        C::Index { store, key, index } => read(
            store,
            Query::GetIndexFromValue {
                key: k(key)?,
                index: v(index)?,
            },
        ),
        C::AwaitIdle { store, timeout } => {
            let ns = span("--timeout", timeout)?;
            Some((
                store.as_str(),
                Op::AwaitIdle(Duration::from_nanos(ns as u64)),
            ))
        }
        C::List
        | C::Info { .. }
        | C::Attach { .. }
        | C::Detach { .. }
        | C::Keys { .. }
        | C::Backup { .. }
        | C::Restore { .. }
        | C::Dump { .. } => None,
    })
}

pub(crate) async fn main(args: StoreArgs) -> anyhow::Result<()> {
    let addr = args.endpoint.endpoint.as_str();
    let json = args.json;
    let node = Node::new(addr, bearer(args.token.as_deref()));
    let fail = |e| node_error(addr, e);
    if let Some((store, op)) = operation(&args.command, json)? {
        return match node.run(store, &op).await.map_err(fail)? {
            OpAnswer::Buffered => {
                eprintln!(
                    "buffered: the master is out of reach; the write is replayed when it returns"
                );
                Ok(())
            }
            OpAnswer::Idle(true) => {
                println!("idle");
                Ok(())
            }
            OpAnswer::Idle(false) => bail!("not idle within the timeout"),
            OpAnswer::Value(value) => {
                print!("{}", render::store::answer(&value, json));
                Ok(())
            }
        };
    }
    match &args.command {
        StoreCommand::List => {
            let stores = node.stores().await.map_err(fail)?;
            if json {
                println!("{}", serde_json::to_string(&stores)?);
            } else {
                print!("{}", render::store::list(&stores));
            }
        }
        StoreCommand::Info { store } => {
            let info = node.store_info(store).await.map_err(fail)?;
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
        StoreCommand::Attach {
            store,
            clone,
            backend,
        } => {
            let role = if *clone { Role::Clone } else { Role::Master };
            let req = AttachRequest {
                name: store.clone(),
                role,
                backend: backend.clone(),
            };
            let done = node.attach(&req).await.map_err(fail)?;
            println!("attached {} of {}", done.role, done.name);
        }
        StoreCommand::Detach { store } => {
            node.detach(store).await.map_err(fail)?;
            println!("detached {store}");
        }
        StoreCommand::Backup { store, file } => {
            let bytes = node.backup(store).await.map_err(fail)?;
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
        }
        StoreCommand::Restore { store, file } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            // Check here first: a clear message without a round trip.
            let backup =
                yard_store::backup::read(&bytes).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            node.restore(store, &bytes).await.map_err(fail)?;
            println!(
                "restored {store} from {} ({} entries, a backup of {:?})",
                file.display(),
                backup.entries.len(),
                backup.store
            );
        }
        StoreCommand::Dump { store } => print!("{}", node.dump(store).await.map_err(fail)?),
        StoreCommand::Keys { store, prefix } => {
            let keys = node.keys(store, prefix.as_deref()).await.map_err(fail)?;
            for k in keys {
                print!("{}", render::store::answer(&k, json));
            }
        }
        _ => unreachable!("operation() takes every other command"),
    }
    Ok(())
}
