//! `myqtt.Msg`: a message received by a client connection.

use myqtt_core::client::Message;
use myqtt_core::codec::PacketId;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::props::Properties;

/// A received application message (PyMyQtt's `myqtt.Msg`).
///
/// `payload` is the payload as `bytes`; `content` is the same decoded as
/// UTF-8 text (invalid sequences replaced by U+FFFD).
#[pyclass(module = "myqtt", frozen)]
pub(crate) struct Msg {
    msg: Message,
}

impl Msg {
    pub(crate) fn new(msg: Message) -> Self {
        Self { msg }
    }
}

#[pymethods]
impl Msg {
    /// The topic the message was published to.
    #[getter]
    fn topic(&self) -> &str {
        self.msg.topic().as_str()
    }

    /// The payload as bytes.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.msg.payload())
    }

    /// The payload decoded as UTF-8 text.
    #[getter]
    fn content<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        PyString::new(py, &String::from_utf8_lossy(self.msg.payload()))
    }

    /// The payload's length in bytes.
    #[getter]
    fn size(&self) -> usize {
        self.msg.payload().len()
    }

    /// The payload's length in bytes (PyMyQtt's older name).
    #[getter]
    fn payload_size(&self) -> usize {
        self.size()
    }

    /// The payload's length in bytes (PyMyQtt's older name).
    #[getter]
    fn content_size(&self) -> usize {
        self.size()
    }

    /// The QoS it was delivered at (0, 1 or 2).
    #[getter]
    fn qos(&self) -> u8 {
        self.msg.qos().as_u8()
    }

    /// The RETAIN flag: a retained message sent because of a new
    /// subscription [MQTT-3.3.1-8] (3.1.1) / [MQTT-3.3.1-9] (5.0).
    #[getter]
    fn retain(&self) -> bool {
        self.msg.retain()
    }

    /// The DUP flag: the server may have sent it before [MQTT-3.3.1-1].
    #[getter]
    fn dup(&self) -> bool {
        self.msg.dup()
    }

    /// The packet identifier (QoS 1 and 2), or 0 at QoS 0.
    #[getter]
    fn id(&self) -> u16 {
        self.msg.packet_id().map_or(0, PacketId::get)
    }

    /// The control packet type's name: always "PUBLISH".
    #[getter]
    #[allow(clippy::unused_self)] // a Python attribute needs `self`
    fn r#type(&self) -> &'static str {
        "PUBLISH"
    }

    /// The MQTT 5 properties (empty before MQTT 5).
    #[getter]
    fn properties(&self) -> Properties {
        Properties::from_publish(self.msg.properties())
    }

    fn __repr__(&self) -> String {
        format!(
            "<myqtt.Msg topic={:?} qos={} retain={} size={}>",
            self.msg.topic().as_str(),
            self.msg.qos().as_u8(),
            self.msg.retain(),
            self.msg.payload().len()
        )
    }
}
