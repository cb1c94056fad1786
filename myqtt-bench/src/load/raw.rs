//! The raw engine: MQTT over plain TCP sockets, for full-speed runs.
//!
//! Design: the load generator must spend a small fraction of what a broker
//! spends per message, or the figures measure the generator. Every
//! connection of the run is driven from one thread (a current-thread tokio
//! runtime with a `LocalSet`). A publisher keeps one encoded PUBLISH packet
//! (a template made by the codec) and writes up to [`BATCH`] copies of it
//! in one write, each with its stamp, sequence number and (QoS 1) packet id
//! patched in; a second task reads its PUBACKs. A subscriber reads large
//! buffers, walks the frames with a minimal scanner (no allocation per
//! message) and answers a whole read's QoS 1 PUBLISH packets with one write
//! of PUBACKs. The measurement itself (stamps, window, losses, CPU) is the
//! client engine's: [`Flow`], [`Received`], [`measure`] and [`complete`].
//!
//! The engine speaks MQTT 3.1, 3.1.1 and 5 at QoS 0 and 1, with a keep
//! alive of 0 (no PINGREQ is ever needed).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use myqtt_core::ByteStr;
use myqtt_core::codec::{
    self, Connect, ConnectProperties, Decoder, Packet, PacketId, ProtocolVersion, Publish,
    PublishProperties, QoS, ReasonCode, Subscribe, SubscribeProperties, SubscriptionOptions,
};
use myqtt_core::topic::{TopicFilter, TopicName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, watch};

use super::{
    CpuSample, Flow, Layout, LoadReport, Plan, Progress, Published, Received, STEP_TIMEOUT,
    complete, measure,
};
use crate::args::Args;
use crate::error::BenchError;

/// Messages a publisher writes at most in one write.
const BATCH: u64 = 256;
/// What a reader reserves when its buffer's free space falls below
/// [`MIN_READ`].
const READ_BUF: usize = 256 * 1024;
/// The least free space a read is given.
const MIN_READ: usize = 64 * 1024;
/// A DISCONNECT without reason code or properties (any level).
const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// Runs the load described by `args` with the raw engine.
pub(crate) fn run(args: &Args) -> Result<LoadReport, BenchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(format!("cannot start the runtime: {e}")))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run_local(args))
}

fn setup(what: impl std::fmt::Display, e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(format!("{what}: {e}"))
}

/// A connection during setup: its stream, and bytes read past the last
/// packet decoded.
struct Link {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
    name: String,
}

impl Link {
    async fn write(&mut self, p: &Packet, version: ProtocolVersion) -> Result<(), BenchError> {
        let mut out = BytesMut::new();
        codec::encode(p, version, &mut out).map_err(|e| setup(&self.name, e))?;
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| setup(&self.name, e))
    }

    /// The next packet from the broker, within [`STEP_TIMEOUT`].
    async fn read(&mut self) -> Result<Packet, BenchError> {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(p) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(|e| setup(&self.name, e))?
            {
                return Ok(p);
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| setup(&self.name, "no answer from the broker"))?
                .map_err(|e| setup(&self.name, e))?;
            if n == 0 {
                return Err(setup(&self.name, "connection closed by the broker"));
            }
        }
    }
}

/// Opens a connection with a clean session; also returns the number of
/// QoS 1 messages the broker lets it have in flight (MQTT 5 Receive
/// Maximum, else unlimited).
async fn connect(args: &Args, client_id: String) -> Result<(Link, usize), BenchError> {
    let name = format!("connect {client_id} to {}:{}", args.host, args.port);
    let stream = tokio::time::timeout(
        STEP_TIMEOUT,
        TcpStream::connect((args.host.as_str(), args.port)),
    )
    .await
    .map_err(|_| setup(&name, "timed out"))?
    .map_err(|e| setup(&name, e))?;
    stream.set_nodelay(true).map_err(|e| setup(&name, e))?;
    let mut decoder = Decoder::default();
    decoder.set_version(args.protocol);
    let mut link = Link {
        stream,
        buf: BytesMut::with_capacity(READ_BUF),
        decoder,
        name,
    };
    let connect = Connect {
        protocol: args.protocol,
        clean_start: true,
        keep_alive: 0,
        client_id: ByteStr::from(client_id),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    };
    link.write(&Packet::Connect(Box::new(connect)), args.protocol)
        .await?;
    match link.read().await? {
        Packet::ConnAck(a) if a.reason_code.is_success() => {
            // [MQTT-3.2.2-21]: the client must use the server's keep alive,
            // and this engine sends no PINGREQ: fine if the run ends first
            // (mosquitto answers a keep alive of 0 with 65,535 s).
            if let Some(k) = a.properties.server_keep_alive
                && k > 0
                && Duration::from_secs(u64::from(k)) < args.hard_limit()
            {
                return Err(setup(
                    &link.name,
                    format!("the broker imposes a keep alive of {k} s; use --engine client"),
                ));
            }
            let max = a.properties.receive_maximum.map_or(usize::MAX, usize::from);
            Ok((link, max))
        }
        Packet::ConnAck(a) => Err(setup(
            &link.name,
            format!("refused with {:?}", a.reason_code),
        )),
        other => Err(setup(
            &link.name,
            format!("expected CONNACK, got {:?}", other.packet_type()),
        )),
    }
}

/// Subscribes to `topic` at the run's QoS and checks the grant.
async fn subscribe(link: &mut Link, args: &Args, topic: &TopicName) -> Result<(), BenchError> {
    let what = format!("subscribe {topic}");
    let filter = TopicFilter::new(topic.as_str()).map_err(|e| setup(&what, e))?;
    let s = Subscribe {
        packet_id: PacketId::new(1).ok_or_else(|| setup(&what, "packet id"))?,
        filters: vec![(
            filter,
            SubscriptionOptions {
                qos: args.qos,
                ..SubscriptionOptions::default()
            },
        )],
        properties: SubscribeProperties::default(),
    };
    link.write(&Packet::Subscribe(s), args.protocol).await?;
    let granted = match args.qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    };
    match link.read().await? {
        Packet::SubAck(a) if a.reason_codes.first() == Some(&granted) => Ok(()),
        Packet::SubAck(a) => Err(BenchError::Setup(format!(
            "{what} at QoS {}: the broker answered {:?}",
            args.qos.as_u8(),
            a.reason_codes
        ))),
        other => Err(setup(
            &what,
            format!("expected SUBACK, got {:?}", other.packet_type()),
        )),
    }
}

/// One PUBLISH packet encoded by the codec, with where its packet id and
/// payload stamp sit.
struct Template {
    bytes: Vec<u8>,
    /// Offset of the packet id (QoS 1).
    id_at: Option<usize>,
    /// Offset of the payload.
    payload_at: usize,
}

impl Template {
    fn new(topic: &TopicName, plan: &Plan, version: ProtocolVersion) -> Result<Self, BenchError> {
        let qos1 = plan.qos != QoS::AtMostOnce;
        let publish = Publish {
            dup: false,
            qos: plan.qos,
            retain: false,
            topic: topic.clone(),
            packet_id: if qos1 { PacketId::new(1) } else { None },
            properties: PublishProperties::default().into(),
            payload: Bytes::from(vec![0; plan.size]),
        };
        let mut out = BytesMut::new();
        codec::encode(&Packet::Publish(publish), version, &mut out)
            .map_err(|e| setup(format!("encode a PUBLISH to {topic}"), e))?;
        let payload_at = out.len() - plan.size;
        // The payload follows the packet id, and at MQTT 5 an empty
        // property list (one byte of length).
        let id_at = qos1.then(|| payload_at - 2 - usize::from(version.is_v5()));
        if id_at.is_some_and(|at| out.get(at..at + 2) != Some(&[0, 1][..])) {
            return Err(BenchError::Setup(
                "unexpected PUBLISH layout from the codec".into(),
            ));
        }
        Ok(Self {
            bytes: out.to_vec(),
            id_at,
            payload_at,
        })
    }
}

/// A publisher's QoS 1 packets waiting for their PUBACK, shared by its
/// writing and reading tasks.
struct Acks {
    /// Per packet id: in flight.
    in_flight: RefCell<Vec<bool>>,
    outstanding: Cell<usize>,
    /// Acknowledgements received so far (progress, for stall detection).
    acked: Cell<u64>,
    limit: usize,
    next_id: Cell<u16>,
    /// Acknowledged with a failure code, or for no packet in flight.
    failures: RefCell<Vec<String>>,
    /// The connection is gone.
    closed: Cell<bool>,
    /// Wakes the writer when acknowledgements come or the connection ends.
    notify: Notify,
}

impl Acks {
    fn new(limit: usize) -> Self {
        Self {
            in_flight: RefCell::new(vec![false; usize::from(u16::MAX) + 1]),
            outstanding: Cell::new(0),
            acked: Cell::new(0),
            limit: limit.max(1),
            next_id: Cell::new(1),
            failures: RefCell::new(Vec::new()),
            closed: Cell::new(false),
            notify: Notify::new(),
        }
    }

    /// Packets that may be sent now.
    fn free(&self) -> u64 {
        self.limit.saturating_sub(self.outstanding.get()) as u64
    }

    /// A free packet id, marked in flight; `None` if the next one is still
    /// in flight (a PUBACK missing for 65,535 publishes).
    fn take(&self) -> Option<u16> {
        let id = self.next_id.get();
        let mut flags = self.in_flight.borrow_mut();
        let slot = flags.get_mut(usize::from(id))?;
        if *slot {
            return None;
        }
        *slot = true;
        self.outstanding.set(self.outstanding.get() + 1);
        self.next_id.set(if id == u16::MAX { 1 } else { id + 1 });
        Some(id)
    }

    /// A PUBACK for `id` with `reason` (0 at levels 3 and 4).
    fn acked(&self, id: u16, reason: u8) {
        let known = self
            .in_flight
            .borrow_mut()
            .get_mut(usize::from(id))
            .is_some_and(|slot| std::mem::replace(slot, false));
        if known {
            self.outstanding.set(self.outstanding.get() - 1);
            self.acked.set(self.acked.get() + 1);
            // Below 0x80, "no matching subscribers" (0x10) included.
            if reason >= 0x80 {
                self.failures
                    .borrow_mut()
                    .push(format!("acknowledged with reason code {reason:#04x}"));
            }
        } else {
            self.failures
                .borrow_mut()
                .push(format!("PUBACK for packet id {id}, not in flight"));
        }
    }

    /// Waits for an acknowledgement; false if none came within `timeout`
    /// or the connection is gone.
    async fn wait(&self, timeout: Duration) -> bool {
        let before = self.acked.get();
        let deadline = tokio::time::Instant::now() + timeout;
        while self.acked.get() == before {
            if self.closed.get()
                || tokio::time::timeout_at(deadline, self.notify.notified())
                    .await
                    .is_err()
            {
                return self.acked.get() != before;
            }
        }
        true
    }
}

/// One frame of a buffer, as the subscriber and ack reader need it.
#[derive(Debug, PartialEq, Eq)]
enum Frame<'a> {
    /// A PUBLISH: its QoS, packet id (0 at QoS 0) and payload.
    Publish { qos: u8, id: u16, payload: &'a [u8] },
    /// A PUBACK: its packet id and reason code (0 when absent).
    PubAck { id: u16, reason: u8 },
    /// A DISCONNECT from the broker (MQTT 5): its reason code.
    Disconnect(u8),
    /// Any other packet, by type.
    Other(u8),
}

/// The remaining length at `b[1..]`: its value and the fixed header's
/// length; `Ok(None)` if incomplete.
fn remaining_length(b: &[u8], from: usize) -> Result<Option<(usize, usize)>, &'static str> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = b.get(from + i) else {
            return Ok(None);
        };
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err("malformed variable byte integer [MQTT-1.5.5-1]")
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The first frame of `b` and its length; `Ok(None)` if `b` does not hold
/// a whole one yet.
fn scan(b: &[u8], v5: bool) -> Result<Option<(Frame<'_>, usize)>, &'static str> {
    let Some(&first) = b.first() else {
        return Ok(None);
    };
    let Some((len, header)) = remaining_length(b, 1)? else {
        return Ok(None);
    };
    let total = 1 + header + len;
    let Some(body) = b.get(1 + header..total) else {
        return Ok(None);
    };
    let frame = match first >> 4 {
        3 => {
            let qos = (first >> 1) & 3;
            let topic = usize::from(u16_at(body, 0).ok_or("PUBLISH too short")?);
            let mut at = 2 + topic;
            let mut id = 0;
            if qos > 0 {
                id = u16_at(body, at).ok_or("PUBLISH too short")?;
                at += 2;
            }
            if v5 {
                let (props, n) = remaining_length(body, at)?.ok_or("PUBLISH too short")?;
                at += n + props;
            }
            let payload = body.get(at..).ok_or("PUBLISH too short")?;
            Frame::Publish { qos, id, payload }
        }
        4 => Frame::PubAck {
            id: u16_at(body, 0).ok_or("PUBACK too short")?,
            reason: body.get(2).copied().unwrap_or(0),
        },
        14 => Frame::Disconnect(body.first().copied().unwrap_or(0)),
        t => Frame::Other(t),
    };
    Ok(Some((frame, total)))
}

/// Makes room for a large read.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < MIN_READ {
        buf.reserve(READ_BUF);
    }
}

/// One subscriber: reads and counts deliveries until told to stop, QoS 1
/// ones acknowledged with one write per read; then disconnects.
async fn subscriber(
    link: Link,
    mut r: Received,
    plan: Rc<Plan>,
    progress: Rc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> Received {
    let Link {
        mut stream,
        mut buf,
        name,
        decoder,
    } = link;
    let v5 = decoder.version().is_some_and(ProtocolVersion::is_v5);
    let mut acks: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut problem = None;
    loop {
        make_room(&mut buf);
        let n = tokio::select! {
            biased;
            _ = stop.changed() => break,
            n = stream.read_buf(&mut buf) => n,
        };
        match n {
            Ok(0) => {
                problem = Some("connection closed by the broker".to_string());
                break;
            }
            Err(e) => {
                problem = Some(format!("read failed: {e}"));
                break;
            }
            Ok(_) => {}
        }
        let now = plan.now();
        let mut at = 0;
        loop {
            match scan(buf.get(at..).unwrap_or_default(), v5) {
                Ok(Some((frame, used))) => {
                    at += used;
                    match frame {
                        Frame::Publish { qos, id, payload } => {
                            r.take(payload, now, &plan, &progress);
                            if qos == 1 {
                                let [hi, lo] = id.to_be_bytes();
                                acks.extend_from_slice(&[0x40, 0x02, hi, lo]);
                            }
                        }
                        Frame::Disconnect(code) => {
                            problem =
                                Some(format!("disconnected by the broker (reason {code:#04x})"));
                        }
                        Frame::PubAck { .. } | Frame::Other(_) => {}
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    problem = Some(e.to_string());
                    break;
                }
            }
        }
        buf.advance(at);
        if !acks.is_empty() {
            if let Err(e) = stream.write_all(&acks).await {
                problem = Some(format!("write failed: {e}"));
                break;
            }
            acks.clear();
        }
        if problem.is_some() {
            break;
        }
    }
    if let Some(p) = problem {
        eprintln!("myqtt-bench: subscriber {name}: {p}");
    } else {
        let _ = stream.write_all(&DISCONNECT).await;
    }
    r
}

/// Reads a publisher's PUBACKs until its connection ends.
async fn ack_reader(mut rd: OwnedReadHalf, acks: Rc<Acks>, v5: bool, mut buf: BytesMut) {
    'read: loop {
        let mut at = 0;
        loop {
            match scan(buf.get(at..).unwrap_or_default(), v5) {
                Ok(Some((frame, used))) => {
                    at += used;
                    match frame {
                        Frame::PubAck { id, reason } => acks.acked(id, reason),
                        Frame::Disconnect(code) => {
                            acks.failures
                                .borrow_mut()
                                .push(format!("disconnected by the broker (reason {code:#04x})"));
                            break 'read;
                        }
                        Frame::Publish { .. } | Frame::Other(_) => {}
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    acks.failures.borrow_mut().push(e.to_string());
                    break 'read;
                }
            }
        }
        buf.advance(at);
        acks.notify.notify_one();
        make_room(&mut buf);
        match rd.read_buf(&mut buf).await {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    acks.closed.set(true);
    acks.notify.notify_one();
}

/// A full-speed publisher: batches of PUBLISH packets, one write each,
/// within the window and (QoS 1) the in-flight limit.
async fn publisher(
    mut wr: OwnedWriteHalf,
    mut flow: Flow,
    template: Template,
    acks: Option<Rc<Acks>>,
    plan: Rc<Plan>,
    progress: Rc<Progress>,
) -> Published {
    let window = progress.publishers.get(flow.index() as usize);
    let mut batch: Vec<u8> = Vec::with_capacity(template.bytes.len() * BATCH as usize);
    loop {
        if let Some(w) = window
            && flow.room(&plan, w) == 0
        {
            flow.wait_for_window(&plan, w).await;
        }
        let now = plan.now();
        if flow.done(&plan, now) {
            break;
        }
        let mut n = BATCH;
        if let Some(w) = window {
            n = n.min(flow.room(&plan, w));
        }
        if let Some(a) = &acks {
            if a.closed.get() {
                flow.error("publish: connection closed by the broker");
                break;
            }
            if a.free() == 0 {
                if !a.wait(plan.drain).await {
                    flow.error(format!(
                        "no PUBACK for {:.1} s with {} messages in flight",
                        plan.drain.as_secs_f64(),
                        a.outstanding.get()
                    ));
                    break;
                }
                continue;
            }
            n = n.min(a.free());
        }
        batch.clear();
        for _ in 0..n {
            if flow.done(&plan, now) {
                break;
            }
            let id = match &acks {
                Some(a) => match a.take() {
                    Some(id) => Some(id),
                    None => break,
                },
                None => None,
            };
            let at = batch.len();
            batch.extend_from_slice(&template.bytes);
            let seq = flow.next(&plan, now);
            if let (Some(id), Some(off)) = (id, template.id_at)
                && let Some(dst) = batch.get_mut(at + off..at + off + 2)
            {
                dst.copy_from_slice(&id.to_be_bytes());
            }
            if let Some(dst) = batch.get_mut(at + template.payload_at..) {
                super::write_stamp(dst, now, flow.index(), seq);
            }
        }
        if batch.is_empty() {
            // The next packet id is still in flight: wait for its PUBACK.
            if let Some(a) = &acks
                && !a.wait(plan.drain).await
            {
                flow.error("no PUBACK for a packet id needed again");
                break;
            }
            continue;
        }
        if let Err(e) = wr.write_all(&batch).await {
            flow.error(format!("publish: {e}"));
            break;
        }
        // Let the subscribers (same thread) read what was sent.
        tokio::task::yield_now().await;
    }
    flow.stopped = true;
    if let Some(a) = &acks {
        while a.outstanding.get() > 0 {
            if !a.wait(plan.drain).await {
                for _ in 0..a.outstanding.get() {
                    flow.error("acknowledgement: none came");
                }
                break;
            }
        }
        for f in a.failures.borrow_mut().drain(..) {
            flow.error(f);
        }
    }
    let _ = wr.write_all(&DISCONNECT).await;
    flow.published()
}

async fn run_local(args: &Args) -> Result<LoadReport, BenchError> {
    let pid = std::process::id();
    let layout = Layout::new(args)?;
    let v5 = args.protocol.is_v5();

    let mut subs = Vec::with_capacity(args.subscribers);
    for j in 0..args.subscribers {
        let (mut link, _) = connect(args, format!("mqb-{pid}-s{j}")).await?;
        let t = layout
            .topic(j)
            .ok_or_else(|| BenchError::Setup("no topic".into()))?;
        subscribe(&mut link, args, t).await?;
        subs.push(link);
    }
    let mut pubs = Vec::with_capacity(args.publishers);
    for i in 0..args.publishers {
        pubs.push(connect(args, format!("mqb-{pid}-p{i}")).await?);
    }

    let plan = Rc::new(layout.plan(args));
    let progress = Rc::new(Progress::new(args.publishers, layout.fan_out));
    let (stop_tx, stop_rx) = watch::channel(false);

    let sub_tasks: Vec<_> = subs
        .into_iter()
        .enumerate()
        .map(|(j, link)| {
            tokio::task::spawn_local(subscriber(
                link,
                Received::new(Layout::slot(args, j), args.publishers),
                Rc::clone(&plan),
                Rc::clone(&progress),
                stop_rx.clone(),
            ))
        })
        .collect();
    let mut pub_tasks = Vec::with_capacity(pubs.len());
    let mut readers = Vec::with_capacity(pubs.len());
    for (i, (link, receive_maximum)) in pubs.into_iter().enumerate() {
        let topic = layout
            .topic(i)
            .ok_or_else(|| BenchError::Setup("no topic".into()))?;
        let template = Template::new(topic, &plan, args.protocol)?;
        let (rd, wr) = link.stream.into_split();
        let acks = (args.qos != QoS::AtMostOnce)
            .then(|| Rc::new(Acks::new(usize::from(args.inflight).min(receive_maximum))));
        if let Some(a) = &acks {
            readers.push(tokio::task::spawn_local(ack_reader(
                rd,
                Rc::clone(a),
                v5,
                link.buf,
            )));
        }
        pub_tasks.push(tokio::task::spawn_local(publisher(
            wr,
            Flow::new(u32::try_from(i).unwrap_or(u32::MAX)),
            template,
            acks,
            Rc::clone(&plan),
            Rc::clone(&progress),
        )));
    }

    let published = async {
        let mut all = Vec::with_capacity(pub_tasks.len());
        for t in pub_tasks {
            all.push(t.await.ok()?);
        }
        Some(all)
    };
    let (mut report, cpu_start) =
        measure(args, &plan, &progress, layout.fan_out, published).await?;
    let cpu_end = CpuSample::take(args.broker_pid);
    let _ = stop_tx.send(true);
    let mut received = Vec::with_capacity(sub_tasks.len());
    for t in sub_tasks {
        if let Ok(r) = t.await {
            received.push(r);
        }
    }
    for r in readers {
        r.abort();
    }
    complete(
        &mut report,
        received,
        &plan,
        &progress,
        (&cpu_start, &cpu_end),
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qos1_publish_is_scanned_with_its_packet_id_and_payload() {
        // 3.1.1: topic "a/b", packet id 7, payload "xyz".
        let b = [0x32, 0x0A, 0, 3, b'a', b'/', b'b', 0, 7, b'x', b'y', b'z'];
        let (frame, used) = scan(&b, false).unwrap().unwrap();
        assert_eq!(used, b.len());
        assert_eq!(
            frame,
            Frame::Publish {
                qos: 1,
                id: 7,
                payload: b"xyz"
            }
        );
    }

    #[test]
    fn an_mqtt5_publish_skips_its_properties() {
        // Topic "t", QoS 0, properties: payload format indicator (2 bytes).
        let b = [0x30, 0x08, 0, 1, b't', 2, 0x01, 0x01, b'h', b'i'];
        let (frame, _) = scan(&b, true).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame::Publish {
                qos: 0,
                id: 0,
                payload: b"hi"
            }
        );
    }

    #[test]
    fn a_partial_frame_waits_for_more_bytes() {
        let b = [0x32, 0x0A, 0, 3, b'a'];
        assert_eq!(scan(&b, false), Ok(None));
        assert_eq!(scan(&[0x30, 0x80], false), Ok(None));
        assert_eq!(scan(&[], false), Ok(None));
    }

    #[test]
    fn a_five_byte_remaining_length_is_malformed() {
        // [MQTT-1.5.5-1]: at most four bytes.
        assert!(scan(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], false).is_err());
    }

    #[test]
    fn pubacks_carry_their_reason_code_at_mqtt5_only_when_present() {
        assert_eq!(
            scan(&[0x40, 0x02, 0x01, 0x02], true).unwrap().unwrap().0,
            Frame::PubAck {
                id: 0x0102,
                reason: 0
            }
        );
        assert_eq!(
            scan(&[0x40, 0x03, 0x00, 0x09, 0x87], true)
                .unwrap()
                .unwrap()
                .0,
            Frame::PubAck {
                id: 9,
                reason: 0x87
            }
        );
    }

    #[test]
    fn packet_ids_are_reused_only_once_acknowledged() {
        let a = Acks::new(2);
        assert_eq!(a.take(), Some(1));
        assert_eq!(a.take(), Some(2));
        assert_eq!(a.free(), 0);
        a.acked(1, 0);
        assert_eq!((a.free(), a.acked.get()), (1, 1));
        // An ack for an id not in flight is a failure, not a completion.
        a.acked(1, 0);
        assert_eq!(a.failures.borrow().len(), 1);
        a.next_id.set(2);
        assert_eq!(a.take(), None, "id 2 is still in flight");
    }

    #[test]
    fn the_template_patches_the_packet_id_and_payload_the_codec_wrote() {
        let args = Args::parse(["--qos".to_string(), "1".to_string()]).unwrap();
        let layout = Layout::new(&args).unwrap();
        let plan = layout.plan(&args);
        for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
            let t = Template::new(layout.topic(0).unwrap(), &plan, version).unwrap();
            let mut b = t.bytes.clone();
            let id_at = t.id_at.unwrap();
            b[id_at..id_at + 2].copy_from_slice(&513u16.to_be_bytes());
            super::super::write_stamp(&mut b[t.payload_at..], 99, 0, 5);
            let (frame, used) = scan(&b, version.is_v5()).unwrap().unwrap();
            assert_eq!(used, b.len());
            let Frame::Publish { qos, id, payload } = frame else {
                panic!("not a PUBLISH: {frame:?}");
            };
            assert_eq!((qos, id, payload.len()), (1, 513, 64));
            assert_eq!(super::super::read_payload(payload), Some((99, 0, 5)));
        }
    }
}
