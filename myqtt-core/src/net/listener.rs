//! The accept loop: [`Listener`] binds an address, accepts TCP connections
//! (TCP_NODELAY on), performs the WebSocket handshake for a WebSocket
//! listener, and hands each connection to the broker's connection task
//! until it is stopped or its context shuts down.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::broker::Broker;
use crate::broker::hooks::{Event, Transport};

/// Why a listener could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The address could not be resolved or bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The host and port asked for.
        addr: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// The context has exited.
    #[error("the context has exited")]
    Exited,
}

/// A listening socket of a [`crate::Ctx`]. Cheap to clone; dropping it does
/// not stop it (see [`Listener::stop`] and [`crate::Ctx::exit`]).
#[derive(Clone)]
pub struct Listener {
    inner: Arc<Inner>,
}

struct Inner {
    local_addr: SocketAddr,
    transport: Transport,
    stop: watch::Sender<bool>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.inner.local_addr)
            .field("transport", &self.inner.transport)
            .field("stopped", &*self.inner.stop.borrow())
            .finish()
    }
}

impl Listener {
    /// The bound address (with the port the system picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The bound host as a string.
    pub fn host(&self) -> String {
        self.inner.local_addr.ip().to_string()
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.inner.local_addr.port()
    }

    /// The transport it accepts.
    pub fn transport(&self) -> Transport {
        self.inner.transport
    }

    /// Stops accepting new connections; connected clients stay.
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
    }

    /// True once stopped (by [`stop`](Self::stop) or the context's exit).
    pub fn is_stopped(&self) -> bool {
        *self.inner.stop.borrow()
    }

    /// Binds `host:port` (port 0 picks a free port) and starts accepting
    /// on the broker's runtime. Does not block on the runtime, so it may be
    /// called from anywhere, a runtime thread included.
    pub(crate) fn bind(
        broker: &Broker,
        host: &str,
        port: u16,
        transport: Transport,
    ) -> Result<Self, ListenerError> {
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let bind_error = |source| ListenerError::Bind {
            addr: addr.clone(),
            source,
        };
        let runtime_guard = broker.handle().enter();
        let tcp = bind_tcp(&addr).map_err(bind_error)?;
        let local_addr = tcp.local_addr().map_err(bind_error)?;
        let (stop, stop_rx) = watch::channel(false);
        let listener = Self {
            inner: Arc::new(Inner {
                local_addr,
                transport,
                stop,
            }),
        };
        tracing::info!(%local_addr, ?transport, "listening");
        broker
            .chain()
            .emit(crate::broker::EventKind::Lifecycle, || {
                Event::ListenerStarted(local_addr)
            });
        broker.handle().spawn(accept_loop(
            broker.clone(),
            tcp,
            local_addr,
            transport,
            stop_rx,
        ));
        drop(runtime_guard);
        Ok(listener)
    }
}

/// Performs the WebSocket handshake (within the connect timeout), then
/// serves the connection like a TCP one.
async fn serve_ws(
    broker: Broker,
    guard: crate::broker::TaskGuard,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
) {
    let timeout = broker.config().connect_timeout();
    let socket = crate::broker::hooks::socket_number(&stream);
    let ws = match tokio::time::timeout(timeout, super::ws::accept(stream)).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "WebSocket handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "WebSocket handshake timed out");
            return;
        }
    };
    let halves = tokio::io::split(ws);
    crate::broker::serve(
        broker,
        guard,
        halves,
        peer,
        local,
        (Transport::WebSocket, socket),
    )
    .await;
}

/// The accept queue length asked of the system: a burst of connections
/// (a thousand clients starting at once) waits there instead of being
/// refused.
const BACKLOG: u32 = 1024;

/// Resolves `addr` and listens on the first address that binds.
fn bind_tcp(addr: &str) -> std::io::Result<TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        let socket = if a.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        if let Err(e) = socket.bind(a) {
            last = Some(e);
            continue;
        }
        match socket.listen(BACKLOG) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address to bind")
    }))
}

/// Accepts connections until the listener is stopped or the context shuts
/// down.
async fn accept_loop(
    broker: Broker,
    tcp: TcpListener,
    local: SocketAddr,
    transport: Transport,
    mut stop: watch::Receiver<bool>,
) {
    let mut shutdown = broker.shutdown_signal();
    loop {
        tokio::select! {
            r = tcp.accept() => match r {
                Ok((stream, peer)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                    }
                    let guard = broker.enter_task();
                    match transport {
                        Transport::Tcp => {
                            let socket = crate::broker::hooks::socket_number(&stream);
                            broker.handle().spawn(crate::broker::serve(
                                broker.clone(),
                                guard,
                                stream.into_split(),
                                peer,
                                local,
                                (Transport::Tcp, socket),
                            ));
                        }
                        Transport::WebSocket => {
                            broker
                                .handle()
                                .spawn(serve_ws(broker.clone(), guard, stream, peer, local));
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: the condition
                    // clears as connections close. Back off a little.
                    tracing::warn!(%local, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = crate::broker::signalled(&mut stop) => break,
            () = crate::broker::signalled(&mut shutdown) => break,
        }
    }
    tracing::info!(%local, "listener stopping");
    broker
        .chain()
        .emit(crate::broker::EventKind::Lifecycle, || {
            Event::ListenerStopping(local)
        });
}
