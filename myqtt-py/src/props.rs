//! MQTT 5 properties between Python and the engine: `myqtt.Properties`
//! (what a received message carries, and what a publish may send) and the
//! dict forms accepted for CONNECT, will, SUBSCRIBE and UNSUBSCRIBE
//! properties. Payloads given as `str` or bytes-like objects are read here
//! too.

use std::collections::HashMap;

use bytes::Bytes;
use myqtt_core::ByteStr;
use myqtt_core::codec::{
    AckProperties, ConnectProperties, PublishProperties, SubscribeProperties,
    UnsubscribeProperties, UserProperties, WillProperties,
};
use myqtt_core::topic::TopicName;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple};

/// Reads a payload: `None` is empty, `str` is encoded as UTF-8, `bytes` and
/// `bytearray` are copied, any other object supporting `bytes(obj)` (a
/// `memoryview`, an `array`) is converted. Integers are refused (`bytes(3)`
/// would make three zero bytes).
pub(crate) fn payload(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Bytes> {
    let Some(obj) = obj else {
        return Ok(Bytes::new());
    };
    if obj.is_none() {
        return Ok(Bytes::new());
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Bytes::copy_from_slice(s.to_cow()?.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Bytes::from(b.to_vec()));
    }
    if obj.is_instance_of::<pyo3::types::PyInt>() {
        return Err(PyTypeError::new_err(
            "a payload is str or bytes-like, not an int",
        ));
    }
    let converted = obj.py().get_type::<PyBytes>().call1((obj,))?;
    let b = converted.cast::<PyBytes>()?;
    Ok(Bytes::copy_from_slice(b.as_bytes()))
}

/// MQTT 5 properties of an application message: those of a received
/// message (`msg.properties`) or to send with a publish.
///
/// Every field is optional; `user_properties` keeps order and repeats.
#[pyclass(module = "myqtt", frozen, eq)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(clippy::struct_field_names)] // `user_properties` is the specification's name
pub(crate) struct Properties {
    /// Payload Format Indicator: True when the payload is UTF-8 text.
    #[pyo3(get)]
    payload_format_indicator: Option<bool>,
    /// Message Expiry Interval in seconds.
    #[pyo3(get)]
    message_expiry_interval: Option<u32>,
    /// Content Type (a MIME type, by convention).
    #[pyo3(get)]
    content_type: Option<String>,
    /// Response Topic of a request.
    #[pyo3(get)]
    response_topic: Option<String>,
    correlation_data: Option<Vec<u8>>,
    user_properties: Vec<(String, String)>,
    /// Subscription Identifiers of the subscriptions that matched (received
    /// messages only).
    #[pyo3(get)]
    subscription_identifiers: Vec<u32>,
}

impl Properties {
    /// The properties of a received PUBLISH.
    pub(crate) fn from_publish(p: &PublishProperties) -> Self {
        Self {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            content_type: p.content_type.as_ref().map(ToString::to_string),
            response_topic: p.response_topic.as_ref().map(|t| t.as_str().to_owned()),
            correlation_data: p.correlation_data.as_ref().map(|b| b.to_vec()),
            user_properties: user_pairs(&p.user_properties),
            subscription_identifiers: p.subscription_identifiers.clone(),
        }
    }

    /// The fields that are set, as (name, value) pairs.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Vec<(&'static str, Bound<'py, PyAny>)>> {
        let mut v = Vec::new();
        if let Some(x) = self.payload_format_indicator {
            v.push((
                "payload_format_indicator",
                x.into_pyobject(py)?.to_owned().into_any(),
            ));
        }
        if let Some(x) = self.message_expiry_interval {
            v.push(("message_expiry_interval", x.into_pyobject(py)?.into_any()));
        }
        if let Some(x) = &self.content_type {
            v.push(("content_type", x.into_pyobject(py)?.into_any()));
        }
        if let Some(x) = &self.response_topic {
            v.push(("response_topic", x.into_pyobject(py)?.into_any()));
        }
        if let Some(x) = &self.correlation_data {
            v.push(("correlation_data", PyBytes::new(py, x).into_any()));
        }
        if !self.user_properties.is_empty() {
            v.push(("user_properties", self.user_properties(py)?.into_any()));
        }
        if !self.subscription_identifiers.is_empty() {
            v.push((
                "subscription_identifiers",
                PyList::new(py, &self.subscription_identifiers)?.into_any(),
            ));
        }
        Ok(v)
    }
}

#[pymethods]
impl Properties {
    #[new]
    #[pyo3(signature = (*, payload_format_indicator=None, message_expiry_interval=None,
        content_type=None, response_topic=None, correlation_data=None, user_properties=None,
        subscription_identifiers=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        payload_format_indicator: Option<bool>,
        message_expiry_interval: Option<u32>,
        content_type: Option<String>,
        response_topic: Option<String>,
        correlation_data: Option<&Bound<'_, PyAny>>,
        user_properties: Option<&Bound<'_, PyAny>>,
        subscription_identifiers: Option<Vec<u32>>,
    ) -> PyResult<Self> {
        Ok(Self {
            payload_format_indicator,
            message_expiry_interval,
            content_type,
            response_topic,
            correlation_data: correlation_data
                .map(|c| payload(Some(c)).map(|b| b.to_vec()))
                .transpose()?,
            user_properties: user_properties
                .map(user_pairs_from_py)
                .transpose()?
                .unwrap_or_default(),
            subscription_identifiers: subscription_identifiers.unwrap_or_default(),
        })
    }

    /// Correlation Data of a request, as bytes.
    #[getter]
    fn correlation_data<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.correlation_data.as_ref().map(|c| PyBytes::new(py, c))
    }

    /// User Properties: a list of (name, value) pairs, in order.
    #[getter]
    fn user_properties<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(
            py,
            self.user_properties
                .iter()
                .map(|(k, v)| PyTuple::new(py, [k, v]))
                .collect::<PyResult<Vec<_>>>()?,
        )
    }

    /// The fields that are set, as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.items(py)? {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    fn __bool__(&self) -> bool {
        *self != Self::default()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let parts = self
            .items(py)?
            .into_iter()
            .map(|(k, v)| Ok(format!("{k}={}", v.repr()?)))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(format!("Properties({})", parts.join(", ")))
    }
}

/// `TypeError: <key>: <message>`, keeping the error's type.
fn prefix_error(py: Python<'_>, key: &str, e: &PyErr) -> PyErr {
    if e.is_instance_of::<PyValueError>(py)
        || e.is_instance_of::<pyo3::exceptions::PyOverflowError>(py)
    {
        PyValueError::new_err(format!("{key}: {}", e.value(py)))
    } else {
        PyTypeError::new_err(format!("{key}: {}", e.value(py)))
    }
}

fn user_pairs(p: &UserProperties) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.as_str().to_owned()))
        .collect()
}

/// User properties from a list of pairs or a mapping.
fn user_pairs_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    if let Ok(d) = obj.cast::<PyDict>() {
        return d
            .iter()
            .map(|(k, v)| Ok((k.extract()?, v.extract()?)))
            .collect();
    }
    obj.try_iter()?
        .map(|item| item?.extract::<(String, String)>())
        .collect()
}

fn user_properties_from_py(obj: &Bound<'_, PyAny>) -> PyResult<UserProperties> {
    Ok(user_pairs_from_py(obj)?
        .into_iter()
        .map(|(k, v)| (ByteStr::from(k), ByteStr::from(v)))
        .collect())
}

/// The (name, value) entries of a properties argument: `None`, a
/// `Properties` object or a mapping.
struct Fields<'py> {
    kind: &'static str,
    map: HashMap<String, Bound<'py, PyAny>>,
}

impl<'py> Fields<'py> {
    fn new(obj: Option<&Bound<'py, PyAny>>, kind: &'static str) -> PyResult<Self> {
        let mut map = HashMap::new();
        if let Some(obj) = obj.filter(|o| !o.is_none()) {
            let dict = if let Ok(p) = obj.cast::<Properties>() {
                p.get().to_dict(obj.py())?
            } else if let Ok(d) = obj.cast::<PyDict>() {
                d.clone()
            } else {
                return Err(PyTypeError::new_err(format!(
                    "{kind} properties are a dict or a myqtt.Properties, not {}",
                    obj.get_type().name()?
                )));
            };
            for (k, v) in dict.iter() {
                if !v.is_none() {
                    map.insert(k.extract::<String>()?, v);
                }
            }
        }
        Ok(Self { kind, map })
    }

    fn take<T: FromPyObjectOwned<'py>>(&mut self, key: &str) -> PyResult<Option<T>> {
        self.map
            .remove(key)
            .map(|v| {
                v.extract::<T>()
                    .map_err(Into::into)
                    .map_err(|e: PyErr| prefix_error(v.py(), key, &e))
            })
            .transpose()
    }

    fn take_str(&mut self, key: &str) -> PyResult<Option<ByteStr>> {
        Ok(self.take::<String>(key)?.map(ByteStr::from))
    }

    fn take_bytes(&mut self, key: &str) -> PyResult<Option<Bytes>> {
        self.map.remove(key).map(|v| payload(Some(&v))).transpose()
    }

    fn take_topic(&mut self, key: &str) -> PyResult<Option<TopicName>> {
        self.take::<String>(key)?
            .map(|t| TopicName::new(t).map_err(|e| PyValueError::new_err(format!("{key}: {e}"))))
            .transpose()
    }

    fn take_user_properties(&mut self) -> PyResult<UserProperties> {
        self.map
            .remove("user_properties")
            .map(|v| user_properties_from_py(&v))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Fails on a name no branch took (a typo would otherwise go unnoticed).
    fn finish(self) -> PyResult<()> {
        if self.kind == "publish" && self.map.contains_key("subscription_identifiers") {
            return Err(PyValueError::new_err(
                "[MQTT-3.3.4-6] a client must not send subscription identifiers in a PUBLISH",
            ));
        }
        if let Some(k) = self.map.keys().min() {
            return Err(PyValueError::new_err(format!(
                "unknown {} property: {k:?}",
                self.kind
            )));
        }
        Ok(())
    }
}

/// PUBLISH properties from `None`, a `Properties` or a dict. Subscription
/// identifiers (received-side only) are refused: a client never sends them
/// [MQTT-3.3.4-6].
pub(crate) fn publish_properties(obj: Option<&Bound<'_, PyAny>>) -> PyResult<PublishProperties> {
    if obj.is_none_or(PyAnyMethods::is_none) {
        // The common case, kept cheap: publishing is the hot path.
        return Ok(PublishProperties::default());
    }
    let mut f = Fields::new(obj, "publish")?;
    let p = PublishProperties {
        payload_format_indicator: f.take("payload_format_indicator")?,
        message_expiry_interval: f.take("message_expiry_interval")?,
        response_topic: f.take_topic("response_topic")?,
        correlation_data: f.take_bytes("correlation_data")?,
        user_properties: f.take_user_properties()?,
        content_type: f.take_str("content_type")?,
        ..PublishProperties::default()
    };
    f.finish()?;
    Ok(p)
}

/// Will properties: the message properties plus `will_delay_interval`.
pub(crate) fn will_properties(obj: Option<&Bound<'_, PyAny>>) -> PyResult<WillProperties> {
    let mut f = Fields::new(obj, "will")?;
    let p = WillProperties {
        will_delay_interval: f.take("will_delay_interval")?,
        payload_format_indicator: f.take("payload_format_indicator")?,
        message_expiry_interval: f.take("message_expiry_interval")?,
        content_type: f.take_str("content_type")?,
        response_topic: f.take_topic("response_topic")?,
        correlation_data: f.take_bytes("correlation_data")?,
        user_properties: f.take_user_properties()?,
    };
    f.finish()?;
    Ok(p)
}

/// CONNECT properties from a dict.
pub(crate) fn connect_properties(obj: Option<&Bound<'_, PyAny>>) -> PyResult<ConnectProperties> {
    let mut f = Fields::new(obj, "connect")?;
    let p = ConnectProperties {
        session_expiry_interval: f.take("session_expiry_interval")?,
        receive_maximum: f.take("receive_maximum")?,
        maximum_packet_size: f.take("maximum_packet_size")?,
        topic_alias_maximum: f.take("topic_alias_maximum")?,
        request_response_information: f.take("request_response_information")?,
        request_problem_information: f.take("request_problem_information")?,
        user_properties: f.take_user_properties()?,
        authentication_method: f.take_str("authentication_method")?,
        authentication_data: f.take_bytes("authentication_data")?,
    };
    f.finish()?;
    Ok(p)
}

/// SUBSCRIBE properties from a dict: `subscription_identifier`,
/// `user_properties`.
pub(crate) fn subscribe_properties(
    obj: Option<&Bound<'_, PyAny>>,
) -> PyResult<SubscribeProperties> {
    let mut f = Fields::new(obj, "subscribe")?;
    let id: Option<u32> = f.take("subscription_identifier")?;
    if id == Some(0) {
        return Err(PyValueError::new_err(
            "a subscription identifier of 0 is a protocol error (MQTT 5.0 §3.8.2.1.2)",
        ));
    }
    let p = SubscribeProperties {
        subscription_identifier: id,
        user_properties: f.take_user_properties()?,
    };
    f.finish()?;
    Ok(p)
}

/// UNSUBSCRIBE properties from a dict: `user_properties`.
pub(crate) fn unsubscribe_properties(
    obj: Option<&Bound<'_, PyAny>>,
) -> PyResult<UnsubscribeProperties> {
    let mut f = Fields::new(obj, "unsubscribe")?;
    let p = UnsubscribeProperties {
        user_properties: f.take_user_properties()?,
    };
    f.finish()?;
    Ok(p)
}

/// An acknowledgement's Reason String, if any.
pub(crate) fn reason_string(p: &AckProperties) -> Option<String> {
    p.reason_string.as_ref().map(ToString::to_string)
}

/// An acknowledgement's user properties as (name, value) pairs.
pub(crate) fn ack_user_properties(p: &AckProperties) -> Vec<(String, String)> {
    user_pairs(&p.user_properties)
}
