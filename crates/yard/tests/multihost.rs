//! Several hosts on one machine: network namespaces with their own addresses, joined by a
//! bridge (scripts/testbed.sh). A center host holds the authority; two cluster hosts each run a
//! manager and two agents, every one started with `--join`; an outsider host holds nothing.
//! A capture on the bridge shows what crossed it. Needs root (namespaces), as the resource
//! manager's tests need it for cgroups: skipped, and said so, without it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_until, Daemon};
use serde_json::Value as Json;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/testbed.sh")
}

/// The namespaces of one test, removed (with every process in them) when dropped, even when
/// the test fails.
struct Testbed {
    prefix: String,
}

impl Testbed {
    fn up(hosts: &[&str]) -> Testbed {
        // Unique per run: tests of two checkouts never share a namespace.
        let prefix = format!("yt{:04x}", std::process::id() & 0xffff);
        let tb = Testbed { prefix };
        tb.script(&[&["up"], hosts].concat());
        tb
    }

    fn script(&self, args: &[&str]) {
        let status = Command::new("bash")
            .arg(script())
            .arg(args[0])
            .arg(&self.prefix)
            .args(&args[1..])
            .status()
            .unwrap();
        assert!(status.success(), "testbed.sh {args:?}");
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// `yard ARGS` on `host` with `home`.
    fn yard(&self, host: &str, home: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host), common::yard_bin()])
            .env("YARD_HOME", home)
            .env("YARD_LOG", "warn")
            .env_remove("YARD_CREDENTIALS");
        c
    }

    fn run(&self, host: &str, home: &Path, args: &[&str]) -> (bool, String, String) {
        let out = self.yard(host, home).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// On the host `center`: an authority in `home`, then the center at `addr`, its data in
    /// `home`.
    fn center(&self, home: &Path, addr: &str, extra: &[&str]) -> Daemon {
        let (ok, _, err) = self.run("center", home, &["ca", "init"]);
        assert!(ok, "{err}");
        let data = home.join("data");
        let mut args = vec!["center", "--listen", addr, "--data", data.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.daemon("center", home, &args)
    }

    fn daemon(&self, host: &str, home: &Path, args: &[&str]) -> Daemon {
        let mut c = self.yard(host, home);
        c.args(args).stderr(Stdio::inherit());
        let (d, line) = Daemon::spawn(c, common::Stop::Term(Duration::from_secs(10)));
        assert!(line.contains(" listening on "), "{args:?}: {line:?}");
        d
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", &self.prefix])
            .status();
    }
}

fn cluster<'a>(topo: &'a Json, name: &str) -> Option<&'a Json> {
    topo["clusters"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn agents_up(topo: &Json, name: &str) -> usize {
    cluster(topo, name)
        .and_then(|c| c["agents"].as_array())
        .map(|a| a.iter().filter(|a| a["state"] == "up").count())
        .unwrap_or(0)
}

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_center_and_two_cluster_hosts_joined_with_tokens_work_over_tls_and_an_outsider_gets_nothing(
) {
    if !is_root() {
        eprintln!("skipped: the multi-host test bed needs root for network namespaces");
        return;
    }
    let tb = Testbed::up(&[
        "center=10.77.0.1",
        "c1=10.77.0.2",
        "c2=10.77.0.3",
        "out=10.77.0.9",
    ]);
    let tmp = yard_testkit::TempDir::new("multihost");
    // Nodes run as nobody, who must pass through to their directories under the agents'.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let home = |name: &str| {
        let p = tmp.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    };

    // Everything that crosses the bridge, from the start.
    let pcap = tmp.join("bridge.pcap");
    let mut capture = Command::new("ip");
    capture
        .args([
            "netns",
            "exec",
            &tb.ns("sw"),
            "tcpdump",
            "-i",
            "br0",
            "-U",
            "-s",
            "0",
            "-w",
        ])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let capture = Daemon::adopt(
        capture.spawn().unwrap(),
        common::Stop::Term(Duration::from_secs(5)),
    );
    let mut capture = capture;
    // tcpdump writes the file's header once it listens.
    let p = pcap.clone();
    wait_until("the capture listening", Duration::from_secs(10), || {
        let p = p.clone();
        async move { std::fs::metadata(&p).is_ok_and(|m| m.len() >= 24) }
    })
    .await;

    // The center host: the authority, the center, and its admin.
    let ch = home("center");
    let center = "10.77.0.1:9900";
    let _center = tb.center(&ch, center, &["--manager-timeout", "3s"]);
    let token = |allows: &str, uses: &str| {
        let (ok, out, err) = tb.run(
            "center",
            &ch,
            &[
                "join-token",
                "create",
                allows,
                "--uses",
                uses,
                "--center",
                center,
            ],
        );
        assert!(ok, "{err}");
        out.trim().to_string()
    };

    // Two cluster hosts: a manager and two agents each, every one joining with a token.
    let config = tmp.join("web.toml");
    std::fs::write(
        &config,
        "[[node]]\nname = \"ticker\"\ncommand = \"sh\"\nargs = [\"-c\", \"while :; do date; sleep 1; done\"]\nrestart = \"always\"\n",
    )
    .unwrap();
    let mut daemons = Vec::new();
    let mut secrets = Vec::new();
    for (host, cluster, ip) in [("c1", "web", "10.77.0.2"), ("c2", "db", "10.77.0.3")] {
        let t = token(&format!("manager:{cluster}"), "1");
        secrets.push(t.split('.').nth(2).unwrap().to_string());
        let mh = home(&format!("{host}-manager"));
        let listen = format!("{ip}:9901");
        daemons.push(tb.daemon(
            host,
            &mh,
            &[
                "manager",
                "--cluster",
                cluster,
                "--join",
                &t,
                "--listen",
                &listen,
                "--center",
                center,
                "--config",
                config.to_str().unwrap(),
                "--data",
                mh.join("data").to_str().unwrap(),
                "--mesos-listen",
                "off",
                "--agent-timeout",
                "3s",
                // The default report interval (5 s) is longer than the center's 3 s bound: the
                // manager reports within the bound the center gives it.
                "--metrics-interval",
                "1s",
            ],
        ));
        let t = token(&format!("agent:{cluster}/*"), "2");
        secrets.push(t.split('.').nth(2).unwrap().to_string());
        for (i, port) in [(1, 9911), (2, 9912)] {
            let name = format!("{cluster}-a{i}");
            let ah = home(&format!("{host}-{name}"));
            let alisten = format!("{ip}:{port}");
            daemons.push(tb.daemon(
                host,
                &ah,
                &[
                    "agent",
                    "--cluster",
                    cluster,
                    "--name",
                    &name,
                    "--join",
                    &t,
                    "--listen",
                    &alisten,
                    "--manager",
                    &listen,
                    "--data",
                    ah.join("data").to_str().unwrap(),
                    "--mesos-listen",
                    "off",
                    "--heartbeat",
                    "500ms",
                ],
            ));
        }
    }
    let topology = || {
        let (ok, out, err) = tb.run("center", &ch, &["topology", "--center", center, "--json"]);
        assert!(ok, "{err}");
        serde_json::from_str::<Json>(&out).unwrap()
    };
    wait_until(
        "both clusters with both agents up",
        Duration::from_secs(30),
        || {
            let t = topology();
            async move { agents_up(&t, "web") == 2 && agents_up(&t, "db") == 2 }
        },
    )
    .await;

    // Commands reach across hosts: exec, and a rolling restart.
    let marker = format!("payload-{}", yard_auth::secret::random_hex(8));
    let (ok, out, err) = tb.run(
        "center",
        &ch,
        &[
            "exec",
            "--cluster",
            "web",
            "--center",
            center,
            "--",
            "echo",
            &marker,
        ],
    );
    assert!(
        ok && out.matches(marker.as_str()).count() >= 2,
        "{out}\n{err}"
    );
    wait_until("the web nodes running", Duration::from_secs(20), || {
        let t = topology();
        async move {
            cluster(&t, "web")
                .and_then(|c| c["agents"].as_array())
                .map(|a| {
                    a.iter()
                        .flat_map(|a| a["nodes"].as_array().cloned().unwrap_or_default())
                        .filter(|n| n["state"] == "running")
                        .count()
                })
                == Some(2)
        }
    })
    .await;
    let (ok, out, err) = tb.run(
        "center",
        &ch,
        &[
            "restart",
            "--cluster",
            "web",
            "--rolling",
            "--center",
            center,
        ],
    );
    assert!(ok, "{out}\n{err}");

    // Deploy and roll back across hosts: the artifact goes center → manager → agents, and
    // only to the cluster named.
    let artifact = |v: &str| format!("artifact-{v}-{}\n", yard_auth::secret::random_hex(8));
    let (v1, v2) = (artifact("v1"), artifact("v2"));
    let file = tmp.join("app.cfg");
    let deployed = |host: &str, agent: &str| {
        std::fs::read_to_string(
            tmp.join(format!("{host}-{agent}"))
                .join("data")
                .join("deploy")
                .join("app.cfg"),
        )
        .ok()
    };
    for v in [&v1, &v2] {
        std::fs::write(&file, v).unwrap();
        let (ok, out, err) = tb.run(
            "center",
            &ch,
            &[
                "deploy",
                "--cluster",
                "web",
                "--center",
                center,
                file.to_str().unwrap(),
            ],
        );
        assert!(ok, "{out}\n{err}");
    }
    assert_eq!(deployed("c1", "web-a1").as_ref(), Some(&v2));
    assert_eq!(deployed("c1", "web-a2").as_ref(), Some(&v2));
    assert_eq!(
        deployed("c2", "db-a1"),
        None,
        "the other cluster is untouched"
    );
    let (ok, out, err) = tb.run(
        "center",
        &ch,
        &["rollback", "--cluster", "web", "--center", center],
    );
    assert!(ok, "{out}\n{err}");
    assert_eq!(deployed("c1", "web-a1").as_ref(), Some(&v1));
    assert_eq!(deployed("c1", "web-a2").as_ref(), Some(&v1));

    // Metrics history: an agent's samples, kept by the center, from the other host.
    wait_until(
        "db-a2's cpu history at the center",
        Duration::from_secs(30),
        || {
            let (ok, out, _) = tb.run(
                "center",
                &ch,
                &[
                    "metrics",
                    "db/db-a2/cpu",
                    "--since",
                    "1h",
                    "--resolution",
                    "raw",
                    "--json",
                    "--center",
                    center,
                ],
            );
            let points = ok
                && serde_json::from_str::<Json>(&out)
                    .is_ok_and(|q| q["points"].as_array().is_some_and(|p| !p.is_empty()));
            async move { points }
        },
    )
    .await;

    // The outsider: no credential, no certificate of the authority.
    let oh = home("outsider");
    let ca = ch.join("ca").join("ca.crt");
    let (ok, _, err) = tb.run(
        "out",
        &oh,
        &["topology", "--center", center, "--ca", ca.to_str().unwrap()],
    );
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, _, err) = tb.run(
        "out",
        &oh,
        &["topology", "--center", &format!("http://{center}")],
    );
    assert!(!ok && err.contains("speaks TLS only"), "{err}");
    // A join token of its own making names another authority: refused before any secret.
    let (ok, _, err) = tb.run("out", &oh, &["ca", "init"]);
    assert!(ok, "{err}");
    let forged = format!(
        "yj1.00000000.{}.{}@{center}",
        "0".repeat(32),
        "1".repeat(64)
    );
    let (ok, _, err) = tb.run("out", &oh, &["join", &forged, "--as", "agent:web/x"]);
    assert!(!ok && err.contains("not the authority"), "{err}");
    // Peering with a certificate of its own authority: the handshake fails, nothing joins.
    let (ok, _, err) = tb.run(
        "out",
        &oh,
        &[
            "cert",
            "issue",
            "node:spy",
            "--host",
            "10.77.0.9",
            "--out",
            oh.join("certs").to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let spy_certs = oh.join("certs");
    let p = |f: &str| spy_certs.join(f).to_string_lossy().into_owned();
    let _spy = tb.daemon(
        "out",
        &oh,
        &[
            "node",
            "--listen",
            "10.77.0.9:9997",
            "--peer",
            center,
            "--tls-cert",
            &p("node-spy.crt"),
            "--tls-key",
            &p("node-spy.key"),
            "--tls-ca",
            &p("ca.crt"),
        ],
    );
    let admin = std::fs::read_to_string(ch.join("credentials")).unwrap();
    let admin = admin.trim().to_string();
    let metric = |name: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", &tb.ns("center"), "curl", "-s", "--cacert"])
            .arg(&ca)
            .args(["-H", &format!("Authorization: Bearer {admin}")])
            .arg(format!("https://{center}/metrics"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    wait_until(
        "the spy's handshake refused",
        Duration::from_secs(10),
        || {
            let n = metric("yard_tls_handshake_failures_total");
            async move { n >= 1.0 }
        },
    )
    .await;
    let t = topology();
    assert_eq!(t["clusters"].as_array().unwrap().len(), 2, "{t}");

    // An operator on another host (c1) with nothing but a bundle made on the center's host:
    // the CLI reaches the center across the bridge, its certificate checked against the root.
    let bundle = tmp.join("olga");
    let (ok, out, err) = tb.run(
        "center",
        &ch,
        &[
            "token",
            "create",
            "olga",
            "--role",
            "viewer",
            "--bundle",
            bundle.to_str().unwrap(),
            "--center",
            center,
        ],
    );
    assert!(ok && out.is_empty(), "{out}{err}");
    let out = tb
        .yard("c1", &bundle)
        .env("YARD_CENTER", center)
        .args(["topology", "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("\"web\""),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A cluster host cut off: its cluster is lost within the bound, and back once mended.
    tb.script(&["cut", "c2"]);
    wait_until("cluster db lost", Duration::from_secs(15), || {
        let t = topology();
        async move { cluster(&t, "db").is_some_and(|c| c["manager_state"] == "lost") }
    })
    .await;
    tb.script(&["mend", "c2"]);
    wait_until("cluster db back", Duration::from_secs(30), || {
        let t = topology();
        async move {
            cluster(&t, "db").is_some_and(|c| c["manager_state"] == "up")
                && agents_up(&t, "db") == 2
        }
    })
    .await;
    // The other cluster never noticed: no loss of web's manager in the center's event log.
    let events = Command::new("ip")
        .args(["netns", "exec", &tb.ns("center"), "curl", "-s", "--cacert"])
        .arg(&ca)
        .args(["-H", &format!("Authorization: Bearer {admin}")])
        .arg(format!("https://{center}/v1/events"))
        .output()
        .unwrap();
    let events: Json = serde_json::from_slice(&events.stdout).unwrap();
    let lost: Vec<&Json> = events["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{events}"))
        .iter()
        .filter(|e| e["event"] == "manager_lost")
        .collect();
    assert!(
        !lost.is_empty() && lost.iter().all(|e| e["cluster"] == "db"),
        "only db's manager is lost: {lost:?}"
    );

    // A stolen certificate (agent web-a1's, key and all, carried to the outsider) opens TLS to
    // its manager until it is revoked; within seconds of `yard cert revoke` on the center's
    // host, the manager (which hears the list over the fabric) refuses it in the handshake,
    // while the same call without it still gets an HTTP answer.
    let stolen = oh.join("stolen");
    std::fs::create_dir_all(&stolen).unwrap();
    for f in ["host.crt", "host.key"] {
        std::fs::copy(home("c1-web-a1").join("tls").join(f), stolen.join(f)).unwrap();
    }
    let status_with = |cert: bool| {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &tb.ns("out"),
            "curl",
            "-s",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_code}", "--max-time", "5", "--cacert"])
        .arg(&ca);
        if cert {
            c.arg("--cert")
                .arg(stolen.join("host.crt"))
                .arg("--key")
                .arg(stolen.join("host.key"));
        }
        let out = c.arg("https://10.77.0.2:9901/v1/health").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let before = status_with(true);
    assert!(
        before.len() == 3 && before != "000",
        "the stolen certificate before revocation: {before:?}"
    );
    let (ok, out, err) = tb.run("center", &ch, &["cert", "revoke", "agent:web/web-a1"]);
    assert!(ok && out.contains("revoked agent:web/web-a1"), "{out}{err}");
    wait_until(
        "the stolen certificate refused by the manager",
        Duration::from_secs(15),
        || {
            let refused = status_with(true) == "000";
            async move { refused }
        },
    )
    .await;
    let without = status_with(false);
    assert!(
        without.len() == 3 && without != "000",
        "the manager answers without the stolen certificate: {without:?}"
    );

    // What crossed the bridge: TLS records, and none of the secrets or the payload.
    capture.stop();
    let bytes = std::fs::read(&pcap).unwrap();
    let tls_records = bytes
        .windows(3)
        .filter(|w| *w == [0x17, 0x03, 0x03])
        .count();
    assert!(tls_records > 100, "only {tls_records} TLS records captured");
    let mesh = std::fs::read_to_string(ch.join("mesh.key")).unwrap();
    let mut clear: Vec<(&str, String)> = vec![
        ("the admin token", admin.clone()),
        ("the mesh key", mesh.trim().to_string()),
        ("the exec payload", marker.clone()),
        ("a deployed artifact", v2.trim().to_string()),
        ("an Authorization header", "Authorization: Bearer".into()),
    ];
    for s in &secrets {
        clear.push(("a join secret", s.clone()));
    }
    for (what, s) in &clear {
        assert!(
            !contains(&bytes, s.as_bytes()),
            "{what} crossed the bridge in clear text"
        );
    }
    drop(daemons);
}

/// The fabric alone across hosts (issue 18): five nodes on five hosts, each joined with one
/// token (`yard join --as node:NAME`, then `yard node` on the identity it got), peered in a
/// ring over mutual TLS; a store's master on one host and its clone two hops away on another.
/// The clone's host is cut off: writes on both sides go on, and once it is back the clone
/// holds every one and the master has the clone's: nothing lost.
#[tokio::test]
async fn five_nodes_on_five_hosts_joined_with_a_token_keep_a_store_through_a_cut() {
    if !is_root() {
        eprintln!("skipped: the multi-host test bed needs root for network namespaces");
        return;
    }
    let tb = Testbed::up(&[
        "center=10.78.0.1",
        "n1=10.78.0.11",
        "n2=10.78.0.12",
        "n3=10.78.0.13",
        "n4=10.78.0.14",
        "n5=10.78.0.15",
    ]);
    let tmp = yard_testkit::TempDir::new("multihost-mesh");
    let home = |name: &str| {
        let p = tmp.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let ch = home("center");
    let center = "10.78.0.1:9900";
    let _center = tb.center(&ch, center, &[]);
    let (ok, token, err) = tb.run(
        "center",
        &ch,
        &[
            "join-token",
            "create",
            "node:*",
            "--uses",
            "5",
            "--center",
            center,
        ],
    );
    assert!(ok, "{err}");
    let token = token.trim().to_string();

    let addr = |i: usize| format!("10.78.0.1{i}:9997");
    let mut nodes = Vec::new();
    let mut homes = Vec::new();
    for i in 1..=5 {
        let host = format!("n{i}");
        let h = home(&host);
        let (ok, out, err) = tb.run(
            &host,
            &h,
            &["join", &token, "--as", &host.replace('n', "node:n")],
        );
        assert!(ok, "{out}{err}");
        let listen = addr(i);
        let peer = addr(i % 5 + 1);
        let mut args = vec!["node", "--listen", &listen, "--peer", &peer];
        let sqlite = format!("kv=sqlite:{}", h.join("kv.db").display());
        match i {
            1 => args.extend(["--master", &sqlite]),
            4 => args.extend(["--clone", "kv"]),
            _ => {}
        }
        nodes.push(tb.daemon(&host, &h, &args));
        homes.push((host, h));
    }
    // The CLI on a host, with that host's home (its admin credential, the root it joined with:
    // a bare address is reached over TLS, so a node in plain text would fail every call).
    let on = |i: usize, args: &[&str]| {
        let (host, h) = &homes[i - 1];
        let e = addr(i);
        let mut full = vec!["store"];
        full.extend_from_slice(args);
        let out = tb
            .yard(host, h)
            .env("YARD_ENDPOINT", &e)
            .args(&full)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let get = |i: usize, key: &str| {
        let (ok, out, _) = on(i, &["get", "kv", key]);
        ok.then_some(out)
    };

    // A write on the master (n1) reaches the clone (n4) across the ring.
    let (ok, _, err) = on(1, &["put", "kv", "k0", "before"]);
    assert!(ok, "{err}");
    wait_until("the clone has k0", Duration::from_secs(30), || {
        let v = get(4, "k0");
        async move { v.as_deref() == Some("\"before\"") || v.as_deref() == Some("before") }
    })
    .await;
    let seen = get(4, "k0").unwrap();

    // The clone's host cut off: the master takes writes, and so does the clone (it keeps them
    // for its master, --mutation-buffer-interval).
    tb.script(&["cut", "n4"]);
    wait_until(
        "the clone sees its master gone",
        Duration::from_secs(15),
        || {
            let (ok, info, _) = on(4, &["info", "kv", "--json"]);
            let gone =
                ok && serde_json::from_str::<Json>(&info).is_ok_and(|i| i["connected"] == false);
            async move { gone }
        },
    )
    .await;
    for k in 1..=20 {
        let (ok, _, err) = on(1, &["put", "kv", &format!("m{k}"), "during"]);
        assert!(ok, "{err}");
    }
    let (ok, _, err) = on(4, &["put", "kv", "from-the-clone", "during"]);
    assert!(
        ok,
        "a write at a cut-off clone is kept for its master: {err}"
    );
    tb.script(&["mend", "n4"]);

    // Back: the clone has every write the master took, the master has the clone's.
    wait_until(
        "the clone caught up and the master has the clone's write",
        Duration::from_secs(60),
        || {
            let clone_all = (1..=20).all(|k| get(4, &format!("m{k}")).is_some());
            let master_has = get(1, "from-the-clone").is_some();
            async move { clone_all && master_has }
        },
    )
    .await;
    let (ok, keys, err) = on(4, &["keys", "kv"]);
    assert!(ok, "{err}");
    assert_eq!(keys.lines().count(), 22, "{keys}");
    assert_eq!(get(1, "k0"), Some(seen));
    drop(nodes);
}
