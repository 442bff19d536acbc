//! `yard install center|manager|agent -- FLAGS…`: a daemon as a systemd service on this host.
//!
//! [`plan`] decides everything (files, their modes, the unit's text) from the role and the
//! daemon's flags, without touching the machine; [`install`] writes the plan and asks systemd to
//! (re)start the unit. Running it again with a newer binary is the upgrade of one host: the
//! binary is replaced by a rename (the running one keeps its file), and the unit restarts.
//!
//! Where things live (docs/OPS.md, "Installing with systemd"):
//! - the binary: `/usr/local/bin/yard`;
//! - the unit: `/etc/systemd/system/yard-ROLE.service`;
//! - its environment, secrets included: `/etc/yard/ROLE.env` (0600);
//! - the credentials home (tokens, mesh key, certificates): `/var/lib/yard/ROLE/home` (0700);
//! - the daemon's state: `/var/lib/yard/ROLE/data`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    Center,
    Manager,
    Agent,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Center => "center",
            Role::Manager => "manager",
            Role::Agent => "agent",
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct InstallArgs {
    /// The daemon to install: center, manager or agent.
    #[arg(value_enum)]
    role: Role,
    /// Write every file under this directory instead of / and start nothing (for images
    /// and packages).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Write the files, but do not enable or (re)start the unit.
    #[arg(long)]
    no_start: bool,
    /// The daemon's flags, after `--` (as `yard ROLE --help` lists them). A join token
    /// (`--join`), a mesh key (`--token`) and Mesos credentials go into the unit's 0600
    /// environment file, never onto its command line.
    #[arg(last = true, value_name = "FLAGS")]
    flags: Vec<String>,
}

/// One file the plan writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct File {
    pub path: PathBuf,
    pub text: String,
    pub mode: u32,
}

/// What an installation writes, relative to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Directories with their modes, made (and their modes set) in order.
    pub dirs: Vec<(PathBuf, u32)>,
    pub files: Vec<File>,
    /// Where the binary goes.
    pub bin: PathBuf,
    pub unit_name: String,
}

/// The flags whose values are secrets, and the environment variable each daemon reads instead.
const SECRET_FLAGS: &[(&str, &str)] = &[
    ("--join", "YARD_JOIN"),
    ("--token", "YARD_TOKEN"),
    ("--mesos-credentials", "YARD_MESOS_CREDENTIALS"),
];

/// The daemon's flags split into those for its command line and the secrets for its
/// environment.
/// A secret for the environment file: its variable and value.
type Secret = (&'static str, String);

fn split_flags(flags: &[String]) -> anyhow::Result<(Vec<String>, Vec<Secret>)> {
    let mut args = Vec::new();
    let mut secrets = Vec::new();
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        let (name, inline) = match f.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (f.as_str(), None),
        };
        if let Some((_, var)) = SECRET_FLAGS.iter().find(|(flag, _)| *flag == name) {
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value"))?,
            };
            if value.contains(['\n', '\r']) {
                bail!("{name}: a value on one line");
            }
            secrets.push((*var, value));
            continue;
        }
        args.push(f.clone());
    }
    Ok((args, secrets))
}

/// One argument of `ExecStart=`, quoted for systemd: specifiers (`%`) and variables (`$`)
/// doubled so that they reach the daemon as written.
fn quote(arg: &str) -> String {
    let escaped = arg
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    if escaped.is_empty() || escaped.contains([' ', '\t', '\'', '"', ';']) {
        format!("\"{escaped}\"")
    } else {
        escaped
    }
}

/// The value of `--data` in `args`, if given.
fn data_of(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--data" {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix("--data=") {
            return Some(v.to_string());
        }
    }
    None
}

/// The plan for `role` with the daemon's `flags` (checked by the caller).
pub(crate) fn plan(role: Role, flags: &[String]) -> anyhow::Result<Plan> {
    let (mut args, secrets) = split_flags(flags)?;
    let name = role.name();
    let state = PathBuf::from("/var/lib/yard").join(name);
    let home = state.join("home");
    // The daemon writes its state and, when it is elsewhere, its --data.
    let mut writable = vec![state.to_string_lossy().into_owned()];
    let data = data_of(&args);
    if let Some(d) = &data {
        if d.contains(char::is_whitespace) || !d.starts_with('/') {
            bail!("--data {d:?}: an absolute path without spaces, for the unit");
        }
        writable.push(d.clone());
    }
    if data.is_none() {
        args.push("--data".into());
        args.push(state.join("data").to_string_lossy().into_owned());
    }
    let bin = PathBuf::from("/usr/local/bin/yard");
    let unit_name = format!("yard-{name}.service");
    let env_path = PathBuf::from("/etc/yard").join(format!("{name}.env"));

    let mut env = format!(
        "# The environment of {unit_name}, written by `yard install {name}`. 0600: it holds secrets.\n\
         YARD_HOME={}\nYARD_LOG=info\n",
        home.display()
    );
    for (var, value) in &secrets {
        env.push_str(&format!("{var}={value}\n"));
    }

    let exec = std::iter::once(bin.to_string_lossy().into_owned())
        .chain(std::iter::once(name.to_string()))
        .chain(args.iter().cloned())
        .map(|a| quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let what = match role {
        Role::Center => "operations center",
        Role::Manager => "cluster manager (and Mesos master)",
        Role::Agent => "agent (and Mesos agent)",
    };
    let confinement = match role {
        // The center and a manager run no programs: root without capabilities, a read-only
        // system but for their state.
        Role::Center | Role::Manager => format!(
            "NoNewPrivileges=yes\n\
             CapabilityBoundingSet=\n\
             ProtectSystem=strict\n\
             ReadWritePaths={}\n\
             ProtectHome=yes\n\
             PrivateTmp=yes\n\
             PrivateDevices=yes\n\
             ProtectKernelTunables=yes\n\
             ProtectControlGroups=yes\n\
             RestrictSUIDSGID=yes\n",
            writable.join(" ")
        ),
        // An agent starts tasks as their users in cgroups it makes: it keeps root's powers,
        // and systemd leaves the cgroups below it to it.
        Role::Agent => "Delegate=yes\n".to_string(),
    };
    let unit = format!(
        "# Written by `yard install {name}`; run it again to change or upgrade (docs/OPS.md).\n\
         [Unit]\n\
         Description=Switchyard {what}\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=exec\n\
         EnvironmentFile={env}\n\
         ExecStart={exec}\n\
         Restart=on-failure\n\
         RestartSec=2s\n\
         KillMode=mixed\n\
         TimeoutStopSec=30s\n\
         LimitNOFILE=65536\n\
         UMask=0077\n\
         {confinement}\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        env = env_path.display(),
    );
    // Tasks and nodes run as other users below the agent's data: they pass through.
    let state_mode = if role == Role::Agent { 0o711 } else { 0o700 };
    let mut dirs = vec![
        (PathBuf::from("/usr/local/bin"), 0o755),
        (PathBuf::from("/etc/systemd/system"), 0o755),
        (PathBuf::from("/etc/yard"), 0o755),
        (PathBuf::from("/var/lib/yard"), 0o755),
        (state.clone(), state_mode),
        (home, 0o700),
    ];
    if data.is_none() {
        dirs.push((state.join("data"), state_mode));
    }
    Ok(Plan {
        dirs,
        files: vec![
            File {
                path: env_path,
                text: env,
                mode: 0o600,
            },
            File {
                path: PathBuf::from("/etc/systemd/system").join(&unit_name),
                text: unit,
                mode: 0o644,
            },
        ],
        bin,
        unit_name,
    })
}

/// `path` (absolute) under `root`.
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Writes `bytes` to `path` with `mode`, by a rename: a reader (or a running binary) never
/// sees half a file.
fn replace(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension(format!("new-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("systemctl")
        .args(args)
        .output()
        .context("cannot run systemctl (is systemd installed?)")?;
    if !out.status.success() {
        bail!(
            "systemctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub(crate) fn install(a: InstallArgs) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // The flags are the daemon's: a mistake is said now, not by a unit failing at boot.
    let mut argv = vec!["yard".to_string(), a.role.name().to_string()];
    argv.extend(a.flags.iter().cloned());
    if let Err(e) = <crate::Cli as clap::Parser>::try_parse_from(&argv) {
        bail!("the flags of `yard {}`: {e}", a.role.name());
    }
    let plan = plan(a.role, &a.flags)?;
    let root = a.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    if a.root.is_none() && !is_root() {
        bail!("installing needs root (it writes /etc, /usr/local/bin and /var/lib/yard); --root DIR writes the files under DIR instead");
    }
    for (dir, mode) in &plan.dirs {
        let d = under(&root, dir);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        // Shared system directories keep what they have; ours get their modes.
        if dir.starts_with("/var/lib/yard/") {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(*mode))?;
        }
    }
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let bin = under(&root, &plan.bin);
    let same = std::fs::canonicalize(&bin).ok() == std::fs::canonicalize(&exe).ok();
    if !same {
        let bytes =
            std::fs::read(&exe).with_context(|| format!("cannot read {}", exe.display()))?;
        replace(&bin, &bytes, 0o755)?;
    }
    for f in &plan.files {
        replace(&under(&root, &f.path), f.text.as_bytes(), f.mode)?;
    }
    let unit = under(
        &root,
        &PathBuf::from("/etc/systemd/system").join(&plan.unit_name),
    );
    eprintln!(
        "installed {} ({}; environment {} 0600; state /var/lib/yard/{})",
        plan.unit_name,
        unit.display(),
        under(&root, &plan.files[0].path).display(),
        a.role.name()
    );
    if a.root.is_some() || a.no_start {
        eprintln!(
            "not started: `systemctl daemon-reload && systemctl enable --now {}`",
            plan.unit_name
        );
        return Ok(());
    }
    systemctl(&["daemon-reload"]).context("the files are in place, but systemd was not told")?;
    systemctl(&["enable", &plan.unit_name])?;
    // A restart starts a stopped unit and restarts a running one: the upgrade of this host.
    systemctl(&["restart", &plan.unit_name])?;
    eprintln!(
        "started: `systemctl status {}`, `journalctl -u {}`",
        plan.unit_name, plan.unit_name
    );
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn an_agent_s_unit_delegates_cgroups_and_keeps_its_join_token_off_the_command_line() {
        let p = plan(
            Role::Agent,
            &s(&[
                "--cluster",
                "web",
                "--name",
                "a1",
                "--join=yj1.aa.bb.cc@10.0.0.1:9900",
                "--manager",
                "10.0.0.2:9901",
            ]),
        )
        .unwrap();
        let unit = &p.files[1];
        assert_eq!(
            unit.path,
            PathBuf::from("/etc/systemd/system/yard-agent.service")
        );
        let exec = unit
            .text
            .lines()
            .find(|l| l.starts_with("ExecStart="))
            .unwrap();
        assert_eq!(
            exec,
            "ExecStart=/usr/local/bin/yard agent --cluster web --name a1 --manager 10.0.0.2:9901 --data /var/lib/yard/agent/data"
        );
        assert!(unit.text.contains("\nDelegate=yes\n"));
        assert!(unit.text.contains("\nRestart=on-failure\n"));
        assert!(
            !unit.text.contains("ProtectSystem"),
            "tasks need the system"
        );
        let env = &p.files[0];
        assert_eq!(env.path, PathBuf::from("/etc/yard/agent.env"));
        assert_eq!(env.mode, 0o600);
        assert!(env
            .text
            .contains("\nYARD_JOIN=yj1.aa.bb.cc@10.0.0.1:9900\n"));
        assert!(env.text.contains("\nYARD_HOME=/var/lib/yard/agent/home\n"));
        assert!(p
            .dirs
            .contains(&(PathBuf::from("/var/lib/yard/agent"), 0o711)));
        assert!(p
            .dirs
            .contains(&(PathBuf::from("/var/lib/yard/agent/home"), 0o700)));
    }

    #[test]
    fn the_center_runs_confined_and_its_flags_are_quoted_for_systemd() {
        let p = plan(
            Role::Center,
            &s(&[
                "--listen",
                "10.0.0.1:9900",
                "--data",
                "/srv/yard",
                "--token",
                "k",
                "--label",
                "50%$HOME x",
            ]),
        )
        .unwrap();
        let unit = &p.files[1].text;
        assert!(unit.contains(
            "ExecStart=/usr/local/bin/yard center --listen 10.0.0.1:9900 --data /srv/yard --label \"50%%$$HOME x\"\n"
        ), "{unit}");
        for line in [
            "CapabilityBoundingSet=",
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/yard/center /srv/yard",
            "NoNewPrivileges=yes",
        ] {
            assert!(unit.contains(&format!("\n{line}\n")), "{line}: {unit}");
        }
        assert!(!unit.contains("Delegate"));
        assert!(p.files[0].text.contains("\nYARD_TOKEN=k\n"));
        // --data was given: no data directory of ours.
        assert!(!p
            .dirs
            .iter()
            .any(|(d, _)| d == Path::new("/var/lib/yard/center/data")));
        assert_eq!(
            split_flags(&s(&["--join"])).unwrap_err().to_string(),
            "--join needs a value"
        );
        assert!(plan(Role::Center, &s(&["--data", "srv"]))
            .unwrap_err()
            .to_string()
            .contains("an absolute path"));
    }
}
