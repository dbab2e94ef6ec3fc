//! The row decoders shared by both backends, generated per row type by a macro (both backends
//! alias their columns to the same names).

/// Generates the row decoders for one backend's row type; `$json_text` maps stored JSON text to
/// the compact form. Both backends alias their columns to the
/// same names (JSON columns are read as text), so only the row type differs.
macro_rules! row_decoders {
    ($row:ty, $json_text:path) => {
        fn col<T>(row: &$row, name: &str) -> $crate::storage::Result<T>
        where
            T: for<'r> sqlx::Decode<'r, <$row as sqlx::Row>::Database>
                + sqlx::Type<<$row as sqlx::Row>::Database>,
        {
            sqlx::Row::try_get(row, name).map_err($crate::storage::StorageError::from)
        }

        pub(super) fn tenant_of(row: &$row) -> $crate::storage::Result<$crate::storage::Tenant> {
            Ok($crate::storage::Tenant {
                id: $crate::domain::TenantId(col(row, "id")?),
                title: col(row, "title")?,
                created_time: col(row, "created_time")?,
            })
        }

        pub(super) fn user_of(row: &$row) -> $crate::storage::Result<$crate::storage::User> {
            let authority: String = col(row, "authority")?;
            Ok($crate::storage::User {
                id: $crate::domain::UserId(col(row, "id")?),
                created_time: col(row, "created_time")?,
                tenant_id: col::<Option<uuid::Uuid>>(row, "tenant_id")?
                    .map($crate::domain::TenantId),
                customer_id: col::<Option<uuid::Uuid>>(row, "customer_id")?
                    .map($crate::domain::CustomerId),
                email: col(row, "email")?,
                authority: $crate::storage::Authority::parse(&authority).ok_or_else(|| {
                    $crate::storage::StorageError::Database(format!(
                        "unknown authority '{authority}'"
                    ))
                })?,
                first_name: col(row, "first_name")?,
                last_name: col(row, "last_name")?,
                password_hash: col(row, "password_hash")?,
            })
        }

        pub(super) fn profile_of(
            row: &$row,
        ) -> $crate::storage::Result<$crate::storage::DeviceProfile> {
            Ok($crate::storage::DeviceProfile {
                id: $crate::domain::DeviceProfileId(col(row, "id")?),
                tenant_id: $crate::domain::TenantId(col(row, "tenant_id")?),
                created_time: col(row, "created_time")?,
                name: col(row, "name")?,
                description: col(row, "description")?,
                is_default: col(row, "is_default")?,
            })
        }

        pub(super) fn device_of(row: &$row) -> $crate::storage::Result<$crate::storage::Device> {
            let info: String = col(row, "additional_info")?;
            Ok($crate::storage::Device {
                id: $crate::domain::DeviceId(col(row, "id")?),
                tenant_id: $crate::domain::TenantId(col(row, "tenant_id")?),
                customer_id: col::<Option<uuid::Uuid>>(row, "customer_id")?
                    .map($crate::domain::CustomerId),
                created_time: col(row, "created_time")?,
                name: col(row, "name")?,
                label: col(row, "label")?,
                profile_id: $crate::domain::DeviceProfileId(col(row, "profile_id")?),
                profile_name: col(row, "profile_name")?,
                additional_info: serde_json::from_str(&info).map_err(|e| {
                    $crate::storage::StorageError::Database(format!("additional_info: {e}"))
                })?,
                version: col(row, "version")?,
            })
        }

        pub(super) fn credentials_of(
            row: &$row,
        ) -> $crate::storage::Result<$crate::storage::DeviceCredentials> {
            Ok($crate::storage::DeviceCredentials {
                id: col(row, "cred_id")?,
                device_id: $crate::domain::DeviceId(col(row, "cred_device_id")?),
                created_time: col(row, "cred_created_time")?,
                credentials_type: col(row, "credentials_type")?,
                credentials_id: col(row, "credentials_id")?,
                credentials_value: col(row, "credentials_value")?,
                version: col(row, "cred_version")?,
            })
        }

        pub(super) fn rpc_of(row: &$row) -> $crate::storage::Result<$crate::storage::Rpc> {
            let json = |name: &str, text: String| {
                serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
                    $crate::storage::StorageError::Database(format!("rpc {name}: {e}"))
                })
            };
            let status: String = col(row, "status")?;
            Ok($crate::storage::Rpc {
                id: col(row, "id")?,
                tenant_id: $crate::domain::TenantId(col(row, "tenant_id")?),
                device_id: $crate::domain::DeviceId(col(row, "device_id")?),
                created_time: col(row, "created_time")?,
                expiration_time: col(row, "expiration_time")?,
                request: json("request", col(row, "request")?)?,
                response: col::<Option<String>>(row, "response")?
                    .map(|t| json("response", t))
                    .transpose()?,
                status: $crate::storage::RpcStatus::parse(&status).ok_or_else(|| {
                    $crate::storage::StorageError::Database(format!(
                        "unknown rpc status '{status}'"
                    ))
                })?,
                retries: col(row, "retries")?,
                additional_info: col::<Option<String>>(row, "additional_info")?
                    .map(|t| json("additional_info", t))
                    .transpose()?,
            })
        }

        /// The typed value of a row with `bool_v .. json_v`; None when every column is null.
        pub(super) fn value_of(
            row: &$row,
        ) -> $crate::storage::Result<Option<$crate::domain::KvValue>> {
            Ok($crate::storage::common::value_of(
                col(row, "bool_v")?,
                col(row, "long_v")?,
                col(row, "dbl_v")?,
                col(row, "str_v")?,
                col::<Option<String>>(row, "json_v")?.map($json_text),
            ))
        }

        pub(super) fn bucket_of(
            row: &$row,
        ) -> $crate::storage::Result<$crate::storage::common::Bucket> {
            Ok($crate::storage::common::Bucket {
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
