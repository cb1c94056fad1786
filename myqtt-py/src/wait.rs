//! Blocking waits that release the GIL and stay interruptible by Ctrl-C.
//!
//! Every blocking call of the module waits through [`wait_until`]: it
//! detaches from the interpreter while it waits, in slices short enough
//! that a pending signal (KeyboardInterrupt) is seen promptly.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// How often a blocked call wakes to let Python handle signals.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// Calls `poll(slice)` with the GIL released until it returns `Some`, the
/// deadline passes (`Ok(None)`), or a signal handler raises (`Err`).
/// `poll` is called at least once, with a zero slice if `timeout` is zero.
///
/// `poll` must wait at most `slice` before returning `None`.
pub(crate) fn wait_until<T, F>(
    py: Python<'_>,
    timeout: Option<Duration>,
    mut poll: F,
) -> PyResult<Option<T>>
where
    T: Send,
    F: FnMut(Duration) -> Option<T> + Send,
{
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        // The first poll happens even with a zero timeout, so that a result
        // already there is returned.
        let slice = deadline.map_or(SIGNAL_CHECK, |d| {
            d.saturating_duration_since(Instant::now())
                .min(SIGNAL_CHECK)
        });
        if let Some(v) = py.detach(|| poll(slice)) {
            return Ok(Some(v));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        py.check_signals()?;
    }
}
