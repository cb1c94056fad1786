//! The client's send window against the myqtt listener: a burst of QoS 1
//! publishes, each handle learning its own packet id.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use myqtt_core::Ctx;
use myqtt_core::broker::BrokerConfig;
use myqtt_core::client::{Conn, ConnectOptions, PublishMessage};
use myqtt_core::codec::QoS;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn every_publish_of_a_burst_learns_the_packet_id_of_its_own_flow() {
    // [MQTT-2.3.1-2]: ids of flows in flight at once are distinct; each
    // handle reports the id its PUBACK answered.
    let ctx = Ctx::builder()
        .worker_threads(2)
        .broker(BrokerConfig::default())
        .build()
        .unwrap();
    let listener = ctx.create_listener("127.0.0.1", 0).unwrap();
    let conn = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", listener.port())
            .client_id("burst")
            .max_inflight(512),
    )
    .unwrap();
    let handles: Vec<_> = (0..800u32)
        .map(|i| {
            let m = PublishMessage::new("b", Bytes::from(i.to_be_bytes().to_vec()))
                .unwrap()
                .qos(QoS::AtLeastOnce);
            conn.try_publish(m).unwrap()
        })
        .collect();
    let mut in_flight_ids = HashSet::new();
    for (n, h) in handles.iter().enumerate() {
        let outcome = h.wait(WAIT).unwrap();
        let id = outcome.packet_id.expect("a QoS 1 flow has a packet id");
        assert_eq!(h.packet_id(), Some(id), "publish {n}");
        in_flight_ids.insert(id);
    }
    assert!(
        in_flight_ids.len() >= 512,
        "{} distinct ids",
        in_flight_ids.len()
    );
    conn.close().wait(WAIT).unwrap();
    ctx.exit();
}
