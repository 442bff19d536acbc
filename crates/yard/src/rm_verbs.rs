//! Client verbs of the resource manager: `yard agents`, `yard frameworks`, `yard tasks`,
//! `yard task kill|logs` and `yard service deploy|list|status|scale|rm`. They read the master's
//! Mesos API (the same JSON Mesos tools read) and its services API.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use base64::Engine;
use clap::{Args, Subcommand};
use yard_client::mesos::{Mesos, TaskFilter};
use yard_client::ClientError;
use yard_rm::mesos::legacy::{KillRequest, TaskRow};
use yard_rm::services::ServiceSpec;

use crate::render;

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
    /// The manager's API, with the Mesos credentials when given, else the CLI's own (the
    /// master takes both).
    fn client(&self) -> Mesos {
        let auth = match &self.mesos_credentials {
            Some(c) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(c)
            )),
            None => crate::client::bearer(None),
        };
        Mesos::new(self.mesos.clone(), auth)
    }

    /// Prints `v` as JSON when asked; whether it did.
    fn print_json(&self, v: &impl serde::Serialize) -> anyhow::Result<bool> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v)?);
        }
        Ok(self.json)
    }
}

/// A client error with the way out when nothing answers.
fn fail(m: &Mesos) -> impl Fn(ClientError) -> anyhow::Error + '_ {
    move |e| {
        match e {
        ClientError::NotRunning { .. } => anyhow!(
            "{e}: is a manager running there? (`yard up` starts one; --mesos HOST:PORT points at another)"
        ),
        ClientError::Refused {
            method,
            path,
            status,
            context,
            ..
        } => anyhow!("{method} {path} on {}: HTTP {status}: {context}", m.addr()),
        other => other.into(),
    }
    }
}

/// `yard agents`.
pub(crate) async fn agents(a: MesosArgs) -> anyhow::Result<()> {
    let m = a.client();
    let slaves = m.slaves().await.map_err(fail(&m))?;
    if a.print_json(&slaves)? {
        return Ok(());
    }
    let tasks = m.tasks(&TaskFilter::default()).await.map_err(fail(&m))?;
    print!("{}", render::rm::agents(&slaves, &tasks));
    Ok(())
}

/// `yard frameworks`.
pub(crate) async fn frameworks(a: MesosArgs) -> anyhow::Result<()> {
    let m = a.client();
    let f = m.frameworks().await.map_err(fail(&m))?;
    if !a.print_json(&f)? {
        print!("{}", render::rm::frameworks(&f));
    }
    Ok(())
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
    let m = a.mesos.client();
    let filter = TaskFilter {
        framework_id: a.framework.clone(),
        task_id: None,
        oldest_first: true,
    };
    let mut list = m.tasks(&filter).await.map_err(fail(&m))?;
    list.tasks.retain(|t| a.all || !t.ended());
    if a.mesos.print_json(&list)? {
        return Ok(());
    }
    let slaves = m.slaves().await.map_err(fail(&m))?;
    let frameworks = m.frameworks().await.map_err(fail(&m))?;
    print!(
        "{}",
        render::rm::tasks(&list.tasks, &slaves, &frameworks, a.all)
    );
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
            let m = mesos.client();
            let req = KillRequest {
                task_id,
                framework_id: framework,
            };
            let v = m.kill(&req).await.map_err(fail(&m))?;
            if !mesos.print_json(&v)? {
                println!("killing task {} of framework {}", v.task_id, v.framework_id);
            }
            Ok(())
        }
        TaskCommand::Logs {
            task_id,
            stderr,
            follow,
            mesos,
        } => logs(&mesos.client(), &task_id, stderr, follow).await,
    }
}

async fn find_task(m: &Mesos, task_id: &str) -> anyhow::Result<Option<TaskRow>> {
    m.find_task(task_id).await.map_err(fail(m))
}

async fn logs(m: &Mesos, task_id: &str, stderr: bool, follow: bool) -> anyhow::Result<()> {
    let f = m.task_file(task_id, stderr).await?;
    let mut offset = 0u64;
    loop {
        let r = f
            .agent
            .read_file(&f.path, offset)
            .await
            .map_err(fail(&f.agent))?;
        print!("{}", r.data);
        offset = r.offset + r.data.len() as u64;
        if !follow {
            return Ok(());
        }
        let ended = find_task(m, task_id).await?.is_none_or(|x| x.ended());
        if ended && r.data.is_empty() {
            return Ok(());
        }
        if r.data.is_empty() {
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

/// A service file (TOML) as the spec the API takes, checked here first.
fn spec_from_toml(text: &str, file: &std::path::Path) -> anyhow::Result<ServiceSpec> {
    let t: toml::Value =
        toml::from_str(text).with_context(|| format!("{} is not valid TOML", file.display()))?;
    let spec: ServiceSpec = serde_json::to_value(t)
        .and_then(serde_json::from_value)
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    spec.validate()
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    Ok(spec)
}

pub(crate) async fn service(c: ServiceCommand) -> anyhow::Result<()> {
    match c {
        ServiceCommand::Deploy { file, mesos } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let spec = spec_from_toml(&text, &file)?;
            let m = mesos.client();
            let v = m.deploy(&spec).await.map_err(fail(&m))?;
            if !mesos.print_json(&v)? {
                println!(
                    "deployed {} version {} ({} instance(s)); follow it with `yard service status {}`",
                    v.name, v.version, spec.instances, v.name
                );
            }
        }
        ServiceCommand::List { mesos } => {
            let m = mesos.client();
            let list = m.services().await.map_err(fail(&m))?;
            if !mesos.print_json(&list)? {
                print!("{}", render::rm::services(&list));
            }
        }
        ServiceCommand::Status { name, mesos } => {
            let m = mesos.client();
            let v = m.service(&name).await.map_err(fail(&m))?;
            if mesos.print_json(&v)? {
                return Ok(());
            }
            // Agent names are a nicety: without them the ids are shown.
            let slaves = m.slaves().await.unwrap_or_default();
            print!("{}", render::rm::service(&v, &slaves));
        }
        ServiceCommand::Scale {
            name,
            instances,
            mesos,
        } => {
            let m = mesos.client();
            let v = m.scale(&name, instances).await.map_err(fail(&m))?;
            if !mesos.print_json(&v)? {
                println!("{name}: {instances} instance(s) wanted");
            }
        }
        ServiceCommand::Rm { name, mesos } => {
            let m = mesos.client();
            let v = m.remove(&name).await.map_err(fail(&m))?;
            if !mesos.print_json(&v)? {
                println!("{name}: stopping its instances; it is gone once they have ended");
            }
        }
    }
    Ok(())
}
