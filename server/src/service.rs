//! The service port: accepts client connections (up to `proto_fd_max`), reads whole frames
//! (bounded by `frame_size_max`, bodies under the node-wide budget of
//! [`crate::frame_reader`]), dispatches on the frame type, writes the answer, and closes
//! connections that stay idle past `proto_fd_idle_ms`. Shutdown stops accepting and lets
//! every connection finish the request it is serving.

use std::io::Read as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use petrel_proto::message::{begin_frame, end_frame, ProtoHeader};
use petrel_proto::wire::{FrameType, ResultCode, PROTO_HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::frame_reader::{read_body, BodyError};
use crate::node::Node;
use crate::{cmd, info};

/// Keep at most this much buffer capacity between requests on one connection.
const BUFFER_KEEP_BYTES: usize = 1 << 20;

/// Serves clients on `listener` until `shutdown` turns true; returns when every connection
/// has finished.
pub async fn serve(node: Arc<Node>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let c = &node.counters;
                if c.client_connections.load(Ordering::Relaxed) >= node.config.service.proto_fd_max as u64 {
                    c.client_connections_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, "connection refused: proto_fd_max reached");
                    drop(stream);
                    continue;
                }
                c.client_connections.fetch_add(1, Ordering::Relaxed);
                c.client_connections_opened.fetch_add(1, Ordering::Relaxed);
                let node = Arc::clone(&node);
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    if let Err(e) = connection(&node, stream, shutdown).await {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                    node.counters.client_connections.fetch_sub(1, Ordering::Relaxed);
                    node.counters.client_connections_closed.fetch_add(1, Ordering::Relaxed);
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

async fn connection(node: &Node, stream: TcpStream, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    // Buffered reads: a request's header and body usually arrive in one read call.
    let mut stream = tokio::io::BufReader::with_capacity(16 * 1024, stream);
    let idle_ms = node.config.service.proto_fd_idle_ms;
    let frame_max = node.config.service.frame_size_max;
    let mut body: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let mut header = [0u8; PROTO_HEADER_LEN];
        // Wait for the next request, for shutdown, or for the idle limit.
        let read = stream.read_exact(&mut header);
        tokio::select! {
            r = async {
                if idle_ms == 0 { read.await.map(Some) } else {
                    match tokio::time::timeout(Duration::from_millis(idle_ms), read).await {
                        Ok(r) => r.map(Some),
                        Err(_) => Ok(None),
                    }
                }
            } => {
                match r {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        node.counters.client_connections_idle_closed.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            _ = shutdown.changed() => return Ok(()),
        }
        let h = match ProtoHeader::parse(header, frame_max) {
            Ok(h) => h,
            Err(e) => {
                node.counters.malformed_requests.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "bad frame header; closing connection");
                return Ok(());
            }
        };
        match read_body(node, &mut stream, &mut body, h.size as usize).await {
            Ok(()) => {}
            Err(BodyError::Io(e)) => return Err(e),
            Err(BodyError::Deadline) => {
                node.counters.client_connections_deadline_closed.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        out.clear();
        match h.frame_type {
            t if t == FrameType::Info as u8 => {
                let start = begin_frame(&mut out);
                info::handle(node, &body, &mut out).await;
                end_frame(&mut out, start, FrameType::Info as u8);
            }
            t if t == FrameType::Message as u8 => cmd::handle(node, &body, &mut out, stream.get_mut(), 0).await?,
            t if t == FrameType::CompressedMessage as u8 => match inflate(&body, frame_max) {
                Some(inner) => cmd::handle(node, &inner, &mut out, stream.get_mut(), 0).await?,
                None => {
                    node.counters.malformed_requests.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("bad compressed frame; closing connection");
                    return Ok(());
                }
            },
            t if t == FrameType::Admin as u8 => admin(&mut out),
            other => {
                node.counters.malformed_requests.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(frame_type = other, "unsupported frame type; closing connection");
                return Ok(());
            }
        }
        stream.get_mut().write_all(&out).await?;
        if body.capacity() > BUFFER_KEEP_BYTES {
            body = Vec::new();
        }
        if out.capacity() > BUFFER_KEEP_BYTES {
            out = Vec::with_capacity(4096);
        }
    }
}

/// Inflates a type-4 frame body into the inner frame's body (after checking its header).
fn inflate(body: &[u8], frame_max: u64) -> Option<Vec<u8>> {
    let len = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
    if len < PROTO_HEADER_LEN as u64 || len > frame_max + PROTO_HEADER_LEN as u64 {
        return None;
    }
    // Grown as the data inflates: a few compressed bytes cannot make us reserve the whole limit.
    let mut inner = Vec::with_capacity((len as usize).min(64 * 1024));
    let mut z = flate2::read::ZlibDecoder::new(&body[8..]).take(len + 1);
    z.read_to_end(&mut inner).ok()?;
    if inner.len() as u64 != len {
        return None;
    }
    let h = ProtoHeader::parse(inner[..PROTO_HEADER_LEN].try_into().ok()?, frame_max).ok()?;
    if h.frame_type != FrameType::Message as u8 || h.size != len - PROTO_HEADER_LEN as u64 {
        return None;
    }
    inner.drain(..PROTO_HEADER_LEN);
    Some(inner)
}

/// Security (admin) requests: security is not enabled, which the clients accept as success.
fn admin(out: &mut Vec<u8>) {
    let start = begin_frame(out);
    // The admin header is 16 bytes after the proto header; byte 1 is the result code.
    let mut h = [0u8; 16];
    h[1] = ResultCode::SecurityNotEnabled.code();
    out.extend_from_slice(&h);
    end_frame(out, start, FrameType::Admin as u8);
}
