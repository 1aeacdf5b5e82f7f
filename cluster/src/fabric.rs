//! The fabric: long-lived TCP connections between nodes carrying [`FabricMessage`]s —
//! replica writes, migrations, proxied requests — as requests matched to answers by id.
//!
//! One connection per peer is multiplexed: a writer task drains a bounded queue, a reader
//! task routes answers to their waiting callers and hands requests to the node's
//! [`FabricHandler`]. Back-pressure is a per-peer limit on requests in flight (callers wait
//! for a slot), and every request has a deadline. Frames are a `u32` big-endian length and a
//! protobuf message, at most [`FRAME_LEN_MAX`] bytes.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use petrel_proto::cluster::fabric_message::Body;
use petrel_proto::cluster::{FabricMessage, FABRIC_VERSION};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

/// Largest fabric frame (a migration batch of large records fits).
pub const FRAME_LEN_MAX: usize = 64 << 20;
/// Requests in flight to one peer before callers wait.
pub const IN_FLIGHT_MAX: usize = 1024;
/// Frames queued for one peer's writer.
const QUEUE_LEN: usize = 1024;
/// How long dialing a peer may take: peers sit on one network, so a connection that takes
/// longer is to a node that is gone, and the caller's retry (or the next view) is better.
const CONNECT_TIMEOUT_MS: u64 = 1_000;

/// Why a fabric request failed.
#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    #[error("fabric connection to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("fabric request to {0} timed out")]
    Timeout(SocketAddr),
    #[error("fabric connection to {0} closed")]
    Closed(SocketAddr),
}

/// What a node does with requests from its peers.
pub trait FabricHandler: Send + Sync + 'static {
    /// Answers one request (the answer's id and flags are set by the fabric).
    fn handle(&self, request: FabricMessage) -> Pin<Box<dyn Future<Output = FabricMessage> + Send + '_>>;
}

/// How a node sends requests to its peers: the TCP [`Fabric`], or a simulated network
/// (`crate::sim`). Everything the cluster layer sends goes through this.
pub trait FabricTransport: Send + Sync + 'static {
    /// Sends `body` to the node at `addr` and waits (at most `timeout`) for its answer.
    fn request(
        &self,
        addr: SocketAddr,
        body: Body,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<FabricMessage, FabricError>> + Send + '_>>;
    /// Stops sending and serving.
    fn stop(&self);
}

impl FabricTransport for Fabric {
    fn request(
        &self,
        addr: SocketAddr,
        body: Body,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<FabricMessage, FabricError>> + Send + '_>> {
        Box::pin(Fabric::request(self, addr, body, timeout))
    }

    fn stop(&self) {
        Fabric::stop(self)
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<FabricMessage>>>>;

#[derive(Debug)]
struct Peer {
    queue: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    slots: Arc<Semaphore>,
    /// Cleared when the connection's reader ends: a peer that restarted on the same address
    /// gets a new connection instead of requests written into a dead one.
    alive: Arc<std::sync::atomic::AtomicBool>,
}

/// This node's end of the fabric.
pub struct Fabric {
    next_id: AtomicU64,
    peers: Mutex<HashMap<SocketAddr, Arc<Peer>>>,
    /// Held while connecting, so concurrent first requests share one connection.
    connecting: tokio::sync::Mutex<()>,
    handler: Arc<dyn FabricHandler>,
    stop: watch::Sender<bool>,
    pub local_addr: SocketAddr,
}

impl std::fmt::Debug for Fabric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fabric").field("local_addr", &self.local_addr).finish()
    }
}

fn encode(msg: &FabricMessage) -> Vec<u8> {
    let mut frame = Vec::with_capacity(4 + msg.encoded_len());
    frame.extend_from_slice(&(msg.encoded_len() as u32).to_be_bytes());
    msg.encode(&mut frame).expect("a Vec grows as needed");
    frame
}

async fn read_frame(stream: &mut tokio::net::tcp::OwnedReadHalf, buf: &mut Vec<u8>) -> std::io::Result<FabricMessage> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_LEN_MAX {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "fabric frame too large"));
    }
    // Read what arrives rather than reserving the stated length up front: a peer that
    // announces 64 MiB and sends nothing costs nothing.
    buf.clear();
    let got = (&mut *stream).take(len as u64).read_to_end(buf).await?;
    if got != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let msg =
        FabricMessage::decode(buf.as_slice()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if msg.version != FABRIC_VERSION {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("fabric version {}", msg.version)));
    }
    Ok(msg)
}

impl Fabric {
    /// Listens on `listen` and serves peers' requests with `handler`.
    pub async fn start(listen: SocketAddr, handler: Arc<dyn FabricHandler>) -> std::io::Result<Arc<Fabric>> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let fabric = Arc::new(Fabric {
            next_id: AtomicU64::new(1),
            peers: Mutex::new(HashMap::new()),
            connecting: tokio::sync::Mutex::new(()),
            handler,
            stop,
            local_addr,
        });
        let weak = Arc::downgrade(&fabric);
        let mut stop_accept = stop_rx;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop_accept.changed() => return,
                    accepted = listener.accept() => {
                        let Ok((stream, peer)) = accepted else { continue };
                        let Some(fabric) = weak.upgrade() else { return };
                        let _ = stream.set_nodelay(true);
                        // Requests from this peer are answered on the same connection.
                        let (read, write) = stream.into_split();
                        let (tx, rx) = mpsc::channel(QUEUE_LEN);
                        tokio::spawn(writer(write, rx, fabric.stop.subscribe()));
                        tokio::spawn(reader(read, tx, Arc::new(Mutex::new(HashMap::new())), Arc::clone(&fabric.handler), fabric.stop.subscribe(), peer));
                    }
                }
            }
        });
        Ok(fabric)
    }

    fn live_peer(&self, addr: SocketAddr) -> Option<Arc<Peer>> {
        self.peers.lock().get(&addr).filter(|p| !p.queue.is_closed() && p.alive.load(Ordering::Acquire)).cloned()
    }

    async fn peer(&self, addr: SocketAddr) -> Result<Arc<Peer>, FabricError> {
        if let Some(p) = self.live_peer(addr) {
            return Ok(p);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(p) = self.live_peer(addr) {
            return Ok(p);
        }
        let stream = tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), TcpStream::connect(addr))
            .await
            .map_err(|_| FabricError::Timeout(addr))?
            .map_err(|e| FabricError::Connect(addr, e))?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        tokio::spawn(writer(write, rx, self.stop.subscribe()));
        let (reader_alive, reader_pending) = (Arc::clone(&alive), Arc::clone(&pending));
        let (handler, stop) = (Arc::clone(&self.handler), self.stop.subscribe());
        let answers_to = tx.clone();
        tokio::spawn(async move {
            reader(read, answers_to, Arc::clone(&reader_pending), handler, stop, addr).await;
            reader_alive.store(false, Ordering::Release);
            // Requests that slipped in after the reader ended fail now, not at their deadline.
            reader_pending.lock().clear();
        });
        let peer = Arc::new(Peer { queue: tx, pending, slots: Arc::new(Semaphore::new(IN_FLIGHT_MAX)), alive });
        self.peers.lock().insert(addr, Arc::clone(&peer));
        Ok(peer)
    }

    /// Sends `body` to the node at `addr` and waits (at most `timeout`) for its answer.
    pub async fn request(&self, addr: SocketAddr, body: Body, timeout: Duration) -> Result<FabricMessage, FabricError> {
        let work = async {
            let peer = self.peer(addr).await?;
            let _slot = peer.slots.acquire().await.map_err(|_| FabricError::Closed(addr))?;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            peer.pending.lock().insert(id, tx);
            let msg = FabricMessage { version: FABRIC_VERSION, request_id: id, is_answer: false, body: Some(body) };
            if peer.queue.send(encode(&msg)).await.is_err() {
                peer.pending.lock().remove(&id);
                return Err(FabricError::Closed(addr));
            }
            if !peer.alive.load(Ordering::Acquire) {
                peer.pending.lock().remove(&id);
                return Err(FabricError::Closed(addr));
            }
            let answer = rx.await.map_err(|_| FabricError::Closed(addr));
            peer.pending.lock().remove(&id);
            answer
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| FabricError::Timeout(addr))?
    }

    /// Closes every connection.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        self.peers.lock().clear();
    }
}

async fn writer(
    mut write: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let frame = tokio::select! {
            _ = stop.changed() => return,
            f = rx.recv() => match f { Some(f) => f, None => return },
        };
        if write.write_all(&frame).await.is_err() {
            return;
        }
    }
}

async fn reader(
    mut read: tokio::net::tcp::OwnedReadHalf,
    answers_to: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    handler: Arc<dyn FabricHandler>,
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
) {
    let mut buf = Vec::new();
    // Requests from this peer being handled at once; at the limit the reader stops reading,
    // which pushes back on the peer instead of spawning without bound.
    let handling = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => return,
            m = read_frame(&mut read, &mut buf) => match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "fabric connection ended");
                    // Waiting callers fail at once rather than at their deadline.
                    pending.lock().clear();
                    return;
                }
            },
        };
        if msg.is_answer {
            if let Some(tx) = pending.lock().remove(&msg.request_id) {
                let _ = tx.send(msg);
            }
            continue;
        }
        let Ok(permit) = Arc::clone(&handling).acquire_owned().await else { return };
        let handler = Arc::clone(&handler);
        let answers_to = answers_to.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let id = msg.request_id;
            let mut answer = handler.handle(msg).await;
            answer.version = FABRIC_VERSION;
            answer.request_id = id;
            answer.is_answer = true;
            let _ = answers_to.send(encode(&answer)).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_proto::cluster::fabric_message::Body;
    use petrel_proto::cluster::{Ack, InfoCommand};

    /// Answers every request with the length of its info line as the result code.
    struct Echo;

    impl FabricHandler for Echo {
        fn handle(&self, request: FabricMessage) -> Pin<Box<dyn Future<Output = FabricMessage> + Send + '_>> {
            Box::pin(async move {
                let code = match request.body {
                    Some(Body::Info(c)) => c.line.len() as u32,
                    _ => 999,
                };
                FabricMessage { body: Some(Body::Ack(Ack { result_code: code })), ..Default::default() }
            })
        }
    }

    fn free_addr() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_are_answered_by_id_concurrently() {
        let a = Fabric::start(free_addr(), Arc::new(Echo)).await.expect("a");
        let b = Fabric::start(free_addr(), Arc::new(Echo)).await.expect("b");
        let mut tasks = Vec::new();
        for i in 0..200usize {
            let a = Arc::clone(&a);
            let to = b.local_addr;
            tasks.push(tokio::spawn(async move {
                let body = Body::Info(InfoCommand { line: "x".repeat(i % 21) });
                let answer = a.request(to, body, Duration::from_secs(5)).await.expect("answer");
                assert_eq!(answer.body, Some(Body::Ack(Ack { result_code: (i % 21) as u32 })));
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        // And the other way, over its own connection.
        let back =
            b.request(a.local_addr, Body::Ack(Ack { result_code: 1 }), Duration::from_secs(5)).await.expect("answer");
        assert_eq!(back.body, Some(Body::Ack(Ack { result_code: 999 })));
        a.stop();
        b.stop();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_peer_fails_fast_and_garbage_closes_the_connection() {
        let a = Fabric::start(free_addr(), Arc::new(Echo)).await.expect("a");
        let dead = free_addr();
        let started = std::time::Instant::now();
        let r = a.request(dead, Body::Ack(Ack::default()), Duration::from_secs(3)).await;
        assert!(r.is_err());
        assert!(started.elapsed() < Duration::from_secs(3));
        let mut s = TcpStream::connect(a.local_addr).await.expect("connect");
        s.write_all(&[0xff, 0xff, 0xff, 0xff]).await.expect("write");
        let mut byte = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await.expect("closed in time");
        assert!(matches!(r, Ok(0) | Err(_)));
        a.stop();
    }
}
