//! Ctrl-C: the handler sets a flag; training loops stop at the next step with [`Interrupted`].

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The error of a run stopped by Ctrl-C.
#[derive(Debug, thiserror::Error)]
#[error("interrupted (Ctrl-C): finished stages are kept; run the same command to resume")]
pub struct Interrupted;

/// Catch Ctrl-C (and SIGTERM) from now on.
pub fn install() {
    let _ = ctrlc::set_handler(|| REQUESTED.store(true, Ordering::SeqCst));
}

pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once Ctrl-C was pressed.
pub fn check() -> Result<(), Interrupted> {
    if requested() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}
