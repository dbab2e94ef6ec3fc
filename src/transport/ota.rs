//! Firmware and software downloads whatever the transport: the package assigned to the device,
//! read by chunk from storage on the main runtime.

use crate::domain::StorageError;
use crate::domain::ota::{OtaPackageData, OtaPackageType};
use crate::services::ota_state::target_of;
use crate::transport::uplink::DeviceLink;

/// Why a chunk cannot be served; the text is what the device gets (ThingsBoard's statuses).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Nothing assigned, or the package is gone.
    #[error("NOT_FOUND")]
    NotFound,
    /// A URL package: no file to serve.
    #[error("FAILURE")]
    Failure,
    /// The chunk would not fit in one message.
    #[error("PAYLOAD_TOO_LARGE")]
    PayloadTooLarge,
    #[error("UNKNOWN")]
    Unknown,
    /// The assigned package is not the title and version asked for (HTTP).
    #[error("the assigned package has another title or version")]
    Mismatch,
}

/// One chunk request: `size` 0 is the whole file.
#[derive(Clone, Copy, Debug)]
pub struct ChunkRequest {
    pub kind: OtaPackageType,
    pub size: u64,
    pub chunk: u64,
    /// The largest chunk the transport can carry.
    pub max: u64,
    /// A size above `max` is answered with chunks of `max` bytes (chunk `chunk` of those)
    /// rather than refused.
    pub shrink: bool,
}

/// The bytes of a chunk and the chunk size they were cut with.
#[derive(Debug)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    /// The size asked for, or `max` when that was smaller (see `ChunkRequest::shrink`).
    pub size: u64,
    /// Whether `size` is smaller than what was asked for.
    pub shrunk: bool,
}

impl DeviceLink<'_> {
    /// The file of the package of `kind` assigned to the device (its own, else its profile's);
    /// with `expect`, only when it has that title and version.
    pub async fn package_file(
        &self,
        kind: OtaPackageType,
        expect: Option<(String, String)>,
    ) -> Result<OtaPackageData, ChunkError> {
        let services = self.state.services.clone();
        let (tenant, device) = (self.device.tenant_id, self.device.id);
        let task = self.state.rt.spawn(async move {
            let store = &services.store;
            let Some(device) = store.get_device(tenant, device).await? else {
                return Ok(Err(ChunkError::Unknown));
            };
            let assigned = target_of(&services, &device, kind).await?;
            let Some(id) = assigned else {
                return Ok(Err(ChunkError::NotFound));
            };
            let Some(package) = store.get_package(tenant, id).await? else {
                return Ok(Err(ChunkError::NotFound));
            };
            if let Some((title, version)) = expect
                && (title != package.title || version != package.version)
            {
                return Ok(Err(ChunkError::Mismatch));
            }
            Ok::<_, StorageError>(package.data.ok_or(ChunkError::Failure))
        });
        self.settle(task.await)
    }

    /// Bytes `[size * chunk, size * (chunk + 1))` of the device's package (empty past its end).
    pub async fn package_chunk(
        &self,
        req: ChunkRequest,
        expect: Option<(String, String)>,
    ) -> Result<Chunk, ChunkError> {
        let data = self.package_file(req.kind, expect).await?;
        let file_size = u64::try_from(data.size).unwrap_or(0);
        let asked = if req.size == 0 { file_size } else { req.size };
        let shrunk = asked > req.max;
        if shrunk && (!req.shrink || req.max == 0) {
            return Err(ChunkError::PayloadTooLarge);
        }
        let size = asked.min(req.max);
        let store = self.state.services.store.clone();
        let offset = size.saturating_mul(req.chunk);
        let task = self.state.rt.spawn(async move {
            crate::services::ota::read_range(store.as_ref(), &data, offset, size)
                .await
                .map(Ok)
        });
        let bytes = self.settle(task.await)?;
        Ok(Chunk {
            bytes,
            size,
            shrunk,
        })
    }

    fn settle<T>(
        &self,
        joined: Result<Result<Result<T, ChunkError>, StorageError>, tokio::task::JoinError>,
    ) -> Result<T, ChunkError> {
        match joined {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::warn!(device = %self.device.id, error = %e, "could not read a package");
                Err(ChunkError::Unknown)
            }
            Err(_) => Err(ChunkError::Unknown),
        }
    }
}
