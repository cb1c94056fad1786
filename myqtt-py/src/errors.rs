//! The exception hierarchy and the one mapping from engine errors to it.
//!
//! ```text
//! MyqttError
//! ├── ConnectionRefusedError   (reason_code: the CONNACK code)
//! ├── ConnectionLostError
//! ├── TimeoutError
//! └── ProtocolError
//! ```

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    myqtt,
    MyqttError,
    PyException,
    "Base class of every myqtt error."
);
create_exception!(
    myqtt,
    ConnectionRefusedError,
    MyqttError,
    "The server refused the CONNECT; `reason_code` is the CONNACK code."
);
create_exception!(
    myqtt,
    ConnectionLostError,
    MyqttError,
    "The connection closed before the operation completed."
);
create_exception!(
    myqtt,
    TimeoutError,
    MyqttError,
    "The operation did not complete in time."
);
create_exception!(
    myqtt,
    ProtocolError,
    MyqttError,
    "The peer broke the MQTT protocol."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MyqttError", py.get_type::<MyqttError>())?;
    m.add(
        "ConnectionRefusedError",
        py.get_type::<ConnectionRefusedError>(),
    )?;
    m.add("ConnectionLostError", py.get_type::<ConnectionLostError>())?;
    m.add("TimeoutError", py.get_type::<TimeoutError>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    Ok(())
}

/// Maps a context error to a Python exception.
pub(crate) fn ctx_error(e: &myqtt_core::CtxError) -> PyErr {
    MyqttError::new_err(e.to_string())
}
