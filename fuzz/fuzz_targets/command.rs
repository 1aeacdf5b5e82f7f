//! Fuzzes the whole command path of one node: any message body is parsed and applied to an
//! in-memory namespace, and must be answered (or refused) without a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use petrel_server::config::{Config, Overrides};
use petrel_server::node::Node;

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let mut config = Config::load(None, &Overrides::default()).expect("default config");
        if let Some(ns) = config.namespace.get_mut("test") {
            ns.memory_size = 64 << 20;
        }
        Node::new(config).expect("node")
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"))
}

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let mut sink: Vec<u8> = Vec::new();
    runtime().block_on(async {
        let _ = petrel_server::cmd::handle(node(), data, &mut out, &mut sink, 0).await;
        let mut info_out = Vec::new();
        petrel_server::info::handle(node(), data, &mut info_out).await;
    });
});
