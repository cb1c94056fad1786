//! Packet framing over a byte stream: [`PacketReader`] turns bytes into
//! [`Packet`]s with the incremental [`Decoder`], [`PacketWriter`] batches
//! encoded packets and writes them in as few syscalls as it can.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};

use crate::codec::{DecodeError, Decoder, EncodeError, Packet, ProtocolVersion, encode};

/// Initial capacity of a connection's read and write buffers. Small, so an
/// idle connection costs little; buffers grow with the traffic.
const INITIAL_BUFFER: usize = 512;
/// A reader without a buffer first reads into this much stack space, and
/// allocates a buffer only once bytes have arrived: an idle connection
/// waits for its peer without holding read memory.
const FIRST_READ: usize = 1024;
/// Below this much spare room the read buffer grows before the next read.
const MIN_READ_ROOM: usize = 256;
/// The largest buffer a writer starts a burst with.
const MAX_WRITE_HINT: usize = 64 * 1024;
/// The most a read buffer grows by at once. Reads that fill the buffer
/// double the growth step up to this, so a busy connection reads in large
/// chunks (few syscalls) while an idle one keeps a small buffer. Decoded
/// payloads share these chunks, so the cap also bounds how much memory one
/// queued message can keep alive.
const MAX_READ_CHUNK: usize = 16 * 1024;

/// Why reading or writing packets failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not a valid packet.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded (it is too large for the protocol).
    #[error("{0}")]
    Encode(#[from] EncodeError),
    /// The peer closed the connection in the middle of a packet.
    #[error("connection closed by the peer in the middle of a packet")]
    TruncatedPacket,
}

/// Splits a stream into a packet reader and a packet writer that can be
/// driven concurrently (for example from one `tokio::select!` loop).
pub fn split<S>(
    stream: S,
    max_packet_size: u32,
) -> (PacketReader<ReadHalf<S>>, PacketWriter<WriteHalf<S>>)
where
    S: AsyncRead + AsyncWrite,
{
    let (r, w) = tokio::io::split(stream);
    (PacketReader::new(r, max_packet_size), PacketWriter::new(w))
}

/// Reads packets from a byte stream.
#[derive(Debug)]
pub struct PacketReader<R> {
    io: R,
    buf: BytesMut,
    decoder: Decoder,
    /// How much room the next growth of `buf` makes.
    chunk: usize,
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
    /// A reader that refuses packets larger than `max_packet_size` bytes.
    /// It allocates no buffer until bytes arrive.
    pub fn new(io: R, max_packet_size: u32) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            decoder: Decoder::new(max_packet_size),
            chunk: INITIAL_BUFFER,
        }
    }

    /// The decoder, to set the protocol version or the size limit.
    pub fn decoder_mut(&mut self) -> &mut Decoder {
        &mut self.decoder
    }

    /// Reads the next packet; `Ok(None)` when the peer closed the stream
    /// between packets.
    ///
    /// Cancel-safe: bytes read before a cancellation stay buffered, so this
    /// can be one branch of a `tokio::select!` loop.
    pub async fn read(&mut self) -> Result<Option<Packet>, NetError> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(packet));
            }
            if !self.fill().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(NetError::TruncatedPacket)
                };
            }
        }
    }

    /// Reads more bytes into the buffer with one read call; `Ok(false)` at
    /// the end of the stream. Decode them with
    /// [`try_read_buffered`](Self::try_read_buffered).
    ///
    /// Cancel-safe, and its future is small: a connection loop can wait on
    /// it and decode the packets synchronously after it completes.
    ///
    /// A reader without a buffer (a new one, or one given back by
    /// [`shrink_idle`](Self::shrink_idle)) waits for bytes without
    /// allocating: it reads into stack space first and moves what came into
    /// a new buffer.
    pub fn fill(&mut self) -> impl Future<Output = Result<bool, NetError>> + '_ {
        // A poll function rather than an async body: the future is two
        // words, whatever the reader's read future holds.
        std::future::poll_fn(|cx| self.poll_fill(cx))
    }

    /// [`fill`](Self::fill) as a poll function: `Ready(Ok(false))` at the
    /// end of the stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, NetError>> {
        if self.buf.capacity() == 0 {
            let n = ready!(self.poll_first_read(cx))?;
            return Poll::Ready(Ok(n > 0));
        }
        if self.buf.capacity() - self.buf.len() < MIN_READ_ROOM {
            self.buf.reserve(self.chunk);
        }
        let room = self.buf.capacity() - self.buf.len();
        // Tokio's read future holds only its two references, so a fresh one
        // per poll is the same as one kept across polls.
        let n = ready!(std::pin::pin!(self.io.read_buf(&mut self.buf)).poll(cx))?;
        if n == room && self.chunk < MAX_READ_CHUNK {
            // The peer sends faster than one buffer per read.
            self.chunk *= 2;
        }
        Poll::Ready(Ok(n > 0))
    }

    /// One read into stack space; what came is copied into a new buffer.
    fn poll_first_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let mut space = [0u8; FIRST_READ];
        let mut rb = ReadBuf::new(&mut space);
        match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let got = rb.filled();
                if !got.is_empty() {
                    self.buf.reserve(self.chunk.max(got.len() + MIN_READ_ROOM));
                    self.buf.extend_from_slice(got);
                }
                Poll::Ready(Ok(got.len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The read buffer's capacity in bytes (0 while the reader holds no
    /// buffer).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// True when the read buffer is empty but still allocated:
    /// [`shrink_idle`](Self::shrink_idle) would give it back.
    pub fn holds_idle_memory(&self) -> bool {
        self.buf.is_empty() && self.buf.capacity() > 0
    }

    /// Gives the read buffer back if it holds no bytes, so that a quiet
    /// connection holds no read memory; the next [`fill`](Self::fill)
    /// allocates one when bytes arrive. Packets already decoded keep their
    /// part of the old buffer alive until they are dropped.
    pub fn shrink_idle(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// True if bytes of an incomplete packet are buffered (a stream that
    /// ends now ends in the middle of a packet).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Decodes a packet that is already buffered, without reading.
    pub fn try_read_buffered(&mut self) -> Result<Option<Packet>, NetError> {
        Ok(self.decoder.decode(&mut self.buf)?)
    }
}

/// Writes packets to a byte stream, batching them.
///
/// `queue` encodes into a buffer; `write_some` and `flush` move the buffer
/// to the socket, so many queued packets leave in one write.
#[derive(Debug)]
pub struct PacketWriter<W> {
    io: W,
    buf: BytesMut,
    /// The size of the last burst: the next burst starts with this much
    /// room, so it needs one allocation.
    hint: usize,
    /// The most bytes buffered in the current burst.
    peak: usize,
}

impl<W: AsyncWrite + Unpin> PacketWriter<W> {
    /// A writer over `io`.
    pub fn new(io: W) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            hint: INITIAL_BUFFER,
            peak: 0,
        }
    }

    /// Encodes `packet` for `version` into the write buffer.
    pub fn queue(&mut self, packet: &Packet, version: ProtocolVersion) -> Result<(), EncodeError> {
        if self.buf.capacity() == 0 {
            self.buf.reserve(self.hint);
        }
        encode(packet, version, &mut self.buf)?;
        self.peak = self.peak.max(self.buf.len());
        Ok(())
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Writes part of the buffer with one write call.
    ///
    /// Cancel-safe: a cancelled call wrote nothing, so this can be one branch
    /// of a `tokio::select!` loop while the peer is slow to read.
    pub fn write_some(&mut self) -> impl Future<Output = Result<(), NetError>> + '_ {
        std::future::poll_fn(|cx| self.poll_write_some(cx))
    }

    /// [`write_some`](Self::write_some) as a poll function.
    pub fn poll_write_some(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), NetError>> {
        // Tokio's write future holds only its two references (see
        // `PacketReader::poll_fill`).
        let n = ready!(std::pin::pin!(self.io.write_buf(&mut self.buf)).poll(cx))?;
        if n == 0 && !self.buf.is_empty() {
            return Poll::Ready(Err(NetError::Io(std::io::ErrorKind::WriteZero.into())));
        }
        if self.buf.is_empty() {
            // Between bursts the buffer is given back, so an idle
            // connection holds no write memory; the next burst allocates
            // once, sized like this one.
            self.hint = self.peak.clamp(INITIAL_BUFFER, MAX_WRITE_HINT);
            self.peak = 0;
            self.buf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Flushes the stream (not the write buffer: see [`flush`](Self::flush)),
    /// as a poll function.
    pub fn poll_flush_io(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), NetError>> {
        Poll::Ready(Ok(ready!(Pin::new(&mut self.io).poll_flush(cx))?))
    }

    /// Writes everything buffered, then flushes the stream.
    pub async fn flush(&mut self) -> Result<(), NetError> {
        while !self.buf.is_empty() {
            self.write_some().await?;
        }
        self.io.flush().await?;
        Ok(())
    }

    /// Flushes and shuts the write side down (sends FIN on TCP).
    pub async fn shutdown(&mut self) -> Result<(), NetError> {
        self.flush().await?;
        self.io.shutdown().await?;
        Ok(())
    }
}
