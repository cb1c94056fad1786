//! Memory an idle session keeps: queues and tables emptied by the traffic
//! give their room back with `Session::shrink_idle`, and nothing that still
//! waits (in flight, queued) is lost by it.

mod session_harness;

use myqtt_core::codec::{PacketType, ProtocolVersion, QoS, ReasonCode};
use myqtt_core::session::{Event, Session, Ticket};
use session_harness::{Dir, Pair, message, payloads};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

fn acked(events: &[Event]) -> Vec<Ticket> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::PublishAcked {
                ticket,
                reason_code: ReasonCode::Success,
                ..
            } => Some(*ticket),
            _ => None,
        })
        .collect()
}

/// The state an idle connection keeps without its queues; its queues and
/// tables hold nothing once shrunk.
#[test]
fn a_session_stays_small() {
    let size = std::mem::size_of::<Session>();
    assert!(size <= 240, "a session is {size} bytes");
}

#[test]
fn a_connected_session_gives_back_the_queues_its_handshake_used() {
    for version in [V311, V5] {
        let mut pair = Pair::connected(version);
        // CONNECT came out as an event and CONNACK went out: both queues
        // kept room for four packets (about 1 KB each).
        assert!(pair.server.holds_idle_memory());
        pair.server.shrink_idle();
        pair.client.shrink_idle();
        assert!(!pair.server.holds_idle_memory());
        assert!(!pair.client.holds_idle_memory());
    }
}

#[test]
fn qos1_and_qos2_flows_both_ways_leave_nothing_held_once_shrunk_and_work_after() {
    let mut pair = Pair::connected(V5);
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        pair.client
            .publish(pair.now, message("up", qos, "u"))
            .unwrap();
        pair.server
            .publish(pair.now, message("down", qos, "d"))
            .unwrap();
    }
    pair.drive();
    assert_eq!(payloads(&pair.server_publishes()), ["u", "u"]);
    assert_eq!(payloads(&pair.client_publishes()), ["d", "d"]);
    assert!(
        pair.server.holds_idle_memory(),
        "the in-flight tables were used"
    );
    pair.server.shrink_idle();
    pair.client.shrink_idle();
    assert!(!pair.server.holds_idle_memory());
    assert!(!pair.client.holds_idle_memory());
    let ticket = pair
        .server
        .publish(pair.now, message("down", QoS::ExactlyOnce, "again"))
        .unwrap();
    pair.drive();
    assert_eq!(payloads(&pair.client_publishes()), ["d", "d", "again"]);
    assert!(acked(&pair.server_events).contains(&ticket));
}

#[test]
fn shrinking_keeps_a_flow_in_flight_which_completes_after_a_reconnect() {
    // [MQTT-4.4.0-1]: the unacknowledged PUBLISH is resent on the next
    // connection; giving back idle memory must not lose it.
    let mut pair = Pair::connected(V311);
    pair.lose_next(Dir::ToServer, PacketType::PubAck);
    let ticket = pair
        .server
        .publish(pair.now, message("t", QoS::AtLeastOnce, "kept"))
        .unwrap();
    pair.drive();
    pair.server.shrink_idle();
    assert_eq!(pair.server.state().outgoing_len(), 1);
    pair.reconnect();
    assert_eq!(payloads(&pair.client_publishes()), ["kept", "kept"]);
    assert_eq!(acked(&pair.server_events), [ticket]);
}
