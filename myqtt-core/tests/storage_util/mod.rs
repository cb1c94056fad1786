//! The `listener` example program for the storage tests.
//!
//! `cargo test` builds the examples before it runs the tests, into
//! `target/<profile>/examples/`, next to the `deps/` folder holding this
//! test binary. A test run that did not build it (`cargo test --test
//! storage_crash`) builds it here with the same cargo, profile and
//! features.

use std::path::PathBuf;
use std::process::Command;

/// The path of the `listener` example binary, built if missing.
pub fn listener_program() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let program = profile_dir
        .join("examples")
        .join(format!("listener{}", std::env::consts::EXE_SUFFIX));
    if !program.exists() {
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
