//! The error every store reports, mapped by the layers above to MQTT reason codes and REST errors.

/// Storage failures, mapped by the layers above to MQTT reason codes and REST errors.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StorageError {
    /// A uniqueness rule was violated; the text is the user-facing message.
    #[error("{0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    #[error("database error: {0}")]
    Database(String),
    /// The batch writer is shutting down or its queue is closed.
    #[error("storage is shutting down")]
    Closed,
}
