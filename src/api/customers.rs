//! Customers (ThingsBoard's `CustomerController`): a tenant administrator creates, renames,
//! lists and deletes its customers; a customer user reads its own. Titles are unique per tenant.
//! Assigning devices to customers is in `customer_devices`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::State as AppStateRef;
use super::auth::{TenantAdmin, TenantUser};
use super::devices::{id_field, string_field};
use super::error::{ApiError, JsonBody, Params, parse_uuid};
use super::paging::{page_json, page_query};
use crate::domain::{Customer, CustomerId, TenantId, now_ms};

/// ThingsBoard reserves this title for its public customer.
const PUBLIC_TITLE: &str = "Public";

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/customer", post(save_customer))
        .route(
            "/api/customer/{customerId}",
            get(get_customer).delete(delete_customer),
        )
        .route("/api/customers", get(customers))
        .route("/api/tenant/customers", get(customer_by_title))
}

/// ThingsBoard's Customer JSON (`name` repeats the title).
pub fn customer_json(c: &Customer) -> Value {
    json!({
        "id": c.id.to_json(),
        "createdTime": c.created_time,
        "tenantId": c.tenant_id.to_json(),
        "title": c.title,
        "name": c.title,
        "country": null, "state": null, "city": null, "address": null, "address2": null,
        "zip": null, "phone": null, "email": null,
        "additionalInfo": null,
        "externalId": null,
        "version": 1,
    })
}

pub fn customer_not_found(id: uuid::Uuid) -> ApiError {
    ApiError::NotFound(format!("Customer with id [{id}] is not found"))
}

/// The customer `id` of `tenant`: 404 when it does not exist, 403 when it is another tenant's.
pub async fn tenant_customer(
    state: &AppStateRef,
    tenant: TenantId,
    id: &str,
) -> Result<Customer, ApiError> {
    let id = parse_uuid(id)?;
    let customer = state
        .services
        .store
        .get_customer(CustomerId(id))
        .await?
        .ok_or_else(|| customer_not_found(id))?;
    if customer.tenant_id != tenant {
        return Err(ApiError::PermissionDenied);
    }
    Ok(customer)
}

async fn get_customer(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let customer = tenant_customer(&state, caller.tenant, &id).await?;
    // A customer user reads only its own customer.
    if caller.customer.is_some_and(|own| own != customer.id) {
        return Err(ApiError::PermissionDenied);
    }
    Ok(Json(customer_json(&customer)))
}

async fn customers(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let query = page_query(&params)?;
    let page = state
        .services
        .store
        .page_customers(caller.tenant, &query)
        .await?;
    Ok(Json(page_json(&page, &query, customer_json)))
}

async fn customer_by_title(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let title = params.required("customerTitle")?;
    let customer = state
        .services
        .store
        .find_customer_by_title(caller.tenant, title)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Customer with title [{title}] is not found")))?;
    Ok(Json(customer_json(&customer)))
}

/// `POST /api/customer`: create without `id`, rename with it.
async fn save_customer(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("Invalid request body"))?;
    let title = string_field(obj, "title")?
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("Customer title should be specified!"))?;
    super::limits::check_length("title", &title)?;
    if title == PUBLIC_TITLE {
        return Err(ApiError::bad_request(
            "'Public' title for customer is system reserved!",
        ));
    }
    let store = &state.services.store;
    let customer = match id_field(obj, "id")? {
        Some(id) => {
            let mut customer = tenant_customer(&state, caller.tenant, &id.to_string()).await?;
            customer.title = title;
            if !store.update_customer(&customer).await? {
                return Err(customer_not_found(id));
            }
            customer
        }
        None => {
            let customer = Customer {
                id: CustomerId::new(),
                tenant_id: caller.tenant,
                title,
                created_time: now_ms(),
            };
            store.create_customer(&customer).await?;
            customer
        }
    };
    Ok(Json(customer_json(&customer)))
}

/// Deletes the customer and its users (their sessions end); its devices stay, unassigned.
async fn delete_customer(
    State(state): State<AppStateRef>,
    caller: TenantAdmin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let customer = tenant_customer(&state, caller.tenant, &id).await?;
    if !state
        .services
        .store
        .delete_customer(caller.tenant, customer.id)
        .await?
    {
        return Err(customer_not_found(customer.id.0));
    }
    tracing::info!(customer = %customer.id, by = ?caller.user.email, "customer deleted");
    Ok(StatusCode::OK)
}
