//! The exception hierarchy and the one mapping from engine errors to it.
//!
//! ```text
//! MyqttError                   (reason_code: None unless told below)
//! ├── ConnectError             no MQTT connection could be made
//! ├── ConnectionRefusedError   (reason_code: the CONNACK code)
//! ├── ConnectionLostError      (reason_code: a server DISCONNECT's code)
//! ├── TimeoutError
//! ├── RefusedError             (reason_code: a failure PUBACK/SUBACK/... code)
//! └── ProtocolError
//! ```
//!
//! Every client error reaches Python through [`client_error`].

use myqtt_core::client::{ClientError, CloseReason};
use myqtt_core::codec::{ProtocolVersion, ReasonCode};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
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
    ConnectError,
    MyqttError,
    "No MQTT connection could be made: the host did not resolve or the TCP connection failed."
);
create_exception!(
    myqtt,
    RefusedError,
    MyqttError,
    "The server refused an operation (publish, subscribe, unsubscribe) with a failure reason code (`reason_code`)."
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
    m.add("ConnectError", py.get_type::<ConnectError>())?;
    m.add("RefusedError", py.get_type::<RefusedError>())?;
    // Instances get their own value where one is known.
    py.get_type::<MyqttError>()
        .setattr("reason_code", py.None())?;
    Ok(())
}

/// Maps a context error to a Python exception.
pub(crate) fn ctx_error(e: &myqtt_core::CtxError) -> PyErr {
    MyqttError::new_err(e.to_string())
}

/// The code a CONNACK refusal carries on the wire at `protocol`: the MQTT
/// 3.1.1 return code (the `CONNACK_*` constants) before MQTT 5, the MQTT 5
/// reason code at 5.
pub(crate) fn connack_wire_code(reason: ReasonCode, protocol: ProtocolVersion) -> u8 {
    if protocol.is_v5() {
        reason.as_u8()
    } else {
        reason.to_connack_return_code()
    }
}

/// Maps a client error to a Python exception (the one mapping).
///
/// `protocol` decides how a CONNACK refusal's code reads (see
/// [`connack_wire_code`]).
pub(crate) fn client_error(py: Python<'_>, e: &ClientError, protocol: ProtocolVersion) -> PyErr {
    let msg = e.to_string();
    let (err, code) = match e {
        ClientError::InvalidTopic(_) | ClientError::InvalidOption(_) => {
            return PyValueError::new_err(msg);
        }
        ClientError::Connect { .. } => (ConnectError::new_err(msg), None),
        ClientError::ConnectTimeout | ClientError::Timeout | ClientError::QueueFull { .. } => {
            (TimeoutError::new_err(msg), None)
        }
        ClientError::ConnectionRefused { reason_code, .. } => (
            ConnectionRefusedError::new_err(msg),
            Some(connack_wire_code(*reason_code, protocol)),
        ),
        ClientError::Closed(reason) | ClientError::ConnectionLost(reason) => {
            let code = match reason {
                CloseReason::ServerDisconnect { reason_code, .. } => Some(reason_code.as_u8()),
                _ => None,
            };
            if matches!(reason, CloseReason::ProtocolError(_)) {
                (ProtocolError::new_err(msg), None)
            } else {
                (ConnectionLostError::new_err(msg), code)
            }
        }
        ClientError::NotConnected => (ConnectionLostError::new_err(msg), None),
        ClientError::Refused { reason_code, .. } => {
            (RefusedError::new_err(msg), Some(reason_code.as_u8()))
        }
        ClientError::Session(_) => (ProtocolError::new_err(msg), None),
        _ => (MyqttError::new_err(msg), None),
    };
    if let Some(code) = code {
        // Setting an attribute on a fresh exception instance cannot fail in
        // practice; if it did, the exception still carries its message.
        let _ = err.value(py).setattr("reason_code", code);
    }
    err
}
