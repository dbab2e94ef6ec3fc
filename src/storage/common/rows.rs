//! The row decoders shared by both backends, generated per row type by a macro (both backends
//! alias their columns to the same names and read JSON columns as text, so only the row type
//! differs).

/// Generates the row decoders for row type `$row`; `$json_text` maps stored JSON text to the
/// compact form.
macro_rules! row_decoders {
    ($row:ty, $json_text:path) => {
        use crate::domain::{
            Activation, AuthSession, ClaimData, Customer, CustomerId, Device, DeviceCredentials,
            DeviceId, DeviceProfile, DeviceProfileId, KvValue, Rpc, RpcStatus, Tenant, TenantId,
            User, UserId,
        };
        use crate::storage::common::Bucket;
        use crate::storage::{Result, StorageError};

        fn col<T>(row: &$row, name: &str) -> Result<T>
        where
            T: for<'r> sqlx::Decode<'r, <$row as sqlx::Row>::Database>
                + sqlx::Type<<$row as sqlx::Row>::Database>,
        {
            sqlx::Row::try_get(row, name).map_err(StorageError::from)
        }

        /// A JSON column read as text.
        fn json(row: &$row, name: &str) -> Result<Option<serde_json::Value>> {
            col::<Option<String>>(row, name)?
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|e| StorageError::Database(format!("{name}: {e}")))
        }

        fn parsed<T>(text: String, parse: fn(&str) -> Option<T>, what: &str) -> Result<T> {
            parse(&text).ok_or_else(|| StorageError::Database(format!("unknown {what} '{text}'")))
        }

        pub(super) fn tenant_of(row: &$row) -> Result<Tenant> {
            Ok(Tenant {
                id: TenantId(col(row, "id")?),
                title: col(row, "title")?,
                created_time: col(row, "created_time")?,
            })
        }

        pub(super) fn customer_of(row: &$row) -> Result<Customer> {
            Ok(Customer {
                id: CustomerId(col(row, "id")?),
                tenant_id: TenantId(col(row, "tenant_id")?),
                title: col(row, "title")?,
                created_time: col(row, "created_time")?,
            })
        }

        pub(super) fn activation_of(row: &$row) -> Result<Activation> {
            Ok(Activation {
                user_id: UserId(col(row, "user_id")?),
                token: col(row, "token")?,
                expires_at: col(row, "expires_at")?,
            })
        }

        pub(super) fn claim_of(row: &$row) -> Result<ClaimData> {
            Ok(ClaimData {
                secret_key: col(row, "secret_key")?,
                expiration_time: col(row, "expiration_time")?,
            })
        }

        pub(super) fn user_of(row: &$row) -> Result<User> {
            Ok(User {
                id: UserId(col(row, "id")?),
                created_time: col(row, "created_time")?,
                tenant_id: col::<Option<uuid::Uuid>>(row, "tenant_id")?.map(TenantId),
                customer_id: col::<Option<uuid::Uuid>>(row, "customer_id")?.map(CustomerId),
                email: col(row, "email")?,
                authority: parsed(
                    col(row, "authority")?,
                    crate::domain::Authority::parse,
                    "authority",
                )?,
                first_name: col(row, "first_name")?,
                last_name: col(row, "last_name")?,
                password_hash: col(row, "password_hash")?,
                enabled: col(row, "enabled")?,
                failed_logins: col(row, "failed_logins")?,
                locked_until: col(row, "locked_until")?,
            })
        }

        pub(super) fn session_of(row: &$row) -> Result<AuthSession> {
            Ok(AuthSession {
                id: col(row, "id")?,
                user_id: UserId(col(row, "user_id")?),
                refresh_id: col(row, "refresh_id")?,
                created_time: col(row, "created_time")?,
                expires_at: col(row, "expires_at")?,
            })
        }

        pub(super) fn profile_of(row: &$row) -> Result<DeviceProfile> {
            Ok(DeviceProfile {
                id: DeviceProfileId(col(row, "id")?),
                tenant_id: TenantId(col(row, "tenant_id")?),
                created_time: col(row, "created_time")?,
                name: col(row, "name")?,
                description: col(row, "description")?,
                is_default: col(row, "is_default")?,
                // Profiles created before profile data was kept have the defaults.
                profile_data: json(row, "profile_data")?
                    .unwrap_or_else(crate::domain::profile::default_profile_data),
                provision_device_key: col(row, "provision_device_key")?,
                firmware_id: col::<Option<uuid::Uuid>>(row, "firmware_id")?
                    .map(crate::domain::OtaPackageId),
                software_id: col::<Option<uuid::Uuid>>(row, "software_id")?
                    .map(crate::domain::OtaPackageId),
            })
        }

        pub(super) fn device_of(row: &$row) -> Result<Device> {
            Ok(Device {
                id: DeviceId(col(row, "id")?),
                tenant_id: TenantId(col(row, "tenant_id")?),
                customer_id: col::<Option<uuid::Uuid>>(row, "customer_id")?.map(CustomerId),
                created_time: col(row, "created_time")?,
                name: col(row, "name")?,
                label: col(row, "label")?,
                profile_id: DeviceProfileId(col(row, "profile_id")?),
                profile_name: col(row, "profile_name")?,
                additional_info: json(row, "additional_info")?.unwrap_or_default(),
                firmware_id: col::<Option<uuid::Uuid>>(row, "firmware_id")?
                    .map(crate::domain::OtaPackageId),
                software_id: col::<Option<uuid::Uuid>>(row, "software_id")?
                    .map(crate::domain::OtaPackageId),
                version: col(row, "version")?,
            })
        }

        pub(super) fn credentials_of(row: &$row) -> Result<DeviceCredentials> {
            Ok(DeviceCredentials {
                id: col(row, "cred_id")?,
                device_id: DeviceId(col(row, "cred_device_id")?),
                created_time: col(row, "cred_created_time")?,
                credentials_type: col(row, "credentials_type")?,
                credentials_id: col(row, "credentials_id")?,
                credentials_value: col(row, "credentials_value")?,
                version: col(row, "cred_version")?,
            })
        }

        pub(super) fn rpc_of(row: &$row) -> Result<Rpc> {
            Ok(Rpc {
                id: col(row, "id")?,
                tenant_id: TenantId(col(row, "tenant_id")?),
                device_id: DeviceId(col(row, "device_id")?),
                created_time: col(row, "created_time")?,
                expiration_time: col(row, "expiration_time")?,
                request: json(row, "request")?.unwrap_or_default(),
                response: json(row, "response")?,
                status: parsed(col(row, "status")?, RpcStatus::parse, "rpc status")?,
                retries: col(row, "retries")?,
                additional_info: json(row, "additional_info")?,
            })
        }

        /// The typed value of a row with `bool_v .. json_v`; None when every column is null.
        pub(super) fn value_of(row: &$row) -> Result<Option<KvValue>> {
            Ok(crate::storage::common::value_of(
                col(row, "bool_v")?,
                col(row, "long_v")?,
                col(row, "dbl_v")?,
                col(row, "str_v")?,
                col::<Option<String>>(row, "json_v")?.map($json_text),
            ))
        }

        pub(super) fn ota_package_of(row: &$row) -> Result<crate::domain::OtaPackage> {
            use crate::domain::ota::{ChecksumAlgorithm, OtaPackageData, OtaPackageType};
            let blob: Option<uuid::Uuid> = col(row, "blob_id")?;
            let data = match blob {
                None => None,
                Some(blob_id) => Some(OtaPackageData {
                    blob_id,
                    file_name: col::<Option<String>>(row, "file_name")?.unwrap_or_default(),
                    content_type: col::<Option<String>>(row, "content_type")?.unwrap_or_default(),
                    checksum_algorithm: parsed(
                        col::<Option<String>>(row, "checksum_algorithm")?.unwrap_or_default(),
                        ChecksumAlgorithm::parse,
                        "checksum algorithm",
                    )?,
                    checksum: col::<Option<String>>(row, "checksum")?.unwrap_or_default(),
                    size: col::<Option<i64>>(row, "data_size")?.unwrap_or_default(),
                }),
            };
            Ok(crate::domain::OtaPackage {
                id: crate::domain::OtaPackageId(col(row, "id")?),
                tenant_id: TenantId(col(row, "tenant_id")?),
                created_time: col(row, "created_time")?,
                profile_id: DeviceProfileId(col(row, "device_profile_id")?),
                package_type: parsed(col(row, "type")?, OtaPackageType::parse, "package type")?,
                title: col(row, "title")?,
                version: col(row, "version")?,
                tag: col(row, "tag")?,
                url: col(row, "url")?,
                data,
                additional_info: json(row, "additional_info")?.unwrap_or_default(),
            })
        }

        pub(super) fn bucket_of(row: &$row) -> Result<Bucket> {
            Ok(Bucket {
                idx: col(row, "idx")?,
                count: col(row, "cnt")?,
                long_count: col(row, "cnt_l")?,
                dbl_count: col(row, "cnt_d")?,
                long_sum: col(row, "sum_l")?,
                long_sum_f: col(row, "sum_lf")?,
                dbl_sum: col(row, "sum_d")?,
                long_min: col(row, "min_l")?,
                long_max: col(row, "max_l")?,
                dbl_min: col(row, "min_d")?,
                dbl_max: col(row, "max_d")?,
                str_min: col(row, "min_s")?,
                str_max: col(row, "max_s")?,
            })
        }
    };
}
pub(crate) use row_decoders;
