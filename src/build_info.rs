//! What this binary was built from: its version and the git commit (set by `build.rs`). Stage
//! manifests and results name them. The lowest layer: imports nothing of kdrun.

/// kdrun's version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit kdrun was built from, `unknown` outside a git checkout.
pub const GIT_COMMIT: &str = env!("KDRUN_GIT_COMMIT");

/// The commit, if known.
pub fn git_commit() -> Option<&'static str> {
    (GIT_COMMIT != "unknown").then_some(GIT_COMMIT)
}
