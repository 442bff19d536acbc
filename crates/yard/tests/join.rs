//! Joining hosts with a token (`yard join-token create`, `yard join`, `--join`), between real
//! processes, each with its own credentials home as separate hosts have: the root checked
//! against the token's fingerprint, the secret spent once, the subject bounded by the token,
//! every join audited, and a daemon that would listen beyond loopback in plain text refused.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_until, Daemon};

/// `yard ARGS` with `home` as its credentials home: whether it succeeded, stdout, stderr.
fn yard_at(home: &Path, args: &[&str]) -> (bool, String, String) {
    let out = common::yard()
        .env("YARD_HOME", home)
        .env("YARD_LOG", "warn")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn spawn_at(home: &Path, args: &[&str]) -> (Daemon, String, String) {
    let mut cmd = common::yard();
    cmd.env("YARD_HOME", home)
        .env("YARD_LOG", "warn")
        .args(args)
        .stderr(Stdio::inherit());
    let (child, line) = Daemon::spawn(cmd, common::Stop::Term(Duration::from_secs(10)));
    let addr = yard_testkit::listening_addr(&line)
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    (child, addr, line)
}

/// A center whose home holds an authority (so it serves TLS with a certificate it issued
/// itself), on a loopback port: its home, the process, its address and its first line.
fn center_with_authority(
    tag: &str,
    extra: &[&str],
) -> (yard_testkit::TempDir, Daemon, String, String) {
    let home = yard_testkit::TempDir::new(tag);
    let (ok, _, err) = yard_at(home.path(), &["ca", "init"]);
    assert!(ok, "{err}");
    let data = home.join("center");
    let mut args = vec![
        "center",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (d, addr, line) = spawn_at(home.path(), &args);
    (home, d, addr, line)
}

/// `yard ARGS` with nothing but a bundle as its home and the center's address: no other
/// credential, no other root.
fn with_bundle(bundle: &Path, center: &str, args: &[&str]) -> (bool, String, String) {
    let out = common::yard()
        .env("YARD_HOME", bundle)
        .env("YARD_CENTER", center)
        .env_remove("YARD_CREDENTIALS")
        .env_remove("YARD_CA")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `yard token create NAME --role viewer --bundle DIR` at the center of `center_home`.
fn viewer_bundle(center_home: &Path, addr: &str, name: &str, dir: &Path) -> (bool, String, String) {
    yard_at(
        center_home,
        &[
            "token",
            "create",
            name,
            "--role",
            "viewer",
            "--bundle",
            dir.to_str().unwrap(),
            "--center",
            addr,
        ],
    )
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_host_joins_with_a_token_once_and_its_daemon_runs_on_the_certificate_it_got() {
    let (center_home, _center, addr, line) = center_with_authority("join-center", &[]);
    // An authority in its home: the center serves TLS with a certificate it issued itself.
    assert!(line.contains(&format!("https://{addr}/")), "{line}");

    // The join routes without a credential and from a foreign origin (with the admin's
    // credential): the root is public, a join's body is its credential, the tokens are the
    // admin's, and no browser page elsewhere reaches any of them.
    let ca = center_home.join("ca").join("ca.crt");
    let admin = std::fs::read_to_string(center_home.join("credentials")).unwrap();
    let curl = |method: &str, path: &str, headers: &[String]| -> String {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&ca)
            .args(["-X", method]);
        for h in headers {
            c.args(["-H", h]);
        }
        if method == "POST" {
            c.args(["-H", "Content-Type: application/json", "-d", "{}"]);
        }
        let out = c.arg(format!("https://{addr}{path}")).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let foreign = [
        "Origin: http://evil.example".to_string(),
        format!("Authorization: Bearer {}", admin.trim()),
    ];
    for (method, path, anonymous) in [
        ("GET", "/v1/ca", "200"),
        ("GET", "/v1/ca/crl", "200"),
        ("POST", "/v1/join", "400"),
        ("POST", "/v1/renew", "401"),
        ("GET", "/v1/join/tokens", "401"),
        ("POST", "/v1/join/tokens", "401"),
        ("DELETE", "/v1/join/tokens/0a1b2c3d", "401"),
    ] {
        assert_eq!(
            curl(method, path, &[]),
            anonymous,
            "{method} {path} without a credential"
        );
        assert_eq!(
            curl(method, path, &foreign),
            "403",
            "{method} {path} from a foreign origin"
        );
    }

    // Only an admin makes or lists tokens; a stranger (another home, the center's root
    // given) is refused.
    let stranger = yard_testkit::TempDir::new("join-stranger");
    let (ok, _, err) = yard_at(
        stranger.path(),
        &[
            "join-token",
            "list",
            "--center",
            &addr,
            "--ca",
            ca.to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, token, err) = yard_at(
        center_home.path(),
        &["join-token", "create", "manager:web", "--center", &addr],
    );
    assert!(ok, "{err}");
    let token = token.trim().to_string();
    assert!(
        token.starts_with("yj1.") && token.ends_with(&format!("@{addr}")),
        "{token}"
    );

    // A token whose fingerprint is not the center's root: refused before the secret is sent.
    let (head, _) = token.rsplit_once('@').unwrap();
    let forged = format!("{}{}@{addr}", &head[..head.len() - 64], "0".repeat(64));
    let joiner = yard_testkit::TempDir::new("join-manager");
    let (ok, _, err) = yard_at(joiner.path(), &["join", &forged, "--as", "manager:web"]);
    assert!(
        !ok && err.contains("not the authority that made the token"),
        "{err}"
    );
    // A subject the token does not allow: refused, and the token is not spent.
    let (ok, _, err) = yard_at(joiner.path(), &["join", &token, "--as", "manager:db"]);
    assert!(
        !ok && err.contains("403") && err.contains("allows manager:web"),
        "{err}"
    );
    let (ok, list, err) = yard_at(
        center_home.path(),
        &["join-token", "list", "--center", &addr, "--json"],
    );
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["uses_left"], 1, "{list}");
    // No secret in the book of tokens.
    let book = std::fs::read_to_string(center_home.join("ca").join("joins.json")).unwrap();
    let secret = token.split('.').nth(2).unwrap();
    assert!(!book.contains(secret));
    assert_eq!(mode(&center_home.join("ca").join("joins.json")), 0o600);

    // The manager joins with --join and runs on its certificate: the center lists it.
    let mdata = joiner.join("data");
    let (_manager, maddr, mline) = spawn_at(
        joiner.path(),
        &[
            "manager",
            "--cluster",
            "web",
            "--join",
            &token,
            "--listen",
            "127.0.0.1:0",
            "--center",
            &addr,
            "--data",
            mdata.to_str().unwrap(),
            "--mesos-listen",
            "off",
        ],
    );
    assert!(mline.contains(&format!("https://{maddr}/")), "{mline}");
    let tls = joiner.join("tls");
    assert_eq!(mode(&tls.join("host.key")), 0o600);
    assert_eq!(mode(&joiner.join("mesh.key")), 0o600);
    let joined: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tls.join("joined.json")).unwrap()).unwrap();
    assert_eq!(joined["subject"], "manager:web");
    let home = center_home.path().to_path_buf();
    let a = addr.clone();
    wait_until(
        "the joined manager in the topology",
        Duration::from_secs(20),
        || {
            let (home, a) = (home.clone(), a.clone());
            async move {
                let (ok, out, _) = yard_at(&home, &["topology", "--center", &a]);
                ok && out.contains("cluster web") && out.contains("[up]")
            }
        },
    )
    .await;
    // A node is not a manager: on the manager's home it refuses to start rather than run
    // on the manager's identity or in plain text.
    let (ok, _, err) = yard_at(joiner.path(), &["node", "--listen", "127.0.0.1:0"]);
    assert!(
        !ok && err.contains("joined as manager:web, not as a node"),
        "{err}"
    );

    // The token is spent: another host cannot use it again.
    let other = yard_testkit::TempDir::new("join-again");
    let (ok, _, err) = yard_at(other.path(), &["join", &token, "--as", "manager:web"]);
    assert!(
        !ok && err.contains("401") && err.contains("join_refused"),
        "{err}"
    );
    assert!(!other.join("tls").join("host.crt").exists());

    // Every attempt is in the center's audit log, the join with whom it made.
    let (ok, audit, err) = yard_at(
        center_home.path(),
        &[
            "audit",
            "--endpoint",
            &addr,
            "--action",
            "/v1/join",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        audit.contains("joined as manager:web with token"),
        "{audit}"
    );
    assert!(audit.contains("\"result\":\"failed\""), "{audit}");
    assert!(!audit.contains(secret));
}

#[test]
fn a_daemon_that_would_listen_beyond_loopback_in_plain_text_refuses_to_start() {
    let home = yard_testkit::TempDir::new("join-plain");
    let data = home.join("center");
    let (ok, _, err) = yard_at(
        home.path(),
        &[
            "center",
            "--listen",
            "0.0.0.0:0",
            "--data",
            data.to_str().unwrap(),
        ],
    );
    assert!(
        !ok && err.contains("beyond loopback, in plain text"),
        "{err}"
    );
}

/// The serial of the certificate in `path` (PEM).
fn serial_of(path: &Path) -> String {
    let pem = std::fs::read_to_string(path).unwrap();
    let der = yard_tls::config::certs_from_pem(&pem).unwrap();
    yard_tls::der::serial_hex(&der[0]).unwrap()
}

fn topology(home: &Path, center: &str) -> serde_json::Value {
    let (ok, out, err) = yard_at(home, &["topology", "--center", center, "--json"]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn agent_state(t: &serde_json::Value, cluster: &str, agent: &str) -> Option<String> {
    t["clusters"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == cluster)?["agents"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == agent)
        .and_then(|a| a["state"].as_str().map(str::to_string))
}

/// A manager of cluster web and its agent a1, each joined with a token of the center at `addr`
/// (whose home is `center_home`), on a home of its own: the processes and their homes.
struct Joined {
    _manager: Daemon,
    _agent: Daemon,
    mhome: yard_testkit::TempDir,
    ahome: yard_testkit::TempDir,
}

fn join_cluster(center_home: &Path, addr: &str, tag: &str) -> Joined {
    let token = |allows: &str| {
        let (ok, t, err) = yard_at(
            center_home,
            &["join-token", "create", allows, "--center", addr],
        );
        assert!(ok, "{err}");
        t.trim().to_string()
    };
    let (mt, at) = (token("manager:web"), token("agent:web/*"));
    let mhome = yard_testkit::TempDir::new(&format!("{tag}-manager"));
    let (manager, maddr, _) = spawn_at(
        mhome.path(),
        &[
            "manager",
            "--cluster",
            "web",
            "--join",
            &mt,
            "--listen",
            "127.0.0.1:0",
            "--center",
            addr,
            "--data",
            mhome.join("data").to_str().unwrap(),
            "--mesos-listen",
            "off",
            "--agent-timeout",
            "3s",
        ],
    );
    let ahome = yard_testkit::TempDir::new(&format!("{tag}-agent"));
    let (agent, _, _) = spawn_at(
        ahome.path(),
        &[
            "agent",
            "--cluster",
            "web",
            "--name",
            "a1",
            "--join",
            &at,
            "--listen",
            "127.0.0.1:0",
            "--manager",
            &maddr,
            "--data",
            ahome.join("data").to_str().unwrap(),
            "--mesos-listen",
            "off",
            "--heartbeat",
            "500ms",
        ],
    );
    Joined {
        _manager: manager,
        _agent: agent,
        mhome,
        ahome,
    }
}

/// Whether the center at `addr` (its home `home`) sees agent a1 of web up.
fn a1_up(home: &Path, addr: &str) -> bool {
    agent_state(&topology(home, addr), "web", "a1").as_deref() == Some("up")
}

/// Issue 18: certificates are short-lived and renewed before they expire (a joined host's at
/// the center, with its certificate as the credential), and a revocation reaches every daemon
/// within seconds: the revoked agent's link to its manager (on another home, which holds no
/// authority and hears the list over the fabric) is cut and its next handshake refused.
#[tokio::test]
async fn joined_daemons_renew_before_expiry_and_a_revoked_agent_is_cut_off_within_seconds() {
    // 15-second certificates: each renewed after 10 s, so a link outlives several.
    let (center_home, _center, addr, _) = center_with_authority(
        "renew-center",
        &["--cert-ttl", "15s", "--manager-timeout", "6s"],
    );
    let Joined { mhome, ahome, .. } = &join_cluster(center_home.path(), &addr, "renew");
    let home = center_home.path().to_path_buf();
    let up = |home: std::path::PathBuf, addr: String| async move { a1_up(&home, &addr) };
    wait_until("agent a1 of web up", Duration::from_secs(20), || {
        up(home.clone(), addr.clone())
    })
    .await;
    let (mcert, acert) = (
        mhome.join("tls").join("host.crt"),
        ahome.join("tls").join("host.crt"),
    );
    let first = (serial_of(&mcert), serial_of(&acert));

    // Two renewals each: past the first certificates' end, the cluster is still up.
    let mut seen_m = vec![first.0.clone()];
    let mut seen_a = vec![first.1.clone()];
    wait_until("two renewals of each", Duration::from_secs(40), || {
        for (path, seen) in [(&mcert, &mut seen_m), (&acert, &mut seen_a)] {
            let s = serial_of(path);
            if seen.last() != Some(&s) {
                seen.push(s);
            }
        }
        let done = seen_m.len() >= 3 && seen_a.len() >= 3;
        async move { done }
    })
    .await;
    assert!(
        up(home.clone(), addr.clone()).await,
        "web/a1 is up on renewed certificates"
    );
    // Each renewal was the center's, audited with both serials.
    let (ok, audit, err) = yard_at(
        center_home.path(),
        &[
            "audit",
            "--endpoint",
            &addr,
            "--action",
            "/v1/renew",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        audit.contains(&format!("replaces {}", first.0)) && audit.contains("renewed manager:web"),
        "{audit}"
    );

    // The agent is revoked: within seconds its manager cuts its link and refuses it again,
    // and the center sees it lost.
    let (ok, out, err) = yard_at(center_home.path(), &["cert", "revoke", "agent:web/a1"]);
    assert!(ok && out.contains("revoked agent:web/a1"), "{out}{err}");
    let t0 = std::time::Instant::now();
    wait_until("agent a1 lost", Duration::from_secs(15), || {
        let (home, addr) = (home.clone(), addr.clone());
        async move { agent_state(&topology(&home, &addr), "web", "a1").as_deref() == Some("lost") }
    })
    .await;
    eprintln!("revoked agent lost after {:?}", t0.elapsed());
    let (ok, list, err) = yard_at(center_home.path(), &["cert", "list"]);
    assert!(ok, "{err}");
    assert!(list.contains("revoked"), "{list}");
}

/// Issue 18: `yard token create --bundle DIR` writes what an operator's machine needs (the
/// token 0600 in a 0700 directory, the root, the center's address) and prints no secret; with
/// that directory as its home, and nothing else, the CLI reaches the center over TLS.
#[tokio::test]
async fn an_operator_s_bundle_is_all_the_cli_on_another_machine_needs() {
    let (center_home, _center, addr, _) = center_with_authority("bundle-center", &[]);
    let laptop = yard_testkit::TempDir::new("bundle-laptop");
    let bundle = laptop.join("yard");
    let (ok, out, err) = viewer_bundle(center_home.path(), &addr, "olga", &bundle);
    assert!(ok, "{err}");
    assert!(out.is_empty(), "a bundle's token is not printed: {out}");
    assert!(err.contains("credentials, ca.crt, env"), "{err}");
    assert_eq!(mode(&bundle), 0o700);
    assert_eq!(mode(&bundle.join("credentials")), 0o600);
    let token = std::fs::read_to_string(bundle.join("credentials")).unwrap();
    assert!(!err.contains(token.trim()), "the secret on stderr: {err}");
    assert_eq!(
        std::fs::read(bundle.join("ca.crt")).unwrap(),
        std::fs::read(center_home.join("ca").join("ca.crt")).unwrap()
    );
    let env = std::fs::read_to_string(bundle.join("env")).unwrap();
    assert_eq!(env, format!("export YARD_CENTER='{addr}'\n"));

    // The bundle as the home, the address from its env: no --ca, no --token, no --center.
    let as_olga = |args: &[&str]| with_bundle(&bundle, &addr, args);
    let (ok, out, err) = as_olga(&["topology", "--json"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"clusters\""), "{out}");
    // A viewer's bundle: it reads, it does not command.
    let (ok, _, err) = as_olga(&["restart", "--cluster", "web", "--rolling"]);
    assert!(!ok && err.contains("403"), "{err}");

    // A used directory is refused before any token is made.
    let (ok, _, err) = yard_at(
        center_home.path(),
        &[
            "token",
            "create",
            "olga2",
            "--bundle",
            bundle.to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("not empty"), "{err}");
    let (ok, list, err) = yard_at(center_home.path(), &["token", "list"]);
    assert!(
        ok && list.contains("olga") && !list.contains("olga2"),
        "{list}{err}"
    );
}

/// Issue 18: an operator's certificate is a credential. `yard token create NAME --bundle DIR
/// --certificate` puts a certificate for operator:NAME (and no secret) in the bundle; the
/// center takes it for the token named NAME, whose role it gets, and revoking that token takes
/// it back. A certificate for an operator without a token here gets a 401 that says why.
#[tokio::test]
async fn an_operator_s_certificate_is_a_credential_with_the_role_of_its_token() {
    let (center_home, _center, addr, _) = center_with_authority("cert-center", &[]);
    let laptop = yard_testkit::TempDir::new("cert-laptop");
    let bundle = laptop.join("yard");
    let (ok, out, err) = yard_at(
        center_home.path(),
        &[
            "token",
            "create",
            "carl",
            "--role",
            "viewer",
            "--bundle",
            bundle.to_str().unwrap(),
            "--certificate",
            "--center",
            &addr,
        ],
    );
    assert!(ok && out.is_empty(), "{out}{err}");
    assert!(
        err.contains("operator.crt, operator.key, ca.crt, env"),
        "{err}"
    );
    assert!(
        !bundle.join("credentials").exists(),
        "no secret in the bundle"
    );
    assert_eq!(mode(&bundle.join("operator.key")), 0o600);

    let as_carl = |args: &[&str]| with_bundle(&bundle, &addr, args);
    let (ok, out, err) = as_carl(&["topology", "--json"]);
    assert!(ok && out.contains("\"clusters\""), "{out}{err}");
    let (ok, _, err) = as_carl(&["restart", "--cluster", "web", "--rolling"]);
    assert!(!ok && err.contains("403") && err.contains("carl"), "{err}");

    // The same certificate with curl, and one for an operator with no token here.
    let ca = center_home.join("ca").join("ca.crt");
    let curl = |crt: &Path, key: &Path| {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "--cacert"])
            .arg(&ca)
            .arg("--cert")
            .arg(crt)
            .arg("--key")
            .arg(key)
            .arg(format!("https://{addr}/v1/topology"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let carl = curl(&bundle.join("operator.crt"), &bundle.join("operator.key"));
    assert!(carl.ends_with("\n200"), "{carl}");
    let certs = laptop.join("certs");
    let (ok, _, err) = yard_at(
        center_home.path(),
        &[
            "cert",
            "issue",
            "operator:dora",
            "--out",
            certs.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let dora = curl(
        &certs.join("operator-dora.crt"),
        &certs.join("operator-dora.key"),
    );
    assert!(
        dora.ends_with("\n401") && dora.contains("no active token named dora"),
        "{dora}"
    );

    // The token revoked: the certificate's rights go with it.
    let (ok, _, err) = yard_at(center_home.path(), &["token", "revoke", "carl"]);
    assert!(ok, "{err}");
    wait_until("carl's certificate refused", Duration::from_secs(5), || {
        let r = curl(&bundle.join("operator.crt"), &bundle.join("operator.key"));
        async move { r.ends_with("\n401") }
    })
    .await;
}

/// The certificates of a PEM file.
fn certs_in(path: &Path) -> Vec<Vec<u8>> {
    let pem = std::fs::read_to_string(path).unwrap_or_default();
    yard_tls::config::certs_from_pem(&pem)
        .map(|c| c.into_iter().map(|d| d.to_vec()).collect())
        .unwrap_or_default()
}

/// Whether the first certificate of `cert` was issued by the root that is first in `root`.
fn issued_by(cert: &Path, root: &Path) -> bool {
    let (c, r) = (certs_in(cert), certs_in(root));
    match (c.first(), r.first()) {
        (Some(c), Some(r)) => {
            yard_tls::der::names(c).map(|n| n.0.to_vec())
                == yard_tls::der::names(r).map(|n| n.1.to_vec())
        }
        _ => false,
    }
}

/// Issue 18: `yard ca rotate` replaces the root without a pause. The daemons on other homes hear
/// of the new root over the fabric (checked by its cross certificate), renew under it within
/// seconds and keep it in their root files; an operator's bundle made before the rotation still
/// works until the old root retires, and not after; at the retirement the center ends the
/// rotation and every root file holds the new root alone, the cluster up throughout.
#[tokio::test]
async fn a_rotated_root_reaches_every_daemon_and_the_old_one_retires_with_the_cluster_up() {
    let (center_home, _center, addr, _) =
        center_with_authority("rotate-center", &["--manager-timeout", "6s"]);
    let Joined { mhome, ahome, .. } = &join_cluster(center_home.path(), &addr, "rotate");
    let home = center_home.path().to_path_buf();
    let up = |home: std::path::PathBuf, addr: String| async move { a1_up(&home, &addr) };
    wait_until("agent a1 of web up", Duration::from_secs(20), || {
        up(home.clone(), addr.clone())
    })
    .await;
    // An operator's bundle of before the rotation: the old root alone.
    let laptop = yard_testkit::TempDir::new("rotate-laptop");
    let bundle = laptop.join("yard");
    let (ok, _, err) = viewer_bundle(center_home.path(), &addr, "olga", &bundle);
    assert!(ok, "{err}");
    assert_eq!(certs_in(&bundle.join("ca.crt")).len(), 1);

    let root_file = center_home.join("ca").join("ca.crt");
    let (ok, out, err) = yard_at(center_home.path(), &["ca", "rotate", "--overlap", "25s"]);
    assert!(ok && out.contains("rotated to"), "{out}{err}");
    let t0 = std::time::Instant::now();
    assert_eq!(
        certs_in(&root_file).len(),
        3,
        "new root, old root, cross certificate"
    );
    let (ok, show, _) = yard_at(center_home.path(), &["ca", "show"]);
    assert!(ok && show.contains("rotating"), "{show}");
    let (ok, _, err) = yard_at(center_home.path(), &["ca", "rotate"]);
    assert!(!ok && err.contains("rotation is under way"), "{err}");

    // Every daemon renews under the new root and keeps the bundle in its root file.
    let daemons = [
        (
            mhome.join("tls").join("host.crt"),
            mhome.join("tls").join("ca.crt"),
        ),
        (
            ahome.join("tls").join("host.crt"),
            ahome.join("tls").join("ca.crt"),
        ),
        (
            center_home.join("certs").join("center.crt"),
            center_home.join("certs").join("ca.crt"),
        ),
    ];
    wait_until(
        "every daemon renewed under the new root",
        Duration::from_secs(15),
        || {
            let done = daemons
                .iter()
                .all(|(cert, ca)| issued_by(cert, &root_file) && certs_in(ca).len() == 3);
            async move { done }
        },
    )
    .await;
    eprintln!("every daemon under the new root after {:?}", t0.elapsed());
    assert!(
        up(home.clone(), addr.clone()).await,
        "web/a1 up under the new root"
    );
    // The old bundle still reaches the center (its certificate chains to the old root through
    // the cross certificate).
    let (ok, out, err) = with_bundle(&bundle, &addr, &["topology", "--json"]);
    assert!(ok && out.contains("\"clusters\""), "{out}{err}");

    // At the retirement: the center ends the rotation, every root file is the new root alone,
    // and the old bundle no longer checks the center.
    wait_until(
        "the old root retired everywhere",
        Duration::from_secs(40),
        || {
            let done = certs_in(&root_file).len() == 1
                && daemons
                    .iter()
                    .all(|(_, ca)| certs_in(ca) == certs_in(&root_file));
            async move { done }
        },
    )
    .await;
    assert!(
        t0.elapsed() >= Duration::from_secs(24),
        "not before its time: {:?}",
        t0.elapsed()
    );
    assert!(!center_home.join("ca").join("previous").exists());
    let (ok, _, err) = with_bundle(&bundle, &addr, &["topology", "--json"]);
    assert!(
        !ok && err.contains("certificate"),
        "the old root's bundle still checks the center: {err}"
    );
    let (ok, _, err) = viewer_bundle(center_home.path(), &addr, "olga2", &laptop.join("new"));
    assert!(ok, "{err}");
    let (ok, out, err) = with_bundle(&laptop.join("new"), &addr, &["topology", "--json"]);
    assert!(ok && out.contains("\"clusters\""), "{out}{err}");
    wait_until(
        "agent a1 of web up after the retirement",
        Duration::from_secs(10),
        || up(home.clone(), addr.clone()),
    )
    .await;
}
