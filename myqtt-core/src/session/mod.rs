//! Sans-IO protocol state of one MQTT connection, for the client and the
//! server side.
