//! Handles returned to Python: `myqtt.PublishHandle` (a publish in
//! progress) and `myqtt.Handle` (PyMyQtt's token for removing an on-close
//! handler).

use std::time::Duration;

use myqtt_core::client::{self, ClientError, Pending, PublishOutcome};
use myqtt_core::codec::ProtocolVersion;
use pyo3::prelude::*;

use crate::complete;
use crate::errors;
use crate::opts::duration;
use crate::props;
use crate::wait::wait_until;

/// Waits for `pending` with the GIL released, in slices (Ctrl-C works);
/// `timeout` `None` waits as long as it takes. A wait that ends by timeout
/// gives `ClientError::Timeout` (the operation goes on).
pub(crate) fn wait_pending<T: Clone + Send>(
    py: Python<'_>,
    pending: &Pending<T>,
    timeout: Option<Duration>,
) -> PyResult<Result<T, ClientError>> {
    let r = wait_until(py, timeout, |slice| match pending.wait(slice) {
        Err(ClientError::Timeout) => None,
        r => Some(r),
    })?;
    Ok(r.unwrap_or(Err(ClientError::Timeout)))
}

/// A publish in progress, from `Conn.publish()`.
///
/// `wait(timeout)` always ends: with the acknowledgement (PUBACK at QoS 1,
/// PUBCOMP at QoS 2, the hand-over to the socket at QoS 0), or with an
/// exception: `TimeoutError` (the publish goes on and can be waited on
/// again), `RefusedError` (an MQTT 5 failure reason code),
/// `ConnectionLostError` (the connection was lost and the message will not
/// be resumed, or the connection closed).
#[pyclass(module = "myqtt", frozen)]
pub(crate) struct PublishHandle {
    handle: client::PublishHandle,
    ctx: myqtt_core::Ctx,
    protocol: ProtocolVersion,
}

impl PublishHandle {
    pub(crate) fn new(
        handle: client::PublishHandle,
        ctx: myqtt_core::Ctx,
        protocol: ProtocolVersion,
    ) -> Self {
        Self {
            handle,
            ctx,
            protocol,
        }
    }

    fn outcome(&self) -> Option<PublishOutcome> {
        self.handle.try_result().and_then(Result::ok)
    }

    /// Waits; `Ok(())` once acknowledged.
    pub(crate) fn wait_done(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<()> {
        match wait_pending(py, self.handle.pending(), timeout)? {
            Ok(_) => Ok(()),
            Err(e) => Err(errors::client_error(py, &e, self.protocol)),
        }
    }
}

#[pymethods]
impl PublishHandle {
    /// The packet identifier of the QoS 1/2 flow once the message was sent;
    /// None before that and at QoS 0.
    #[getter]
    fn packet_id(&self) -> Option<u16> {
        self.outcome()
            .and_then(|o| o.packet_id)
            .or_else(|| self.handle.packet_id())
            .map(myqtt_core::codec::PacketId::get)
    }

    /// The message's QoS.
    #[getter]
    fn qos(&self) -> u8 {
        self.handle.qos().as_u8()
    }

    /// True once the publish has completed (acknowledged or failed).
    fn done(&self) -> bool {
        self.handle.is_done()
    }

    /// The acknowledgement's reason code once acknowledged: 0 (success),
    /// or an MQTT 5 success code such as 0x10 (no matching subscribers).
    /// None before, and when the publish failed.
    #[getter]
    fn reason_code(&self) -> Option<u8> {
        self.outcome().map(|o| o.reason_code.as_u8())
    }

    /// The acknowledgement's MQTT 5 Reason String, if any.
    #[getter]
    fn reason_string(&self) -> Option<String> {
        self.outcome()
            .and_then(|o| props::reason_string(&o.properties))
    }

    /// The acknowledgement's MQTT 5 user properties, as (name, value) pairs.
    #[getter]
    fn user_properties(&self) -> Vec<(String, String)> {
        self.outcome()
            .map(|o| props::ack_user_properties(&o.properties))
            .unwrap_or_default()
    }

    /// Waits until the publish completes, at most `timeout` seconds (None:
    /// as long as it takes), with the GIL released. Returns the handle;
    /// raises if the publish failed or the wait timed out.
    #[pyo3(signature = (timeout=None))]
    fn wait<'py>(slf: &Bound<'py, Self>, timeout: Option<f64>) -> PyResult<Bound<'py, Self>> {
        let timeout = timeout.map(|t| duration("timeout", t)).transpose()?;
        slf.get().wait_done(slf.py(), timeout)?;
        Ok(slf.clone())
    }

    /// Calls `callback(exc, handle)` on the module's completion thread once
    /// the publish completes (`exc` None on success, the exception
    /// otherwise). `myqtt.aio` awaits publishes this way.
    fn add_done_callback(slf: &Bound<'_, Self>, callback: Py<PyAny>) {
        let this = slf.get();
        let me: Py<Self> = slf.clone().unbind();
        let pending = this.handle.pending().clone();
        complete::spawn(
            &this.ctx,
            this.protocol,
            pending,
            callback,
            Box::new(move |_, _| Ok(me.into_any())),
        );
    }

    fn __repr__(&self) -> String {
        let state = match self.handle.try_result() {
            None => "pending".to_owned(),
            Some(Ok(o)) => format!("acknowledged reason_code=0x{:02X}", o.reason_code.as_u8()),
            Some(Err(e)) => format!("failed: {e}"),
        };
        format!(
            "<myqtt.PublishHandle qos={} packet_id={:?} {state}>",
            self.handle.qos().as_u8(),
            self.packet_id()
        )
    }
}

/// PyMyQtt's handle for an installed handler: pass it to
/// `conn.remove_on_close()` to remove that handler.
#[pyclass(module = "myqtt", frozen)]
pub(crate) struct Handle {
    pub(crate) id: u64,
}

#[pymethods]
impl Handle {
    fn __repr__(&self) -> String {
        format!("<myqtt.Handle {}>", self.id)
    }
}
