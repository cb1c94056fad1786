//! [`Pending`]: the result of an operation the connection task completes
//! later, waitable from async code (`.await`) and from any thread with a
//! timeout ([`Pending::wait`]); and [`Resolver`], the task's end of it.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::error::{ClientError, CloseReason};

struct SlotState<T> {
    result: Option<Result<T, ClientError>>,
    wakers: Vec<Waker>,
}

/// The shared cell: a std mutex is fine, it is held only to store or clone
/// the result, never across an await or a wait.
struct Slot<T> {
    state: Mutex<SlotState<T>>,
    done: Condvar,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, SlotState<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Creates a connected [`Resolver`] / [`Pending`] pair.
pub(crate) fn pair<T>() -> (Resolver<T>, Pending<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(SlotState {
            result: None,
            wakers: Vec::new(),
        }),
        done: Condvar::new(),
    });
    (
        Resolver {
            slot: Some(Arc::clone(&slot)),
        },
        Pending { slot },
    )
}

/// The connection task's end: completes the [`Pending`] once.
///
/// Dropping an unresolved resolver resolves it with
/// [`ClientError::Closed`], so a waiter can never hang because the task
/// went away (runtime shut down, task ended).
pub(crate) struct Resolver<T> {
    slot: Option<Arc<Slot<T>>>,
}

impl<T> Resolver<T> {
    /// Completes the operation; later calls do nothing.
    pub(crate) fn resolve(mut self, result: Result<T, ClientError>) {
        self.complete(result);
    }

    fn complete(&mut self, result: Result<T, ClientError>) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let wakers = {
            let mut state = slot.lock();
            if state.result.is_none() {
                state.result = Some(result);
            }
            std::mem::take(&mut state.wakers)
        };
        slot.done.notify_all();
        for w in wakers {
            w.wake();
        }
    }
}

impl<T> Drop for Resolver<T> {
    fn drop(&mut self) {
        if self.slot.is_some() {
            self.complete(Err(ClientError::Closed(CloseReason::Dropped)));
        }
    }
}

impl<T> std::fmt::Debug for Resolver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

/// The result of an operation that completes later: a SUBACK, a PINGRESP,
/// a flushed DISCONNECT.
///
/// Wait for it with `.await` from async code or with [`Pending::wait`]
/// from any thread (blocking, with a timeout); both can be repeated and
/// several waiters may wait at once. It always completes: with the answer,
/// or with an error when the connection is lost or closed.
///
/// Blocking waits must not be made on a tokio worker thread.
pub struct Pending<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Clone for Pending<T> {
    fn clone(&self) -> Self {
        Self {
            slot: Arc::clone(&self.slot),
        }
    }
}

impl<T> std::fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("done", &self.slot.lock().result.is_some())
            .finish()
    }
}

impl<T: Clone> Pending<T> {
    /// A pending result that is already complete.
    pub(crate) fn ready(result: Result<T, ClientError>) -> Self {
        let (resolver, pending) = pair();
        resolver.resolve(result);
        pending
    }

    /// True once the operation has completed.
    pub fn is_done(&self) -> bool {
        self.slot.lock().result.is_some()
    }

    /// The result if the operation has completed, without waiting.
    pub fn try_result(&self) -> Option<Result<T, ClientError>> {
        self.slot.lock().result.clone()
    }

    /// Blocks this thread until the operation completes or `timeout`
    /// passes; [`ClientError::Timeout`] then (the operation goes on and can
    /// be waited on again).
    pub fn wait(&self, timeout: Duration) -> Result<T, ClientError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.slot.lock();
        loop {
            if let Some(r) = &state.result {
                return r.clone();
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Err(ClientError::Timeout);
            }
            state = self
                .slot
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits asynchronously for at most `timeout`.
    pub async fn wait_async(&self, timeout: Duration) -> Result<T, ClientError> {
        match tokio::time::timeout(timeout, self.clone()).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout),
        }
    }
}

impl<T> Pending<T> {
    /// Another handle on the same result.
    pub(crate) fn share(&self) -> Self {
        Self {
            slot: Arc::clone(&self.slot),
        }
    }
}

impl<T: Clone> Future for Pending<T> {
    type Output = Result<T, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.lock();
        if let Some(r) = &state.result {
            return Poll::Ready(r.clone());
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Lets `&pending` be awaited without giving the handle up.
impl<T: Clone> IntoFuture for &Pending<T> {
    type Output = Result<T, ClientError>;
    type IntoFuture = Pending<T>;

    fn into_future(self) -> Pending<T> {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_resolver_completes_its_pending_with_an_error() {
        let (resolver, pending) = pair::<u8>();
        drop(resolver);
        assert!(matches!(
            pending.wait(Duration::from_secs(1)),
            Err(ClientError::Closed(CloseReason::Dropped))
        ));
    }

    #[test]
    fn a_wait_times_out_and_can_be_repeated() {
        let (resolver, pending) = pair::<u8>();
        assert!(matches!(
            pending.wait(Duration::from_millis(10)),
            Err(ClientError::Timeout)
        ));
        resolver.resolve(Ok(7));
        assert_eq!(pending.wait(Duration::ZERO).ok(), Some(7));
        assert_eq!(pending.wait(Duration::ZERO).ok(), Some(7));
    }

    #[test]
    fn another_thread_is_woken_by_the_resolution() {
        let (resolver, pending) = pair::<u8>();
        let waiter = std::thread::spawn(move || pending.wait(Duration::from_secs(10)));
        resolver.resolve(Ok(3));
        assert_eq!(waiter.join().ok().and_then(Result::ok), Some(3));
    }

    #[test]
    fn an_async_waiter_is_woken_by_the_resolution() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (resolver, pending) = pair::<u8>();
        let t = std::thread::spawn(move || resolver.resolve(Ok(5)));
        assert_eq!(rt.block_on(pending.clone()).ok(), Some(5));
        t.join().unwrap();
    }
}
