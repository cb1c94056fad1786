//! Messages in both directions: [`Message`] (received), [`PublishMessage`]
//! (to send), and the outcomes of publish and subscribe.

use bytes::Bytes;

use crate::codec::{
    AckProperties, PacketId, Publish, PublishProperties, PublishProps, QoS, ReasonCode,
    RetainHandling, SubscriptionOptions,
};
use crate::topic::{TopicFilter, TopicName};

use super::error::ClientError;

/// An application message received from the server.
///
/// With [`super::ConnectOptions::manual_ack`], a QoS 1/2 message must be
/// acknowledged with [`super::Conn::ack`]; otherwise the client
/// acknowledges it when the application takes it (from
/// [`super::Conn::get_next`] or when the message callback returns).
#[derive(Debug, Clone)]
pub struct Message {
    pub(crate) publish: Publish,
    /// The network connection the message came on, for acknowledgements.
    pub(crate) epoch: u64,
}

impl Message {
    /// The topic (a topic alias is already resolved).
    pub fn topic(&self) -> &TopicName {
        &self.publish.topic
    }

    /// The payload, shared with the receive buffer.
    pub fn payload(&self) -> &Bytes {
        &self.publish.payload
    }

    /// The QoS it was delivered at.
    pub fn qos(&self) -> QoS {
        self.publish.qos
    }

    /// The RETAIN flag: set for a retained message sent because of a new
    /// subscription [MQTT-3.3.1-8] (3.1.1) / [MQTT-3.3.1-9] (5.0).
    pub fn retain(&self) -> bool {
        self.publish.retain
    }

    /// The DUP flag: the server may have sent it before [MQTT-3.3.1-1].
    pub fn dup(&self) -> bool {
        self.publish.dup
    }

    /// The packet id (QoS 1 and 2 only).
    pub fn packet_id(&self) -> Option<PacketId> {
        self.publish.packet_id
    }

    /// The MQTT 5 properties (empty before MQTT 5).
    pub fn properties(&self) -> &PublishProperties {
        &self.publish.properties
    }

    /// The PUBLISH packet itself.
    pub fn publish(&self) -> &Publish {
        &self.publish
    }

    /// Takes the PUBLISH packet out.
    pub fn into_publish(self) -> Publish {
        self.publish
    }
}

/// A message to publish. Build it with [`PublishMessage::new`] and the
/// chained setters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishMessage {
    pub(crate) topic: TopicName,
    pub(crate) payload: Bytes,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) properties: PublishProps,
}

impl PublishMessage {
    /// A message to `topic` with `payload`, at QoS 0, not retained, without
    /// properties. Fails when `topic` is not a valid topic name (empty, or
    /// with a wildcard [MQTT-3.3.2-2]).
    pub fn new(topic: &str, payload: impl Into<Bytes>) -> Result<Self, ClientError> {
        Ok(Self::with_topic(TopicName::new(topic)?, payload))
    }

    /// A message to an already validated topic.
    pub fn with_topic(topic: TopicName, payload: impl Into<Bytes>) -> Self {
        Self {
            topic,
            payload: payload.into(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: PublishProps::new(),
        }
    }

    /// The QoS. Default 0.
    pub fn qos(mut self, qos: QoS) -> Self {
        self.qos = qos;
        self
    }

    /// The RETAIN flag. Default false.
    pub fn retain(mut self, retain: bool) -> Self {
        self.retain = retain;
        self
    }

    /// MQTT 5 properties (ignored before MQTT 5). Default none. A topic
    /// alias set here is ignored: the session assigns aliases itself.
    pub fn properties(mut self, properties: PublishProperties) -> Self {
        self.properties = properties.into();
        self
    }

    pub(crate) fn into_publish(self) -> Publish {
        Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic,
            packet_id: None,
            properties: self.properties,
            payload: self.payload,
        }
    }
}

/// How a publish completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOutcome {
    /// The packet id the QoS 1/2 flow used; `None` at QoS 0.
    pub packet_id: Option<PacketId>,
    /// QoS 0: `Success` once the message was handed to the socket. QoS 1:
    /// the PUBACK's reason code; QoS 2: the PUBCOMP's (always `Success`
    /// before MQTT 5; `NoMatchingSubscribers` is a success too).
    pub reason_code: ReasonCode,
    /// The acknowledgement's MQTT 5 properties.
    pub properties: AckProperties,
}

/// One topic filter to subscribe to, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The filter.
    pub filter: TopicFilter,
    /// Its options (QoS; MQTT 5 no-local, retain-as-published, retain
    /// handling).
    pub options: SubscriptionOptions,
}

impl Subscription {
    /// A subscription to `filter` at `qos` with the default MQTT 5 options.
    pub fn new(filter: &str, qos: QoS) -> Result<Self, ClientError> {
        Ok(Self {
            filter: TopicFilter::new(filter)?,
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
        })
    }

    /// MQTT 5 No Local: do not receive this client's own publications
    /// [MQTT-3.8.3-3]. Default false.
    pub fn no_local(mut self, on: bool) -> Self {
        self.options.no_local = on;
        self
    }

    /// MQTT 5 Retain As Published. Default false.
    pub fn retain_as_published(mut self, on: bool) -> Self {
        self.options.retain_as_published = on;
        self
    }

    /// MQTT 5 Retain Handling. Default: send retained messages at
    /// subscribe.
    pub fn retain_handling(mut self, handling: RetainHandling) -> Self {
        self.options.retain_handling = handling;
        self
    }
}

/// The SUBACK for a subscribe: one reason code per filter, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOutcome {
    /// `Success` / `GrantedQoS1` / `GrantedQoS2`, or a failure code (0x80
    /// before MQTT 5) per filter [MQTT-3.9.3-1].
    pub reason_codes: Vec<ReasonCode>,
    /// The SUBACK's MQTT 5 properties.
    pub properties: AckProperties,
}

impl SubscribeOutcome {
    /// The QoS granted to each filter, `None` where the server refused it.
    pub fn granted_qos(&self) -> Vec<Option<QoS>> {
        self.reason_codes.iter().map(|&c| granted(c)).collect()
    }

    /// True when every filter was granted.
    pub fn all_granted(&self) -> bool {
        self.reason_codes.iter().all(|c| c.is_success())
    }
}

/// The QoS a SUBACK reason code grants, `None` for a failure.
pub(crate) fn granted(code: ReasonCode) -> Option<QoS> {
    match code {
        ReasonCode::Success => Some(QoS::AtMostOnce),
        ReasonCode::GrantedQoS1 => Some(QoS::AtLeastOnce),
        ReasonCode::GrantedQoS2 => Some(QoS::ExactlyOnce),
        _ => None,
    }
}

/// The UNSUBACK for an unsubscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeOutcome {
    /// MQTT 5: one reason code per filter. Before MQTT 5 the UNSUBACK has
    /// none, and this holds `Success` per filter.
    pub reason_codes: Vec<ReasonCode>,
    /// The UNSUBACK's MQTT 5 properties.
    pub properties: AckProperties,
}
