//! The client verbs against a real `yard node`: `yard pub`, `yard sub`, `yard status`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::*;

fn yard(node: Option<&Node>, args: &[&str]) -> std::process::Output {
    let mut cmd = common::yard();
    cmd.args(args).env("YARD_LOG", "warn");
    match node {
        Some(n) => cmd.env("YARD_ENDPOINT", &n.addr),
        None => cmd.env("YARD_ENDPOINT", "127.0.0.1:1"),
    };
    cmd.output().unwrap()
}

/// Starts `yard sub` and waits until its subscription is live (it says so on stderr).
fn sub(node: &Node, args: &[&str]) -> std::process::Child {
    let mut child = common::yard()
        .arg("sub")
        .args(args)
        .env("YARD_ENDPOINT", &node.addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("yard sub: subscribed to"), "{line}");
    child
}

fn lines(child: std::process::Child) -> Vec<String> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn pub_and_sub_speak_the_literal_syntax() {
    let node = Node::start(&[]);
    let s = sub(&node, &["/cli/", "-n", "16"]);
    let literals = [
        "none",
        "true",
        "42",
        "-7",
        "3.5",
        "\"text with \\\"quotes\\\"\"",
        "10.0.0.1",
        "10.0.0.0/8",
        "80/tcp",
        "2024-01-01T00:00:00Z",
        "15ms",
        "[1, 2]",
        "{1, 2}",
        "{\"a\": 1}",
        "Conn::LOG",
        "ping(1, \"x\")",
    ];
    let out = yard(
        Some(&node),
        &[&["pub", "/cli/t"][..], &literals[..]].concat(),
    );
    assert!(out.status.success(), "{out:?}");
    let got = lines(s);
    // `yard sub` prints each literal back as written, timestamps with their milliseconds.
    let expected: Vec<String> = literals
        .iter()
        .map(|l| match *l {
            "2024-01-01T00:00:00Z" => "/cli/t 2024-01-01T00:00:00.000Z".to_string(),
            l => format!("/cli/t {l}"),
        })
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn json_in_and_out() {
    let node = Node::start(&["--timestamp-precision", "ns"]);
    let s = sub(&node, &["/j", "--json", "-n", "2"]);
    let out = yard(
        Some(&node),
        &["pub", "/j", "--json", r#"{"@data-type":"real","data":2}"#],
    );
    assert!(out.status.success(), "{out:?}");
    let out = yard(
        Some(&node),
        &["pub", "/j", "2024-01-01T00:00:00.123456789Z"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        lines(s),
        [
            r#"{"type":"data-message","topic":"/j","@data-type":"real","data":2.0}"#,
            r#"{"type":"data-message","topic":"/j","@data-type":"timestamp","data":"2024-01-01T00:00:00.123456789"}"#,
        ]
    );
}

#[test]
fn errors_explain_themselves() {
    let node = Node::start(&[]);
    let out = yard(Some(&node), &["pub", "/t", "[1,", "2"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("expected ',' or ']', found the end (at column 6)"),
        "{err}"
    );
    assert!(err.contains("\n  [1, 2\n       ^"), "{err}");

    let out = yard(Some(&node), &["pub", "/t", "hello-world"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("strings need double quotes"), "{err}");

    let out = yard(
        Some(&node),
        &["pub", "/t", "--json", r#"{"@data-type":"phone","data":1}"#],
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown @data-type \"phone\""), "{err}");

    let out = yard(None, &["pub", "/t", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no endpoint at 127.0.0.1:1") && err.contains("yard node"),
        "{err}"
    );

    let out = yard(None, &["status"]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("start one with `yard node`"), "{err}");
}

#[test]
fn status_shows_clients_and_counters() {
    let node = Node::start(&[]);
    let s = sub(&node, &["/st", "-n", "1"]);
    let out = yard(Some(&node), &["status"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("clients        1"), "{text}");
    assert!(text.contains("\"/st\""), "{text}");
    assert!(yard(Some(&node), &["pub", "/st", "1"]).status.success());
    assert_eq!(lines(s), ["/st 1"]);
    let out = yard(Some(&node), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["messages"]["published"], 1);
}

#[test]
fn node_refuses_bad_config_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("yard-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("node.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\nclient_qeue = 5\n").unwrap();
    let out = common::yard()
        .args(["node", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("client_qeue"), "{err}");
    let out = common::yard()
        .args([
            "node",
            "--listen",
            "127.0.0.1:0",
            "--overflow-policy",
            "maybe",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown overflow policy \"maybe\""), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
