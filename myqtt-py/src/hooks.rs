//! The engine hooks behind the Python handlers. They run on the engine's
//! tokio workers and never touch Python: each decision is sent to a
//! dispatch thread (`dispatch.rs`) and answered through `Reply::Later`.
//! With no handler set, a hook answers at once (`Reply::Ready`).
//!
//! Three hooks, each installed the first time its kind of handler is set,
//! because the events and delivery checks a hook gets are fixed when it is
//! installed: [`PyHook`] (on_connect, on_publish), [`AclHook`] (subscribe,
//! publish and delivery checks) and [`EventHook`] (events).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use myqtt_core::broker::WeakBroker;
use myqtt_core::broker::hooks::{
    AclRequest, ConnectRequest, ConnectVerdict, Event, Hook, HookError, Interests, Message,
    PublishVerdict, Reply,
};
use tokio::sync::{mpsc, oneshot};

use crate::dispatch::{EventJob, Job, Shared, get};

/// Sends `job` to its dispatch thread and answers with what comes back:
/// without waiting when the queue has room, else waiting for room (this
/// connection only).
fn ask<T: Send + 'static>(
    queue: &mpsc::Sender<Job>,
    job: Job,
    rx: oneshot::Receiver<T>,
) -> Reply<T> {
    let job = match queue.try_send(job) {
        Ok(()) => {
            return Reply::later(async move {
                rx.await
                    .map_err(|_| HookError("the Python handler gave no answer".into()))
            });
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return Reply::later(async { Err(HookError("the dispatch threads are gone".into())) });
        }
        Err(mpsc::error::TrySendError::Full(job)) => job,
    };
    let queue = queue.clone();
    Reply::later(async move {
        queue
            .send(job)
            .await
            .map_err(|_| HookError("the dispatch threads are gone".into()))?;
        rx.await
            .map_err(|_| HookError("the Python handler gave no answer".into()))
    })
}

/// `on_connect` and `on_publish`.
pub(crate) struct PyHook(pub(crate) Arc<Shared>);

impl Hook for PyHook {
    fn installed(&self, broker: &WeakBroker) {
        crate::listener::remember_broker(&self.0, broker);
    }

    fn on_connect(&self, req: &ConnectRequest<'_>) -> Reply<ConnectVerdict> {
        if get(&self.0.handlers.on_connect).is_none() {
            if let Some(p) = req.password {
                self.0.keep_password(req.client, p);
            }
            return Reply::Ready(ConnectVerdict::Accept);
        }
        let (reply, rx) = oneshot::channel();
        let job = Job::Connect {
            client: Arc::clone(req.client),
            password: req.password.cloned(),
            reply,
        };
        ask(self.0.shard_of(req.client), job, rx)
    }

    fn on_publish(
        &self,
        client: &Arc<myqtt_core::broker::hooks::ClientInfo>,
        msg: &Message,
    ) -> Reply<PublishVerdict> {
        if get(&self.0.handlers.on_publish).is_none() {
            return Reply::Ready(PublishVerdict::Ok);
        }
        let (reply, rx) = oneshot::channel();
        let job = Job::Publish {
            client: Arc::clone(client),
            msg: msg.clone(),
            reply,
        };
        ask(self.0.shard_of(client), job, rx)
    }

    /// The PUBLISH packets the engine read together: one job, run by the
    /// dispatch thread under one attachment to the interpreter. The batch
    /// is shared with the job, not copied; the dispatch thread drops its
    /// share before it answers, so the engine gets the messages back
    /// without a copy.
    fn on_publish_batch(
        &self,
        client: &Arc<myqtt_core::broker::hooks::ClientInfo>,
        msgs: &Arc<Vec<Message>>,
    ) -> Reply<Vec<PublishVerdict>> {
        if get(&self.0.handlers.on_publish).is_none() {
            return Reply::Ready(vec![PublishVerdict::Ok; msgs.len()]);
        }
        let (reply, rx) = oneshot::channel();
        let job = Job::PublishBatch {
            client: Arc::clone(client),
            msgs: Arc::clone(msgs),
            reply,
        };
        ask(self.0.shard_of(client), job, rx)
    }
}

/// The ACL handler: subscribe, publish and delivery checks.
pub(crate) struct AclHook(pub(crate) Arc<Shared>);

impl Hook for AclHook {
    fn installed(&self, broker: &WeakBroker) {
        crate::listener::remember_broker(&self.0, broker);
    }

    fn acl_check(&self, req: &AclRequest<'_>) -> Reply<bool> {
        if get(&self.0.handlers.acl).is_none() {
            return Reply::Ready(true);
        }
        let (reply, rx) = oneshot::channel();
        let job = Job::Acl {
            client: Arc::clone(req.client),
            access: req.access,
            topic: req.topic.to_owned(),
            qos: req.qos,
            payload: req.payload.cloned(),
            reply,
        };
        ask(self.0.shard_of(req.client), job, rx)
    }

    fn interests(&self) -> Interests {
        Interests {
            deliver_acl: true,
            ..Interests::default()
        }
    }
}

/// The event handler: lifecycle and message events, never waited for. An
/// event that finds its dispatch queue full is dropped and counted.
pub(crate) struct EventHook(pub(crate) Arc<Shared>);

impl EventHook {
    fn job(event: &Event<'_>) -> Option<EventJob> {
        let mut e = EventJob {
            kind: "",
            client: None,
            client_id: myqtt_core::ByteStr::from(""),
            reason: None,
            topic: None,
            qos: None,
            payload: None,
            drop_reason: None,
            address: None,
        };
        match event {
            Event::ListenerStarted(a) => {
                e.kind = "listener_started";
                e.address = Some(a.to_string());
            }
            Event::ListenerStopping(a) => {
                e.kind = "listener_stopping";
                e.address = Some(a.to_string());
            }
            Event::Connected(c) => {
                e.kind = "connected";
                e.client = Some(Arc::clone(c));
            }
            Event::Disconnected(c, r) => {
                e.kind = "disconnected";
                e.client = Some(Arc::clone(c));
                e.reason = Some(*r);
            }
            Event::Subscribed(client, filter, options, code) => {
                e.kind = "subscribed";
                e.client = Some(Arc::clone(client));
                e.topic = Some(filter.as_str().to_owned());
                e.qos = Some(options.qos);
                e.reason = Some(*code);
            }
            Event::Unsubscribed(c, f) => {
                e.kind = "unsubscribed";
                e.client = Some(Arc::clone(c));
                e.topic = Some(f.as_str().to_owned());
            }
            Event::Delivered(c, m) => {
                e.kind = "delivered";
                e.client = Some(Arc::clone(c));
                e.topic = Some(m.topic.as_str().to_owned());
                e.qos = Some(m.qos);
                e.payload = Some(m.payload.clone());
            }
            Event::Dropped(id, m, why) => {
                e.kind = "dropped";
                e.client_id = (*id).clone();
                e.topic = Some(m.topic.as_str().to_owned());
                e.qos = Some(m.qos);
                e.payload = Some(m.payload.clone());
                e.drop_reason = Some(*why);
            }
            _ => return None,
        }
        if let Some(c) = &e.client {
            e.client_id = c.client_id.clone();
        }
        Some(e)
    }
}

impl Hook for EventHook {
    fn installed(&self, broker: &WeakBroker) {
        crate::listener::remember_broker(&self.0, broker);
    }

    fn interests(&self) -> Interests {
        Interests {
            lifecycle: true,
            messages: true,
            ..Interests::default()
        }
    }

    fn on_event(&self, event: &Event<'_>) {
        if get(&self.0.handlers.on_event).is_none() {
            return;
        }
        let Some(job) = Self::job(event) else {
            return;
        };
        let queue = match &job.client {
            Some(c) => self.0.shard_of(c),
            None => self.0.shard(job.client_id.len()),
        };
        if queue.try_send(Job::Event(job)).is_err() {
            let n = self.0.dropped_events.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                tracing::warn!(
                    dropped = n + 1,
                    "a Python event handler is too slow: events dropped"
                );
            }
        }
    }
}
