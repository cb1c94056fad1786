//! MQTT over WebSocket (MQTT 3.1.1 §6, MQTT 5.0 §6): a WebSocket
//! connection seen as a byte stream, so the listener and the client drive it
//! with the same [`PacketReader`](super::PacketReader) and
//! [`PacketWriter`](super::PacketWriter) as TCP.
//!
//! MQTT control packets travel in binary frames [MQTT-6.0.0-1]; a packet may
//! span frames and a frame may hold several packets [MQTT-6.0.0-2], which a
//! byte stream gives for free. The subprotocol is `mqtt` [MQTT-6.0.0-4].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The WebSocket subprotocol name MQTT uses [MQTT-6.0.0-4].
pub const SUBPROTOCOL: &str = "mqtt";
const PROTOCOL_HEADER: &str = "Sec-WebSocket-Protocol";

/// A WebSocket connection carrying MQTT, read and written as bytes.
#[derive(Debug)]
pub struct WsStream<S> {
    inner: WebSocketStream<S>,
    /// The rest of the last binary frame, not yet read.
    pending: Bytes,
    /// A frame was handed to the WebSocket but not yet flushed to the
    /// socket. Reading also pushes it on, so a frame written with one
    /// `write` (and no `flush`) still leaves once the socket has room.
    unflushed: bool,
}

/// Accepts a WebSocket handshake on `stream` (server side), choosing the
/// `mqtt` subprotocol. A client that does not offer it is refused with
/// HTTP 400 (a WebSocket client offering only `mqttv3.1`, MQTT 3.1's old
/// name, is accepted with that name).
pub async fn accept<S>(stream: S) -> io::Result<WsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    #[allow(clippy::result_large_err)] // the callback's signature is tungstenite's
    let choose = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let offered = req
            .headers()
            .get_all(PROTOCOL_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .find(|p| p.eq_ignore_ascii_case(SUBPROTOCOL) || p.eq_ignore_ascii_case("mqttv3.1"));
        if let Some(name) = offered.and_then(|p| HeaderValue::from_str(p).ok()) {
            resp.headers_mut().insert(PROTOCOL_HEADER, name);
            Ok(resp)
        } else {
            let mut refusal =
                ErrorResponse::new(Some("the mqtt WebSocket subprotocol is required".into()));
            *refusal.status_mut() = StatusCode::BAD_REQUEST;
            Err(refusal)
        }
    };
    let inner = tokio_tungstenite::accept_hdr_async(stream, choose)
        .await
        .map_err(ws_to_io)?;
    Ok(WsStream {
        inner,
        pending: Bytes::new(),
        unflushed: false,
    })
}

/// Performs the client side of the WebSocket handshake over `stream` to
/// `url` (such as `ws://host:port/mqtt`), offering the `mqtt` subprotocol.
pub async fn connect<S>(stream: S, url: &str) -> io::Result<WsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = url.into_client_request().map_err(ws_to_io)?;
    request
        .headers_mut()
        .insert(PROTOCOL_HEADER, HeaderValue::from_static(SUBPROTOCOL));
    let (inner, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(ws_to_io)?;
    let accepted = response
        .headers()
        .get(PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok());
    if !accepted.is_some_and(|p| p.eq_ignore_ascii_case(SUBPROTOCOL)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the server did not accept the mqtt WebSocket subprotocol",
        ));
    }
    Ok(WsStream {
        inner,
        pending: Bytes::new(),
        unflushed: false,
    })
}

fn ws_to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.unflushed {
            match Sink::<Message>::poll_flush(Pin::new(&mut self.inner), cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(ws_to_io(e))),
                // The waker is registered: this task is woken when the
                // socket has room, and the next read pushes on.
                Poll::Pending => {}
            }
        }
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                // Control frames: tungstenite answers pings itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "[MQTT-6.0.0-1] MQTT over WebSocket must use binary frames, got a text frame",
                    )));
                }
                // A close frame or the end of the stream: end of input.
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(ws_to_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let inner = Pin::new(&mut self.inner);
        ready!(Sink::<Message>::poll_ready(inner, cx)).map_err(ws_to_io)?;
        // One frame per write: the writer hands over its whole batch at once.
        Pin::new(&mut self.inner)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(ws_to_io)?;
        // The frame is accepted; push it to the socket now (tungstenite
        // buffers frames until a flush). If the socket is full, the next
        // read or write continues the flush.
        self.unflushed = true;
        match Sink::<Message>::poll_flush(Pin::new(&mut self.inner), cx) {
            Poll::Ready(Ok(())) => self.unflushed = false,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(ws_to_io(e))),
            Poll::Pending => {}
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Sink::<Message>::poll_flush(Pin::new(&mut self.inner), cx)).map_err(ws_to_io)?;
        self.unflushed = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Sink::<Message>::poll_close(Pin::new(&mut self.inner), cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(ws_to_io(e))),
        }
    }
}
