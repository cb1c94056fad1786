//! `myqtt._myqtt`: the native half of the Python package `myqtt`.
//!
//! # Layout
//!
//! - `errors`: the exception hierarchy (`myqtt.MyqttError` and subclasses)
//!   and the one mapping from engine errors to Python exceptions.
//! - `queue`: `myqtt.AsyncQueue`, PyMyQtt's thread-safe queue.
//! - `ctx`: `myqtt.Ctx`, the context that owns the engine's runtime.
//! - `wait`: how blocking calls release the GIL and stay interruptible.
//! - `listener`: `myqtt.create_listener`, `wait_listeners`, the context's
//!   listener handlers, periodic events and broker actions; `server`: the
//!   `ListenerConn`, `ListenerMsg` and `ListenerEvent` handlers receive;
//!   `hooks`: the engine hooks behind the handlers; `dispatch`: the Python
//!   threads the handlers run on.
//!
//! The Python sources beside this crate (`python/myqtt/`) re-export these
//! names and add the Pythonic layer.

mod constants;
mod ctx;
mod errors;
mod queue;
mod wait;
// Listener side.
mod dispatch;
mod hooks;
mod listener;
mod server;

use pyo3::prelude::*;

/// The native module `myqtt._myqtt`.
#[pymodule]
fn _myqtt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    constants::register(m)?;
    errors::register(m)?;
    m.add_class::<queue::AsyncQueue>()?;
    m.add_class::<ctx::Ctx>()?;
    listener::register(m)?;
    Ok(())
}
