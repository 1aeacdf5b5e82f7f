//! Petrel's Rust smart client.
//!
//! The client tends the cluster in the background (peers, partition generation, replicas) and
//! keeps a partition map, so every request goes straight to the node that owns the key's
//! partition; a failed attempt is retried on the partition's next replica within the call's
//! time budget. It speaks the Aerospike wire protocol and depends only on `petrel-proto`.
//!
//! ```no_run
//! use petrel_client::{Bin, Bins, Client, ClientPolicy, Key, Operation, ReadPolicy, Value, WritePolicy};
//! use petrel_client::operation::lists;
//!
//! # async fn example() -> Result<(), petrel_client::Error> {
//! let client = Client::new(ClientPolicy::default(), &["127.0.0.1:3000"]).await?;
//! let key = Key::new("test", "users", "alice")?;
//! client.put(&WritePolicy::default(), &key, &[Bin::new("age", 42), Bin::new("tags", Value::List(vec![]))]).await?;
//! let rec = client.get(&ReadPolicy::default(), &key, Bins::All).await?;
//! assert_eq!(rec.bin("age"), Some(&Value::Int(42)));
//! let rec = client
//!     .operate(&WritePolicy::default(), &key, &[Operation::add(&Bin::new("age", 1)), lists::append("tags", &"rust".into()), Operation::get("age")])
//!     .await?;
//! assert_eq!(rec.bin("age"), Some(&Value::Int(43)));
//! # Ok(())
//! # }
//! ```
//!
//! Modules: [`client`] (the async API), [`blocking`] (a blocking facade), [`cluster`] (nodes,
//! pools, partition map, tending), [`connection`], `command` (encoding and decoding),
//! [`operation`] (operate's operations, lists and maps), [`query`] (secondary-index
//! filters), [`policy`], [`key`], [`value`],
//! [`record`], [`stream`].

pub mod blocking;
pub mod client;
pub mod cluster;
mod command;
pub mod connection;
mod error;
pub mod exp;
pub mod key;
pub mod operation;
pub mod policy;
pub mod query;
pub mod record;
pub mod stream;
pub mod value;

pub use client::{Bins, Client};
pub use error::Error;
pub use exp::FilterExp;
pub use key::Key;
pub use operation::{Operation, ReturnType};
pub use policy::{
    BatchPolicy, ClientPolicy, Expiration, GenerationPolicy, ReadPolicy, RecordExistsAction, ScanPolicy, WritePolicy,
};
pub use query::{CollectionType, IndexFilter, IndexType};
pub use record::Record;
pub use stream::RecordStream;
pub use value::{Bin, Value};
