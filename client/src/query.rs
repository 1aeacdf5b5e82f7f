//! Secondary indexes from the client: creating and dropping them ([`Client::create_index`],
//! [`Client::drop_index`]) and the filter a query asks of one ([`IndexFilter`]: integer
//! ranges, string and blob equality, geospatial within/contains, over a bin, its list
//! elements, map keys or map values, optionally at a CDT context) with its wire encoding, the
//! INDEX_RANGE field with the INDEX_TYPE and INDEX_CONTEXT fields beside it.
//!
//! ```no_run
//! use petrel_client::{Bins, Client, ClientPolicy, IndexFilter, ScanPolicy};
//!
//! # async fn example() -> Result<(), petrel_client::Error> {
//! let client = Client::new(ClientPolicy::default(), &["127.0.0.1:3000"]).await?;
//! let mut adults = client
//!     .query(&ScanPolicy::default(), "test", "users", Bins::All, &IndexFilter::range("age", 18, 130))
//!     .await?;
//! while let Some(rec) = adults.next().await {
//!     println!("{:?}", rec?.bins);
//! }
//! # Ok(())
//! # }
//! ```

use std::time::{Duration, Instant};

use petrel_proto::message::write_field;
use petrel_proto::wire::{FieldType, ParticleType};

use crate::{Client, Error};

/// Which values of the bin an index holds (and a query asks about).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CollectionType {
    /// The bin's value itself.
    #[default]
    Default = 0,
    /// Each element of a list.
    List = 1,
    /// Each key of a map.
    MapKeys = 2,
    /// Each value of a map.
    MapValues = 3,
}

/// What a query asks of an index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexFilter {
    bin: String,
    particle: ParticleType,
    begin: Vec<u8>,
    end: Vec<u8>,
    collection: CollectionType,
    /// The CDT context (msgpack) of an index on nested elements.
    context: Option<Vec<u8>>,
}

impl IndexFilter {
    fn new(bin: &str, particle: ParticleType, begin: Vec<u8>, end: Vec<u8>) -> IndexFilter {
        IndexFilter { bin: bin.to_string(), particle, begin, end, collection: CollectionType::Default, context: None }
    }

    /// Integers from `begin` to `end`, both included.
    pub fn range(bin: &str, begin: i64, end: i64) -> IndexFilter {
        Self::new(bin, ParticleType::Integer, begin.to_be_bytes().to_vec(), end.to_be_bytes().to_vec())
    }

    /// Exactly the integer `value`.
    pub fn equal_int(bin: &str, value: i64) -> IndexFilter {
        Self::range(bin, value, value)
    }

    /// Exactly the string `value`.
    pub fn equal_str(bin: &str, value: &str) -> IndexFilter {
        Self::new(bin, ParticleType::String, value.as_bytes().to_vec(), value.as_bytes().to_vec())
    }

    /// Exactly the bytes `value`.
    pub fn equal_blob(bin: &str, value: &[u8]) -> IndexFilter {
        Self::new(bin, ParticleType::Blob, value.to_vec(), value.to_vec())
    }

    /// GeoJSON points within `region` (a Polygon, MultiPolygon or AeroCircle, as JSON text),
    /// or, on an index of regions, regions containing the point `region` names.
    pub fn geo(bin: &str, geojson: &str) -> IndexFilter {
        Self::new(bin, ParticleType::GeoJson, geojson.as_bytes().to_vec(), geojson.as_bytes().to_vec())
    }

    /// The same filter over the elements of a list, or the keys or values of a map.
    pub fn in_collection(mut self, collection: CollectionType) -> IndexFilter {
        self.collection = collection;
        self
    }

    /// The same filter on an index at a CDT context: the msgpack list `[type, value, ...]`
    /// the index was created with (e.g. `[0x22, "key"]` for a map key).
    pub fn at_context(mut self, context_msgpack: Vec<u8>) -> IndexFilter {
        self.context = Some(context_msgpack);
        self
    }

    /// Fields this filter adds to a query message.
    pub(crate) fn fields_count(&self) -> u16 {
        2 + u16::from(self.context.is_some())
    }

    /// Writes the INDEX_TYPE, INDEX_RANGE and (when set) INDEX_CONTEXT fields.
    pub(crate) fn write_fields(&self, buf: &mut Vec<u8>) {
        write_field(buf, FieldType::IndexType as u8, &[self.collection as u8]);
        let mut range = Vec::with_capacity(12 + self.bin.len() + self.begin.len() + self.end.len());
        range.push(1);
        range.push(self.bin.len() as u8);
        range.extend_from_slice(self.bin.as_bytes());
        range.push(self.particle as u8);
        range.extend_from_slice(&(self.begin.len() as u32).to_be_bytes());
        range.extend_from_slice(&self.begin);
        range.extend_from_slice(&(self.end.len() as u32).to_be_bytes());
        range.extend_from_slice(&self.end);
        write_field(buf, FieldType::IndexRange as u8, &range);
        if let Some(ctx) = &self.context {
            write_field(buf, FieldType::IndexContext as u8, ctx);
        }
    }

    /// The bin name, checked by the caller against the limit.
    pub(crate) fn bin(&self) -> &str {
        &self.bin
    }
}

/// The type of value an index holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexType {
    Numeric,
    String,
    Blob,
    Geo2dSphere,
}

impl IndexType {
    fn name(self) -> &'static str {
        match self {
            IndexType::Numeric => "NUMERIC",
            IndexType::String => "STRING",
            IndexType::Blob => "BLOB",
            IndexType::Geo2dSphere => "GEO2DSPHERE",
        }
    }
}

/// The server's answer to an index command, as a result.
fn check_answer(answers: &[(String, String)]) -> Result<(), Error> {
    match answers.first() {
        Some((_, v)) if v == "ok" => Ok(()),
        Some((_, v)) => Err(Error::Server {
            code: v.strip_prefix("ERROR:").and_then(|r| r.split(':').next()).and_then(|c| c.parse().ok()).unwrap_or(1),
        }),
        None => Err(Error::Protocol("index command: empty answer".into())),
    }
}

impl Client {
    /// Creates secondary index `name` on `bin` of `set` (the whole namespace when empty) and
    /// waits, at most `timeout`, until every node has indexed the records it holds. The
    /// cluster spreads the definition to every member, later ones included.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_index(
        &self,
        namespace: &str,
        set: &str,
        name: &str,
        bin: &str,
        index_type: IndexType,
        collection: CollectionType,
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut command =
            format!("sindex-create:ns={namespace};indexname={name};indexdata={bin},{}", index_type.name());
        if !set.is_empty() {
            command.push_str(&format!(";set={set}"));
        }
        let kind = match collection {
            CollectionType::Default => None,
            CollectionType::List => Some("LIST"),
            CollectionType::MapKeys => Some("MAPKEYS"),
            CollectionType::MapValues => Some("MAPVALUES"),
        };
        if let Some(kind) = kind {
            command.push_str(&format!(";indextype={kind}"));
        }
        check_answer(&self.info(None, &[&command]).await?)?;
        let deadline = Instant::now() + timeout;
        let stat = format!("sindex/{namespace}/{name}");
        loop {
            let mut built = true;
            for node in self.cluster.nodes() {
                let answers = self.info(Some(&node.name), &[&stat]).await?;
                built &= answers.first().is_some_and(|(_, v)| v.split(';').any(|kv| kv == "load_pct=100"));
            }
            if built {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Deletes secondary index `name` (on every node; no error when there is none).
    pub async fn drop_index(&self, namespace: &str, name: &str) -> Result<(), Error> {
        check_answer(&self.info(None, &[&format!("sindex-delete:ns={namespace};indexname={name}")]).await?)
    }
}
