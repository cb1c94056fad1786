//! Shared helpers for the broker tests: a broker on 127.0.0.1:0 and a raw
//! MQTT client that speaks packets through the codec, so tests see exactly
//! what the listener sends.
#![allow(dead_code, unreachable_pub)] // each test file uses a part of it

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use myqtt_core::Ctx;
use myqtt_core::broker::BrokerConfig;
use myqtt_core::codec::{
    AckProperties, ConnAck, Connect, ConnectProperties, Disconnect, LastWill, Packet, PacketId,
    ProtocolVersion, PubAck, Publish, PublishProps, QoS, ReasonCode, Subscribe,
    SubscribeProperties, SubscriptionOptions, Unsubscribe, UnsubscribeProperties, encode,
};
use myqtt_core::net::PacketReader;
use myqtt_core::topic::{TopicFilter, TopicName};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long a test waits to conclude that something does not happen.
pub const QUIET: Duration = Duration::from_millis(300);

/// Runs `f` against a fresh broker with `config`, listening on 127.0.0.1:0.
pub fn with_broker<F, Fut>(config: BrokerConfig, f: F)
where
    F: FnOnce(Ctx, SocketAddr) -> Fut,
    Fut: Future<Output = ()>,
{
    let ctx = Ctx::builder()
        .worker_threads(2)
        .shutdown_grace(Duration::from_secs(2))
        .broker(config)
        .build()
        .expect("context");
    let listener = ctx.create_listener("127.0.0.1", 0).expect("listener");
    let addr = listener.local_addr();
    ctx.block_on(f(ctx.clone(), addr));
    ctx.exit();
}

/// Runs `f` against a broker with the default configuration.
pub fn with_default_broker<F, Fut>(f: F)
where
    F: FnOnce(Ctx, SocketAddr) -> Fut,
    Fut: Future<Output = ()>,
{
    with_broker(BrokerConfig::default(), f);
}

/// Waits for `cond` to hold, polling; panics after [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A topic name.
pub fn topic(s: &str) -> TopicName {
    TopicName::new(s).expect("topic name")
}

/// A topic filter.
pub fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).expect("topic filter")
}

/// A packet id.
pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero packet id")
}

/// A CONNECT with the given basics and nothing else.
pub fn connect_packet(
    version: ProtocolVersion,
    client_id: &str,
    clean_start: bool,
    keep_alive: u16,
) -> Connect {
    Connect {
        protocol: version,
        clean_start,
        keep_alive,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

/// A will message.
pub fn will(topic_name: &str, payload: &'static [u8], qos: QoS, retain: bool) -> LastWill {
    LastWill {
        topic: topic(topic_name),
        payload: Bytes::from_static(payload),
        qos,
        retain,
        properties: myqtt_core::codec::WillProperties::default(),
    }
}

/// A PUBLISH.
pub fn publish(topic_name: &str, payload: &[u8], qos: QoS, retain: bool, id: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: topic(topic_name),
        packet_id: if qos == QoS::AtMostOnce {
            None
        } else {
            Some(pid(id))
        },
        properties: PublishProps::new(),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// A raw MQTT client over TCP that sends and receives codec packets.
pub struct Raw {
    pub reader: PacketReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
    pub version: ProtocolVersion,
    next_id: u16,
}

impl Raw {
    /// Opens a TCP connection without sending anything.
    pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (r, w) = stream.into_split();
        let mut reader = PacketReader::new(r, 0);
        reader.decoder_mut().set_version(version);
        Self {
            reader,
            writer: w,
            version,
            next_id: 0,
        }
    }

    /// Connects with `connect` and returns the CONNACK.
    pub async fn connect_with(addr: SocketAddr, connect: Connect) -> (Self, ConnAck) {
        let mut raw = Self::open(addr, connect.protocol).await;
        raw.send(Packet::Connect(Box::new(connect))).await;
        match raw.recv().await {
            Packet::ConnAck(c) => (raw, *c),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects and expects success.
    pub async fn connect(
        addr: SocketAddr,
        version: ProtocolVersion,
        client_id: &str,
        clean_start: bool,
    ) -> Self {
        let (raw, connack) =
            Self::connect_with(addr, connect_packet(version, client_id, clean_start, 0)).await;
        assert_eq!(connack.reason_code, ReasonCode::Success, "{connack:?}");
        raw
    }

    /// A fresh packet id.
    pub fn next_id(&mut self) -> PacketId {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        pid(self.next_id)
    }

    /// Sends one packet.
    pub async fn send(&mut self, p: Packet) {
        let mut buf = bytes::BytesMut::new();
        encode(&p, self.version, &mut buf).expect("encode");
        self.send_bytes(&buf).await;
    }

    /// Sends raw bytes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.writer.write_all(bytes).await.expect("write");
    }

    /// The next packet; panics after [`WAIT`] or if the connection closes.
    pub async fn recv(&mut self) -> Packet {
        match tokio::time::timeout(WAIT, self.reader.read()).await {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => panic!("connection closed while waiting for a packet"),
            Ok(Err(e)) => panic!("read failed: {e}"),
            Err(elapsed) => panic!("no packet within {WAIT:?}: {elapsed}"),
        }
    }

    /// The next packet within `d`, or `None` (closed or nothing).
    pub async fn recv_within(&mut self, d: Duration) -> Option<Packet> {
        match tokio::time::timeout(d, self.reader.read()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// Asserts that nothing arrives for [`QUIET`].
    pub async fn expect_nothing(&mut self) {
        if let Ok(r) = tokio::time::timeout(QUIET, self.reader.read()).await {
            panic!("expected nothing, got {r:?}");
        }
    }

    /// Waits until the server closes the connection, returning the packets
    /// it sent before (a DISCONNECT, for MQTT 5).
    pub async fn closed(&mut self) -> Vec<Packet> {
        let mut got = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.reader.read()).await {
                Ok(Ok(Some(p))) => got.push(p),
                Ok(Ok(None) | Err(_)) => return got,
                Err(elapsed) => {
                    panic!("connection not closed within {WAIT:?} ({elapsed}); got {got:?}")
                }
            }
        }
    }

    /// Subscribes to one filter and returns the SUBACK reason code.
    pub async fn subscribe(&mut self, f: &str, qos: QoS) -> ReasonCode {
        let options = SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        };
        self.subscribe_with(vec![(filter(f), options)], SubscribeProperties::default())
            .await
            .first()
            .copied()
            .expect("one reason code")
    }

    /// Subscribes and returns the SUBACK reason codes.
    pub async fn subscribe_with(
        &mut self,
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: SubscribeProperties,
    ) -> Vec<ReasonCode> {
        let packet_id = self.next_id();
        self.send(Packet::Subscribe(Subscribe {
            packet_id,
            filters,
            properties,
        }))
        .await;
        loop {
            match self.recv().await {
                Packet::SubAck(s) if s.packet_id == packet_id => return s.reason_codes,
                Packet::Publish(_) => {}
                other => panic!("expected SUBACK, got {other:?}"),
            }
        }
    }

    /// Unsubscribes and returns the UNSUBACK reason codes (empty before 5).
    pub async fn unsubscribe(&mut self, filters: &[&str]) -> Vec<ReasonCode> {
        let packet_id = self.next_id();
        self.send(Packet::Unsubscribe(Unsubscribe {
            packet_id,
            filters: filters.iter().map(|f| filter(f)).collect(),
            properties: UnsubscribeProperties::default(),
        }))
        .await;
        match self.recv().await {
            Packet::UnsubAck(u) => {
                assert_eq!(u.packet_id, packet_id);
                u.reason_codes
            }
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    /// Publishes and completes the QoS flow; returns the PUBACK / PUBREC
    /// reason code (Success at QoS 0).
    pub async fn publish(&mut self, t: &str, payload: &[u8], qos: QoS, retain: bool) -> ReasonCode {
        let id = self.next_id().get();
        self.publish_packet(publish(t, payload, qos, retain, id))
            .await
    }

    /// Sends a PUBLISH and completes its flow.
    pub async fn publish_packet(&mut self, p: Publish) -> ReasonCode {
        let qos = p.qos;
        let id = p.packet_id;
        self.send(Packet::Publish(p)).await;
        match qos {
            QoS::AtMostOnce => ReasonCode::Success,
            QoS::AtLeastOnce => loop {
                match self.recv().await {
                    Packet::PubAck(a) if Some(a.packet_id) == id => return a.reason_code,
                    Packet::Publish(_) => {}
                    other => panic!("expected PUBACK, got {other:?}"),
                }
            },
            QoS::ExactlyOnce => {
                let code = loop {
                    match self.recv().await {
                        Packet::PubRec(a) if Some(a.packet_id) == id => break a.reason_code,
                        Packet::Publish(_) => {}
                        other => panic!("expected PUBREC, got {other:?}"),
                    }
                };
                if code.is_success() {
                    let id = id.expect("QoS 2 has an id");
                    self.send(Packet::PubRel(PubAck::new(id))).await;
                    loop {
                        match self.recv().await {
                            Packet::PubComp(a) if a.packet_id == id => break,
                            Packet::Publish(_) => {}
                            other => panic!("expected PUBCOMP, got {other:?}"),
                        }
                    }
                }
                code
            }
        }
    }

    /// Receives the next PUBLISH (skipping nothing: any other packet
    /// fails) and acknowledges it per its QoS.
    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => {
                self.ack(&p).await;
                p
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Acknowledges a received PUBLISH (QoS 1: PUBACK; QoS 2: PUBREC, then
    /// PUBREL is awaited and PUBCOMP sent).
    pub async fn ack(&mut self, p: &Publish) {
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(Packet::PubAck(PubAck::new(id))).await,
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(Packet::PubRec(PubAck::new(id))).await;
                match self.recv().await {
                    Packet::PubRel(r) => assert_eq!(r.packet_id, id),
                    other => panic!("expected PUBREL, got {other:?}"),
                }
                self.send(Packet::PubComp(PubAck::new(id))).await;
            }
            _ => {}
        }
    }

    /// Sends DISCONNECT (normal) and waits for the close.
    pub async fn disconnect(mut self) {
        self.send(Packet::Disconnect(Disconnect::normal())).await;
        let rest = self.closed().await;
        assert!(
            rest.is_empty(),
            "unexpected packets after DISCONNECT: {rest:?}"
        );
    }

    /// Sends DISCONNECT with a reason code and waits for the close.
    pub async fn disconnect_with(mut self, reason: ReasonCode) {
        self.send(Packet::Disconnect(Disconnect::with_reason(reason)))
            .await;
        self.closed().await;
    }
}

/// A PUBACK with a reason code (for MQTT 5 checks).
pub fn puback(id: u16, code: ReasonCode) -> PubAck {
    PubAck {
        packet_id: pid(id),
        reason_code: code,
        properties: AckProperties::default(),
    }
}
