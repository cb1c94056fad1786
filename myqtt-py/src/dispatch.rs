//! The Python dispatch threads: where listener hooks written in Python run.
//!
//! The engine calls the hooks (`hooks.rs`) on its tokio workers; they never
//! touch Python. Each call becomes a [`Job`] sent over a bounded channel to
//! one of a few dispatch threads, chosen by connection so one client's
//! calls keep their order. A thread attaches to the interpreter at its first
//! job and stays attached, waiting for jobs detached (the GIL released, its
//! thread state kept); it runs the jobs waiting (up to [`BATCH`]) between
//! two waits, and answers each hook through a oneshot channel the hook's
//! `Reply::Later` future awaits. A full channel makes the hook wait (its connection only),
//! so memory stays bounded; a slow handler slows the clients of its thread,
//! never another thread's, and never the engine's keep-alive handling.
//!
//! An exception in a handler is logged under the logger "myqtt" and answered
//! with the safe default: the CONNECT refused, the message discarded, the
//! ACL check denied.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use bytes::Bytes;
use myqtt_core::ByteStr;
use myqtt_core::broker::WeakBroker;
use myqtt_core::broker::hooks::{
    Access, ClientInfo, ConnectVerdict, DropReason, Message, PublishVerdict,
};
use myqtt_core::codec::{QoS, ReasonCode};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use tokio::sync::{mpsc, oneshot};

use crate::server::{ListenerConn, ListenerEvent, ListenerMsg, connect_verdict};

/// Jobs one thread runs under one attachment to the interpreter.
const BATCH: usize = 64;
/// Jobs waiting per dispatch thread before hooks wait for room.
const QUEUE: usize = 1024;
/// Dispatch threads (connections are spread over them): one per core, 2 to
/// 4 (more threads than cores only fight for the GIL: on 2 cores, 4
/// threads halved the rate of 2), unless the environment variable
/// `MYQTT_PY_DISPATCH_THREADS` says otherwise (1..=64).
fn thread_count() -> usize {
    std::env::var("MYQTT_PY_DISPATCH_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(2, std::num::NonZero::get)
                .clamp(2, 4)
        })
}

/// A Python handler and the `data` it is called with.
pub(crate) struct Handler {
    pub(crate) func: Py<PyAny>,
    pub(crate) data: Py<PyAny>,
}

/// A replaceable handler slot.
pub(crate) type Slot = RwLock<Option<Arc<Handler>>>;

/// Reads a slot.
pub(crate) fn get(slot: &Slot) -> Option<Arc<Handler>> {
    slot.read().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Replaces what a slot holds.
pub(crate) fn set(slot: &Slot, handler: Option<Handler>) {
    *slot.write().unwrap_or_else(PoisonError::into_inner) = handler.map(Arc::new);
}

/// The handlers of one context.
#[derive(Default)]
pub(crate) struct Handlers {
    pub(crate) on_publish: Slot,
    pub(crate) on_connect: Slot,
    pub(crate) acl: Slot,
    pub(crate) on_event: Slot,
}

/// An event, owned, on its way to the `on_event` handler.
pub(crate) struct EventJob {
    pub(crate) kind: &'static str,
    pub(crate) client: Option<Arc<ClientInfo>>,
    pub(crate) client_id: ByteStr,
    pub(crate) reason: Option<ReasonCode>,
    pub(crate) topic: Option<String>,
    pub(crate) qos: Option<QoS>,
    pub(crate) payload: Option<Bytes>,
    pub(crate) drop_reason: Option<DropReason>,
    pub(crate) address: Option<String>,
}

/// One call to make on a dispatch thread.
pub(crate) enum Job {
    Connect {
        client: Arc<ClientInfo>,
        password: Option<Bytes>,
        reply: oneshot::Sender<ConnectVerdict>,
    },
    Publish {
        client: Arc<ClientInfo>,
        msg: Message,
        reply: oneshot::Sender<PublishVerdict>,
    },
    /// PUBLISH packets of one connection, decided in order (the batch is
    /// the engine's, shared).
    PublishBatch {
        client: Arc<ClientInfo>,
        msgs: Arc<Vec<Message>>,
        reply: oneshot::Sender<Vec<PublishVerdict>>,
    },
    Acl {
        client: Arc<ClientInfo>,
        access: Access,
        topic: String,
        qos: QoS,
        payload: Option<Bytes>,
        reply: oneshot::Sender<bool>,
    },
    Event(EventJob),
    Timer {
        handler: Arc<TimerHandler>,
        reply: oneshot::Sender<bool>,
    },
}

/// A `new_event` handler with its two user data.
pub(crate) struct TimerHandler {
    pub(crate) func: Py<PyAny>,
    pub(crate) data: Py<PyAny>,
    pub(crate) data2: Py<PyAny>,
}

/// What the hooks and the dispatch threads of one context share.
pub(crate) struct Shared {
    /// A weak reference to the `myqtt.Ctx` handlers are called with.
    pub(crate) ctx_ref: Py<PyAny>,
    pub(crate) handlers: Handlers,
    /// The broker the hooks are installed in (set when they are).
    pub(crate) broker: RwLock<Option<WeakBroker>>,
    shards: Vec<mpsc::Sender<Job>>,
    /// Events not delivered because a dispatch queue was full.
    pub(crate) dropped_events: AtomicU64,
    /// Passwords of connections accepted without an `on_connect` call, for
    /// the `conn` later handlers get (dropped with their connection).
    passwords: Mutex<HashMap<usize, (Weak<ClientInfo>, Bytes)>>,
}

impl Shared {
    /// Starts the dispatch threads of a context whose Python object is
    /// weakly referenced by `ctx_ref`.
    pub(crate) fn start(ctx_ref: Py<PyAny>) -> PyResult<Arc<Self>> {
        let threads = thread_count();
        let mut receivers = Vec::with_capacity(threads);
        let mut shards = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (tx, rx) = mpsc::channel(QUEUE);
            shards.push(tx);
            receivers.push(rx);
        }
        let shared = Arc::new(Self {
            ctx_ref,
            handlers: Handlers::default(),
            broker: RwLock::new(None),
            shards,
            dropped_events: AtomicU64::new(0),
            passwords: Mutex::new(HashMap::new()),
        });
        for (i, rx) in receivers.into_iter().enumerate() {
            let weak = Arc::downgrade(&shared);
            std::thread::Builder::new()
                .name(format!("myqtt-py-dispatch-{i}"))
                .spawn(move || run(&weak, rx))
                .map_err(|e| {
                    crate::errors::MyqttError::new_err(format!(
                        "cannot start a dispatch thread: {e}"
                    ))
                })?;
        }
        Ok(shared)
    }

    /// The broker the hooks act on.
    pub(crate) fn broker(&self) -> Option<WeakBroker> {
        self.broker
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The queue of the thread that serves `key` (a connection).
    pub(crate) fn shard(&self, key: usize) -> &mpsc::Sender<Job> {
        let h = (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        &self.shards[(h as usize) % self.shards.len()]
    }

    /// Remembers the password of a connection no `on_connect` saw.
    pub(crate) fn keep_password(&self, client: &Arc<ClientInfo>, password: &Bytes) {
        let mut map = self
            .passwords
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() >= 64 && map.len().is_power_of_two() {
            map.retain(|_, (w, _)| w.strong_count() > 0);
        }
        map.insert(
            Arc::as_ptr(client) as usize,
            (Arc::downgrade(client), password.clone()),
        );
    }

    /// The password kept for `client`, if any.
    fn password_of(&self, client: &Arc<ClientInfo>) -> Option<Bytes> {
        let map = self
            .passwords
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(&(Arc::as_ptr(client) as usize))
            .filter(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(client)))
            .map(|(_, p)| p.clone())
    }

    /// The queue of `client`'s thread.
    pub(crate) fn shard_of(&self, client: &Arc<ClientInfo>) -> &mpsc::Sender<Job> {
        self.shard(Arc::as_ptr(client) as usize)
    }
}

/// What one dispatch thread keeps between jobs (only touched attached).
struct Local {
    /// `ListenerConn` objects by connection, so the `conn` a handler gets is
    /// the same object for every call about one connection.
    conns: HashMap<usize, Py<ListenerConn>>,
    /// Size of `conns` after its last sweep of ended connections.
    swept_at: usize,
    /// The logger "myqtt".
    logger: Option<Py<PyAny>>,
    /// An asyncio loop for coroutine handlers, made on first use.
    aio_loop: Option<Py<PyAny>>,
    /// `asyncio.events._set_running_loop`, looked up on first use
    /// (importing `asyncio.events` for every call went through importlib's
    /// module locks: half of a coroutine handler's cost).
    set_running_loop: Option<Py<PyAny>>,
}

fn run(shared: &Weak<Shared>, mut rx: mpsc::Receiver<Job>) {
    let mut local = Local {
        conns: HashMap::new(),
        swept_at: 0,
        logger: None,
        aio_loop: None,
        set_running_loop: None,
    };
    // Nothing touches Python before the first job. From then on the thread
    // stays attached to the interpreter, and waits for jobs detached (the
    // GIL released) with its thread state kept: attaching afresh for every
    // batch made Python build and free a thread state and its frame stack
    // (an mmap and a munmap) each time, a third of the dispatch thread's
    // time under load.
    let Some(first) = rx.blocking_recv() else {
        return;
    };
    if !crate::listener::python_alive() {
        return;
    }
    let _ = Python::try_attach(|py| {
        let mut next = Some(first);
        while let Some(first) = next.take() {
            let Some(shared) = shared.upgrade() else {
                break;
            };
            local.run_batch(py, &shared, first, &mut rx);
            // Not kept while waiting: the context's end closes the queue.
            drop(shared);
            next = py.detach(|| wait(&mut rx));
        }
        drop(local);
    });
}

/// The next job, waited for detached from the interpreter; `None` once the
/// queue is closed (the context ended). Once the interpreter is exiting the
/// thread never attaches again (that could block, or end the thread inside
/// Python's finalization): it closes its queue, so the hooks get the safe
/// default, and sleeps until the process ends.
fn wait(rx: &mut mpsc::Receiver<Job>) -> Option<Job> {
    let job = rx.blocking_recv();
    if crate::listener::python_alive() {
        return job;
    }
    rx.close();
    drop(job);
    while rx.try_recv().is_ok() {}
    loop {
        std::thread::park();
    }
}

impl Local {
    /// Runs `first` and the jobs waiting behind it, up to [`BATCH`].
    fn run_batch(
        &mut self,
        py: Python<'_>,
        shared: &Shared,
        first: Job,
        rx: &mut mpsc::Receiver<Job>,
    ) {
        let mut job = first;
        for _ in 1..BATCH {
            self.run_job(py, shared, job);
            match rx.try_recv() {
                Ok(next) => job = next,
                Err(_) => return,
            }
        }
        self.run_job(py, shared, job);
    }

    fn run_job(&mut self, py: Python<'_>, shared: &Shared, job: Job) {
        match job {
            Job::Connect {
                client,
                password,
                reply,
            } => self.connect(py, shared, &client, password, reply),
            Job::Publish { client, msg, reply } => {
                let verdict = self.publish(py, shared, &client, &msg);
                let _ = reply.send(verdict);
            }
            Job::PublishBatch {
                client,
                msgs,
                reply,
            } => {
                let verdicts = self.publish_batch(py, shared, &client, msgs);
                let _ = reply.send(verdicts);
            }
            Job::Acl {
                client,
                access,
                topic,
                qos,
                payload,
                reply,
            } => {
                let ok = self.acl(py, shared, &client, access, &topic, qos, payload.as_ref());
                let _ = reply.send(ok);
            }
            Job::Event(e) => self.event(py, shared, e),
            Job::Timer { handler, reply } => {
                let remove = self.timer(py, shared, &handler);
                let _ = reply.send(remove);
            }
        }
    }

    /// The `ListenerConn` of `client`, made on first use.
    fn conn(
        &mut self,
        py: Python<'_>,
        shared: &Shared,
        client: &Arc<ClientInfo>,
        password: Option<Bytes>,
    ) -> PyResult<Py<ListenerConn>> {
        let key = Arc::as_ptr(client) as usize;
        if let Some(c) = self.conns.get(&key)
            && c.get().is(client)
        {
            return Ok(c.clone_ref(py));
        }
        if self.conns.len() >= 2 * self.swept_at.max(16) {
            self.conns.retain(|_, c| !c.get().is_dead());
            self.swept_at = self.conns.len();
        }
        let password = password.or_else(|| shared.password_of(client));
        let conn = Py::new(
            py,
            ListenerConn::new(
                client,
                password,
                shared.broker(),
                shared.ctx_ref.clone_ref(py),
            ),
        )?;
        self.conns.insert(key, conn.clone_ref(py));
        Ok(conn)
    }

    fn ctx(py: Python<'_>, shared: &Shared) -> Option<Py<PyAny>> {
        let ctx = shared.ctx_ref.bind(py).call0().ok()?;
        (!ctx.is_none()).then(|| ctx.unbind())
    }

    /// Calls `handler(*args)`; a coroutine result is run to completion on
    /// this thread's asyncio loop.
    fn call<'py>(
        &mut self,
        py: Python<'py>,
        func: &Py<PyAny>,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let result = func.bind(py).call1(args)?;
        if result.is_none() || result.is_instance_of::<pyo3::types::PyInt>() {
            return Ok(result);
        }
        if result.hasattr(pyo3::intern!(py, "__await__"))? {
            return self.finish_awaitable(py, result);
        }
        Ok(result)
    }

    /// This thread's asyncio loop, made on first use.
    fn aio_loop(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(l) = &self.aio_loop {
            return Ok(l.clone_ref(py));
        }
        let l = py
            .import("asyncio")?
            .call_method0("new_event_loop")?
            .unbind();
        self.aio_loop = Some(l.clone_ref(py));
        Ok(l)
    }

    /// The value of an awaitable a handler returned. A coroutine is started
    /// here, with this thread's loop as the running loop: if it completes
    /// without suspending, that is its value (no event-loop round); if it
    /// suspends, it is finished under `run_until_complete`. Other
    /// awaitables go to `run_until_complete` directly.
    fn finish_awaitable<'py>(
        &mut self,
        py: Python<'py>,
        awaitable: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let aio = self.aio_loop(py)?;
        let aio = aio.bind(py);
        if !awaitable.hasattr(pyo3::intern!(py, "send"))? {
            return aio.call_method1(pyo3::intern!(py, "run_until_complete"), (awaitable,));
        }
        let set_running = if let Some(f) = &self.set_running_loop {
            f.bind(py).clone()
        } else {
            let f = py
                .import("asyncio.events")?
                .getattr(pyo3::intern!(py, "_set_running_loop"))?;
            self.set_running_loop = Some(f.clone().unbind());
            f
        };
        set_running.call1((aio,))?;
        let step = awaitable.call_method1(pyo3::intern!(py, "send"), (py.None(),));
        set_running.call1((py.None(),))?;
        match step {
            Ok(yielded) => {
                let resume = py
                    .import("myqtt._listener_aio")?
                    .getattr("resume")?
                    .call1((awaitable, yielded))?;
                aio.call_method1(pyo3::intern!(py, "run_until_complete"), (resume,))
            }
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyStopIteration>(py) => {
                e.value(py).getattr(pyo3::intern!(py, "value"))
            }
            Err(e) => Err(e),
        }
    }

    /// Logs a handler's exception under "myqtt", with the answer given.
    fn log_failure(&mut self, py: Python<'_>, what: &str, answer: &str, err: &PyErr) {
        let logger = if let Some(l) = &self.logger {
            l.clone_ref(py)
        } else {
            let Ok(l) = py
                .import("logging")
                .and_then(|m| m.call_method1("getLogger", ("myqtt",)))
            else {
                return;
            };
            let l = l.unbind();
            self.logger = Some(l.clone_ref(py));
            l
        };
        let kwargs = PyDict::new(py);
        let _ = kwargs.set_item("exc_info", err.value(py));
        let logged = logger.bind(py).call_method(
            "error",
            (
                "myqtt: the %s handler raised an exception; answered %s",
                what,
                answer,
            ),
            Some(&kwargs),
        );
        if logged.is_err() {
            err.clone_ref(py).print(py);
        }
    }

    fn connect(
        &mut self,
        py: Python<'_>,
        shared: &Shared,
        client: &Arc<ClientInfo>,
        password: Option<Bytes>,
        reply: oneshot::Sender<ConnectVerdict>,
    ) {
        let refuse = ConnectVerdict::Refuse(ReasonCode::NotAuthorized);
        let Some(h) = crate::dispatch::get(&shared.handlers.on_connect) else {
            let _ = reply.send(ConnectVerdict::Accept);
            return;
        };
        let Some(ctx) = Self::ctx(py, shared) else {
            let _ = reply.send(refuse);
            return;
        };
        let conn = match self.conn(py, shared, client, password) {
            Ok(c) => c,
            Err(e) => {
                self.log_failure(py, "on_connect", "CONNACK_NOT_AUTHORIZED", &e);
                let _ = reply.send(refuse);
                return;
            }
        };
        // Parked before the call, so the handler may answer at once with
        // send_connect_reply and still return CONNACK_DEFERRED.
        conn.get().park_connect_reply(reply);
        let args = PyTuple::new(
            py,
            [ctx, conn.clone_ref(py).into_any(), h.data.clone_ref(py)],
        );
        let answer = args.and_then(|a| self.call(py, &h.func, &a)).and_then(|r| {
            if r.is_none() {
                Ok(0)
            } else {
                r.extract::<i64>()
            }
        });
        match answer {
            Ok(code) => {
                if let Some(verdict) = connect_verdict(code) {
                    conn.get().answer_connect(verdict);
                }
            }
            Err(e) => {
                self.log_failure(py, "on_connect", "CONNACK_NOT_AUTHORIZED", &e);
                conn.get().answer_connect(refuse);
            }
        }
    }

    fn publish(
        &mut self,
        py: Python<'_>,
        shared: &Shared,
        client: &Arc<ClientInfo>,
        msg: &Message,
    ) -> PublishVerdict {
        let Some(h) = get(&shared.handlers.on_publish) else {
            return PublishVerdict::Ok;
        };
        let Some(ctx) = Self::ctx(py, shared) else {
            return PublishVerdict::Discard;
        };
        let result = self.conn(py, shared, client, None).and_then(|conn| {
            let msg = Bound::new(py, ListenerMsg::new(msg))?;
            let args = (ctx.bind(py), conn.bind(py), &msg, h.data.bind(py)).into_pyobject(py)?;
            self.decide(py, &h, &args, &msg)
        });
        result.unwrap_or_else(|e| {
            self.log_failure(py, "on_publish", "PUBLISH_DISCARD", &e);
            PublishVerdict::Discard
        })
    }

    /// The verdicts on PUBLISH packets of one connection, in order: the
    /// handler, the context and the `conn` are looked up once for them
    /// all. After a `PUBLISH_CONN_CLOSE` the handler is not called for the
    /// messages behind it (the engine routes none of them). The batch is
    /// dropped here, before the verdicts are sent (a `msg` the handler kept
    /// gets a copy of its message): the engine then takes the messages
    /// back without copying them.
    fn publish_batch(
        &mut self,
        py: Python<'_>,
        shared: &Shared,
        client: &Arc<ClientInfo>,
        msgs: Arc<Vec<Message>>,
    ) -> Vec<PublishVerdict> {
        let n = msgs.len();
        let Some(h) = get(&shared.handlers.on_publish) else {
            return vec![PublishVerdict::Ok; n];
        };
        let Some(ctx) = Self::ctx(py, shared) else {
            return vec![PublishVerdict::Discard; n];
        };
        let conn = match self.conn(py, shared, client, None) {
            Ok(c) => c,
            Err(e) => {
                self.log_failure(py, "on_publish", "PUBLISH_DISCARD", &e);
                return vec![PublishVerdict::Discard; n];
            }
        };
        let mut verdicts = Vec::with_capacity(n);
        // The `msg` of the previous message and the argument tuple that
        // holds it, when nothing but this loop holds either (the handler
        // kept neither): the next message reuses both, pointed at the next
        // message (no allocation, and the same tuple since its items are the
        // same objects).
        let mut spare: Option<(Bound<'_, ListenerMsg>, Bound<'_, PyTuple>)> = None;
        for i in 0..n {
            let reused = spare
                .take()
                .filter(|(m, _)| m.try_borrow_mut().is_ok_and(|mut r| r.point_at(&msgs, i)));
            let call = match reused {
                Some(pair) => Ok(pair),
                None => ListenerMsg::in_batch(&msgs, i)
                    .ok_or_else(|| pyo3::exceptions::PyIndexError::new_err("past the batch"))
                    .and_then(|m| Bound::new(py, m))
                    .and_then(|m| {
                        // Filled directly (no iterator, no per-item checks).
                        let args =
                            (ctx.bind(py), conn.bind(py), &m, h.data.bind(py)).into_pyobject(py)?;
                        Ok((m, args))
                    }),
            };
            let verdict = call
                .and_then(|(m, args)| {
                    let v = self.decide(py, &h, &args, &m);
                    // Ours and the tuple's references only.
                    if refcount(args.as_any()) == 1 && refcount(m.as_any()) == 2 {
                        spare = Some((m, args));
                    } else if let Ok(mut kept) = m.try_borrow_mut() {
                        // Kept by the handler: its own copy of its message.
                        kept.detach();
                    }
                    v
                })
                .unwrap_or_else(|e| {
                    self.log_failure(py, "on_publish", "PUBLISH_DISCARD", &e);
                    PublishVerdict::Discard
                });
            let close = verdict == PublishVerdict::CloseConnection;
            verdicts.push(verdict);
            if close {
                break;
            }
        }
        drop(spare);
        drop(msgs);
        verdicts
    }

    /// Calls the `on_publish` handler with `args` (ctx, conn, `pymsg`,
    /// data) about the message `pymsg` holds.
    fn decide(
        &mut self,
        py: Python<'_>,
        h: &Handler,
        args: &Bound<'_, PyTuple>,
        pymsg: &Bound<'_, ListenerMsg>,
    ) -> PyResult<PublishVerdict> {
        let r = self.call(py, &h.func, args)?;
        let code = if r.is_none() { 1 } else { r.extract::<i64>()? };
        match code {
            1 => Ok(match pymsg.borrow().rewrite() {
                None => PublishVerdict::Ok,
                Some(m) => PublishVerdict::Rewrite(Box::new(m)),
            }),
            2 => Ok(PublishVerdict::Discard),
            3 => Ok(PublishVerdict::CloseConnection),
            other => Err(pyo3::exceptions::PyValueError::new_err(format!(
                "on_publish returned {other}: expected PUBLISH_OK, PUBLISH_DISCARD or PUBLISH_CONN_CLOSE"
            ))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn acl(
        &mut self,
        py: Python<'_>,
        shared: &Shared,
        client: &Arc<ClientInfo>,
        access: Access,
        topic: &str,
        qos: QoS,
        payload: Option<&Bytes>,
    ) -> bool {
        let Some(h) = get(&shared.handlers.acl) else {
            return true;
        };
        let Some(ctx) = Self::ctx(py, shared) else {
            return false;
        };
        let result = (|| -> PyResult<bool> {
            let conn = self.conn(py, shared, client, None)?;
            let access = crate::listener::access_code(access);
            let payload = payload.map(|p| PyBytes::new(py, p));
            let args = (
                ctx,
                conn,
                access,
                topic,
                qos.as_u8(),
                payload,
                h.data.clone_ref(py),
            )
                .into_pyobject(py)?;
            self.call(py, &h.func, &args)?.is_truthy()
        })();
        result.unwrap_or_else(|e| {
            self.log_failure(py, "acl_check", "denied", &e);
            false
        })
    }

    fn event(&mut self, py: Python<'_>, shared: &Shared, e: EventJob) {
        let Some(h) = get(&shared.handlers.on_event) else {
            return;
        };
        let Some(ctx) = Self::ctx(py, shared) else {
            return;
        };
        let result = (|| -> PyResult<()> {
            let conn = match &e.client {
                Some(c) => Some(self.conn(py, shared, c, None)?),
                None => None,
            };
            let event = ListenerEvent {
                kind: e.kind,
                conn,
                client_id: e.client_id.to_string(),
                reason: e.reason.map(ReasonCode::as_u8),
                topic: e.topic,
                qos: e.qos.map(QoS::as_u8),
                payload: e.payload.map(|p| PyBytes::new(py, &p).unbind()),
                drop_reason: e.drop_reason.map(drop_reason_name),
                address: e.address,
            };
            let args = (ctx, Py::new(py, event)?, h.data.clone_ref(py)).into_pyobject(py)?;
            self.call(py, &h.func, &args)?;
            Ok(())
        })();
        if let Err(err) = result {
            self.log_failure(py, "on_event", "nothing", &err);
        }
    }

    fn timer(&mut self, py: Python<'_>, shared: &Shared, h: &TimerHandler) -> bool {
        let Some(ctx) = Self::ctx(py, shared) else {
            return true;
        };
        let args = (ctx, h.data.clone_ref(py), h.data2.clone_ref(py)).into_pyobject(py);
        match args.and_then(|a| self.call(py, &h.func, &a)) {
            Ok(r) => r.is_truthy().unwrap_or(false),
            Err(e) => {
                self.log_failure(py, "event", "kept", &e);
                false
            }
        }
    }
}

/// The reference count of `obj`: an object whose references are all
/// known to the caller can be seen by nothing else (the handler, a
/// traceback, another thread), so it may be reused.
#[allow(deprecated)] // pyo3 0.29 deprecated it for `ffi::Py_REFCNT`, which is `unsafe`
fn refcount(obj: &Bound<'_, PyAny>) -> isize {
    obj.get_refcnt()
}

/// The name of a drop reason, as events give it.
fn drop_reason_name(r: DropReason) -> &'static str {
    match r {
        DropReason::QueueFull => "queue_full",
        DropReason::Expired => "expired",
        DropReason::TooLarge => "too_large",
        DropReason::Denied => "denied",
        DropReason::SessionEnded => "session_ended",
    }
}
