//! A QoS 2 message the application took is delivered once, even when the
//! connection died before its PUBREC went out: the client remembers the
//! packet id across the reconnection of its persistent session, answers
//! the server's DUP resend with PUBREC and does not hand it out again
//! [MQTT-4.3.3-10].
//!
//! The server is a raw socket: it sends the PUBLISH and closes the
//! connection at once; the application takes the message while the client
//! is disconnected; the second connection resumes the session and resends
//! the PUBLISH with DUP. With a client store the same holds across a
//! restart of the client program.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use myqtt_core::Ctx;
use myqtt_core::client::{Conn, ConnectOptions, ReconnectOptions, Status};
use myqtt_core::codec::{
    ConnAck, ConnAckProperties, Decoder, Packet, PacketId, ProtocolVersion, PubAck, Publish,
    PublishProperties, QoS, ReasonCode, encode,
};
use myqtt_core::store::{RedbStore, SessionKey, Store};
use myqtt_core::topic::TopicName;

const WAIT: Duration = Duration::from_secs(10);
const V: ProtocolVersion = ProtocolVersion::V311;

fn pid() -> PacketId {
    PacketId::new(7).expect("non-zero")
}

/// One side of the raw server's conversation.
struct Peer {
    sock: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Peer {
    fn accept(listener: &TcpListener) -> Self {
        let (sock, _) = listener.accept().expect("accept");
        sock.set_read_timeout(Some(WAIT)).expect("timeout");
        Self {
            sock,
            decoder: Decoder::new(1 << 20),
            buf: BytesMut::new(),
        }
    }

    fn next(&mut self) -> Packet {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(p) = self.decoder.decode(&mut self.buf).expect("decode") {
                return p;
            }
            let n = self.sock.read(&mut chunk).expect("read");
            assert!(n > 0, "the client closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        encode(p, V, &mut out).expect("encode");
        self.sock.write_all(&out).expect("write");
    }

    fn connack(&mut self, session_present: bool) {
        assert!(matches!(self.next(), Packet::Connect(_)), "CONNECT first");
        self.send(&Packet::ConnAck(Box::new(ConnAck {
            session_present,
            reason_code: ReasonCode::Success,
            properties: ConnAckProperties::default(),
        })));
    }
}

fn publish(dup: bool) -> Packet {
    Packet::Publish(Publish {
        dup,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: TopicName::new("once/t").expect("topic"),
        packet_id: Some(pid()),
        properties: PublishProperties::default().into(),
        payload: Bytes::from_static(b"once"),
    })
}

/// The server: PUBLISH on the first connection, which it then drops; once
/// `taken` fires, resumes the session on the second and resends with DUP.
/// Returns the packets the client answered the resend and the PUBREL with.
fn server(listener: &TcpListener, taken: &mpsc::Receiver<()>) -> (Packet, Packet) {
    let mut first = Peer::accept(listener);
    first.connack(false);
    first.send(&publish(false));
    drop(first);
    taken
        .recv_timeout(WAIT)
        .expect("the application took the message");
    let mut second = Peer::accept(listener);
    second.connack(true);
    // [MQTT-4.4.0-1]: unacknowledged PUBLISH packets again, with DUP.
    second.send(&publish(true));
    let answer = second.next();
    second.send(&Packet::PubRel(PubAck::new(pid())));
    let comp = second.next();
    (answer, comp)
}

#[test]
fn a_taken_qos2_message_is_not_delivered_again_after_the_connection_died_before_its_pubrec() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (taken_tx, taken_rx) = mpsc::channel();
    let server = thread::spawn(move || server(&listener, &taken_rx));

    let ctx = Ctx::builder().worker_threads(1).build().unwrap();
    let conn = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", port)
            .client_id("qos2-resume")
            .protocol(V)
            .clean_start(false)
            .reconnect(ReconnectOptions::default().initial_delay(Duration::from_millis(10))),
    )
    .unwrap();
    // The server dropped the first connection right after the PUBLISH.
    let deadline = Instant::now() + WAIT;
    while conn.status() == Status::Connected && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    assert_ne!(conn.status(), Status::Connected, "the connection is lost");
    // The application takes the message now: its PUBREC cannot go out.
    let m = conn
        .get_next(Some(WAIT))
        .unwrap()
        .expect("the QoS 2 message");
    assert_eq!(m.payload().as_ref(), b"once");
    taken_tx.send(()).unwrap();

    let (answer, comp) = server.join().expect("server");
    // The resend is answered with PUBREC [MQTT-4.3.3-10]...
    assert_eq!(answer, Packet::PubRec(PubAck::new(pid())));
    // ... and the PUBREL with PUBCOMP [MQTT-4.3.3-11].
    assert_eq!(comp, Packet::PubComp(PubAck::new(pid())));
    // ... and the application never sees the message a second time.
    assert!(
        conn.get_next(Some(Duration::from_millis(300)))
            .unwrap()
            .is_none(),
        "the DUP resend was delivered again"
    );
    drop(conn);
    ctx.exit();
}

#[test]
fn with_a_client_store_a_restarted_client_does_not_deliver_a_taken_qos2_message_again() {
    let dir = std::env::temp_dir().join(format!("myqtt-qos2-client-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (taken_tx, taken_rx) = mpsc::channel();
    let server = thread::spawn(move || server(&listener, &taken_rx));
    let opts = |store: Arc<dyn Store>| {
        ConnectOptions::new("127.0.0.1", port)
            .client_id("qos2-restart")
            .protocol(V)
            .clean_start(false)
            .store(store)
    };
    let key = SessionKey::client("qos2-restart");
    {
        // The first run: no automatic reconnection, the connection dies
        // after the PUBLISH, the application takes the message, the
        // program stops.
        let ctx = Ctx::builder().worker_threads(1).build().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir).unwrap());
        let conn = Conn::connect_blocking(&ctx, opts(Arc::clone(&store))).unwrap();
        assert!(conn.wait_closed(WAIT).is_some(), "the connection is lost");
        let m = conn
            .get_next(Some(WAIT))
            .unwrap()
            .expect("the QoS 2 message");
        assert_eq!(m.payload().as_ref(), b"once");
        assert_eq!(store.incoming(&key).unwrap().len(), 1, "the id is stored");
        drop(conn);
        ctx.exit();
        taken_tx.send(()).unwrap();
    }
    // The next run of the program, on the same store.
    let ctx = Ctx::builder().worker_threads(1).build().unwrap();
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir).unwrap());
    let conn = Conn::connect_blocking(&ctx, opts(Arc::clone(&store))).unwrap();
    let (answer, comp) = server.join().expect("server");
    // [MQTT-4.3.3-10]: PUBREC for the resend, no second delivery.
    assert_eq!(answer, Packet::PubRec(PubAck::new(pid())));
    assert_eq!(comp, Packet::PubComp(PubAck::new(pid())));
    // (The server has closed: no message, or the end of the connection.)
    assert!(
        !matches!(conn.get_next(Some(Duration::from_millis(300))), Ok(Some(_))),
        "the DUP resend was delivered again"
    );
    assert!(
        store.incoming(&key).unwrap().is_empty(),
        "the PUBREL removed the stored id"
    );
    drop(conn);
    ctx.exit();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
