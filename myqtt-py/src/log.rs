//! Rust `tracing` output to Python `logging`, under the logger `myqtt`.
//!
//! The module installs [`PyLogSubscriber`] as the process's tracing
//! subscriber when it is imported. It never attaches to the interpreter:
//! an event is formatted on the thread that emits it (a tokio worker, a
//! callback thread) and pushed into a bounded channel; when the channel is
//! full the record is dropped and counted. A Python thread started by
//! `myqtt/_logging.py` drains the channel ([`_log_drain`]) and hands the
//! records to `logging`.
//!
//! Levels: error, warn, info, debug and trace become `logging.ERROR`,
//! `WARNING`, `INFO`, `DEBUG` and 5 (named `TRACE`). Only events at or
//! above the effective level of the `myqtt` logger are formatted at all
//! ([`_log_set_level`], kept in step by the Python thread). Spans are
//! recorded under the same rule, and an event names the spans it happened
//! in (`mqtt_client{client_id=.. peer=..}: connected`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError, mpsc};
use std::time::Duration;

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use crate::wait::wait_until;

/// Records waiting for the Python thread; beyond this they are dropped.
const CHANNEL_CAPACITY: usize = 8192;

/// Python's level for tracing's TRACE.
const PY_TRACE: u8 = 5;

/// The most verbose tracing level let through: 0 off, 1 error .. 5 trace.
/// Starts at warn, Python's default.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(2);

/// Records dropped because the channel was full.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// One record for Python: (level, logger name, message, file, line).
type LogRecord = (u8, String, String, Option<&'static str>, Option<u32>);

struct Channel {
    tx: mpsc::SyncSender<LogRecord>,
    /// Taken by the one Python thread that drains; a std mutex held while
    /// it waits (with the interpreter detached).
    rx: Mutex<mpsc::Receiver<LogRecord>>,
}

static CHANNEL: OnceLock<Channel> = OnceLock::new();

fn channel() -> &'static Channel {
    CHANNEL.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
        Channel {
            tx,
            rx: Mutex::new(rx),
        }
    })
}

const fn rank(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

const fn py_level(level: Level) -> u8 {
    match level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => PY_TRACE,
    }
}

/// The Python logger for a tracing target: `myqtt_core::client::driver`
/// logs to `myqtt.client.driver`, this crate to `myqtt.py.*`, anything
/// else to `myqtt.<target>`.
fn logger_name(target: &str) -> String {
    let rest = target
        .strip_prefix("myqtt_core")
        .map(|r| r.strip_prefix("::").unwrap_or(r).to_owned())
        .or_else(|| {
            target
                .strip_prefix("_myqtt")
                .map(|r| format!("py{}", r.replace("::", ".")))
        })
        .unwrap_or_else(|| target.to_owned());
    let rest = rest.replace("::", ".");
    if rest.is_empty() {
        "myqtt".to_owned()
    } else {
        format!("myqtt.{rest}")
    }
}

/// Formats fields as `message k=v k2=v2`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

struct SpanData {
    name: &'static str,
    fields: String,
    parent: Option<u64>,
    refs: usize,
}

/// Spans by id, in shards so that threads creating spans rarely contend.
struct Spans {
    shards: [Mutex<HashMap<u64, SpanData>>; 16],
}

impl Spans {
    fn shard(&self, id: u64) -> std::sync::MutexGuard<'_, HashMap<u64, SpanData>> {
        // The index is below 16: the cast cannot truncate.
        self.shards[(id % 16) as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

thread_local! {
    /// The spans this thread is in, innermost last.
    static STACK: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// The tracing subscriber that forwards to Python logging.
struct PyLogSubscriber {
    spans: Spans,
    next_id: AtomicU64,
}

impl PyLogSubscriber {
    fn new() -> Self {
        Self {
            spans: Spans {
                shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            },
            next_id: AtomicU64::new(1),
        }
    }

    fn current() -> Option<u64> {
        STACK.with(|s| s.borrow().last().copied())
    }

    /// `outer{a=1}:inner{b=2}: ` for the spans around an event.
    fn context(&self, mut span: Option<u64>) -> String {
        let mut chain = Vec::new();
        while let Some(id) = span {
            let shard = self.spans.shard(id);
            let Some(data) = shard.get(&id) else { break };
            chain.push(format!("{}{{{}}}", data.name, data.fields.trim_start()));
            span = data.parent;
            if chain.len() > 32 {
                break;
            }
        }
        if chain.is_empty() {
            return String::new();
        }
        chain.reverse();
        format!("{}: ", chain.join(":"))
    }
}

impl Subscriber for PyLogSubscriber {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The level can change at any time: ask `enabled` every time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        rank(*metadata.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let parent = if attrs.is_contextual() {
            Self::current()
        } else {
            attrs.parent().map(Id::into_u64)
        };
        self.spans.shard(id).insert(
            id,
            SpanData {
                name: attrs.metadata().name(),
                fields: format!("{}{}", fields.message, fields.rest),
                parent,
                refs: 1,
            },
        );
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(data) = self.spans.shard(span.into_u64()).get_mut(&span.into_u64()) {
            data.fields.push_str(&fields.rest);
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let span = if event.is_contextual() {
            Self::current()
        } else {
            event.parent().map(Id::into_u64)
        };
        let message = format!("{}{}{}", self.context(span), fields.message, fields.rest);
        let record = (
            py_level(*meta.level()),
            logger_name(meta.target()),
            message,
            meta.file(),
            meta.line(),
        );
        if channel().tx.try_send(record).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn enter(&self, span: &Id) {
        STACK.with(|s| s.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        STACK.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(pos) = s.iter().rposition(|&x| x == span.into_u64()) {
                s.remove(pos);
            }
        });
    }

    fn clone_span(&self, id: &Id) -> Id {
        if let Some(data) = self.spans.shard(id.into_u64()).get_mut(&id.into_u64()) {
            data.refs += 1;
        }
        id.clone()
    }

    fn try_close(&self, id: Id) -> bool {
        let key = id.into_u64();
        let mut shard = self.spans.shard(key);
        let Some(data) = shard.get_mut(&key) else {
            return false;
        };
        data.refs = data.refs.saturating_sub(1);
        if data.refs == 0 {
            shard.remove(&key);
            return true;
        }
        false
    }
}

/// Installs the subscriber for the whole process; false if another
/// subscriber was installed first (then nothing reaches Python logging).
pub(crate) fn install() -> bool {
    channel();
    tracing::subscriber::set_global_default(PyLogSubscriber::new()).is_ok()
}

/// Takes the waiting log records, waiting up to `timeout_ms` for the first:
/// a list of `(level, logger_name, message, file, line)`. Called by the
/// module's log thread; the wait releases the GIL.
#[pyfunction]
pub(crate) fn _log_drain(py: Python<'_>, timeout_ms: u64) -> PyResult<Vec<LogRecord>> {
    let rx = &channel().rx;
    let first = wait_until(py, Some(Duration::from_millis(timeout_ms)), |slice| {
        rx.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv_timeout(slice)
            .ok()
    })?;
    let Some(first) = first else {
        return Ok(Vec::new());
    };
    let mut records = vec![first];
    records.extend(
        rx.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_iter()
            .take(CHANNEL_CAPACITY),
    );
    Ok(records)
}

/// Sets which records are formatted and sent, from a Python logging level
/// (the effective level of the `myqtt` logger).
#[pyfunction]
pub(crate) fn _log_set_level(level: i32) {
    let max = match level {
        i32::MIN..=5 => 5,
        6..=10 => 4,
        11..=20 => 3,
        21..=30 => 2,
        31..=40 => 1,
        _ => 0,
    };
    MAX_LEVEL.store(max, Ordering::Relaxed);
}

/// Log records dropped so far because Python did not take them in time.
#[pyfunction]
pub(crate) fn _log_dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Logs a Python exception raised by a handler to the `myqtt` logger with
/// its traceback; if logging itself fails, the exception goes to
/// `sys.unraisablehook`.
pub(crate) fn log_exception(py: Python<'_>, context: &str, err: &PyErr) {
    let logged = (|| -> PyResult<()> {
        let logger = py
            .import("logging")?
            .call_method1("getLogger", ("myqtt",))?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("exc_info", err.value(py))?;
        logger.call_method("error", ("%s", context), Some(&kwargs))?;
        Ok(())
    })();
    if logged.is_err() {
        err.clone_ref(py).write_unraisable(py, None);
    }
}
