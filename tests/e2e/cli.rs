//! One-shot commands: `validate` and `version`.

use crate::harness::{example, repo_root, run};

#[test]
fn validate_accepts_the_example() {
    let out = run(&["validate", example("user-registration").to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "user-registration: valid (1 table, 1 function, 1 route, 0 events)"
    );
}

#[test]
fn validate_json_prints_the_resolved_app() {
    let out = run(&[
        "validate",
        "--json",
        example("user-registration").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let app: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(app["functions"]["register"]["timeout"], 10.0);
    assert_eq!(app["routes"][0]["key"], "POST /users");
    assert_eq!(app["tables"]["Users"]["partition_key"]["type"], "S");
}

/// Every broken manifest of the corpus fails `nimbus validate` with exit code 1 and one
/// `error: FILE:LINE:COL: ...` line per problem, the same ones the snapshots hold.
#[test]
fn validate_rejects_every_broken_manifest() {
    let corpus = repo_root().join("crates/manifest/tests/corpus/invalid");
    let mut cases = 0;
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let dir = entry.unwrap().path();
        let out = run(&["validate", dir.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", dir.display());
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert!(!errors.is_empty(), "{stderr}");
        let manifest = dir.join("nimbus.toml");
        for line in &errors {
            let rest = line.strip_prefix("error: ").unwrap();
            assert!(
                rest.starts_with(&format!("{}:", manifest.display())),
                "error does not name the file: {line}"
            );
            assert!(rest.contains(": found "), "no found part: {line}");
            assert!(rest.contains(", expected "), "no expected part: {line}");
        }
        let n = errors.len();
        let summary = format!("{n} error{} in the manifest", if n == 1 { "" } else { "s" });
        assert_eq!(stderr.lines().last(), Some(summary.as_str()));
        cases += 1;
    }
    assert!(cases >= 10, "the corpus has {cases} broken manifests");
}

#[test]
fn validate_reports_a_missing_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: cannot read "), "{stderr}");
    assert!(
        stderr.contains("nimbus.toml: No such file or directory"),
        "{stderr}"
    );
}

#[test]
fn version_prints_the_package_version() {
    let out = run(&["version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("nimbus {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(&["version", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nimbus"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn unknown_subcommands_are_refused() {
    let out = run(&["deploy"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"));
}

#[test]
fn a_closed_stdout_ends_a_client_command_quietly() {
    let app = example("user-registration");
    for args in [
        &["validate", "--json", app.to_str().unwrap()][..],
        &["version"][..],
    ] {
        // A pipe whose reader is already gone: the first line written breaks it, as
        // `nimbus ... | head -0` would.
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = std::process::Command::new(crate::harness::nimbus_bin())
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .output()
            .expect("the nimbus binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}

#[test]
fn boolean_and_duration_variables_take_what_users_write() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    // NIMBUS_NO_WATCH=1 is no usage error: `up` goes on to read the (missing) manifest.
    let out = std::process::Command::new(crate::harness::nimbus_bin())
        .args(["up", dir])
        .env("NIMBUS_NO_WATCH", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the nimbus binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nimbus.toml"), "{stderr}");
    // A TTL sweep every 0s is refused up front, not a panic once serving.
    let out = run(&["up", dir, "--ttl-sweep-interval", "0s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("must be longer than 0s"), "{stderr}");
}
