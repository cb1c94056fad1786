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
//! - `conn`: `myqtt.Conn`, the client connection (PyMyQtt's methods and
//!   the ones the Pythonic and asyncio layers build on).
//! - `opts`: `myqtt.ConnOpts`, the connection options.
//! - `msg`: `myqtt.Msg`, a received message.
//! - `props`: `myqtt.Properties` and the MQTT 5 property conversions.
//! - `handle`: `myqtt.PublishHandle` and PyMyQtt's `myqtt.Handle`.
//! - `complete`: the completion thread that hands asynchronous results to
//!   Python callbacks (asyncio bridges through it).
//! - `log`: the tracing subscriber that forwards Rust logs to Python
//!   `logging` through a bounded channel.
//!
//! The Python sources beside this crate (`python/myqtt/`) re-export these
//! names and add the Pythonic layer.

mod complete;
mod conn;
mod constants;
mod ctx;
mod errors;
mod handle;
mod log;
mod msg;
mod opts;
mod props;
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
    // Client.
    m.add_class::<conn::Conn>()?;
    m.add_class::<opts::ConnOpts>()?;
    m.add_class::<msg::Msg>()?;
    m.add_class::<props::Properties>()?;
    m.add_class::<handle::PublishHandle>()?;
    m.add_class::<handle::Handle>()?;
    m.add_function(wrap_pyfunction!(conn::connect_async, m)?)?;
    // Logging and interpreter exit.
    m.add("LOG_FORWARDING", log::install())?;
    m.add_function(wrap_pyfunction!(log::_log_drain, m)?)?;
    m.add_function(wrap_pyfunction!(log::_log_set_level, m)?)?;
    m.add_function(wrap_pyfunction!(log::_log_dropped, m)?)?;
    m.add_function(wrap_pyfunction!(complete::_interpreter_exiting, m)?)?;
    Ok(())
}
