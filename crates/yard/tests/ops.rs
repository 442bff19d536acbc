//! The operations center as real processes on loopback: `yard center`, `yard manager` and `yard
//! agent`, with the client verbs run as the operator would.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::wait_until;
use serde_json::Value as Json;

/// A running daemon; SIGTERM then reaped on drop (agents stop their nodes).
struct Daemon {
    child: common::Daemon,
    addr: String,
}

impl Daemon {
    fn start(args: &[&str]) -> Daemon {
        let log = std::env::var("TEST_YARD_LOG").unwrap_or_else(|_| "warn".into());
        let stop = common::Stop::Term(Duration::from_secs(10));
        let (child, addr) = common::spawn_yard_stopped(args, &log, stop);
        Daemon { child, addr }
    }

    fn kill9(&mut self) {
        self.child.kill9();
    }
}

/// 0755: the agents' nodes run as `nobody` and work inside.
fn tmp(tag: &str) -> common::TempDir {
    common::TempDir::with_mode(&format!("ops-{tag}"), 0o755)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

async fn get(addr: &str, path: &str) -> Json {
    let body = common::Node::get_from(addr, path).await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// `GET path` with `token`, as JSON.
async fn get_as(addr: &str, token: &str, path: &str) -> Json {
    let (code, body) = common::Node::get_as(addr, path, token).await;
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Runs a client verb; (exit ok, stdout, stderr).
fn yard(args: &[&str]) -> (bool, String, String) {
    run_verb(common::yard().args(args))
}

/// Runs a client verb in `dir` as a user there would: no credentials home given, so it finds
/// `./yard-data/credentials`.
fn yard_in(dir: &Path, args: &[&str]) -> (bool, String, String) {
    run_verb(
        common::yard()
            .env_remove("YARD_HOME")
            .current_dir(dir)
            .args(args),
    )
}

fn run_verb(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.env("YARD_LOG", "warn").output().expect("run yard");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cluster<'a>(topo: &'a Json, name: &str) -> Option<&'a Json> {
    topo["clusters"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn agent_state(topo: &Json, cl: &str, agent: &str) -> Option<String> {
    cluster(topo, cl)?["agents"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == agent)
        .map(|a| a["state"].as_str().unwrap_or("").to_string())
}

fn healthy_nodes(topo: &Json, cl: &str) -> usize {
    cluster(topo, cl)
        .and_then(|c| c["agents"].as_array())
        .map(|agents| {
            agents
                .iter()
                .filter(|a| a["state"] == "up")
                .flat_map(|a| a["nodes"].as_array().cloned().unwrap_or_default())
                .filter(|n| n["health"] == "healthy")
                .count()
        })
        .unwrap_or(0)
}

/// Resource-manager tasks (ids starting with `prefix`) RUNNING under the agents of cluster local.
fn running_tasks(topo: &Json, prefix: &str) -> usize {
    cluster(topo, "local").map_or(0, |c| {
        c["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["tasks"].as_array().cloned().unwrap_or_default())
            .filter(|t| {
                t["id"].as_str().is_some_and(|i| i.starts_with(prefix))
                    && t["state"] == "TASK_RUNNING"
                    && t["framework"] == "yard-services"
            })
            .count()
    })
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("cluster.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn manager(dir: &Path, cluster: &str, center: &str, config: Option<&Path>, listen: &str) -> Daemon {
    let data = s(&dir.join(format!("manager-{cluster}")));
    let mut args = vec![
        "manager",
        "--cluster",
        cluster,
        "--center",
        center,
        "--listen",
        listen,
        "--data",
        &data,
        "--agent-timeout",
        "2s",
        "--report-interval",
        "1s",
        "--metrics-interval",
        "500ms",
        // The resource manager is tested in tests/compat (pymesos, mesos-cli).
        "--mesos-listen",
        "off",
    ];
    let config = config.map(s);
    if let Some(c) = &config {
        args.extend(["--config", c]);
    }
    Daemon::start(&args)
}

fn agent(dir: &Path, name: &str, manager: &str) -> Daemon {
    let data = s(&dir.join(format!("agent-{name}")));
    Daemon::start(&[
        "agent",
        "--manager",
        manager,
        "--name",
        name,
        "--listen",
        "127.0.0.1:0",
        "--data",
        &data,
        "--heartbeat",
        "250ms",
        "--mesos-listen",
        "off",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_registers_reports_changes_detects_loss_and_survives_restarts() {
    let dir = tmp("system");
    let config = write_config(
        &dir,
        "[[node]]\nname = \"w\"\ncommand = \"sleep\"\nargs = [\"1000\"]\n",
    );
    let center_data = s(&dir.join("center"));
    let center_args = |listen: &str| {
        vec![
            "center".to_string(),
            "--listen".into(),
            listen.to_string(),
            "--data".into(),
            center_data.clone(),
            "--manager-timeout".into(),
            "3s".into(),
        ]
    };
    let args: Vec<String> = center_args("127.0.0.1:0");
    let mut center = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let c = center.addr.clone();
    let mut m1 = manager(&dir, "c1", &c, Some(&config), "127.0.0.1:0");
    let m1_addr = m1.addr.clone();
    let _m2 = manager(&dir, "c2", &c, Some(&config), "127.0.0.1:0");
    let _a1 = agent(&dir, "a1", &m1.addr);
    let mut a2 = agent(&dir, "a2", &m1.addr);
    let _a3 = agent(&dir, "a3", &_m2.addr);

    // Registration and change reports: every agent up, every node healthy.
    wait_until(
        "three agents and their nodes",
        Duration::from_secs(30),
        || async {
            let t = get(&c, "/v1/topology").await;
            healthy_nodes(&t, "c1") == 2 && healthy_nodes(&t, "c2") == 1
        },
    )
    .await;
    let (ok, tree, _) = yard(&["topology", "-c", &c]);
    assert!(ok);
    for want in [
        "cluster c1",
        "cluster c2",
        "agent a1",
        "agent a3",
        "node w  running healthy",
    ] {
        assert!(tree.contains(want), "{want:?} in\n{tree}");
    }

    // Metrics: what agents publish live is exactly what the history holds.
    let series = "c1/a1/load1";
    wait_until("history of a1", Duration::from_secs(30), || async {
        raw_history(&c, series).await.len() >= 2
    })
    .await;

    // Agent loss within the bound (2 s of silence, reports every second).
    let lost_at = Instant::now();
    a2.kill9();
    wait_until("a2 lost", Duration::from_secs(15), || async {
        agent_state(&get(&c, "/v1/topology").await, "c1", "a2").as_deref() == Some("lost")
    })
    .await;
    let took = lost_at.elapsed();
    assert!(took < Duration::from_secs(6), "loss seen after {took:?}");
    let events = get(&c, "/v1/events").await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "agent_lost" && e["agent"] == "a2"),
        "{events}"
    );

    // Center restart: topology and history come back from its data directory.
    let kept = raw_history(&c, series).await;
    center.kill9();
    let args = center_args(&c);
    let center = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(center.addr, c);
    let t = get(&c, "/v1/topology").await;
    assert!(
        cluster(&t, "c1").is_some() && cluster(&t, "c2").is_some(),
        "from the store: {t}"
    );
    let after = raw_history(&c, series).await;
    for p in &kept {
        assert!(after.contains(p), "{p} kept across the restart");
    }
    // Managers report again and are reconciled: still one record per cluster, not re-registered.
    wait_until(
        "managers report to the new center",
        Duration::from_secs(15),
        || async {
            let t = get(&c, "/v1/clusters").await;
            t["clusters"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["reports"].as_u64().unwrap() > 0)
        },
    )
    .await;
    let t = get(&c, "/v1/clusters").await;
    assert_eq!(t["clusters"].as_array().unwrap().len(), 2);
    assert!(
        t["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["registrations"] == 1),
        "managers that did not restart are not counted as new registrations: {t}"
    );

    // Manager restart (same address, same data): reconciled, one cluster, registrations 2.
    m1.kill9();
    let _m1b = manager(&dir, "c1", &c, Some(&config), &m1_addr);
    wait_until(
        "c1 re-registered by its new manager",
        Duration::from_secs(20),
        || async {
            let t = get(&c, "/v1/topology").await;
            cluster(&t, "c1").is_some_and(|x| x["registrations"] == 2)
                && agent_state(&t, "c1", "a1").as_deref() == Some("up")
        },
    )
    .await;
    let t = get(&c, "/v1/topology").await;
    let c1 = cluster(&t, "c1").unwrap();
    assert_eq!(
        c1["agents"].as_array().unwrap().len(),
        2,
        "a2 is remembered: {c1}"
    );
    // a2 stays lost: the new manager knew it from its store and it never came back.
    wait_until(
        "a2 lost again after the grace period",
        Duration::from_secs(15),
        || async {
            agent_state(&get(&c, "/v1/topology").await, "c1", "a2").as_deref() == Some("lost")
        },
    )
    .await;
    // The center's figures say so too. Waited for, not read once: under a loaded machine a1's
    // heartbeat can miss the test's 2 s bound for a moment (it is lost, then up again).
    wait_until(
        "yard_center_agents: one up, one lost in c1",
        Duration::from_secs(15),
        || async {
            let metrics = common::Node::get_from(&c, "/metrics").await;
            metrics.contains("yard_center_agents{cluster=\"c1\",state=\"up\"} 1")
                && metrics.contains("yard_center_agents{cluster=\"c1\",state=\"lost\"} 1")
        },
    )
    .await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_goes_in_order_and_stops_at_the_first_failure() {
    let dir = tmp("rolling");
    let starts = dir.join("starts");
    let fail = dir.join("fail");
    // The nodes run as nobody (they name no user): the file they append to is theirs to write.
    std::fs::write(&starts, "").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&starts, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    let node = |name: &str, agent: &str, check: &str| {
        format!(
            "[[node]]\nname = \"{name}\"\ncommand = \"sh\"\nargs = [\"-c\", \"echo $YARD_NODE >> {}; exec sleep 1000\"]\nagents = [\"{agent}\"]\n[node.health]\ncommand = [\"sh\", \"-c\", \"{check}\"]\ninterval = \"200ms\"\nretries = 2\n",
            s(&starts)
        )
    };
    let text = [
        node("n1", "a1", "true"),
        node("n2", "a1", "true"),
        node("n3", "a2", &format!("test ! -e {}", s(&fail))),
        node("n4", "a2", "true"),
    ]
    .concat();
    let config = write_config(&dir, &text);
    let center = Daemon::start(&[
        "center",
        "--listen",
        "127.0.0.1:0",
        "--data",
        &s(&dir.join("center")),
    ]);
    let c = center.addr.clone();
    let m = manager(&dir, "r", &c, Some(&config), "127.0.0.1:0");
    let _a1 = agent(&dir, "a1", &m.addr);
    let _a2 = agent(&dir, "a2", &m.addr);
    wait_until("four healthy nodes", Duration::from_secs(30), || async {
        healthy_nodes(&get(&c, "/v1/topology").await, "r") == 4
    })
    .await;

    // All healthy: every node restarted, one at a time, in order.
    std::fs::write(&starts, "").unwrap();
    let (ok, table, err) = yard(&[
        "restart",
        "-c",
        &c,
        "--cluster",
        "r",
        "--rolling",
        "--timeout",
        "30s",
    ]);
    assert!(ok, "{table}\n{err}");
    assert_eq!(
        std::fs::read_to_string(&starts).unwrap(),
        "n1\nn2\nn3\nn4\n"
    );
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("r ") && l.contains(" ok "))
            .count(),
        4,
        "{table}"
    );

    // n3's check now fails: the restart stops there; n4 is not touched.
    std::fs::write(&fail, "").unwrap();
    std::fs::write(&starts, "").unwrap();
    let (ok, table, err) = yard(&["restart", "-c", &c, "--cluster", "r", "--timeout", "30s"]);
    assert!(!ok, "a failed restart exits non-zero:\n{table}");
    assert_eq!(std::fs::read_to_string(&starts).unwrap(), "n1\nn2\nn3\n");
    let row = |n: &str| {
        table
            .lines()
            .find(|l| l.contains(&format!(" {n} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("n1").contains(" ok "), "{table}");
    assert!(
        row("n3").contains(" failed ") && row("n3").contains("unhealthy"),
        "{table}"
    );
    assert!(row("n4").contains(" skipped "), "{table}");
    assert!(err.contains("failed"), "{err}");

    // Batches of two: n1 and n2 together, then n3 fails and n4 (same batch) still runs.
    std::fs::remove_file(&fail).unwrap();
    wait_until("n3 healthy again", Duration::from_secs(30), || async {
        healthy_nodes(&get(&c, "/v1/topology").await, "r") == 4
    })
    .await;
    let (ok, table, _) = yard(&[
        "restart",
        "-c",
        &c,
        "--cluster",
        "r",
        "--batch",
        "2",
        "--json",
    ]);
    assert!(ok, "{table}");
    let rec: Json = serde_json::from_str(&table).unwrap();
    assert_eq!(rec["state"], "ok");
    assert_eq!(rec["rows"].as_array().unwrap().len(), 4);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_verifies_checksums_rolls_back_and_exec_gathers_outputs() {
    let dir = tmp("deploy");
    let center_dir = dir.join("center");
    let center = Daemon::start(&[
        "center",
        "--listen",
        "127.0.0.1:0",
        "--data",
        &s(&center_dir),
    ]);
    let c = center.addr.clone();
    let m1 = manager(&dir, "d1", &c, None, "127.0.0.1:0");
    let m2 = manager(&dir, "d2", &c, None, "127.0.0.1:0");
    let _a1 = agent(&dir, "a1", &m1.addr);
    let _a2 = agent(&dir, "a2", &m1.addr);
    let _a3 = agent(&dir, "a3", &m2.addr);
    wait_until("three agents", Duration::from_secs(30), || async {
        let t = get(&c, "/v1/topology").await;
        ["a1", "a2"]
            .iter()
            .all(|a| agent_state(&t, "d1", a).as_deref() == Some("up"))
            && agent_state(&t, "d2", "a3").as_deref() == Some("up")
    })
    .await;
    let deployed =
        |agent: &str| std::fs::read_to_string(dir.join(format!("agent-{agent}/deploy/app.cfg")));

    // A checksum that does not match the file is refused; nothing reaches the agents.
    let file = dir.join("app.cfg");
    std::fs::write(&file, "v1\n").unwrap();
    let wrong = "0".repeat(64);
    let (ok, _, err) = yard(&[
        "deploy",
        "-c",
        &c,
        "--cluster",
        "d1",
        "--sha256",
        &wrong,
        &s(&file),
    ]);
    assert!(!ok);
    assert!(err.contains("checksum_mismatch"), "{err}");
    assert!(deployed("a1").is_err());

    // v1 then v2, everywhere (--all fans out through both managers); rollback restores v1.
    let (ok, out, err) = yard(&["deploy", "-c", &c, "--all", &s(&file)]);
    assert!(ok, "{out}\n{err}");
    std::fs::write(&file, "v2\n").unwrap();
    let (ok, out, err) = yard(&["deploy", "-c", &c, "--all", &s(&file)]);
    assert!(ok, "{out}\n{err}");
    for a in ["a1", "a2", "a3"] {
        assert_eq!(deployed(a).unwrap(), "v2\n");
    }
    let (ok, out, _) = yard(&["rollback", "-c", &c, "--cluster", "d1"]);
    assert!(ok, "{out}");
    assert_eq!(deployed("a1").unwrap(), "v1\n");
    assert_eq!(deployed("a2").unwrap(), "v1\n");
    assert_eq!(
        deployed("a3").unwrap(),
        "v2\n",
        "the other cluster is untouched"
    );

    // An artifact corrupted at the center is refused on the way (its hash no longer matches)
    // and the deployment stays as it was.
    std::fs::write(&file, "v3\n").unwrap();
    let sha = {
        let out = Command::new("sha256sum").arg(&file).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let (code, body) = common_post(&c, &format!("/v1/artifacts?sha256={sha}"), b"v3\n").await;
    assert_eq!(code, 201, "{body}");
    std::fs::write(center_dir.join("artifacts").join(&sha), "evil\n").unwrap();
    let cmd = format!(
        r#"{{"op":"deploy","sha256":"{sha}","name":"app.cfg","size":3,"cluster":"d1","timeout_s":30}}"#
    );
    let (code, body) = common_post(&c, "/v1/commands", cmd.as_bytes()).await;
    assert_eq!(code, 202, "{body}");
    let id = serde_json::from_str::<Json>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out, _) = yard(&["commands", "-c", &c, &id, "--follow", "--json"]);
    assert!(!ok, "{out}");
    let rec: Json = serde_json::from_str(&out).unwrap();
    assert!(
        rec["clusters"]["d1"]["error"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch"),
        "{rec}"
    );
    assert_eq!(deployed("a1").unwrap(), "v1\n");

    // exec: every agent's exit code and output, gathered.
    let (ok, out, _) = yard(&[
        "exec",
        "-c",
        &c,
        "--all",
        "--json",
        "--",
        "sh",
        "-c",
        "echo from $YARD_AGENT",
    ]);
    assert!(ok, "{out}");
    let rec: Json = serde_json::from_str(&out).unwrap();
    let mut outputs: Vec<String> = rec["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["agent"].as_str().unwrap(),
                r["exit_code"],
                r["output"].as_str().unwrap().trim()
            )
        })
        .collect();
    outputs.sort();
    assert_eq!(outputs, ["a1 0 from a1", "a2 0 from a2", "a3 0 from a3"]);
    let (ok, out, _) = yard(&[
        "exec",
        "-c",
        &c,
        "--cluster",
        "d2",
        "--",
        "sh",
        "-c",
        "echo bad >&2; exit 7",
    ]);
    assert!(!ok);
    assert!(
        out.contains(" failed   7 ") && out.contains("| bad"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

async fn common_post(addr: &str, path: &str, body: &[u8]) -> (u16, String) {
    exchange(addr, "POST", path, body).await
}

/// One HTTP/1.1 request as the tests' admin; the status and the body of the answer.
async fn exchange(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let ct = if path.starts_with("/v1/artifacts") {
        "application/octet-stream"
    } else {
        "application/json"
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: {ct}",
        common::admin_token()
    );
    let (code, text) = common::raw_http(addr, &head, body).await;
    (code, common::body_of(&text))
}

/// The raw history of a series over the last hour.
async fn raw_history(addr: &str, series: &str) -> Vec<Json> {
    let q = get(
        addr,
        &format!("/v1/metrics/query?series={series}&since=1h&resolution=raw"),
    )
    .await;
    q["points"].as_array().cloned().unwrap_or_default()
}

/// Checks one answer against the document: the status is documented for the operation, and a
/// JSON body has the required properties of its schema.
fn check_answer(doc: &Json, path: &str, method: &str, code: u16, body: &str) {
    let op = &doc["paths"][path][method];
    let r = &op["responses"][code.to_string()];
    assert!(
        r.is_object(),
        "{method} {path}: status {code} is not documented: {body}"
    );
    let Some(schema) = r["content"]["application/json"]["schema"].as_object() else {
        return;
    };
    let schema = match schema.get("$ref").and_then(Json::as_str) {
        Some(rf) => {
            let name = rf.rsplit('/').next().unwrap();
            doc["components"]["schemas"][name].clone()
        }
        None => Json::Object(schema.clone()),
    };
    let v: Json = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"));
    for k in schema["required"].as_array().cloned().unwrap_or_default() {
        let k = k.as_str().unwrap();
        assert!(
            v.get(k).is_some(),
            "{method} {path} {code}: no {k:?} in {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_running_center() {
    let dir = tmp("openapi");
    let config = write_config(
        &dir,
        "[[node]]\nname = \"n\"\ncommand = \"sleep\"\nargs = [\"1000\"]\n",
    );
    let center = Daemon::start(&[
        "center",
        "--listen",
        "127.0.0.1:0",
        "--data",
        &s(&dir.join("center")),
    ]);
    let c = center.addr.clone();
    let m = manager(&dir, "o", &c, Some(&config), "127.0.0.1:0");
    let _a = agent(&dir, "a1", &m.addr);
    wait_until(
        "a healthy node and a sample",
        Duration::from_secs(30),
        || async {
            healthy_nodes(&get(&c, "/v1/topology").await, "o") == 1
                && get(&c, "/v1/metrics/series?prefix=o/a1/").await["series"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty())
        },
    )
    .await;
    let doc: Json =
        serde_json::from_str(&common::Node::get_from(&c, "/v1/openapi.json").await).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");

    // The POSTs first: they give the command id the GETs use.
    let (code, body) = common_post(&c, "/v1/artifacts", b"artifact").await;
    check_answer(&doc, "/v1/artifacts", "post", code, &body);
    assert_eq!(code, 201);
    let (code, body) = common_post(
        &c,
        &format!("/v1/artifacts?sha256={}", "1".repeat(64)),
        b"x",
    )
    .await;
    check_answer(&doc, "/v1/artifacts", "post", code, &body);
    assert_eq!(code, 422);
    let (code, body) = common_post(
        &c,
        "/v1/commands",
        br#"{"op":"exec","argv":["true"],"cluster":"o"}"#,
    )
    .await;
    check_answer(&doc, "/v1/commands", "post", code, &body);
    assert_eq!(code, 202);
    let id = serde_json::from_str::<Json>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (bad, want) in [
        (&br#"{"op":"exec","argv":["true"]}"#[..], 400),
        (br#"{"op":"exec","argv":["true"],"cluster":"zz"}"#, 404),
        (b"{", 400),
    ] {
        let (code, body) = common_post(&c, "/v1/commands", bad).await;
        check_answer(&doc, "/v1/commands", "post", code, &body);
        assert_eq!(code, want, "{body}");
    }

    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // The live stream never ends: its frames are checked in crates/ops/tests/center.rs.
        if item.get("get").is_none() || path == "/v1/stream" {
            continue;
        }
        let mut url = path
            .replace("{name}", "o")
            .replace("{cluster}", "o")
            .replace("{agent}", "a1")
            .replace("{node}", "n")
            .replace("{service}", "web")
            .replace("{task}", "t1")
            .replace("{id}", &id);
        if path == "/v1/metrics/query" {
            url.push_str("?series=o/a1/load1&since=1h");
        }
        let (code, body) = exchange(&c, "GET", &url, b"").await;
        check_answer(&doc, path, "get", code, &body);
        if path.contains("/rm/") {
            // This manager runs no Mesos master (the resource manager's routes through the
            // center are tested in tests/compat/test_dashboard.py).
            assert_eq!(code, 404, "GET {url}: {body}");
            assert!(body.contains("\"no_rm\""), "GET {url}: {body}");
        } else if path.starts_with("/v1/ca") || path.starts_with("/v1/join") {
            // This center holds no authority (the join routes are tested in tests/join.rs).
            assert_eq!(code, 404, "GET {url}: {body}");
            assert!(body.contains("\"no_authority\""), "GET {url}: {body}");
        } else {
            assert_eq!(code, 200, "GET {url}: {body}");
        }
        checked += 1;
    }
    assert_eq!(
        checked, 25,
        "every GET in the document but the stream was called"
    );
    // The manager's links, gathered over the mesh, name its agent.
    let a1 = get(&c, "/v1/topology").await["clusters"][0]["agents"][0]["id"].clone();
    let links = get(&c, "/v1/clusters/o/links").await;
    assert!(
        links["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == a1 && l["state"] == "connected"),
        "{links}"
    );
    // Documented errors look as documented.
    for (path, url) in [
        ("/v1/clusters/{name}", "/v1/clusters/nope"),
        ("/v1/commands/{id}", "/v1/commands/nope"),
        ("/v1/logs/{cluster}/{agent}/{node}", "/v1/logs/o/a1/nope"),
    ] {
        let (code, body) = exchange(&c, "GET", url, b"").await;
        check_answer(&doc, path, "get", code, &body);
        assert_eq!(code, 404, "{url}: {body}");
    }
    let (code, _) = exchange(
        &c,
        "GET",
        "/v1/metrics/query?series=x&resolution=weekly",
        b"",
    )
    .await;
    assert_eq!(code, 400);
    std::fs::remove_dir_all(&dir).ok();
}

/// A node's log is followed: each read carries on from the position the last one returned,
/// so reads joined give every line once, in order; `yard logs --follow` does the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_s_log_is_followed_from_the_position_each_read_returns() {
    let dir = tmp("follow");
    let config = write_config(
        &dir,
        "[[node]]\nname = \"w\"\ncommand = \"sh\"\n\
         args = [\"-c\", \"i=0; while true; do i=$((i+1)); echo line $i; sleep 0.1; done\"]\n",
    );
    let center_data = s(&dir.join("center"));
    let center = Daemon::start(&["center", "--listen", "127.0.0.1:0", "--data", &center_data]);
    let c = center.addr.clone();
    let m = manager(&dir, "f", &c, Some(&config), "127.0.0.1:0");
    let _a = agent(&dir, "a1", &m.addr);
    wait_until("the node runs", Duration::from_secs(30), || async {
        healthy_nodes(&get(&c, "/v1/topology").await, "f") == 1
    })
    .await;

    // One read, answered with its headers.
    let read = |after: Option<String>| {
        let c = c.clone();
        async move {
            let mut path = "/v1/logs/f/a1/w?max_bytes=65536".to_string();
            if let Some(a) = &after {
                path.push_str(&format!("&after={a}"));
            }
            let head = format!(
                "GET {path} HTTP/1.1\r\nHost: {c}\r\nAuthorization: Bearer {}",
                common::admin_token()
            );
            let (code, text) = common::raw_http(&c, &head, b"").await;
            let header = |name: &str| {
                text.lines()
                    .take_while(|l| !l.is_empty())
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            let next = header("x-yard-log-next:");
            let continued = header("x-yard-log-continued:");
            (code, next, continued, common::body_of(&text))
        }
    };
    let numbers = |text: &str| -> Vec<u64> {
        text.lines()
            .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
            .collect()
    };
    let (code, mut next, continued, first) = read(None).await;
    assert_eq!(
        (code, continued.as_deref()),
        (200, Some("false")),
        "{first}"
    );
    // Read on from each answer's position until 30 lines have come (each read waited for by
    // the condition poll, not a fixed sleep).
    let state = std::sync::Mutex::new((numbers(&first), next.take()));
    wait_until(
        "30 lines read in pieces",
        Duration::from_secs(20),
        || async {
            let after = state.lock().unwrap().1.clone();
            let (code, n, continued, text) = read(after).await;
            assert_eq!((code, continued.as_deref()), (200, Some("true")), "{text}");
            assert!(n.is_some(), "a position to carry on from");
            let mut s = state.lock().unwrap();
            s.0.extend(numbers(&text));
            s.1 = n;
            s.0.len() >= 30
        },
    )
    .await;
    let seen = state.into_inner().unwrap().0;
    let from = seen[0];
    let want: Vec<u64> = (from..from + seen.len() as u64).collect();
    assert_eq!(seen, want, "every line once, in order, across the reads");

    let (code, _, _, body) = read(Some("nonsense".into())).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("FILE:OFFSET"), "{body}");

    // The CLI follows too: ten lines in a row, then Ctrl-C's stand-in.
    let mut child = common::yard()
        .args(["logs", "-c", &c, "--follow", "a1/w"])
        .env("YARD_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let got: Vec<u64> = out
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .take(40)
        .collect();
    child.kill().ok();
    child.wait().ok();
    let start = got[0];
    assert_eq!(
        got,
        (start..start + 40).collect::<Vec<_>>(),
        "yard logs --follow"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `yard up` in a fresh directory: a working system in one command; Ctrl-C stops everything,
/// nodes included; a second run resumes the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yard_up_runs_a_system_stops_cleanly_and_resumes() {
    let dir = tmp("up");
    let run = || {
        let mut child = common::yard()
            .env_remove("YARD_HOME")
            .args(["up"])
            .current_dir(&dir)
            .env("YARD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("yard up");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        while !banner.contains("Ctrl-C stops everything") {
            assert!(
                out.read_line(&mut banner).unwrap() > 0,
                "yard up ended: {banner}"
            );
        }
        assert!(banner.starts_with("Switchyard is up"), "{banner}");
        // Stopped (SIGTERM) if the test fails before its own Ctrl-C.
        let guard = Daemon {
            child: common::Daemon::adopt(child, common::Stop::Term(Duration::from_secs(10))),
            addr: String::new(),
        };
        (guard, banner, out)
    };
    let c = "127.0.0.1:9900";
    let (mut up, banner, _out) = run();
    // The admin credential `yard up` made, private to its user.
    let creds = dir.join("yard-data").join("credentials");
    assert!(
        banner.contains("yard-data/credentials (mode 0600)"),
        "{banner}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&creds).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let tok = std::fs::read_to_string(&creds).unwrap().trim().to_string();
    assert!(
        banner.contains("center     https://127.0.0.1:9900/"),
        "{banner}"
    );
    // TLS on every listener: the authority made on the first run keeps its key private, and
    // the CLI beside it checks the center against its root (its verbs below go over TLS).
    let ca_key = dir.join("yard-data").join("ca").join("ca.key");
    let mode = std::fs::metadata(&ca_key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let other = tmp("up-other-ca");
    let (ok, _, err) = run_verb(
        common::yard()
            .env("YARD_HOME", other.path())
            .args(["ca", "init"]),
    );
    assert!(ok, "{err}");
    let (ok, _, err) = run_verb(
        common::yard()
            .current_dir(&dir)
            .args(["topology", "--ca"])
            .arg(other.join("ca").join("ca.crt")),
    );
    assert!(
        !ok && err.contains("TLS to 127.0.0.1:9900") && err.contains("not of the CA given"),
        "{err}"
    );
    assert!(
        banner.contains("yard restart --cluster local --rolling"),
        "{banner}"
    );
    wait_until(
        "four healthy nodes in cluster local",
        Duration::from_secs(30),
        || async { healthy_nodes(&get_as(c, &tok, "/v1/topology").await, "local") == 4 },
    )
    .await;
    let t = get_as(c, &tok, "/v1/topology").await;
    let center_id = t["center"]["id"].clone();
    let pids: Vec<u64> = cluster(&t, "local").unwrap()["agents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| {
            a["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|n| n["pid"].as_u64())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(pids.len(), 4);
    let (ok, out_text, err) = yard_in(&dir, &["restart", "--cluster", "local", "--rolling"]);
    assert!(ok, "{out_text}\n{err}");
    // Someone without that file (another home, another user) is refused, and told why.
    let stranger = tmp("up-stranger");
    let out = common::yard()
        .env("YARD_HOME", stranger.path())
        .args(["topology"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("401"), "{err}");
    // A viewer token made beside it reads, may not restart, and stops working once revoked.
    let (ok, viewer, err) = yard_in(&dir, &["token", "create", "vera", "--role", "viewer"]);
    assert!(ok, "{err}");
    let viewer = viewer.trim().to_string();
    get_as(c, &viewer, "/v1/topology").await;
    let (ok, _, err) = run_verb(
        common::yard()
            .env("YARD_CREDENTIALS", stranger.join("vera"))
            .env("YARD_HOME", stranger.path())
            .args(["restart", "--cluster", "local", "--rolling"]),
    );
    assert!(!ok && err.contains("401"), "{err}");
    std::fs::write(stranger.join("vera"), &viewer).unwrap();
    let (ok, _, err) = run_verb(
        common::yard()
            .env("YARD_CREDENTIALS", stranger.join("vera"))
            .args(["restart", "--cluster", "local", "--rolling"]),
    );
    assert!(
        !ok && err.contains("403") && err.contains("command"),
        "{err}"
    );
    let (ok, _, err) = yard_in(&dir, &["token", "revoke", "vera"]);
    assert!(ok, "{err}");
    wait_until("the revoked token refused", Duration::from_secs(3), || {
        let viewer = viewer.clone();
        async move { common::Node::get_as(c, "/v1/topology", &viewer).await.0 == 401 }
    })
    .await;
    let (ok, audit, err) = yard_in(&dir, &["audit", "--result", "unauthenticated"]);
    assert!(ok && audit.contains("/v1/topology"), "{audit}\n{err}");
    std::fs::remove_dir_all(&stranger).ok();

    // A service on the resource manager: its task shows under its agent in the topology.
    let svc = dir.join("hello.toml");
    std::fs::write(
        &svc,
        "name = \"hello\"\ninstances = 1\ncommand = \"sleep 600\"\ncpus = 0.1\nmem = 16\n",
    )
    .unwrap();
    let (ok, out_text, err) = yard_in(&dir, &["service", "deploy", &s(&svc)]);
    assert!(
        ok && out_text.contains("deployed hello"),
        "{out_text}\n{err}"
    );
    wait_until(
        "the service's task in the topology",
        Duration::from_secs(30),
        || async { running_tasks(&get_as(c, &tok, "/v1/topology").await, "hello.") == 1 },
    )
    .await;

    // Ctrl-C: everything stops, nodes included, with a zero exit.
    up.child.signal("INT");
    let status = up.child.wait().unwrap();
    assert!(status.success(), "{status}");
    for pid in &pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "node {pid} outlived yard up: {stat}"
        );
    }

    // Again: the same center, the same cluster (its manager counted as restarted once).
    let (mut up, _, _out) = run();
    wait_until("the cluster back", Duration::from_secs(30), || async {
        let t = get_as(c, &tok, "/v1/topology").await;
        healthy_nodes(&t, "local") == 4
            && cluster(&t, "local").is_some_and(|x| x["registrations"] == 2)
    })
    .await;
    assert_eq!(
        get_as(c, &tok, "/v1/topology").await["center"]["id"],
        center_id
    );
    // The service came back with it (its spec is in the resource manager's store).
    wait_until(
        "the service running again",
        Duration::from_secs(30),
        || async { running_tasks(&get_as(c, &tok, "/v1/topology").await, "hello.") == 1 },
    )
    .await;
    up.child.signal("INT");
    assert!(up.child.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).ok();
}
