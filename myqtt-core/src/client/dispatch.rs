//! The callback thread: one per [`Conn`] that has a callback set. It takes
//! messages and connection events from the receive queue and calls the
//! application's callbacks, so they never run on the connection task.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::queue::Dispatch;
use super::{Conn, ConnEvent, ConnInner, Shared};

/// How often an idle callback thread checks whether its [`Conn`] is gone.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Starts the callback thread. It holds the connection weakly, so that
/// dropping every [`Conn`] still closes the connection; it ends when the
/// client has closed and everything was dispatched, or the `Conn` is gone.
pub(super) fn start(conn: Weak<ConnInner>, shared: Arc<Shared>) {
    let spawned = std::thread::Builder::new()
        .name("myqtt-callbacks".into())
        .spawn(move || run(&conn, &shared));
    if let Err(e) = spawned {
        tracing::error!("cannot start the callback thread: {e}");
    }
}

fn run(conn: &Weak<ConnInner>, shared: &Shared) {
    let has_msg_handler = || shared.lock_handlers().on_msg.is_some();
    while let Some(item) = shared.recv.next_for_dispatch(has_msg_handler, IDLE_POLL) {
        let Some(inner) = conn.upgrade() else {
            return;
        };
        let conn = Conn { inner };
        match item {
            Dispatch::Idle => {}
            Dispatch::Message(m) => {
                let handler = shared.lock_handlers().on_msg.clone();
                if let Some(h) = handler {
                    let (epoch, packet_id) = (m.epoch, m.packet_id());
                    conn.remember_taken(&m);
                    call(|| h(&conn, m));
                    conn.auto_ack(epoch, packet_id);
                } else {
                    // The callback was removed meanwhile: put it back first.
                    shared.recv.put_back(m);
                }
            }
            Dispatch::Event(ConnEvent::Closed(info)) => {
                let handler = shared.lock_handlers().on_close.clone();
                if let Some(h) = handler {
                    call(|| h(&conn, &info));
                }
            }
            Dispatch::Event(ConnEvent::Reconnected(info)) => {
                let handler = shared.lock_handlers().on_reconnect.clone();
                if let Some(h) = handler {
                    call(|| h(&conn, &info));
                }
            }
        }
    }
}

/// Calls a user callback; a panic in it is logged and the thread goes on.
fn call(f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        tracing::error!("a client callback panicked");
    }
}
