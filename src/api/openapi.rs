//! The OpenAPI 3.1 document of the HTTP API (`GET /v3/api-docs`) and the API explorer
//! (`/swagger-ui.html`, assets compiled into the binary). `OPERATIONS` lists every route of the
//! router with its method; a test checks it against the router's registrations.

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder,
    PathsBuilder, Ref, Required, ResponseBuilder, Type,
};

use super::State as AppStateRef;

/// Who may call an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// No credentials (device API with its token in the path, login, probes).
    None,
    /// `X-Authorization: Bearer <JWT>`.
    Jwt,
}

/// One operation of the router.
#[derive(Clone, Copy, Debug)]
pub struct Operation {
    pub method: Method,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Delete => "delete",
        }
    }

    fn http(self) -> HttpMethod {
        match self {
            Self::Get => HttpMethod::Get,
            Self::Post => HttpMethod::Post,
            Self::Delete => HttpMethod::Delete,
        }
    }
}

const fn op(
    method: Method,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    auth: Auth,
) -> Operation {
    Operation {
        method,
        path,
        tag,
        summary,
        auth,
    }
}

use Method::{Delete, Get, Post};

/// Every route of the HTTP router, by method (paths as axum registers them).
#[rustfmt::skip]
pub const OPERATIONS: &[Operation] = &[
    op(Get, "/api/user/{userId}/activationLink", "user", "Activation link", Auth::Jwt),
    op(Get, "/api/user/{userId}/activationLinkInfo", "user", "Activation link info", Auth::Jwt),
    op(Get, "/api/noauth/activate", "user", "Check activate token", Auth::None),
    op(Post, "/api/noauth/activate", "user", "Activate", Auth::None),
    op(Get, "/api/user/{userId}/token", "user", "User token", Auth::Jwt),
    op(Post, "/api/plugins/telemetry/{p1}/{p2}", "telemetry", "Save attributes (legacy path)", Auth::Jwt),
    op(Delete, "/api/plugins/telemetry/{p1}/{p2}", "telemetry", "Delete attributes (legacy path)", Auth::Jwt),
    op(Post, "/api/plugins/telemetry/{p1}/{p2}/{p3}", "telemetry", "Save attributes of a scope", Auth::Jwt),
    op(Delete, "/api/plugins/telemetry/{p1}/{p2}/{p3}", "telemetry", "Delete attributes of a scope", Auth::Jwt),
    op(Post, "/api/plugins/telemetry/{p1}/{p2}/attributes/{p4}", "telemetry", "Save attributes of a scope (v1 path)", Auth::Jwt),
    op(Get, "/api/plugins/telemetry/{p1}/{p2}/values/attributes", "telemetry", "Attribute values of every scope", Auth::Jwt),
    op(Get, "/api/plugins/telemetry/{p1}/{p2}/values/attributes/{p4}", "telemetry", "Attribute values of a scope", Auth::Jwt),
    op(Get, "/api/plugins/telemetry/{p1}/{p2}/keys/attributes", "telemetry", "Attribute keys of every scope", Auth::Jwt),
    op(Get, "/api/plugins/telemetry/{p1}/{p2}/keys/attributes/{p4}", "telemetry", "Attribute keys of a scope", Auth::Jwt),
    op(Post, "/api/auth/login", "auth", "Login", Auth::None),
    op(Post, "/api/auth/token", "auth", "Refresh the JWT pair", Auth::None),
    op(Get, "/api/auth/user", "auth", "Current user", Auth::Jwt),
    op(Post, "/api/auth/logout", "auth", "Logout", Auth::Jwt),
    op(Post, "/api/auth/changePassword", "auth", "Change password", Auth::Jwt),
    op(Get, "/api/device/{deviceId}/credentials", "device", "Get credentials", Auth::Jwt),
    op(Post, "/api/device/credentials", "device", "Save credentials", Auth::Jwt),
    op(Post, "/api/customer/{customerId}/device/{deviceId}", "customer", "Assign device", Auth::Jwt),
    op(Delete, "/api/customer/device/{deviceId}", "customer", "Unassign device", Auth::Jwt),
    op(Get, "/api/customer/{customerId}/devices", "customer", "Customer devices", Auth::Jwt),
    op(Get, "/api/customer/{customerId}/deviceInfos", "customer", "Customer device infos", Auth::Jwt),
    op(Post, "/api/customer/device/{deviceName}/claim", "customer", "Claim device", Auth::Jwt),
    op(Delete, "/api/customer/device/{deviceName}/claim", "customer", "Reclaim device", Auth::Jwt),
    op(Post, "/api/customer", "customer", "Save customer", Auth::Jwt),
    op(Get, "/api/customer/{customerId}", "customer", "Get customer", Auth::Jwt),
    op(Delete, "/api/customer/{customerId}", "customer", "Delete customer", Auth::Jwt),
    op(Get, "/api/customers", "customer", "Customers", Auth::Jwt),
    op(Get, "/api/tenant/customers", "customer", "Customer by title", Auth::Jwt),
    op(Post, "/api/v1/{token}/claim", "device-api", "Claim", Auth::None),
    op(Post, "/api/device/{deviceId}/trace", "device", "Trace every message of the device for N minutes", Auth::Jwt),
    op(Post, "/api/device", "device", "Save device", Auth::Jwt),
    op(Get, "/api/device/{deviceId}", "device", "Get device", Auth::Jwt),
    op(Delete, "/api/device/{deviceId}", "device", "Delete device", Auth::Jwt),
    op(Get, "/api/device/info/{deviceId}", "device", "Get device info", Auth::Jwt),
    op(Get, "/api/devices", "device", "Devices by ids", Auth::Jwt),
    op(Get, "/api/tenant/devices", "device", "Tenant devices", Auth::Jwt),
    op(Get, "/api/tenant/device", "device", "Tenant device by name", Auth::Jwt),
    op(Get, "/api/tenant/deviceInfos", "device", "Tenant device infos", Auth::Jwt),
    op(Get, "/api/health", "health", "Health probe", Auth::None),
    op(Get, "/api/health/live", "health", "Liveness probe", Auth::None),
    op(Get, "/api/health/ready", "health", "Readiness probe", Auth::None),
    op(Get, "/api/ws", "websocket", "WebSocket telemetry subscriptions (upgrade)", Auth::None),
    op(Get, "/api/ws/plugins/telemetry", "websocket", "WebSocket telemetry subscriptions, legacy path (upgrade)", Auth::None),
    op(Get, "/api/ruleChains", "rule-chain", "List rule chains (paged)", Auth::Jwt),
    op(Get, "/api/ruleChains/status", "rule-chain", "When and how the running chains were activated", Auth::Jwt),
    op(Get, "/api/ruleChain/{id}", "rule-chain", "Get rule chain", Auth::Jwt),
    op(Get, "/api/ruleChain/{id}/metadata", "rule-chain", "Get rule chain metadata", Auth::Jwt),
    op(Post, "/api/ruleChain/metadata", "rule-chain", "Save rule chain metadata (writes the rules directory)", Auth::Jwt),
    op(Post, "/api/ruleChain/testScript", "rule-chain", "Test a Rhai script", Auth::Jwt),
    op(Get, "/api/ruleChain/tbelEnabled", "rule-chain", "Whether TBEL is enabled (always false)", Auth::Jwt),
    op(Post, "/api/ruleChain/dryRun", "rule-chain", "Dry-run a chain over recorded messages", Auth::Jwt),
    op(Get, "/api/ruleChain/dryRun/messages", "rule-chain", "Recorded messages of a device", Auth::Jwt),
    op(Get, "/api/events/RULE_NODE/{id}/DEBUG_RULE_NODE", "rule-chain", "Debug events of a rule node", Auth::Jwt),
    op(Get, "/api/ruleNode/{id}/debugIn", "rule-chain", "Last debug input of a rule node", Auth::Jwt),
    op(Get, "/metrics", "metrics", "Prometheus metrics", Auth::None),
    op(Get, "/", "web", "Web console page", Auth::None),
    op(Get, "/console/{asset}", "web", "Web console asset (embedded)", Auth::None),
    op(Post, "/api/otaPackage", "ota", "Save info", Auth::Jwt),
    op(Post, "/api/otaPackage/{otaPackageId}", "ota", "Upload", Auth::Jwt),
    op(Get, "/api/otaPackage/{otaPackageId}", "ota", "Get OTA package", Auth::Jwt),
    op(Delete, "/api/otaPackage/{otaPackageId}", "ota", "Delete OTA package", Auth::Jwt),
    op(Get, "/api/otaPackage/info/{otaPackageId}", "ota", "Get info", Auth::Jwt),
    op(Get, "/api/otaPackage/{otaPackageId}/download", "ota", "Download", Auth::Jwt),
    op(Get, "/api/otaPackages", "ota", "Page all", Auth::Jwt),
    op(Get, "/api/otaPackages/{deviceProfileId}/{type}", "ota", "Page by profile", Auth::Jwt),
    op(Post, "/api/deviceProfile", "device-profile", "Save profile", Auth::Jwt),
    op(Get, "/api/deviceProfile/{profileId}", "device-profile", "Get profile", Auth::Jwt),
    op(Delete, "/api/deviceProfile/{profileId}", "device-profile", "Delete profile", Auth::Jwt),
    op(Post, "/api/deviceProfile/{profileId}/default", "device-profile", "Make default", Auth::Jwt),
    op(Get, "/api/deviceProfiles", "device-profile", "Page profiles", Auth::Jwt),
    op(Get, "/api/deviceProfileInfos", "device-profile", "Page profile infos", Auth::Jwt),
    op(Get, "/api/deviceProfileInfo/default", "device-profile", "Default profile info", Auth::Jwt),
    op(Get, "/api/deviceProfileInfo/{profileId}", "device-profile", "Profile info", Auth::Jwt),
    op(Post, "/api/v1/provision", "device-api", "Provision", Auth::None),
    op(Post, "/api/plugins/rpc/{kind}/{device}", "rpc", "Server-side RPC (v1)", Auth::Jwt),
    op(Post, "/api/rpc/{kind}/{device}", "rpc", "Server-side RPC (v2)", Auth::Jwt),
    op(Get, "/api/rpc/persistent/{rpc}", "rpc", "Get persistent RPC", Auth::Jwt),
    op(Delete, "/api/rpc/persistent/{rpc}", "rpc", "Delete persistent RPC", Auth::Jwt),
    op(Get, "/api/rpc/persistent/device/{device}", "rpc", "Persistent RPCs of a device", Auth::Jwt),
    op(Post, "/api/plugins/telemetry/{p1}/{p2}/timeseries/{p4}", "telemetry", "Save timeseries", Auth::Jwt),
    op(Post, "/api/plugins/telemetry/{p1}/{p2}/timeseries/{p4}/{p5}", "telemetry", "Save timeseries ttl", Auth::Jwt),
    op(Delete, "/api/plugins/telemetry/{p1}/{p2}/timeseries/delete", "telemetry", "Delete timeseries", Auth::Jwt),
    op(Get, "/api/plugins/telemetry/{p1}/{p2}/values/timeseries", "telemetry", "Latest time-series values, or history with startTs/endTs", Auth::Jwt),
    op(Get, "/api/plugins/telemetry/{p1}/{p2}/values/timeseries/history", "telemetry", "History", Auth::Jwt),
    op(Get, "/api/plugins/telemetry/{p1}/{p2}/keys/timeseries", "telemetry", "Timeseries keys", Auth::Jwt),
    op(Post, "/api/tenant", "tenant", "Save tenant", Auth::Jwt),
    op(Get, "/api/tenant/{tenantId}", "tenant", "Get tenant", Auth::Jwt),
    op(Delete, "/api/tenant/{tenantId}", "tenant", "Delete tenant", Auth::Jwt),
    op(Get, "/api/tenant/info/{tenantId}", "tenant", "Get tenant info", Auth::Jwt),
    op(Get, "/api/tenants", "tenant", "Tenants", Auth::Jwt),
    op(Get, "/api/tenantInfos", "tenant", "Tenant infos", Auth::Jwt),
    op(Post, "/api/user", "user", "Save user", Auth::Jwt),
    op(Get, "/api/user/{userId}", "user", "Get user", Auth::Jwt),
    op(Delete, "/api/user/{userId}", "user", "Delete user", Auth::Jwt),
    op(Post, "/api/user/{userId}/userCredentialsEnabled", "user", "Set credentials enabled", Auth::Jwt),
    op(Get, "/api/users", "user", "Users", Auth::Jwt),
    op(Get, "/api/tenant/{tenantId}/users", "user", "Tenant admins", Auth::Jwt),
    op(Get, "/api/customer/{customerId}/users", "user", "Customer users", Auth::Jwt),
    op(Post, "/api/v1/{token}/telemetry", "device-api", "Post telemetry", Auth::None),
    op(Post, "/api/v1/{token}/attributes", "device-api", "Post attributes", Auth::None),
    op(Get, "/api/v1/{token}/attributes", "device-api", "Get attributes", Auth::None),
    op(Post, "/api/v1/{token}/rpc/{request_id}", "device-api", "Device answers a server-side RPC", Auth::None),
    op(Get, "/api/v1/{token}/firmware", "device-api", "Get firmware", Auth::None),
    op(Get, "/api/v1/{token}/software", "device-api", "Get software", Auth::None),
    op(Get, "/api/v1/{token}/attributes/updates", "device-api", "Attribute updates", Auth::None),
    op(Get, "/api/v1/{token}/rpc", "device-api", "Device waits for a server-side RPC", Auth::None),
    op(Post, "/api/v1/{token}/rpc", "device-api", "Device RPC", Auth::None),
    op(Get, "/v3/api-docs", "docs", "This OpenAPI document", Auth::None),
    op(Get, "/swagger-ui.html", "docs", "The API explorer", Auth::None),
];

/// The name of the JWT security scheme.
const JWT: &str = "X-Authorization";

/// The OpenAPI document of `OPERATIONS`.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for o in OPERATIONS {
        paths = paths.path(o.path, PathItem::new(o.method.http(), operation(o)));
    }
    let error = ObjectBuilder::new()
        .property("status", ObjectBuilder::new().schema_type(Type::Integer))
        .property("message", ObjectBuilder::new().schema_type(Type::String))
        .property("errorCode", ObjectBuilder::new().schema_type(Type::Integer))
        .property("timestamp", ObjectBuilder::new().schema_type(Type::Integer))
        .description(Some("ThingsBoard's error JSON"));
    let mut jwt = ApiKeyValue::new("X-Authorization");
    jwt.description = Some("`Bearer <token>` from POST /api/auth/login".to_owned());
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("ferroboard REST API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "ThingsBoard-compatible REST and device HTTP API. Authenticate with \
                     POST /api/auth/login and send `X-Authorization: Bearer <token>`.",
                )),
        )
        .paths(paths.build())
        .components(Some(
            ComponentsBuilder::new()
                .schema("Error", error)
                .security_scheme(JWT, SecurityScheme::ApiKey(ApiKey::Header(jwt)))
                .build(),
        ))
        .build()
}

fn operation(o: &Operation) -> utoipa::openapi::path::Operation {
    let mut b = OperationBuilder::new()
        .tag(o.tag)
        .summary(Some(o.summary))
        .operation_id(Some(format!(
            "{}{}",
            o.method.as_str(),
            o.path.replace(['/', '{', '}'], "_")
        )));
    for name in path_params(o.path) {
        b = b.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    if o.auth == Auth::Jwt {
        b = b.security(SecurityRequirement::new(JWT, Vec::<String>::new()));
    }
    let content_type = match o.path {
        "/" | "/swagger-ui.html" => "text/html",
        "/metrics" => "text/plain",
        "/console/{asset}" => "*/*",
        p if p.ends_with("/download") || p.ends_with("/firmware") || p.ends_with("/software") => {
            "application/octet-stream"
        }
        _ => "application/json",
    };
    b.response(
        "200",
        ResponseBuilder::new()
            .description("Success")
            .content(content_type, ContentBuilder::new().build()),
    )
    .response(
        "default",
        ResponseBuilder::new()
            .description("ThingsBoard error JSON")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Error")))
                    .build(),
            ),
    )
    .build()
}

/// The `{name}` segments of a path template.
fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

/// `GET /v3/api-docs` and the explorer (`/swagger-ui.html` leads to `/swagger-ui/`).
pub fn routes() -> Router<AppStateRef> {
    let explorer = utoipa_swagger_ui::SwaggerUi::new("/swagger-ui").url("/v3/api-docs", document());
    Router::new().merge(explorer).route(
        "/swagger-ui.html",
        get(|| async { Redirect::temporary("/swagger-ui/") }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_every_operation_once_with_its_path_parameters() {
        let doc = serde_json::to_value(document()).expect("serializes");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut seen = std::collections::HashSet::new();
        for o in OPERATIONS {
            assert!(seen.insert((o.method, o.path)), "listed twice: {o:?}");
            let op = &doc["paths"][o.path][o.method.as_str()];
            assert!(op.is_object(), "{o:?} missing");
            let params = op["parameters"].as_array().map_or(0, Vec::len);
            assert_eq!(params, path_params(o.path).count(), "{o:?}");
        }
    }
}
