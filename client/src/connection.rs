//! One TCP connection to a node: write a request frame, read answer frames, each step bounded
//! by a deadline and by the largest frame the client accepts.

use std::net::SocketAddr;
use std::time::Duration;

use petrel_proto::message::ProtoHeader;
use petrel_proto::wire::{FrameType, PROTO_HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::Error;

/// Largest answer frame accepted.
pub const FRAME_SIZE_MAX: u64 = 128 << 20;

/// A connection and its reusable read buffer.
#[derive(Debug)]
pub struct Connection {
    /// Buffered reads: an answer's header and body usually arrive in one read call.
    stream: BufReader<TcpStream>,
    pub(crate) buf: Vec<u8>,
    /// When the connection was last used, to drop idle ones.
    pub(crate) last_used: std::time::Instant,
}

impl Connection {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Connection, Error> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(s) => s?,
            Err(_) => return Err(Error::Timeout),
        };
        stream.set_nodelay(true)?;
        let stream = BufReader::with_capacity(16 * 1024, stream);
        Ok(Connection { stream, buf: Vec::with_capacity(1024), last_used: std::time::Instant::now() })
    }

    /// Writes `frame` (a whole frame, header included).
    pub async fn send(&mut self, frame: &[u8], deadline: Option<Instant>) -> Result<(), Error> {
        self.last_used = std::time::Instant::now();
        with_deadline(deadline, self.stream.get_mut().write_all(frame)).await?.map_err(Error::from)
    }

    /// Reads one frame into `self.buf` (body only); returns its type.
    pub async fn recv(&mut self, deadline: Option<Instant>) -> Result<u8, Error> {
        let mut header = [0u8; PROTO_HEADER_LEN];
        with_deadline(deadline, self.stream.read_exact(&mut header)).await??;
        let h = ProtoHeader::parse(header, FRAME_SIZE_MAX).map_err(|e| Error::Protocol(e.to_string()))?;
        if h.frame_type == FrameType::CompressedMessage as u8 {
            return Err(Error::Protocol("compressed answers are not requested".into()));
        }
        self.buf.clear();
        self.buf.resize(h.size as usize, 0);
        with_deadline(deadline, self.stream.read_exact(&mut self.buf)).await??;
        Ok(h.frame_type)
    }

    /// Sends an info request and returns `name -> value` for each answered line.
    pub async fn info(&mut self, commands: &[&str], deadline: Option<Instant>) -> Result<Vec<(String, String)>, Error> {
        let body: String = commands.iter().map(|c| format!("{c}\n")).collect();
        let mut frame = ProtoHeader::encode(FrameType::Info as u8, body.len() as u64).to_vec();
        frame.extend_from_slice(body.as_bytes());
        self.send(&frame, deadline).await?;
        let t = self.recv(deadline).await?;
        if t != FrameType::Info as u8 {
            return Err(Error::Protocol(format!("info answered with frame type {t}")));
        }
        let text = String::from_utf8_lossy(&self.buf);
        Ok(text
            .split('\n')
            .filter(|l| !l.is_empty())
            .map(|l| match l.split_once('\t') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l.to_string(), String::new()),
            })
            .collect())
    }
}

async fn with_deadline<T>(deadline: Option<Instant>, f: impl std::future::Future<Output = T>) -> Result<T, Error> {
    match deadline {
        None => Ok(f.await),
        Some(d) => tokio::time::timeout_at(d, f).await.map_err(|_| Error::Timeout),
    }
}
