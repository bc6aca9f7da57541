//! Builds the plugins workspace (`plugins/`) for `wasm32-wasip2` in release
//! and writes `$OUT_DIR/plugins.rs`: one constant per plugin holding the
//! absolute path of its component, plus the samples' folders.
//!
//! The inner build runs `cargo build --release --locked --target
//! wasm32-wasip2` with its own target directory, `target/plugins`, so that
//! it never waits on the lock of the build that runs this script; the
//! environment the outer cargo sets for build scripts is removed so that it
//! cannot leak into the inner build (host flags, the outer target, the
//! jobserver).

use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, exit};

const TARGET: &str = "wasm32-wasip2";

/// The plugins: the constant's name, the member's folder under `plugins/`,
/// the manifest name, and what it is (the constant's doc).
const PLUGINS: &[(&str, &str, &str, &str)] = &[
    (
        "SHOP_ORDERS",
        "shop-orders",
        "shop-orders",
        "e-commerce orders (JSON, one or a batch) become customers and order interactions",
    ),
    (
        "CHAT_SYNC",
        "chat-sync",
        "chat-sync",
        "chat conversation logs (JSON) become customers and chat interactions",
    ),
    (
        "SMS_REMINDER",
        "sms-reminder",
        "sms-reminder",
        "a `follow-up-due` event sends an SMS reminder",
    ),
    (
        "MISBEHAVE",
        "testing/misbehave",
        "misbehave",
        "hostile on purpose: the first word of the payload picks a misbehaviour",
    ),
    (
        "HUGE_MANIFEST",
        "testing/huge-manifest",
        "huge-manifest",
        "its `describe()` asks for a million fields: must be refused, naming the limit",
    ),
    (
        "NEXT_MAJOR",
        "testing/next-major",
        "next-major",
        "built against `custodian:plugin@1.0.0`: must be refused at install",
    ),
    (
        "SLOW_DESCRIBE",
        "testing/slow-describe",
        "slow-describe",
        "`describe` sleeps an hour in the host: the deadline must end it",
    ),
];

/// Environment variables the outer cargo sets (or honours) that must not
/// reach the inner build, besides the `CARGO_CFG_*` and `CARGO_FEATURE_*`
/// families.
const LEAKY: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "TARGET",
    "HOST",
    "OUT_DIR",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "RUSTC_LINKER",
    "CARGO_PRIMARY_PACKAGE",
];

fn main() {
    if let Err(message) = run() {
        // Shown by cargo under the failing build script's stderr.
        eprintln!("error: {message}");
        exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let repo = manifest_dir
        .ancestors()
        .nth(2)
        .ok_or("tests/artifacts is not two levels below the repository")?
        .to_path_buf();
    let plugins = repo.join("plugins");
    let target_dir = repo.join("target").join("plugins");
    let out_dir = PathBuf::from(var("OUT_DIR")?);

    rerun_if_changed(&repo, &plugins);
    check_target()?;
    build(&plugins, &target_dir)?;

    let release = target_dir.join(TARGET).join("release");
    let mut code = String::new();
    let mut all = String::new();
    let mut samples = String::new();
    for &(constant, dir, name, what) in PLUGINS {
        let wasm = release.join(format!("{}.wasm", dir_name(dir).replace('-', "_")));
        if !wasm.is_file() {
            return Err(format!(
                "the plugins' build succeeded but `{}` is missing",
                wasm.display()
            ));
        }
        let wasm = path_str(&wasm)?;
        let _ = writeln!(
            code,
            "/// `{name}` (`plugins/{dir}`): {what}. The absolute path of its component.\n\
             pub const {constant}: &str = {wasm:?};"
        );
        let _ = writeln!(all, "    ({name:?}, {constant}),");
        let samples_dir = plugins.join(dir).join("samples");
        let samples_dir = path_str(&samples_dir)?;
        let _ = writeln!(samples, "        {name:?} => {samples_dir:?},");
    }
    let plugins_dir = path_str(&plugins)?;
    let _ = write!(
        code,
        "\n/// Every plugin: its manifest name and the path of its component.\n\
         pub const ALL: &[(&str, &str)] = &[\n{all}];\n\
         \n/// The plugins workspace, `plugins/`.\n\
         pub const PLUGINS_DIR: &str = {plugins_dir:?};\n\
         \nfn samples_path(plugin: &str) -> Option<&'static str> {{\n    \
             Some(match plugin {{\n{samples}        _ => return None,\n    }})\n}}\n"
    );
    std::fs::write(out_dir.join("plugins.rs"), code)
        .map_err(|e| format!("cannot write `plugins.rs` in `{}`: {e}", out_dir.display()))
}

/// The plugins' sources, lock and release profile, and the SDK they build
/// against (whose workspace dependencies live in the root manifest).
fn rerun_if_changed(repo: &Path, plugins: &Path) {
    let mut paths = vec![
        plugins.join("Cargo.toml"),
        plugins.join("Cargo.lock"),
        repo.join("sdk").join("Cargo.toml"),
        repo.join("sdk").join("src"),
        repo.join("sdk").join("wit"),
        repo.join("Cargo.toml"),
    ];
    for &(_, dir, _, _) in PLUGINS {
        let member = plugins.join(dir);
        paths.extend(["Cargo.toml", "src", "wit"].map(|p| member.join(p)));
    }
    for path in paths {
        // A path that does not exist (a plugin without `wit/`) would make
        // cargo rerun the script on every build.
        if path.exists() {
            println!("cargo::rerun-if-changed={}", path.display());
        }
    }
}

/// Fails early, with the fix, when the standard library for the target is
/// not installed.
fn check_target() -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let out = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", rustc.to_string_lossy()))?;
    let libdir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || libdir.is_empty() || !Path::new(&libdir).is_dir() {
        return Err(format!(
            "the `{TARGET}` target, which the plugins build for, is not installed; \
             install the target: rustup target add {TARGET}"
        ));
    }
    Ok(())
}

fn build(plugins: &Path, target_dir: &Path) -> Result<(), String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--locked")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    for (key, _) in env::vars_os() {
        let leaky = key.to_str().is_some_and(|k| {
            LEAKY.contains(&k) || k.starts_with("CARGO_CFG_") || k.starts_with("CARGO_FEATURE_")
        });
        if leaky {
            cmd.env_remove(&key);
        }
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", cargo.to_string_lossy()))?;
    if out.status.success() {
        return Ok(());
    }
    // Forwarded only on failure: a successful inner build stays quiet.
    for line in String::from_utf8_lossy(&out.stderr)
        .lines()
        .chain(String::from_utf8_lossy(&out.stdout).lines())
    {
        println!("cargo::warning={line}");
    }
    Err(format!(
        "building the plugins failed ({}): run `cargo build --release --target {TARGET} \
         --manifest-path plugins/Cargo.toml` to see why",
        out.status
    ))
}

/// The last component of a member's folder (`testing/misbehave` →
/// `misbehave`): its package name, and so its artifact's.
fn dir_name(dir: &str) -> &str {
    dir.rsplit('/').next().unwrap_or(dir)
}

fn path_str(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("`{}` is not valid UTF-8", path.display()))
}

fn var(key: &str) -> Result<String, String> {
    env::var(key).map_err(|_| format!("cargo did not set `{key}`"))
}
