//! Files only their owner can read: the master key file must be, and every
//! file the engine or the command line makes is, whatever the umask.
#![cfg(unix)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::Fixture;

/// The `custodian` command on `fx`'s database, keyed by `key` and mirrored
/// to `mirror`, run under umask 000 so that only modes the program sets
/// itself can make a file owner-only.
fn custodian(fx: &Fixture, key: &Path, mirror: &Path, args: &[&str]) -> Output {
    as_(fx, key, mirror, "admin", args)
}

fn as_(fx: &Fixture, key: &Path, mirror: &Path, who: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_custodian"))
        .arg("--db")
        .arg(fx.db())
        .arg("--key-file")
        .arg(key)
        .arg("--key-mirror")
        .arg(mirror)
        .args(["--as", who, "--purpose", "privacy_request"])
        .args(args)
        .env_remove("CUSTODIAN_KEY")
        .output()
        .unwrap()
}

fn ok(fx: &Fixture, key: &Path, mirror: &Path, args: &[&str]) -> String {
    ok_as(fx, key, mirror, "admin", args)
}

fn ok_as(fx: &Fixture, key: &Path, mirror: &Path, who: &str, args: &[&str]) -> String {
    let out = as_(fx, key, mirror, who, args);
    assert!(
        out.status.success(),
        "custodian {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn paths(fx: &Fixture) -> (PathBuf, PathBuf) {
    (
        fx.dir.path().join("master.key"),
        fx.dir.path().join("mirror.keys"),
    )
}

#[test]
fn a_key_file_others_can_read_is_refused_with_the_fix() {
    let fx = Fixture::new();
    let (key, mirror) = paths(&fx);
    ok(&fx, &key, &mirror, &["init", "--new-key"]);
    for open in [0o644, 0o640, 0o604, 0o660, 0o620] {
        chmod(&key, open);
        let out = custodian(&fx, &key, &mirror, &["customer", "count"]);
        assert!(!out.status.success(), "mode {open:o} accepted");
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(
            why.contains(&format!("chmod 600 {}", key.display()))
                && why.contains(&format!("mode 0{open:o}")),
            "{why}"
        );
        // Refused before anything else: the key is not in the message.
        let hex = std::fs::read_to_string(&key).unwrap();
        assert!(!why.contains(hex.trim()), "{why}");
    }
    chmod(&key, 0o400);
    assert_eq!(ok(&fx, &key, &mirror, &["customer", "count"]).trim(), "0");
    chmod(&key, 0o600);
    assert_eq!(ok(&fx, &key, &mirror, &["customer", "count"]).trim(), "0");
}

/// Every file in the data directory after a populated run (data file, key
/// store, its mirror, the key store and mirror rewritten when a key was
/// destroyed, a subject export, an audit checkpoint, the key file) is
/// readable by its owner only, though the umask allowed everyone.
#[test]
fn every_file_made_is_owner_only() {
    let fx = Fixture::new();
    let (key, mirror) = paths(&fx);
    let dir = fx.dir.path();
    ok(&fx, &key, &mirror, &["init", "--new-key"]);
    ok(
        &fx,
        &key,
        &mirror,
        &["principal", "add", "wang", "--role", "sales"],
    );
    let mut ids = Vec::new();
    for (name, phone) in [("Li Na", "13800138000"), ("Wang Fang", "13900139000")] {
        let id = ok_as(
            &fx,
            &key,
            &mirror,
            "wang",
            &[
                "customer",
                "add",
                &format!("name={name}"),
                &format!("phone={phone}"),
            ],
        );
        ids.push(id.trim().to_string());
    }
    ok_as(
        &fx,
        &key,
        &mirror,
        "wang",
        &[
            "interaction",
            "add",
            &ids[0],
            "--channel",
            "call",
            "--summary",
            "asked",
        ],
    );
    ok_as(
        &fx,
        &key,
        &mirror,
        "wang",
        &[
            "followup",
            "add",
            &ids[0],
            "--due",
            "2030-01-01",
            "--note",
            "call back",
        ],
    );
    let export = dir.join("export.json");
    ok(
        &fx,
        &key,
        &mirror,
        &[
            "subject",
            "export",
            "--phone",
            "13800138000",
            "-o",
            export.to_str().unwrap(),
        ],
    );
    let checkpoint = dir.join("head.json");
    ok(
        &fx,
        &key,
        &mirror,
        &["audit", "checkpoint", "--out", checkpoint.to_str().unwrap()],
    );
    let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();
    let before = (inode(&fx.keys()), inode(&mirror));
    ok_as(&fx, &key, &mirror, "wang", &["customer", "delete", &ids[1]]);
    assert_ne!(
        (inode(&fx.keys()), inode(&mirror)),
        before,
        "destroying a key rewrites the key store and its mirror into fresh files"
    );

    let mut seen = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "crm.redb",
            "crm.redb.keys",
            "export.json",
            "head.json",
            "master.key",
            "mirror.keys"
        ]
    );
}

/// An export written over an existing file that others could read leaves
/// it owner-only before the personal data goes in.
#[test]
fn an_export_over_an_open_file_makes_it_owner_only() {
    let fx = Fixture::new();
    let (key, mirror) = paths(&fx);
    ok(&fx, &key, &mirror, &["init", "--new-key"]);
    ok(
        &fx,
        &key,
        &mirror,
        &["principal", "add", "wang", "--role", "sales"],
    );
    ok_as(
        &fx,
        &key,
        &mirror,
        "wang",
        &["customer", "add", "name=Li Na", "phone=13800138000"],
    );
    let export = fx.dir.path().join("export.json");
    std::fs::write(&export, "old").unwrap();
    chmod(&export, 0o644);
    ok(
        &fx,
        &key,
        &mirror,
        &[
            "subject",
            "export",
            "--phone",
            "13800138000",
            "-o",
            export.to_str().unwrap(),
        ],
    );
    assert_eq!(mode(&export), 0o600);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&export).unwrap()).unwrap();
    assert_eq!(written[0]["fields"]["name"], "Li Na");
}
