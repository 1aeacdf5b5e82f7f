//! A minimal Redis (RESP) connection for side-by-side runs: the same load generator drives
//! Redis with GET/SET/DEL of the same keys and values, one connection per in-flight request,
//! no pipelining, so both servers see the same offered load.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest bulk reply accepted.
const BULK_LEN_MAX: usize = 16 << 20;

/// One Redis connection.
#[derive(Debug)]
pub struct RedisConn {
    stream: BufReader<TcpStream>,
    out: Vec<u8>,
    line: Vec<u8>,
    bulk: Vec<u8>,
}

fn bad(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.to_string())
}

impl RedisConn {
    pub async fn connect(addr: &str) -> io::Result<RedisConn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(RedisConn { stream: BufReader::new(s), out: Vec::new(), line: Vec::new(), bulk: Vec::new() })
    }

    fn command(&mut self, parts: &[&[u8]]) {
        self.out.clear();
        self.out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
        for p in parts {
            self.out.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
            self.out.extend_from_slice(p);
            self.out.extend_from_slice(b"\r\n");
        }
    }

    async fn read_line(&mut self) -> io::Result<()> {
        self.line.clear();
        let n = self.stream.read_until(b'\n', &mut self.line).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if n > 1024 || !self.line.ends_with(b"\r\n") {
            return Err(bad("malformed reply line"));
        }
        Ok(())
    }

    /// Sends a command and reads one reply; returns whether it carried a value (bulk string,
    /// `OK`, or a non-zero integer).
    async fn call(&mut self, parts: &[&[u8]]) -> io::Result<bool> {
        self.command(parts);
        self.stream.get_mut().write_all(&self.out).await?;
        self.read_line().await?;
        let text = std::str::from_utf8(&self.line[1..self.line.len() - 2]).map_err(|_| bad("reply is not text"))?;
        match self.line[0] {
            b'+' => Ok(true),
            b':' => Ok(text != "0"),
            b'-' => Err(bad(&format!("redis error: {text}"))),
            b'$' => {
                let len: i64 = text.parse().map_err(|_| bad("bad bulk length"))?;
                if len < 0 {
                    return Ok(false);
                }
                let len = len as usize;
                if len > BULK_LEN_MAX {
                    return Err(bad("bulk reply too large"));
                }
                self.bulk.resize(len + 2, 0);
                self.stream.read_exact(&mut self.bulk).await?;
                Ok(true)
            }
            _ => Err(bad("unexpected reply type")),
        }
    }

    pub async fn set(&mut self, key: &[u8], value: &[u8]) -> io::Result<bool> {
        self.call(&[b"SET", key, value]).await
    }

    pub async fn get(&mut self, key: &[u8]) -> io::Result<bool> {
        self.call(&[b"GET", key]).await
    }

    pub async fn del(&mut self, key: &[u8]) -> io::Result<bool> {
        self.call(&[b"DEL", key]).await
    }
}
