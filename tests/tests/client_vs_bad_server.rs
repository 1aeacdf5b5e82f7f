//! The smart client against a server that answers garbage: every call ends in an error within
//! its time budget, never a panic or a hang. The fake node answers the tending info commands
//! correctly (one node owning every partition) and everything else with seeded random bytes.

use std::time::{Duration, Instant};

use petrel_client::policy::BasePolicy;
use petrel_client::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn fake_node(listener: TcpListener) {
    let mut seed: u64 = 0x1234_5678_9abc_def1;
    loop {
        let Ok((mut s, _)) = listener.accept().await else { return };
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut x = seed;
        tokio::spawn(async move {
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            loop {
                let mut h = [0u8; 8];
                if s.read_exact(&mut h).await.is_err() {
                    return;
                }
                let size = (u64::from_be_bytes(h) & 0xffff_ffff_ffff) as usize;
                if size > 1 << 20 {
                    return;
                }
                let mut body = vec![0u8; size];
                if s.read_exact(&mut body).await.is_err() {
                    return;
                }
                let reply = if h[1] == 1 {
                    let text = String::from_utf8_lossy(&body).into_owned();
                    let mut out = String::new();
                    for cmd in text.lines() {
                        let v = match cmd {
                            "node" => "FAKE1".to_string(),
                            "partition-generation" | "peers-generation" => "1".to_string(),
                            "build" => "8.0.0.0".to_string(),
                            "cluster-name" => "null".to_string(),
                            "peers-clear-std" => "1,3000,[]".to_string(),
                            "replicas" => format!("test:0,1,{}8=", "/".repeat(682)),
                            _ => String::new(),
                        };
                        out.push_str(&format!("{cmd}\t{v}\n"));
                    }
                    let mut f = petrel_proto::message::ProtoHeader::encode(1, out.len() as u64).to_vec();
                    f.extend_from_slice(out.as_bytes());
                    f
                } else {
                    // Garbage of every kind: random bytes, a valid header over random bodies,
                    // lengths that lie, or nothing at all (the client must time out).
                    match next() % 4 {
                        0 => (0..(next() % 64)).map(|_| next() as u8).collect(),
                        1 => {
                            let n = (next() % 100) as usize;
                            let mut f = petrel_proto::message::ProtoHeader::encode(3, n as u64).to_vec();
                            f.extend((0..n).map(|_| next() as u8));
                            if n > 0 {
                                f[8] = 22;
                            }
                            f
                        }
                        2 => petrel_proto::message::ProtoHeader::encode(3, 1 << 40).to_vec(),
                        _ => Vec::new(),
                    }
                };
                if s.write_all(&reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[test]
fn garbage_answers_give_errors_not_panics() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(fake_node(listener));
        let client =
            Client::new(ClientPolicy::default(), &[&addr.to_string()]).await.expect("tends against the fake node");
        let base = BasePolicy { total_timeout: Duration::from_millis(300), max_retries: 1, ..Default::default() };
        let rp = ReadPolicy { base: base.clone() };
        let wp = WritePolicy { base: base.clone(), ..Default::default() };
        let started = Instant::now();
        let mut errors = 0;
        for i in 0..200i64 {
            let k = Key::new("test", "s", i).expect("key");
            let r = match i % 4 {
                0 => client.get(&rp, &k, Bins::All).await.map(|_| ()),
                1 => client.put(&wp, &k, &[Bin::new("a", i)]).await,
                2 => client.operate(&wp, &k, &[Operation::get("a")]).await.map(|_| ()),
                _ => {
                    client.batch_get(&BatchPolicy { base: base.clone() }, &[k.clone(), k], Bins::All).await.map(|_| ())
                }
            };
            if r.is_err() {
                errors += 1;
            }
        }
        assert!(errors > 150, "garbage mostly fails ({errors} of 200 failed)");
        // 200 calls of at most ~300 ms each (two attempts within the budget).
        assert!(started.elapsed() < Duration::from_secs(90), "calls did not respect their budget");
    });
}
