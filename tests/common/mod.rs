//! Helpers shared by the integration tests.

use std::process::Command;

/// The `kdrun` binary, run from the repository root, without a developer's KDRUN_* variables.
pub fn kdrun() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kdrun"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, _) in std::env::vars() {
        if k.starts_with("KDRUN_") {
            c.env_remove(k);
        }
    }
    c
}
