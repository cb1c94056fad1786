//! An in-memory client/server pair of [`Session`]s with simulated time, in
//! the manner of quinn-proto's test `Pair`: packets go through the real
//! codec (`encode` then `Decoder::decode`), time only moves when a test
//! moves it, and the network can lose packets or "disconnect".
//!
//! The server side plays a minimal broker: it accepts every CONNECT
//! (resuming the stored session unless Clean Start), grants every
//! subscription, and keeps the session state when the connection drops.

#![allow(dead_code)] // each test file uses part of the harness

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use myqtt_core::ByteStr;
use myqtt_core::codec::{
    AckProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties, Decoder, Packet,
    PacketType, ProtocolVersion, Publish, PublishProps, QoS, ReasonCode, SubAck, UnsubAck, encode,
};
use myqtt_core::session::{Event, Session, SessionConfig, SessionError, SessionState};
use myqtt_core::topic::TopicName;

/// Which way a packet travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ToServer,
    ToClient,
}

pub struct Pair {
    /// Simulated time.
    pub now: Instant,
    pub version: ProtocolVersion,
    pub client: Session,
    pub server: Session,
    pub client_config: SessionConfig,
    pub server_config: SessionConfig,
    /// Properties the broker puts in its CONNACK (Server Keep Alive,
    /// Maximum QoS, …); the session adds its own limits.
    pub connack_properties: ConnAckProperties,
    /// Keep alive and Clean Start of the client's next CONNECT.
    pub keep_alive: u16,
    /// The broker's store: the client's session while it is offline.
    pub stored: Option<SessionState>,
    /// Packets as the receiving side decoded them, in order.
    pub to_server: Vec<Packet>,
    pub to_client: Vec<Packet>,
    pub client_events: Vec<Event>,
    pub server_events: Vec<Event>,
    pub client_errors: Vec<SessionError>,
    pub server_errors: Vec<SessionError>,
    /// One-shot losses: the next packet of this type that way is dropped.
    losses: VecDeque<(Dir, PacketType)>,
    client_decoder: Decoder,
    server_decoder: Decoder,
}

impl Pair {
    pub fn new(version: ProtocolVersion) -> Self {
        Self::with_configs(version, SessionConfig::default(), SessionConfig::default())
    }

    pub fn with_configs(
        version: ProtocolVersion,
        client_config: SessionConfig,
        server_config: SessionConfig,
    ) -> Self {
        let now = Instant::now();
        Self {
            now,
            version,
            client: Session::client(client_config.clone(), SessionState::default(), now),
            server: Session::server(server_config.clone(), now),
            client_config,
            server_config,
            connack_properties: ConnAckProperties::default(),
            keep_alive: 0,
            stored: None,
            to_server: Vec::new(),
            to_client: Vec::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_errors: Vec::new(),
            server_errors: Vec::new(),
            losses: VecDeque::new(),
            client_decoder: Decoder::default(),
            server_decoder: Decoder::default(),
        }
    }

    /// A connected pair: CONNECT with Clean Start, CONNACK, all delivered.
    pub fn connected(version: ProtocolVersion) -> Self {
        let mut pair = Self::new(version);
        pair.connect(true);
        pair
    }

    /// A connected pair with the given configurations.
    pub fn connected_with(
        version: ProtocolVersion,
        client_config: SessionConfig,
        server_config: SessionConfig,
    ) -> Self {
        let mut pair = Self::with_configs(version, client_config, server_config);
        pair.connect(true);
        pair
    }

    /// The CONNECT the client sends.
    pub fn connect_packet(&self, clean_start: bool) -> Connect {
        Connect {
            protocol: self.version,
            clean_start,
            keep_alive: self.keep_alive,
            client_id: ByteStr::from("client-1"),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        }
    }

    /// The client sends CONNECT; everything is delivered.
    pub fn connect(&mut self, clean_start: bool) {
        let connect = self.connect_packet(clean_start);
        self.client_decoder.set_version(self.version);
        self.client.connect(self.now, connect).expect("connect");
        self.drive();
        assert!(
            self.client.is_connected(),
            "client connected: {:?}",
            self.client_errors
        );
    }

    /// The network connection breaks: packets not yet delivered are lost,
    /// the broker stores the server side's session state.
    pub fn disconnect(&mut self) {
        let now = self.now;
        let client = std::mem::replace(
            &mut self.client,
            Session::client(self.client_config.clone(), SessionState::default(), now),
        );
        let server = std::mem::replace(
            &mut self.server,
            Session::server(self.server_config.clone(), now),
        );
        self.client = Session::client(self.client_config.clone(), client.into_state(), now);
        self.stored = Some(server.into_state());
        self.client_decoder = Decoder::default();
        self.server_decoder = Decoder::default();
        self.losses.clear();
    }

    /// Breaks the connection and connects again without Clean Start.
    pub fn reconnect(&mut self) {
        self.disconnect();
        self.connect(false);
    }

    /// Loses the next packet of `packet_type` travelling `dir`.
    pub fn lose_next(&mut self, dir: Dir, packet_type: PacketType) {
        self.losses.push_back((dir, packet_type));
    }

    /// Delivers packets both ways, and lets the broker answer, until
    /// nothing moves. Time does not pass.
    pub fn drive(&mut self) {
        loop {
            let mut moved = false;
            while let Some(packet) = self.client.poll_transmit() {
                moved = true;
                self.deliver(Dir::ToServer, &packet);
            }
            self.broker();
            while let Some(packet) = self.server.poll_transmit() {
                moved = true;
                self.deliver(Dir::ToClient, &packet);
            }
            while let Some(event) = self.client.poll_event() {
                self.client_events.push(event);
            }
            if !moved {
                break;
            }
        }
    }

    /// Lets `d` of simulated time pass, firing the timers that fall due in
    /// order and delivering what they send.
    pub fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        let mut last = None;
        loop {
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|t| *t <= target)
                .min();
            let Some(t) = next else { break };
            assert_ne!(last, Some(t), "a session did not act on its own timeout");
            last = Some(t);
            self.now = self.now.max(t);
            if self.client.poll_timeout().is_some_and(|t| t <= self.now)
                && let Err(e) = self.client.handle_timeout(self.now)
            {
                self.client_errors.push(e);
            }
            if self.server.poll_timeout().is_some_and(|t| t <= self.now)
                && let Err(e) = self.server.handle_timeout(self.now)
            {
                self.server_errors.push(e);
            }
            self.drive();
        }
        self.now = target;
        self.drive();
    }

    /// Hands `packet` to the server as if the client had sent it.
    pub fn inject_to_server(&mut self, packet: &Packet) {
        self.deliver(Dir::ToServer, packet);
        self.drive();
    }

    /// Hands `packet` to the client as if the server had sent it.
    pub fn inject_to_client(&mut self, packet: &Packet) {
        self.deliver(Dir::ToClient, packet);
        self.drive();
    }

    fn deliver(&mut self, dir: Dir, packet: &Packet) {
        if let Some(i) = self
            .losses
            .iter()
            .position(|(d, t)| *d == dir && *t == packet.packet_type())
        {
            self.losses.remove(i);
            return;
        }
        // Through the real codec, both ways.
        let (decoder, receiver, log, errors) = match dir {
            Dir::ToServer => (
                &mut self.server_decoder,
                &mut self.server,
                &mut self.to_server,
                &mut self.server_errors,
            ),
            Dir::ToClient => (
                &mut self.client_decoder,
                &mut self.client,
                &mut self.to_client,
                &mut self.client_errors,
            ),
        };
        let mut buf = BytesMut::new();
        encode(packet, self.version, &mut buf).expect("the session produced an encodable packet");
        let decoded = decoder
            .decode(&mut buf)
            .expect("decodable")
            .expect("a whole packet");
        assert!(buf.is_empty());
        if receiver.is_closed() {
            return;
        }
        log.push(decoded.clone());
        if let Err(e) = receiver.handle_packet(self.now, decoded) {
            errors.push(e);
        }
    }

    /// The minimal broker: answers CONNECT, SUBSCRIBE and UNSUBSCRIBE.
    fn broker(&mut self) {
        while let Some(event) = self.server.poll_event() {
            match &event {
                Event::Connect(connect) => {
                    let resume = !connect.clean_start && self.stored.is_some();
                    let state = if connect.clean_start {
                        self.stored = None;
                        SessionState::default()
                    } else {
                        self.stored.take().unwrap_or_default()
                    };
                    let connack = ConnAck {
                        session_present: resume,
                        reason_code: ReasonCode::Success,
                        properties: self.connack_properties.clone(),
                    };
                    if let Err(e) = self.server.accept(self.now, connack, state) {
                        self.server_errors.push(e);
                    }
                }
                Event::Subscribe(s) => {
                    let reason_codes = s
                        .filters
                        .iter()
                        .map(|(_, o)| match o.qos {
                            QoS::AtMostOnce => ReasonCode::Success,
                            QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                            QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
                        })
                        .collect();
                    let suback = SubAck {
                        packet_id: s.packet_id,
                        reason_codes,
                        properties: AckProperties::default(),
                    };
                    self.server.suback(self.now, suback).expect("suback");
                }
                Event::Unsubscribe(u) => {
                    let unsuback = UnsubAck {
                        packet_id: u.packet_id,
                        reason_codes: vec![ReasonCode::Success; u.filters.len()],
                        properties: AckProperties::default(),
                    };
                    self.server.unsuback(self.now, unsuback).expect("unsuback");
                }
                _ => {}
            }
            self.server_events.push(event);
        }
    }

    // ----- views for assertions -----

    /// Application messages the server delivered to the broker.
    pub fn server_publishes(&self) -> Vec<&Publish> {
        publishes(&self.server_events)
    }

    /// Application messages the client delivered to the application.
    pub fn client_publishes(&self) -> Vec<&Publish> {
        publishes(&self.client_events)
    }

    /// The PUBLISH packets that reached the server.
    pub fn publishes_to_server(&self) -> Vec<&Publish> {
        self.to_server.iter().filter_map(as_publish).collect()
    }

    /// The PUBLISH packets that reached the client.
    pub fn publishes_to_client(&self) -> Vec<&Publish> {
        self.to_client.iter().filter_map(as_publish).collect()
    }
}

fn as_publish(p: &Packet) -> Option<&Publish> {
    match p {
        Packet::Publish(p) => Some(p),
        _ => None,
    }
}

fn publishes(events: &[Event]) -> Vec<&Publish> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// An application message to hand to `Session::publish`.
pub fn message(topic: &str, qos: QoS, payload: &'static str) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: TopicName::new(topic).expect("valid topic"),
        packet_id: None,
        properties: PublishProps::new(),
        payload: Bytes::from_static(payload.as_bytes()),
    }
}

/// The payloads of `publishes`, as strings.
pub fn payloads(publishes: &[&Publish]) -> Vec<String> {
    publishes
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

/// The packet types in `packets`.
pub fn types(packets: &[Packet]) -> Vec<PacketType> {
    packets.iter().map(Packet::packet_type).collect()
}
