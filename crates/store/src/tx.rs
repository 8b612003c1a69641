//! One write transaction: the unit every state change is made of.
//!
//! [`Store::write`] runs a closure over one [`Tx`]: its reads, its checks and its writes
//! (events included) happen together under the store's write lock, so a check can never be
//! overtaken by another writer between reading and writing. The closure refuses with
//! [`UpdateError::Rejected`], and then nothing it wrote stays.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::{Sqlite, SqliteConnection, Transaction};
use tokio::sync::{OwnedMutexGuard, watch};

use crate::shared::Sequence;
use crate::{Result, Store, StoreError, UpdateError};

/// A write transaction under the write lock. Dropped without [`Tx::commit`], it rolls back.
pub struct Tx {
    // Declared first, so dropped first: the transaction ends before the lock is released
    // and watchers are told.
    conn: Transaction<'static, Sqlite>,
    _writer: Writer,
}

/// The write lock, held for a whole transaction; tells [`Store::changes`] watchers when a
/// write was committed. A rolled-back one changed nothing, and waking them for it would
/// wake the reconciler for nothing (whose no-op passes would then loop).
struct Writer {
    _lock: OwnedMutexGuard<()>,
    changes: Arc<watch::Sender<u64>>,
    /// Moved when the write begins and again when it is over (see `shared`).
    sequence: Arc<Sequence>,
    committed: bool,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.sequence.bump();
        if self.committed {
            self.changes.send_modify(|generation| *generation = generation.wrapping_add(1));
        }
    }
}

impl Deref for Tx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        let Tx { conn, _writer: mut writer } = self;
        conn.commit().await?;
        writer.committed = true;
        Ok(())
    }
}

impl<E> From<StoreError> for UpdateError<E> {
    fn from(error: StoreError) -> Self {
        UpdateError::Store(error)
    }
}

impl<E> From<sqlx::Error> for UpdateError<E> {
    fn from(error: sqlx::Error) -> Self {
        UpdateError::Store(error.into())
    }
}

impl Store {
    /// Takes the write lock and begins a transaction. `IMMEDIATE`: a deferred transaction
    /// that read first could not upgrade to write while the previous writer's connection is
    /// still rolling back, and SQLite answers that with "database is locked" at once.
    pub(crate) async fn begin(&self) -> Result<Tx> {
        let lock = self.write_lock.clone().lock_owned().await;
        let conn = self.writers.begin_with("BEGIN IMMEDIATE").await?;
        let sequence = self.shared.sequence.clone();
        // Before anything can be written: reads kept from now on are not kept.
        sequence.bump();
        let writer = Writer { _lock: lock, changes: self.changes.clone(), sequence, committed: false };
        Ok(Tx { conn, _writer: writer })
    }

    /// Runs `work` in one transaction and commits what it did, unless it fails: then
    /// nothing it wrote stays.
    pub async fn write<T, E>(
        &self,
        work: impl AsyncFnOnce(&mut Tx) -> std::result::Result<T, UpdateError<E>>,
    ) -> std::result::Result<T, UpdateError<E>> {
        let mut tx = self.begin().await?;
        let done = work(&mut tx).await?;
        tx.commit().await?;
        Ok(done)
    }
}
