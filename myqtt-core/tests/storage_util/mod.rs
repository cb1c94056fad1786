//! The `listener` example program for the storage tests.
//!
//! `cargo test` builds the examples before it runs the tests, into
//! `target/<profile>/examples/`, next to the `deps/` folder holding this
//! test binary. A test run that did not build it (`cargo test --test
//! storage_crash`) builds it here with the same cargo, profile and
//! features, once per test process: when it is missing, or older than
//! this test binary (left by an earlier build of the library).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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
