//! Firmware and software packages (ThingsBoard's OtaPackage): their kinds, checksum algorithms and
//! the streaming checksum that ThingsBoard renders.

use serde_json::Value;

use super::{DeviceProfileId, OtaPackageId, TenantId};

pub mod checksum;

pub use checksum::Checksummer;

/// FIRMWARE or SOFTWARE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OtaPackageType {
    Firmware,
    Software,
}

impl OtaPackageType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firmware => "FIRMWARE",
            Self::Software => "SOFTWARE",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "FIRMWARE" => Some(Self::Firmware),
            "SOFTWARE" => Some(Self::Software),
            _ => None,
        }
    }

    /// The attribute and telemetry prefix: `fw` or `sw`.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Firmware => "fw",
            Self::Software => "sw",
        }
    }
}

/// ThingsBoard's `ChecksumAlgorithm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    Md5,
    Sha256,
    Sha384,
    Sha512,
    Crc32,
    Murmur3_32,
    Murmur3_128,
}

impl ChecksumAlgorithm {
    pub const ALL: [Self; 7] = [
        Self::Md5,
        Self::Sha256,
        Self::Sha384,
        Self::Sha512,
        Self::Crc32,
        Self::Murmur3_32,
        Self::Murmur3_128,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA256",
            Self::Sha384 => "SHA384",
            Self::Sha512 => "SHA512",
            Self::Crc32 => "CRC32",
            Self::Murmur3_32 => "MURMUR3_32",
            Self::Murmur3_128 => "MURMUR3_128",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// Where a package's file lives once uploaded, and what describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct OtaPackageData {
    /// The stored chunks' key (see `storage::OtaStore`).
    pub blob_id: uuid::Uuid,
    pub file_name: String,
    pub content_type: String,
    pub checksum_algorithm: ChecksumAlgorithm,
    pub checksum: String,
    pub size: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OtaPackage {
    pub id: OtaPackageId,
    pub tenant_id: TenantId,
    pub created_time: i64,
    pub profile_id: DeviceProfileId,
    pub package_type: OtaPackageType,
    pub title: String,
    pub version: String,
    pub tag: Option<String>,
    /// A package served from elsewhere: it never has data.
    pub url: Option<String>,
    pub data: Option<OtaPackageData>,
    pub additional_info: Value,
}

impl OtaPackage {
    /// `hasData`: an uploaded file.
    pub fn has_data(&self) -> bool {
        self.data.is_some()
    }
}
