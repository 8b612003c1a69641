//! What can stop one reconcile: the store or a node failed. Either way the reconcile is
//! retried with a back-off; nothing here is an API error.

use store::UpdateError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("node: {0}")]
    Node(#[from] nodes::NodeError),
    /// The store holds something the reconcile cannot act on (a record naming what is gone).
    #[error("{0}")]
    Inconsistent(String),
}

/// The outcome of a store read-modify-write whose change may decline (nothing left to
/// do, `Rejected`): only a store failure is an error.
pub(crate) fn stored<T, E>(result: Result<T, UpdateError<E>>) -> Result<(), Error> {
    match result {
        Err(UpdateError::Store(e)) => Err(Error::Store(e)),
        _ => Ok(()),
    }
}
