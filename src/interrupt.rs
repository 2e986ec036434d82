//! Ctrl-C and SIGTERM: measuring loops stop cleanly so partial files can be removed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use thiserror::Error;

/// Returned by a loop that stopped because the user asked it to.
#[derive(Debug, Error)]
#[error("interrupted")]
pub struct Interrupted;

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn flag() -> &'static Arc<AtomicBool> {
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Catches SIGINT and SIGTERM; a second signal ends the process at once (exit 130).
pub fn install() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, flag().clone())?;
        signal_hook::flag::register(signal, flag().clone())?;
    }
    Ok(())
}

/// True once the user asked to stop.
pub fn requested() -> bool {
    flag().load(Ordering::Relaxed)
}

/// `Err(Interrupted)` once the user asked to stop.
pub fn check() -> Result<(), Interrupted> {
    if requested() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// Resolves once the user asked to stop; for `select!` in async loops.
pub async fn wait() {
    while !requested() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
