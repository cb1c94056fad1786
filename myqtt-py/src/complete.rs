//! Hands the results of asynchronous operations to Python callbacks, off the
//! tokio workers.
//!
//! An `*_async` method spawns a small task on the context's runtime that
//! awaits the engine's result; the task never touches Python. It sends the
//! result to one completion thread, which attaches to the interpreter and
//! calls the callback `callback(exc, value)`; `myqtt.aio` resolves an
//! asyncio future from there with `loop.call_soon_threadsafe`, so the event
//! loop never blocks and no `add_reader` is needed. The thread runs every
//! job waiting under one attachment.
//!
//! A callback is always called once: if the task is dropped before the
//! result comes (the context exited), it is called with
//! `ConnectionLostError`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock, PoisonError};

use myqtt_core::client::ClientError;
use myqtt_core::codec::ProtocolVersion;
use pyo3::prelude::*;

use crate::errors;

/// One call to make with the interpreter attached.
type Job = Box<dyn FnOnce(Python<'_>) + Send>;

/// Set at interpreter exit (from an `atexit` hook): no thread of the module
/// attaches to the interpreter any more.
static EXITING: AtomicBool = AtomicBool::new(false);

/// The completion thread's queue. A std mutex around the sender: held only
/// to send.
static JOBS: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

/// True until the interpreter starts exiting.
pub(crate) fn python_alive() -> bool {
    !EXITING.load(Ordering::Acquire)
}

/// Runs `f` attached to the interpreter, unless it is exiting (then `f` is
/// not run).
pub(crate) fn with_python<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
    if !python_alive() {
        return None;
    }
    Python::try_attach(f)
}

/// Tells the module the interpreter is exiting (`atexit`): callbacks and
/// log records are no longer delivered.
#[pyfunction]
pub(crate) fn _interpreter_exiting() {
    EXITING.store(true, Ordering::Release);
}

fn submit(job: Job) {
    let sender = JOBS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("myqtt-completions".into())
            .spawn(move || run(&rx));
        if let Err(e) = spawned {
            tracing::error!("cannot start the completion thread: {e}");
        }
        Mutex::new(tx)
    });
    // A send fails only if the thread could not start; the job (and the
    // callback it holds) is dropped then.
    let _ = sender
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send(job);
}

fn run(rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        with_python(|py| {
            for job in batch {
                job(py);
            }
        });
    }
}

/// Turns an engine result into the value handed to the callback.
pub(crate) type Convert<T> = Box<dyn FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send>;

/// The callback of one asynchronous operation; calls it with an error if
/// dropped before it was called.
struct Callback {
    callback: Option<Py<PyAny>>,
    protocol: ProtocolVersion,
}

impl Callback {
    fn deliver<T: Send + 'static>(mut self, result: Result<T, ClientError>, convert: Convert<T>) {
        let Some(callback) = self.callback.take() else {
            return;
        };
        let protocol = self.protocol;
        submit(Box::new(move |py| {
            let outcome = match result {
                Ok(v) => convert(py, v),
                Err(e) => Err(errors::client_error(py, &e, protocol)),
            };
            call(py, &callback, outcome);
        }));
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        if let Some(callback) = self.callback.take() {
            submit(Box::new(move |py| {
                let e = errors::ConnectionLostError::new_err(
                    "the operation was abandoned: the context exited",
                );
                call(py, &callback, Err(e));
            }));
        }
    }
}

/// Calls `callback(exc, value)`; an exception from it is logged.
fn call(py: Python<'_>, callback: &Py<PyAny>, outcome: PyResult<Py<PyAny>>) {
    let args = match outcome {
        Ok(v) => (py.None(), v),
        Err(e) => (e.into_value(py).into_any(), py.None()),
    };
    if let Err(e) = callback.call1(py, args) {
        crate::log::log_exception(py, "a completion callback raised", &e);
    }
}

/// Spawns `fut` on `ctx`'s runtime; its result goes to
/// `callback(exc, value)` on the completion thread, converted by `convert`.
pub(crate) fn spawn<T, F>(
    ctx: &myqtt_core::Ctx,
    protocol: ProtocolVersion,
    fut: F,
    callback: Py<PyAny>,
    convert: Convert<T>,
) where
    T: Send + 'static,
    F: Future<Output = Result<T, ClientError>> + Send + 'static,
{
    let cb = Callback {
        callback: Some(callback),
        protocol,
    };
    // Design: if the runtime is gone the future is dropped unpolled, and
    // `Callback`'s drop still calls back.
    drop(ctx.spawn(async move {
        let result = fut.await;
        cb.deliver(result, convert);
    }));
}

/// Calls `callback(exc, value)` on the completion thread with a result that
/// is already known.
pub(crate) fn ready<T: Send + 'static>(
    protocol: ProtocolVersion,
    result: Result<T, ClientError>,
    callback: Py<PyAny>,
    convert: Convert<T>,
) {
    Callback {
        callback: Some(callback),
        protocol,
    }
    .deliver(result, convert);
}
