//! `myqtt.AsyncQueue`: PyMyQtt's thread-safe queue (`push`, `pop`,
//! `timedpop`), whose waits release the GIL.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;

use crate::wait::wait_until;

/// A thread-safe FIFO queue of Python objects.
#[pyclass(module = "myqtt", frozen)]
#[derive(Default)]
pub(crate) struct AsyncQueue {
    items: Mutex<VecDeque<Py<PyAny>>>,
    ready: Condvar,
}

impl AsyncQueue {
    fn pop_within(&self, slice: Duration) -> Option<Py<PyAny>> {
        let guard = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut guard, _) = self
            .ready
            .wait_timeout_while(guard, slice, |q| q.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        guard.pop_front()
    }
}

#[pymethods]
impl AsyncQueue {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Appends `item` and wakes one waiting `pop`.
    fn push(&self, item: Py<PyAny>) {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(item);
        self.ready.notify_one();
    }

    /// Removes and returns the oldest item, waiting as long as it takes.
    fn pop(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        loop {
            if let Some(item) = wait_until(py, None, |slice| self.pop_within(slice))? {
                return Ok(item);
            }
        }
    }

    /// Like `pop`, but waits at most `microseconds` (PyMyQtt's unit) and
    /// returns `None` when nothing came.
    fn timedpop(&self, py: Python<'_>, microseconds: u64) -> PyResult<Option<Py<PyAny>>> {
        wait_until(py, Some(Duration::from_micros(microseconds)), |slice| {
            self.pop_within(slice)
        })
    }

    /// Number of queued items.
    #[getter]
    fn items(&self) -> usize {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn __len__(&self) -> usize {
        self.items()
    }
}
