//! `yard install ROLE --root DIR -- FLAGS`: the files a host gets, their modes, and units that
//! systemd itself accepts (`systemd-analyze verify`, the Debian package scripts/test.sh
//! installs). Starting them needs systemd as the init, which test machines do not run.

mod common;

use std::path::Path;

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn install(root: &Path, role: &str, flags: &[&str]) -> (bool, String) {
    let out = common::yard()
        .args(["install", role, "--root"])
        .arg(root)
        .arg("--")
        .args(flags)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_role_installs_as_a_unit_systemd_accepts_with_its_secrets_in_a_private_file() {
    let tmp = yard_testkit::TempDir::new("install");
    let root = tmp.join("root");
    let token = "yj1.0a1b2c3d.0123456789abcdef0123456789abcdef.aa@10.0.0.1:9900";
    for (role, flags) in [
        ("center", vec!["--listen", "10.0.0.1:9900"]),
        (
            "manager",
            vec![
                "--cluster",
                "web",
                "--join",
                token,
                "--listen",
                "10.0.0.2:9901",
                "--center",
                "10.0.0.1:9900",
            ],
        ),
        (
            "agent",
            vec![
                "--cluster",
                "web",
                "--name",
                "a1",
                "--join",
                token,
                "--listen",
                "10.0.0.3:9910",
                "--manager",
                "10.0.0.2:9901",
            ],
        ),
    ] {
        let (ok, err) = install(&root, role, &flags);
        assert!(ok, "{role}: {err}");
        assert!(err.contains("not started"), "{err}");
        let unit_path = root.join(format!("etc/systemd/system/yard-{role}.service"));
        let unit = std::fs::read_to_string(&unit_path).unwrap();
        let env = root.join(format!("etc/yard/{role}.env"));
        assert_eq!(mode(&env), 0o600);
        let env = std::fs::read_to_string(&env).unwrap();
        assert!(
            env.contains(&format!("YARD_HOME=/var/lib/yard/{role}/home\n")),
            "{env}"
        );
        if role != "center" {
            assert!(env.contains(&format!("YARD_JOIN={token}\n")), "{env}");
        }
        assert!(!unit.contains(token), "the join token on the command line");
        assert_eq!(mode(&root.join(format!("var/lib/yard/{role}/home"))), 0o700);
        assert_eq!(mode(&root.join("usr/local/bin/yard")), 0o755, "the binary");
        // systemd reads the unit (its binary here being the one under test).
        let checked = tmp.join(format!("yard-{role}.service"));
        std::fs::write(
            &checked,
            unit.replace("/usr/local/bin/yard", common::yard_bin()),
        )
        .unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&checked)
            .output()
            .expect("systemd-analyze (Debian's systemd package; scripts/test.sh installs it)");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{role}: {said}\n{unit}"
        );
    }
    // The agent's state lets its tasks' users pass through; the center's is private.
    assert_eq!(mode(&root.join("var/lib/yard/agent")), 0o711);
    assert_eq!(mode(&root.join("var/lib/yard/center")), 0o700);

    // A flag the daemon does not have is refused before anything is written.
    let other = tmp.join("other");
    let (ok, err) = install(&other, "agent", &["--no-such-flag"]);
    assert!(!ok && err.contains("--no-such-flag"), "{err}");
    assert!(!other.exists());
}
