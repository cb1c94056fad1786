//! `myqtt._myqtt`: the native half of the Python package `myqtt`.
//!
//! # Layout
//!
//! - `errors`: the exception hierarchy (`myqtt.MyqttError` and subclasses)
//!   and the one mapping from engine errors to Python exceptions.
//! - `queue`: `myqtt.AsyncQueue`, PyMyQtt's thread-safe queue.
//! - `ctx`: `myqtt.Ctx`, the context that owns the engine's runtime.
//! - `wait`: how blocking calls release the GIL and stay interruptible.
//!
//! The Python sources beside this crate (`python/myqtt/`) re-export these
//! names and add the Pythonic layer.

mod constants;
mod ctx;
mod errors;
mod queue;
mod wait;

use pyo3::prelude::*;

/// The native module `myqtt._myqtt`.
#[pymodule]
fn _myqtt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    constants::register(m)?;
    errors::register(m)?;
    m.add_class::<queue::AsyncQueue>()?;
    m.add_class::<ctx::Ctx>()?;
    Ok(())
}
