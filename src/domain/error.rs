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
    /// The database cannot hold this write's data (a key too long, a NUL, a value it refuses):
    /// the message is invalid and re-sending it cannot help.
    #[error("{0}")]
    Invalid(String),
    /// The batch writer is shutting down or its queue is closed.
    #[error("storage is shutting down")]
    Closed,
}
