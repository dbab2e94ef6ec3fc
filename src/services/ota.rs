//! Firmware and software package files: uploads streamed into storage chunk by chunk (bounded,
//! checksummed on the way, removed again when they fail or are abandoned) and byte ranges read
//! back for downloads.

use futures::Stream;
use uuid::Uuid;

use crate::domain::ota::{ChecksumAlgorithm, Checksummer, OtaPackageData};
use crate::storage::{DynStore, OTA_CHUNK_BYTES, StorageError};

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the file is larger than {0} bytes (ota.max_package_bytes)")]
    TooLarge(u64),
    #[error("OtaPackage data should be specified!")]
    Empty,
    #[error("Wrong otaPackage file!")]
    WrongChecksum,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A file being stored: bytes are collected into chunks of `OTA_CHUNK_BYTES` and written as each
/// fills, so at most one chunk is held. Until `keep` is called, dropping it (a failed upload, a
/// client that went away) deletes what was written.
pub struct BlobWriter {
    store: DynStore,
    blob: Uuid,
    buf: Vec<u8>,
    next_idx: i32,
    size: u64,
    limit: u64,
    hasher: Checksummer,
    kept: bool,
}

/// A complete, checksummed file in storage, not yet attached to a package.
pub struct StoredBlob {
    pub blob_id: Uuid,
    pub size: i64,
    pub checksum: String,
}

impl BlobWriter {
    /// `algorithm` None computes every algorithm's checksum (the form may name it later).
    pub fn new(store: DynStore, limit: u64, algorithm: Option<ChecksumAlgorithm>) -> Self {
        Self {
            store,
            blob: Uuid::new_v4(),
            buf: Vec::with_capacity(OTA_CHUNK_BYTES),
            next_idx: 0,
            size: 0,
            limit,
            hasher: Checksummer::new(algorithm),
            kept: false,
        }
    }

    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), UploadError> {
        self.size += data.len() as u64;
        if self.size > self.limit {
            return Err(UploadError::TooLarge(self.limit));
        }
        self.hasher.update(data);
        while !data.is_empty() {
            let take = (OTA_CHUNK_BYTES - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == OTA_CHUNK_BYTES {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.store
            .put_chunk(self.blob, self.next_idx, &self.buf)
            .await?;
        self.next_idx += 1;
        self.buf.clear();
        Ok(())
    }

    /// Writes the last chunk and checks the checksum against `expected` (when given, compared
    /// without regard to case). The blob stays owned by the writer: call `keep` once it is attached.
    pub async fn finish(
        &mut self,
        algorithm: ChecksumAlgorithm,
        expected: Option<&str>,
    ) -> Result<StoredBlob, UploadError> {
        if self.size == 0 {
            return Err(UploadError::Empty);
        }
        self.flush().await?;
        let hasher = std::mem::replace(&mut self.hasher, Checksummer::new(Some(algorithm)));
        let checksum = hasher.finish(algorithm).unwrap_or_default();
        if let Some(expected) = expected
            && !expected.trim().eq_ignore_ascii_case(&checksum)
        {
            return Err(UploadError::WrongChecksum);
        }
        Ok(StoredBlob {
            blob_id: self.blob,
            size: i64::try_from(self.size).unwrap_or(i64::MAX),
            checksum,
        })
    }

    /// The blob now belongs to a package: dropping the writer no longer deletes it.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.kept || (self.next_idx == 0) {
            return;
        }
        let (store, blob) = (self.store.clone(), self.blob);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = store.discard_blob(blob).await {
                    tracing::warn!(%blob, error = %e, "could not delete the chunks of an unfinished package upload");
                }
            });
        }
    }
}

/// Bytes `[offset, offset + len)` of a package file, cut at its end (empty past it).
pub async fn read_range(
    store: &dyn crate::storage::Store,
    data: &OtaPackageData,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, StorageError> {
    let size = u64::try_from(data.size).unwrap_or(0);
    if offset >= size || len == 0 {
        return Ok(Vec::new());
    }
    let end = offset.saturating_add(len).min(size);
    let chunk = OTA_CHUNK_BYTES as u64;
    let first = offset / chunk;
    let last = (end - 1) / chunk;
    let to_i32 = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    let chunks = store
        .read_chunks(data.blob_id, to_i32(first), to_i32(last))
        .await?;
    let mut out = Vec::with_capacity(usize::try_from(end - offset).unwrap_or(0));
    let mut pos = first * chunk;
    for c in chunks {
        let (c_start, c_end) = (pos, pos + c.len() as u64);
        let from = offset.max(c_start) - c_start;
        let to = end.min(c_end).saturating_sub(c_start);
        if from < to {
            out.extend_from_slice(&c[from as usize..to as usize]);
        }
        pos = c_end;
    }
    if out.len() as u64 != end - offset {
        return Err(StorageError::Database(format!(
            "package file {} is missing chunks",
            data.blob_id
        )));
    }
    Ok(out)
}

/// Chunks read per step of a streamed download.
const STREAM_CHUNKS: i32 = 4;

/// The whole file as a stream of pieces of at most `STREAM_CHUNKS` stored chunks, read as the
/// consumer asks for them.
pub fn stream_file(
    store: DynStore,
    data: OtaPackageData,
) -> impl Stream<Item = Result<axum::body::Bytes, StorageError>> + Send {
    let count = usize::try_from(data.size)
        .unwrap_or(0)
        .div_ceil(OTA_CHUNK_BYTES);
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    futures::stream::unfold(0i32, move |next| {
        let store = store.clone();
        let blob = data.blob_id;
        async move {
            if next >= count {
                return None;
            }
            let last = (next + STREAM_CHUNKS - 1).min(count - 1);
            let piece = match store.read_chunks(blob, next, last).await {
                Ok(chunks) if chunks.len() == usize::try_from(last - next + 1).unwrap_or(0) => {
                    Ok(axum::body::Bytes::from(chunks.concat()))
                }
                Ok(_) => Err(StorageError::Database(format!(
                    "package file {blob} is missing chunks"
                ))),
                Err(e) => Err(e),
            };
            let stop = if piece.is_err() { count } else { last + 1 };
            Some((piece, stop))
        }
    })
}
