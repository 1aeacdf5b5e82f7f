//! A small blocking facade over the async client, for programs without a tokio runtime.

use crate::client::{Bins, Client as AsyncClient};
use crate::key::Key;
use crate::operation::Operation;
use crate::policy::{BatchPolicy, ClientPolicy, ReadPolicy, ScanPolicy, WritePolicy};
use crate::record::Record;
use crate::value::Bin;
use crate::Error;

/// A blocking client: the async client on a private runtime.
#[derive(Debug)]
pub struct Client {
    runtime: tokio::runtime::Runtime,
    inner: AsyncClient,
}

impl Client {
    pub fn new(policy: ClientPolicy, seeds: &[&str]) -> Result<Client, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let inner = runtime.block_on(AsyncClient::new(policy, seeds))?;
        Ok(Client { runtime, inner })
    }

    pub fn get(&self, policy: &ReadPolicy, key: &Key, bins: Bins<'_>) -> Result<Record, Error> {
        self.runtime.block_on(self.inner.get(policy, key, bins))
    }

    pub fn put(&self, policy: &WritePolicy, key: &Key, bins: &[Bin]) -> Result<(), Error> {
        self.runtime.block_on(self.inner.put(policy, key, bins))
    }

    pub fn delete(&self, policy: &WritePolicy, key: &Key) -> Result<bool, Error> {
        self.runtime.block_on(self.inner.delete(policy, key))
    }

    pub fn exists(&self, policy: &ReadPolicy, key: &Key) -> Result<bool, Error> {
        self.runtime.block_on(self.inner.exists(policy, key))
    }

    pub fn touch(&self, policy: &WritePolicy, key: &Key) -> Result<(), Error> {
        self.runtime.block_on(self.inner.touch(policy, key))
    }

    pub fn operate(&self, policy: &WritePolicy, key: &Key, ops: &[Operation]) -> Result<Record, Error> {
        self.runtime.block_on(self.inner.operate(policy, key, ops))
    }

    pub fn batch_get(&self, policy: &BatchPolicy, keys: &[Key], bins: Bins<'_>) -> Result<Vec<Option<Record>>, Error> {
        self.runtime.block_on(self.inner.batch_get(policy, keys, bins))
    }

    /// Scans and collects every record (use the async client to stream large scans).
    pub fn scan_all(
        &self,
        policy: &ScanPolicy,
        namespace: &str,
        set: &str,
        bins: Bins<'_>,
    ) -> Result<Vec<Record>, Error> {
        self.runtime.block_on(async {
            let mut stream = self.inner.scan(policy, namespace, set, bins).await?;
            let mut out = Vec::new();
            while let Some(r) = stream.next().await {
                out.push(r?);
            }
            Ok(out)
        })
    }
}
