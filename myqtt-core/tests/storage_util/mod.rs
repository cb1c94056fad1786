//! Helpers of the storage tests: temporary folders, the `listener` example
//! program (where it is, and a running one with a store).
//!
//! `cargo test` builds the examples before it runs the tests, into
//! `target/<profile>/examples/`, next to the `deps/` folder holding this
//! test binary. A test run that did not build it (`cargo test --test
//! storage_crash`) builds it here with the same cargo, profile and
//! features, once per test process: when it is missing, or older than
//! this test binary (left by an earlier build of the library).

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A fresh folder `myqtt-NAME-PID` under the system's temporary folder
/// (emptied if a run before left it).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("myqtt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The path of the `listener` example binary, built if missing or stale.
pub fn listener_program() -> PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(find_or_build).clone()
}

/// When `path` was last modified, if it exists.
fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn find_or_build() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let program = profile_dir
        .join("examples")
        .join(format!("listener{}", std::env::consts::EXE_SUFFIX));
    let stale = match (modified(&program), modified(&exe)) {
        (Some(program), Some(test)) => program < test,
        _ => true,
    };
    if stale {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--example", "listener", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        if cfg!(feature = "sled") {
            cargo.args(["--features", "sled"]);
        }
        let status = cargo.status().expect("cargo runs");
        assert!(status.success(), "cannot build the listener example");
    }
    assert!(
        program.exists(),
        "the listener example is not at {}",
        program.display()
    );
    program
}

/// A listener process and the port it listens on.
pub struct Listener {
    pub child: Child,
    pub port: u16,
}

/// Starts the listener on `port` (0: any) with a store in `dir`; waits for
/// its `listening on HOST:PORT` line.
pub fn start_listener(dir: &Path, port: u16, backend: &str) -> Listener {
    // The port of a killed listener is free again at once (the listener
    // sets SO_REUSEADDR); a bind can still fail briefly if the kernel has
    // not finished closing the old process, so a few attempts are allowed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut child = Command::new(listener_program())
            .arg("--storage")
            .arg(dir)
            .args(["--port", &port.to_string(), "--backend", backend])
            // The subscriber may stay offline through many restarts (its
            // reconnection delay is longer than some lives of the
            // listener): with the default limit of 1000 queued messages
            // the listener would drop the newest ones for it, as
            // configured, and the test would count them as lost.
            .args(["--max-queued-messages", "1000000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the listener program starts");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        if let Some(addr) = line.trim().strip_prefix("listening on ") {
            let port = addr
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("a port in the listening line");
            return Listener { child, port };
        }
        let mut err = String::new();
        let _ = child.wait();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        assert!(
            Instant::now() < deadline && err.contains("ddress"),
            "the listener did not start: {line:?} {err}"
        );
    }
}
