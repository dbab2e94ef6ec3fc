//! OTA packages (firmware and software): package infos, the multipart upload streamed into
//! storage, downloads, lists and deletion.

use axum::body::Body;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::State as AppStateRef;
use super::auth::{TenantAdmin, TenantUser};
use super::error::{ApiError, ITEM_NOT_FOUND_MSG, JsonBody, Params, parse_uuid};
use super::paging::{page_json, page_query_sorted};
use crate::domain::ota::{ChecksumAlgorithm, OtaPackageData, OtaPackageType};
use crate::domain::{DeviceProfileId, OtaPackage, OtaPackageId, TenantId, now_ms};
use crate::services::ota::{BlobWriter, UploadError, stream_file};

/// Sort properties of the package lists.
const SORT_PROPERTIES: [&str; 9] = [
    "createdTime",
    "title",
    "name",
    "version",
    "type",
    "tag",
    "url",
    "fileName",
    "dataSize",
];

/// The longest text a form field other than the file may hold.
const MAX_FIELD_BYTES: usize = 1024;

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/otaPackage", post(save_info))
        .route(
            "/api/otaPackage/{otaPackageId}",
            // The upload is bounded by `ota.max_package_bytes`, not by the REST body limit.
            post(upload)
                .layer(DefaultBodyLimit::disable())
                .get(get_package)
                .delete(delete_package),
        )
        .route("/api/otaPackage/info/{otaPackageId}", get(get_info))
        .route("/api/otaPackage/{otaPackageId}/download", get(download))
        .route("/api/otaPackages", get(page_all))
        .route(
            "/api/otaPackages/{deviceProfileId}/{type}",
            get(page_by_profile),
        )
}

/// ThingsBoard's OtaPackageInfo JSON.
pub fn info_json(p: &OtaPackage) -> Value {
    let data = p.data.as_ref();
    json!({
        "id": p.id.to_json(),
        "createdTime": p.created_time,
        "tenantId": p.tenant_id.to_json(),
        "deviceProfileId": p.profile_id.to_json(),
        "type": p.package_type.as_str(),
        "title": p.title,
        "version": p.version,
        "tag": p.tag,
        "url": p.url,
        "hasData": p.has_data(),
        "fileName": data.map(|d| d.file_name.as_str()),
        "contentType": data.map(|d| d.content_type.as_str()),
        "checksumAlgorithm": data.map(|d| d.checksum_algorithm.as_str()),
        "checksum": data.map(|d| d.checksum.as_str()),
        "dataSize": data.map(|d| d.size),
        "externalId": null,
        "additionalInfo": p.additional_info,
        "name": p.title,
    })
}

fn not_found() -> ApiError {
    ApiError::NotFound(ITEM_NOT_FOUND_MSG.to_owned())
}

/// The caller's package by path id: 400 for a malformed id, 403 for another tenant's, 404 when
/// absent.
pub(crate) async fn load_package(
    state: &AppStateRef,
    tenant: TenantId,
    id: &str,
) -> Result<OtaPackage, ApiError> {
    let id = OtaPackageId(parse_uuid(id)?);
    let store = &state.services.store;
    if let Some(package) = store.get_package(tenant, id).await? {
        return Ok(package);
    }
    match store.package_owner(id).await? {
        Some(_) => Err(ApiError::PermissionDenied),
        None => Err(not_found()),
    }
}

/// A required text member of the info body.
fn text_member(body: &Value, name: &str, missing: &str) -> Result<String, ApiError> {
    match body.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        _ => Err(ApiError::bad_request(missing)),
    }
}

/// The uuid of an entity id member `{"entityType": ..., "id": ...}` (or a bare uuid string).
fn id_member(body: &Value, name: &str) -> Result<Option<uuid::Uuid>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => match o.get("id") {
            Some(Value::String(s)) => parse_uuid(s).map(Some),
            _ => Err(ApiError::bad_request(format!("Invalid {name}"))),
        },
        Some(Value::String(s)) => parse_uuid(s).map(Some),
        Some(_) => Err(ApiError::bad_request(format!("Invalid {name}"))),
    }
}

/// `POST /api/otaPackage`: creates a package without its file (or a URL package).
async fn save_info(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("Invalid request body"));
    }
    if id_member(&body, "id")?.is_some() {
        return Err(ApiError::bad_request(
            "Updating an OtaPackage is not supported: create a new title and version",
        ));
    }
    let title = text_member(&body, "title", "OtaPackage title should be specified!")?;
    let version = text_member(&body, "version", "OtaPackage version should be specified!")?;
    let package_type = match body.get("type") {
        Some(Value::String(t)) => OtaPackageType::parse(t)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid OtaPackage type: {t}")))?,
        _ => return Err(ApiError::bad_request("Type should be specified!")),
    };
    let profile_id = id_member(&body, "deviceProfileId")?
        .ok_or_else(|| ApiError::bad_request("OtaPackage should be assigned to device profile!"))?;
    let profile = state
        .services
        .store
        .get_profile(caller.tenant, DeviceProfileId(profile_id))
        .await?
        .ok_or_else(|| {
            ApiError::bad_request("OtaPackage is referencing a non-existent device profile!")
        })?;
    let uses_url = body
        .get("usesUrl")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let url = match body.get("url") {
        Some(Value::String(u)) if !u.trim().is_empty() => Some(u.clone()),
        _ => None,
    };
    if uses_url && url.is_none() {
        return Err(ApiError::bad_request("OtaPackage URL should be specified!"));
    }
    let tag = match body.get("tag") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        _ => format!("{title} {version}"),
    };
    let package = OtaPackage {
        id: OtaPackageId::new(),
        tenant_id: caller.tenant,
        created_time: now_ms(),
        profile_id: profile.id,
        package_type,
        title,
        version,
        tag: Some(tag),
        url: if uses_url { url } else { None },
        data: None,
        additional_info: body.get("additionalInfo").cloned().unwrap_or(Value::Null),
    };
    state.services.store.create_package(&package).await?;
    Ok(Json(info_json(&package)))
}

/// A customer user may read package infos, as in ThingsBoard.
async fn get_info(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(info_json(
        &load_package(&state, caller.tenant, &id).await?,
    )))
}

/// The package with `data`: the file itself is only served by `/download` (streamed), so `data`
/// is null here rather than the whole file in memory.
async fn get_package(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut v = info_json(&load_package(&state, caller.tenant, &id).await?);
    v["data"] = Value::Null;
    Ok(Json(v))
}

/// Reads a small form field (checksum, algorithm) as text, refusing long ones.
async fn small_field(mut field: Field<'_>) -> Result<String, ApiError> {
    let name = field.name().unwrap_or_default().to_owned();
    let mut out = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        out.extend_from_slice(&chunk);
        if out.len() > MAX_FIELD_BYTES {
            return Err(ApiError::bad_request(format!(
                "Form field '{name}' is longer than {MAX_FIELD_BYTES} bytes"
            )));
        }
    }
    String::from_utf8(out)
        .map(|s| s.trim().to_owned())
        .map_err(|_| ApiError::bad_request(format!("Form field '{name}' is not UTF-8")))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::bad_request(format!("Invalid multipart request: {}", e.body_text()))
}

fn parse_algorithm(text: &str) -> Result<ChecksumAlgorithm, ApiError> {
    ChecksumAlgorithm::parse(text.trim())
        .ok_or_else(|| ApiError::bad_request(format!("Unsupported checksum algorithm: {text}")))
}

fn upload_error(e: UploadError) -> ApiError {
    match e {
        UploadError::TooLarge(limit) => {
            tracing::info!(
                limit,
                "package upload refused: the file is larger than ota.max_package_bytes"
            );
            ApiError::PayloadTooLarge
        }
        UploadError::Empty | UploadError::WrongChecksum => ApiError::bad_request(e.to_string()),
        UploadError::Storage(e) => e.into(),
    }
}

/// `POST /api/otaPackage/{id}?checksumAlgorithm=&checksum=` with the file as part `file`; the
/// checksum and algorithm may also be form fields (tb-rest-client sends them so). A refusal may
/// leave the body unread, so its connection is closed rather than reused.
async fn upload(
    state: State<AppStateRef>,
    caller: TenantAdmin,
    id: Path<String>,
    params: Params,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    match store_upload(state, caller, id, params, multipart).await {
        Ok(json) => json.into_response(),
        Err(e) => {
            let mut resp = e.into_response();
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    }
}

async fn store_upload(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    Path(id): Path<String>,
    params: Params,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Value>, ApiError> {
    let package = load_package(&state, caller.tenant, &id).await?;
    if package.url.is_some() {
        return Err(ApiError::bad_request(
            "OtaPackage with URL cannot have data uploaded!",
        ));
    }
    if package.has_data() {
        return Err(ApiError::bad_request(
            "Updating otaPackage data is prohibited!",
        ));
    }
    let mut multipart = multipart.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut algorithm = params
        .get("checksumAlgorithm")
        .filter(|a| !a.trim().is_empty())
        .map(parse_algorithm)
        .transpose()?;
    let mut checksum = params
        .get("checksum")
        .filter(|c| !c.trim().is_empty())
        .map(str::to_owned);
    let mut file: Option<(BlobWriter, String, String)> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or_default() {
            "file" if file.is_none() => {
                let file_name = field.file_name().unwrap_or_default().to_owned();
                let content_type = field
                    .content_type()
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                let limit = state.config.ota.max_package_bytes;
                let mut writer = BlobWriter::new(state.services.store.clone(), limit, algorithm);
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    writer.write(&chunk).await.map_err(upload_error)?;
                }
                file = Some((writer, file_name, content_type));
            }
            "checksumAlgorithm" => {
                let text = small_field(field).await?;
                if !text.is_empty() && algorithm.is_none() {
                    algorithm = Some(parse_algorithm(&text)?);
                }
            }
            "checksum" => {
                let text = small_field(field).await?;
                if !text.is_empty() && checksum.is_none() {
                    checksum = Some(text);
                }
            }
            // Other parts are read past.
            _ => while field.chunk().await.map_err(multipart_error)?.is_some() {},
        }
    }
    let algorithm = algorithm.ok_or_else(|| {
        ApiError::bad_request("Required request parameter 'checksumAlgorithm' is not present")
    })?;
    let (mut writer, file_name, content_type) =
        file.ok_or_else(|| ApiError::bad_request("Required request part 'file' is not present"))?;
    let stored = writer
        .finish(algorithm, checksum.as_deref())
        .await
        .map_err(upload_error)?;
    let data = OtaPackageData {
        blob_id: stored.blob_id,
        file_name,
        content_type,
        checksum_algorithm: algorithm,
        checksum: stored.checksum,
        size: stored.size,
    };
    if !state
        .services
        .store
        .attach_data(caller.tenant, package.id, &data)
        .await?
    {
        // Deleted, or given a file by a concurrent upload, meanwhile; the writer drops this one.
        return Err(ApiError::bad_request(
            "Updating otaPackage data is prohibited!",
        ));
    }
    writer.keep();
    let package = OtaPackage {
        data: Some(data),
        ..package
    };
    Ok(Json(info_json(&package)))
}

/// `GET /api/otaPackage/{id}/download`: the file, streamed from storage.
async fn download(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let package = load_package(&state, caller.tenant, &id).await?;
    let Some(data) = package.data else {
        return Err(ApiError::bad_request(if package.url.is_some() {
            "OtaPackage is served from its URL and has no data"
        } else {
            "OtaPackage has no data"
        }));
    };
    let mut headers = axum::http::HeaderMap::new();
    let content_type = HeaderValue::from_str(&data.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(data.size));
    let name: String = data
        .file_name
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .filter(|c| *c != '"')
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment;filename={name}")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&name) {
        headers.insert("x-filename", v);
    }
    let body = Body::from_stream(stream_file(state.services.store.clone(), data));
    Ok((headers, body).into_response())
}

async fn page_all(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let query = page_query_sorted(&params, &SORT_PROPERTIES)?;
    let page = state
        .services
        .store
        .page_packages(caller.tenant, None, &query)
        .await?;
    Ok(Json(page_json(&page, &query, info_json)))
}

async fn page_by_profile(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((profile, kind)): Path<(String, String)>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let profile = DeviceProfileId(parse_uuid(&profile)?);
    let kind = OtaPackageType::parse(&kind)
        .ok_or_else(|| ApiError::bad_request(format!("Invalid OtaPackage type: {kind}")))?;
    let query = page_query_sorted(&params, &SORT_PROPERTIES)?;
    let page = state
        .services
        .store
        .page_packages(caller.tenant, Some((profile, kind)), &query)
        .await?;
    Ok(Json(page_json(&page, &query, info_json)))
}

async fn delete_package(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    Path(id): Path<String>,
) -> Result<(), ApiError> {
    let id = load_package(&state, caller.tenant, &id).await?.id;
    if !state
        .services
        .store
        .delete_package(caller.tenant, id)
        .await?
    {
        return Err(not_found());
    }
    Ok(())
}

/// A body's `firmwareId` and `softwareId` for a device or profile of `profile`, each checked by
/// `check_assignable`.
pub(crate) async fn check_assignments(
    state: &AppStateRef,
    tenant: TenantId,
    (firmware, software): (Option<uuid::Uuid>, Option<uuid::Uuid>),
    profile: DeviceProfileId,
) -> Result<(Option<OtaPackageId>, Option<OtaPackageId>), ApiError> {
    let fw = check_assignable(state, tenant, firmware, OtaPackageType::Firmware, profile).await?;
    let sw = check_assignable(state, tenant, software, OtaPackageType::Software, profile).await?;
    Ok((fw, sw))
}

/// The package `id` if it may be assigned to a device (or profile) of `profile`: it must be the
/// tenant's, of `kind`, downloadable (a file or a URL) and of the same profile.
pub(crate) async fn check_assignable(
    state: &AppStateRef,
    tenant: TenantId,
    id: Option<uuid::Uuid>,
    kind: OtaPackageType,
    profile: DeviceProfileId,
) -> Result<Option<OtaPackageId>, ApiError> {
    let Some(id) = id else {
        return Ok(None);
    };
    let name = match kind {
        OtaPackageType::Firmware => "firmware",
        OtaPackageType::Software => "software",
    };
    let package = state
        .services
        .store
        .get_package(tenant, OtaPackageId(id))
        .await?
        .ok_or_else(|| ApiError::bad_request(format!("Can't assign non-existent {name}!")))?;
    if package.package_type != kind {
        return Err(ApiError::bad_request(format!(
            "Can't assign {name} with type: {}",
            package.package_type.as_str()
        )));
    }
    if !package.has_data() && package.url.is_none() {
        return Err(ApiError::bad_request(format!(
            "Can't assign {name} with empty data!"
        )));
    }
    if package.profile_id != profile {
        return Err(ApiError::bad_request(format!(
            "Can't assign {name} with different deviceProfile!"
        )));
    }
    Ok(Some(package.id))
}
