//! The constants PyMyQtt exports, with PyMyQtt's values.

use pyo3::prelude::*;

/// (name, value) pairs added to the module.
const CONSTANTS: &[(&str, i32)] = &[
    // Quality of service.
    ("qos0", 0),
    ("qos1", 1),
    ("qos2", 2),
    // on_publish verdicts (MyQttPublishCodes).
    ("PUBLISH_OK", 1),
    ("PUBLISH_DISCARD", 2),
    ("PUBLISH_CONN_CLOSE", 3),
    // on_connect answers and CONNACK return codes (MyQttConnAckTypes).
    ("CONNACK_CONNECT_TIMEOUT", -3),
    ("CONNACK_UNABLE_TO_CONNECT", -2),
    ("CONNACK_DEFERRED", -1),
    ("CONNACK_ACCEPTED", 0),
    ("CONNACK_REFUSED", 1),
    ("CONNACK_IDENTIFIER_REJECTED", 2),
    ("CONNACK_SERVER_UNAVAILABLE", 3),
    ("CONNACK_BAD_USERNAME_OR_PASSWORD", 4),
    ("CONNACK_NOT_AUTHORIZED", 5),
    // Control packet types (MQTT 3.1.1 §2.2.1).
    ("CONNECT", 1),
    ("CONNACK", 2),
    ("PUBLISH", 3),
    ("PUBACK", 4),
    ("PUBREC", 5),
    ("PUBREL", 6),
    ("PUBCOMP", 7),
    ("SUBSCRIBE", 8),
    ("SUBACK", 9),
    ("UNSUBSCRIBE", 10),
    ("UNSUBACK", 11),
    ("PINGREQ", 12),
    ("PINGRESP", 13),
    ("DISCONNECT", 14),
    ("AUTH", 15),
    // Protocol levels.
    ("MQTT_3_1", 3),
    ("MQTT_3_1_1", 4),
    ("MQTT_5", 5),
];

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    for (name, value) in CONSTANTS {
        m.add(*name, *value)?;
    }
    Ok(())
}
