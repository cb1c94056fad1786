//! `myqtt.Ctx`: the context, owning the engine's runtime.

use std::sync::{Mutex, PoisonError};

use pyo3::prelude::*;

use crate::errors;

/// PyMyQtt's context: create it, `init()` it, create connections and
/// listeners from it, and `exit()` it (or let it be collected).
#[pyclass(module = "myqtt", frozen)]
#[derive(Default)]
pub(crate) struct Ctx {
    /// `None` before `init()` and after `exit()`. Held only to clone or take
    /// the engine context, never while waiting.
    engine: Mutex<Option<myqtt_core::Ctx>>,
}

impl Ctx {
    /// The engine context, or an error if `init()` was not called.
    #[allow(dead_code)] // used by Conn and listeners as they arrive
    pub(crate) fn engine(&self) -> PyResult<myqtt_core::Ctx> {
        self.engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                errors::MyqttError::new_err("the context is not initialised: call ctx.init()")
            })
    }
}

#[pymethods]
impl Ctx {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Starts the context. Returns True on success (PyMyQtt's contract);
    /// calling it again on a started context is harmless.
    fn init(&self) -> PyResult<bool> {
        let mut engine = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
        if engine.is_none() {
            *engine = Some(myqtt_core::Ctx::new().map_err(|e| errors::ctx_error(&e))?);
        }
        Ok(true)
    }

    /// Stops every listener and connection made from this context.
    fn exit(&self, py: Python<'_>) {
        let engine = self
            .engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(engine) = engine {
            py.detach(|| engine.exit());
        }
    }

    /// PyMyQtt's log handler: `handler(ctx, file, line, level, message,
    /// data)` is called for every engine log record at debug level and
    /// above, on the module's log thread; `level` is `myqtt.level_debug`,
    /// `level_warning` or `level_critical`. None removes it. The records
    /// still reach Python `logging` (logger `myqtt`) as well.
    #[pyo3(signature = (handler, data=None))]
    fn set_log_handler(
        slf: &Bound<'_, Self>,
        handler: Option<Py<PyAny>>,
        data: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        slf.py()
            .import("myqtt._logging")?
            .call_method1("_set_ctx_handler", (slf, handler, data))?;
        Ok(())
    }

    /// True between `init()` and `exit()`.
    #[getter]
    fn is_initialized(&self) -> bool {
        self.engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}
