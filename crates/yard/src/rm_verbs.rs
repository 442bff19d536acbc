//! Client verbs of the resource manager: `yard agents`, `yard frameworks`, `yard tasks`,
//! `yard task kill|logs` and `yard service deploy|list|status|scale|rm`. They read the master's
//! Mesos API (the same JSON Mesos tools read) and its services API.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::http_request;

#[derive(Args, Clone)]
pub(crate) struct MesosArgs {
    /// The manager's Mesos API.
    #[arg(long, env = "YARD_MESOS", default_value = "127.0.0.1:5050")]
    pub mesos: String,
    /// PRINCIPAL:SECRET when the manager requires credentials.
    #[arg(long, env = "YARD_MESOS_CREDENTIALS", hide_env_values = true)]
    pub mesos_credentials: Option<String>,
    /// Print the JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl MesosArgs {
    async fn call(
        &self,
        method: &str,
        addr: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        // Mesos credentials when given, else the CLI's own (the master takes both).
        let auth = match &self.mesos_credentials {
            Some(c) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(c)
            )),
            None => crate::client::bearer(None),
        };
        let text = body.map(Value::to_string).unwrap_or_default();
        let ct = body.map(|_| "application/json");
        let (code, reply) = http_request(method, addr, path, text.as_bytes(), ct, auth.as_deref())
            .await
            .map_err(|e| anyhow!("{e:#}: is a manager running there? (`yard up` starts one; --mesos HOST:PORT points at another)"))?;
        let v: Value = serde_json::from_slice(&reply)
            .unwrap_or_else(|_| json!({"error": String::from_utf8_lossy(&reply)}));
        if !(200..300).contains(&code) {
            let msg = v
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            bail!("{method} {path} on {addr}: HTTP {code}: {msg}");
        }
        Ok(v)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call("GET", &self.mesos, path, None).await
    }

    fn print_json(&self, v: &Value) -> bool {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        }
        self.json
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The entries of the JSON array at `v[key]` (none when it is missing).
fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v[key].as_array().into_iter().flatten()
}

/// The entry of `v[key]` whose `id` is `id`.
fn by_id<'a>(v: &'a Value, key: &str, id: &Value) -> Option<&'a Value> {
    items(v, key).find(|x| x["id"] == *id)
}

/// `yes`, `no`, or `-` when unknown.
fn yes_no(b: Option<bool>) -> &'static str {
    b.map_or("-", |b| if b { "yes" } else { "no" })
}

/// `yard agents`.
pub(crate) async fn agents(a: MesosArgs) -> anyhow::Result<()> {
    let v = a.get("/slaves").await?;
    if a.print_json(&v) {
        return Ok(());
    }
    let tasks = a.get("/tasks?limit=-1").await?;
    let list = v["slaves"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<40} {:<10} {:<22} {:<7} {:>11} {:>15} {:>5}",
        "ID", "NAME", "ADDRESS", "ACTIVE", "CPUS", "MEM (MB)", "TASKS"
    );
    for ag in &list {
        let running = items(&tasks, "tasks")
            .filter(|t| t["slave_id"] == ag["id"] && !terminal(s(&t["state"])))
            .count();
        println!(
            "{:<40} {:<10} {:<22} {:<7} {:>11} {:>15} {:>5}",
            s(&ag["id"]),
            s(&ag["name"]),
            format!("{}:{}", s(&ag["hostname"]), ag["port"]),
            yes_no(ag["active"].as_bool()),
            format!(
                "{}/{}",
                f(&ag["used_resources"]["cpus"]),
                f(&ag["resources"]["cpus"])
            ),
            format!(
                "{}/{}",
                f(&ag["used_resources"]["mem"]),
                f(&ag["resources"]["mem"])
            ),
            running
        );
    }
    if list.is_empty() {
        println!("(no agent has registered)");
    }
    Ok(())
}

/// `yard frameworks`.
pub(crate) async fn frameworks(a: MesosArgs) -> anyhow::Result<()> {
    let v = a.get("/master/frameworks").await?;
    if a.print_json(&v) {
        return Ok(());
    }
    let list = v["frameworks"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<40} {:<16} {:<6} {:<10} {:>5} {:>6} {:>8}  WAITING",
        "ID", "NAME", "ROLE", "CONNECTED", "TASKS", "CPUS", "MEM"
    );
    for fw in &list {
        let n = fw["tasks"].as_array().map_or(0, Vec::len);
        println!(
            "{:<40} {:<16} {:<6} {:<10} {:>5} {:>6} {:>8}  {}",
            s(&fw["id"]),
            s(&fw["name"]),
            s(&fw["role"]),
            yes_no(fw["connected"].as_bool()),
            n,
            f(&fw["used_resources"]["cpus"]),
            f(&fw["used_resources"]["mem"]),
            fw["waiting"].as_str().unwrap_or("-")
        );
    }
    if list.is_empty() {
        println!("(no framework is registered)");
    }
    Ok(())
}

fn terminal(state: &str) -> bool {
    yard_rm::mesos::is_terminal(state) || state == "TASK_LOST"
}

#[derive(Args)]
pub(crate) struct TasksArgs {
    #[command(flatten)]
    pub mesos: MesosArgs,
    /// Include tasks that ended.
    #[arg(long)]
    pub all: bool,
    /// Only this framework's tasks.
    #[arg(long)]
    pub framework: Option<String>,
}

/// `yard tasks`.
pub(crate) async fn tasks(a: TasksArgs) -> anyhow::Result<()> {
    let mut path = "/tasks?limit=-1&order=asc".to_string();
    if let Some(fw) = &a.framework {
        path.push_str(&format!("&framework_id={fw}"));
    }
    let mut v = a.mesos.get(&path).await?;
    if let Some(list) = v["tasks"].as_array_mut() {
        list.retain(|t| a.all || !terminal(s(&t["state"])));
    }
    if a.mesos.print_json(&v) {
        return Ok(());
    }
    let agents = a.mesos.get("/slaves").await?;
    let frameworks = a.mesos.get("/master/frameworks").await?;
    let name_of = |list: &Value, key: &str, id: &Value, field: &str| -> String {
        by_id(list, key, id)
            .map(|x| s(&x[field]).to_string())
            .unwrap_or_else(|| s(id).chars().take(8).collect())
    };
    let list = v["tasks"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<36} {:<14} {:<10} {:<16} {:<8} {:>5} {:>7}",
        "ID", "FRAMEWORK", "AGENT", "STATE", "HEALTHY", "CPUS", "MEM"
    );
    for t in &list {
        let healthy = t["statuses"]
            .as_array()
            .and_then(|st| st.iter().rev().find_map(|x| x["healthy"].as_bool()))
            .map_or("-", |h| yes_no(Some(h)));
        println!(
            "{:<36} {:<14} {:<10} {:<16} {:<8} {:>5} {:>7}",
            s(&t["id"]),
            name_of(&frameworks, "frameworks", &t["framework_id"], "name"),
            name_of(&agents, "slaves", &t["slave_id"], "name"),
            s(&t["state"]),
            healthy,
            f(&t["resources"]["cpus"]),
            f(&t["resources"]["mem"])
        );
    }
    if list.is_empty() {
        println!("(no {}task)", if a.all { "" } else { "running " });
    }
    Ok(())
}

#[derive(Subcommand)]
pub(crate) enum TaskCommand {
    /// Kill a task (its kill policy's grace, then SIGKILL).
    Kill {
        task_id: String,
        /// The task's framework, when several have a task of that id.
        #[arg(long)]
        framework: Option<String>,
        #[command(flatten)]
        mesos: MesosArgs,
    },
    /// Print a task's stdout (or stderr) from its sandbox on its agent.
    Logs {
        task_id: String,
        #[arg(long)]
        stderr: bool,
        /// Keep printing what it writes until it ends.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        mesos: MesosArgs,
    },
}

pub(crate) async fn task(c: TaskCommand) -> anyhow::Result<()> {
    match c {
        TaskCommand::Kill {
            task_id,
            framework,
            mesos,
        } => {
            let v = mesos
                .call(
                    "POST",
                    &mesos.mesos,
                    "/yard/tasks/kill",
                    Some(&json!({"task_id": task_id, "framework_id": framework})),
                )
                .await?;
            if !mesos.print_json(&v) {
                println!(
                    "killing task {} of framework {}",
                    s(&v["task_id"]),
                    s(&v["framework_id"])
                );
            }
            Ok(())
        }
        TaskCommand::Logs {
            task_id,
            stderr,
            follow,
            mesos,
        } => logs(&mesos, &task_id, stderr, follow).await,
    }
}

async fn logs(m: &MesosArgs, task_id: &str, stderr: bool, follow: bool) -> anyhow::Result<()> {
    let found = m.get(&format!("/tasks?task_id={task_id}&limit=-1")).await?;
    let Some(t) = found["tasks"].as_array().and_then(|l| l.last()).cloned() else {
        bail!("no task {task_id} (see `yard tasks --all`)");
    };
    let agents = m.get("/slaves").await?;
    let agent = by_id(&agents, "slaves", &t["slave_id"]).ok_or_else(|| {
        anyhow!(
            "task {task_id} ran on agent {}, which is gone",
            s(&t["slave_id"])
        )
    })?;
    let addr = format!("{}:{}", s(&agent["hostname"]), agent["port"]);
    let state = m.call("GET", &addr, "/state", None).await?;
    let sandbox = ["tasks", "completed_tasks"]
        .iter()
        .flat_map(|k| state[*k].as_array().cloned().unwrap_or_default())
        .filter(|x| x["id"] == task_id && x["framework_id"] == t["framework_id"])
        .filter_map(|x| x["sandbox"].as_str().map(str::to_string))
        .next_back()
        .ok_or_else(|| anyhow!("agent {addr} no longer holds the sandbox of task {task_id}"))?;
    let file: PathBuf = PathBuf::from(sandbox).join(if stderr { "stderr" } else { "stdout" });
    let path = crate::client::url_escape(&file.display().to_string(), true);
    let mut offset = 0u64;
    loop {
        let r = m
            .call(
                "GET",
                &addr,
                &format!("/files/read?path={path}&offset={offset}&length=-1"),
                None,
            )
            .await?;
        let data = s(&r["data"]);
        print!("{data}");
        offset = r["offset"].as_u64().unwrap_or(offset) + data.len() as u64;
        if !follow {
            return Ok(());
        }
        let now = m.get(&format!("/tasks?task_id={task_id}&limit=-1")).await?;
        let ended = now["tasks"]
            .as_array()
            .and_then(|l| l.last())
            .is_none_or(|x| terminal(s(&x["state"])));
        if ended && data.is_empty() {
            return Ok(());
        }
        if data.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum ServiceCommand {
    /// Deploy a service from a TOML file (a new version rolls out; see docs/RM.md).
    Deploy {
        file: PathBuf,
        #[command(flatten)]
        mesos: MesosArgs,
    },
    /// List services with their phase and why any is waiting.
    List {
        #[command(flatten)]
        mesos: MesosArgs,
    },
    /// One service and its instances.
    Status {
        name: String,
        #[command(flatten)]
        mesos: MesosArgs,
    },
    /// Change a service's instance count.
    Scale {
        name: String,
        instances: u32,
        #[command(flatten)]
        mesos: MesosArgs,
    },
    /// Stop every instance and remove the service.
    Rm {
        name: String,
        #[command(flatten)]
        mesos: MesosArgs,
    },
}

/// A service file (TOML) as the JSON spec the API takes.
pub(crate) fn spec_from_toml(text: &str, file: &std::path::Path) -> anyhow::Result<Value> {
    let t: toml::Value =
        toml::from_str(text).with_context(|| format!("{} is not valid TOML", file.display()))?;
    let v = serde_json::to_value(t)?;
    let spec: yard_rm::services::ServiceSpec =
        serde_json::from_value(v.clone()).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    spec.validate()
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    Ok(v)
}

pub(crate) async fn service(c: ServiceCommand) -> anyhow::Result<()> {
    match c {
        ServiceCommand::Deploy { file, mesos } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let spec = spec_from_toml(&text, &file)?;
            let v = mesos
                .call("POST", &mesos.mesos, "/services", Some(&spec))
                .await?;
            if !mesos.print_json(&v) {
                println!(
                    "deployed {} version {} ({} instance(s)); follow it with `yard service status {}`",
                    s(&v["name"]),
                    s(&v["version"]),
                    spec["instances"],
                    s(&v["name"])
                );
            }
        }
        ServiceCommand::List { mesos } => {
            let v = mesos.get("/services").await?;
            if mesos.print_json(&v) {
                return Ok(());
            }
            let list = v["services"].as_array().cloned().unwrap_or_default();
            println!(
                "{:<20} {:<13} {:<10} {:>9} {:>8} {:>8}  WAITING",
                "NAME", "VERSION", "PHASE", "INSTANCES", "RUNNING", "HEALTHY"
            );
            for x in &list {
                println!(
                    "{:<20} {:<13} {:<10} {:>9} {:>8} {:>8}  {}",
                    s(&x["name"]),
                    s(&x["version"]),
                    s(&x["phase"]),
                    x["instances"].to_string(),
                    x["running"].to_string(),
                    x["healthy"].to_string(),
                    x["waiting"].as_str().unwrap_or("-")
                );
            }
            if list.is_empty() {
                println!("(no service; deploy one with `yard service deploy FILE`)");
            }
        }
        ServiceCommand::Status { name, mesos } => {
            let v = mesos.get(&format!("/services/{name}")).await?;
            if mesos.print_json(&v) {
                return Ok(());
            }
            println!("service   {}", s(&v["name"]));
            println!("version   {}", s(&v["version"]));
            println!("phase     {}", s(&v["phase"]));
            println!(
                "instances {} wanted, {} running, {} healthy",
                v["instances"], v["running"], v["healthy"]
            );
            if let Some(w) = v["waiting"].as_str() {
                println!("waiting   {w}");
            }
            let agents = mesos.get("/slaves").await.unwrap_or(Value::Null);
            let agent_name = |id: &Value| -> String {
                by_id(&agents, "slaves", id)
                    .map(|a| format!("{} ({})", s(&a["name"]), s(&a["hostname"])))
                    .unwrap_or_else(|| s(id).to_string())
            };
            println!(
                "\n{:<44} {:<13} {:<16} {:<8} {:<24} PORTS",
                "TASK", "VERSION", "STATE", "HEALTHY", "AGENT"
            );
            for t in items(&v, "tasks") {
                let ports: Vec<String> = items(t, "ports").map(|p| p.to_string()).collect();
                println!(
                    "{:<44} {:<13} {:<16} {:<8} {:<24} {}",
                    s(&t["id"]),
                    s(&t["version"]),
                    format!(
                        "{}{}",
                        s(&t["state"]),
                        if t["stopping"] == true { "*" } else { "" }
                    ),
                    yes_no(t["healthy"].as_bool()),
                    agent_name(&t["agent_id"]),
                    ports.join(",")
                );
            }
        }
        ServiceCommand::Scale {
            name,
            instances,
            mesos,
        } => {
            let v = mesos
                .call(
                    "POST",
                    &mesos.mesos,
                    &format!("/services/{name}/scale"),
                    Some(&json!({"instances": instances})),
                )
                .await?;
            if !mesos.print_json(&v) {
                println!("{name}: {instances} instance(s) wanted");
            }
        }
        ServiceCommand::Rm { name, mesos } => {
            let v = mesos
                .call("DELETE", &mesos.mesos, &format!("/services/{name}"), None)
                .await?;
            if !mesos.print_json(&v) {
                println!("{name}: stopping its instances; it is gone once they have ended");
            }
        }
    }
    Ok(())
}
