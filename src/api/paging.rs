//! Page requests and `PageData` responses shared by every list endpoint.

use serde_json::{Value, json};

use super::error::{ApiError, Params};
use crate::domain::{Page, PageQuery, SortOrder};

/// Sort properties the storage layer understands.
const SORT_PROPERTIES: [&str; 9] = [
    "createdTime",
    "name",
    "label",
    "type",
    "deviceProfileName",
    "title",
    "email",
    "firstName",
    "lastName",
];

/// Reads `pageSize`, `page`, `textSearch`, `sortProperty`, `sortOrder` with ThingsBoard's validation;
/// `pageSize` is capped at `MAX_PAGE_SIZE`.
pub fn page_query(params: &Params) -> Result<PageQuery, ApiError> {
    page_query_sorted(params, &SORT_PROPERTIES)
}

/// As `page_query`, for a list whose sort properties are `properties`.
pub fn page_query_sorted(params: &Params, properties: &[&str]) -> Result<PageQuery, ApiError> {
    params.required("pageSize")?;
    params.required("page")?;
    let page_size = params.int("pageSize")?.unwrap_or(0);
    let page = params.int("page")?.unwrap_or(0);
    if page_size < 1 {
        return Err(ApiError::BadRequest(format!(
            "Incorrect page link page size '{page_size}'. Page size must be greater than zero."
        )));
    }
    if page < 0 {
        return Err(ApiError::BadRequest(format!(
            "Incorrect page link page '{page}'. Page must be positive integer."
        )));
    }
    let sort_order = match params.get("sortOrder").map(str::trim) {
        None | Some("") => SortOrder::Asc,
        Some(s) if s.eq_ignore_ascii_case("ASC") => SortOrder::Asc,
        Some(s) if s.eq_ignore_ascii_case("DESC") => SortOrder::Desc,
        Some(s) => return Err(ApiError::BadRequest(format!("Invalid sort order: {s}"))),
    };
    let sort_property = match params.get("sortProperty").map(str::trim) {
        None | Some("") => None,
        Some(p) if properties.contains(&p) => Some(p.to_owned()),
        Some(p) => return Err(ApiError::BadRequest(format!("Invalid sort property: {p}"))),
    };
    Ok(PageQuery {
        page_size: u32::try_from(page_size.min(i64::from(super::limits::MAX_PAGE_SIZE)))
            .unwrap_or(super::limits::MAX_PAGE_SIZE),
        page: u32::try_from(page.min(i64::from(u32::MAX))).unwrap_or(u32::MAX),
        text_search: params
            .get("textSearch")
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        sort_property,
        sort_order,
    })
}

/// `{"data","totalPages","totalElements","hasNext"}`.
pub fn page_json<T>(page: &Page<T>, query: &PageQuery, render: impl Fn(&T) -> Value) -> Value {
    let size = i64::from(query.page_size.max(1));
    let total = page.total_elements.max(0);
    let total_pages = (total + size - 1) / size;
    json!({
        "data": page.data.iter().map(render).collect::<Vec<_>>(),
        "totalPages": total_pages,
        "totalElements": total,
        "hasNext": total > (i64::from(query.page) + 1) * size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn validates_like_thingsboard() {
        assert!(page_query(&params(&[("page", "0")])).is_err());
        assert!(page_query(&params(&[("pageSize", "0"), ("page", "0")])).is_err());
        assert!(page_query(&params(&[("pageSize", "5"), ("page", "-1")])).is_err());
        assert!(
            page_query(&params(&[
                ("pageSize", "5"),
                ("page", "0"),
                ("sortOrder", "UP")
            ]))
            .is_err()
        );
        let q = page_query(&params(&[
            ("pageSize", "5"),
            ("page", "1"),
            ("sortOrder", "desc"),
        ]))
        .unwrap();
        assert_eq!((q.page_size, q.page, q.sort_order), (5, 1, SortOrder::Desc));
        let page = Page {
            data: vec![1, 2, 3, 4, 5],
            total_elements: 11,
        };
        let v = page_json(&page, &q, |n| json!(n));
        assert_eq!(v["totalPages"], 3);
        assert_eq!(v["hasNext"], true);
    }

    #[test]
    fn page_sizes_are_capped() {
        let q = page_query(&params(&[("pageSize", "2147483647"), ("page", "0")])).unwrap();
        assert_eq!(q.page_size, crate::api::limits::MAX_PAGE_SIZE);
        let page = Page {
            data: vec![0; 1000],
            total_elements: 2500,
        };
        let v = page_json(&page, &q, |n| json!(n));
        assert_eq!(
            (v["totalPages"].as_i64(), v["hasNext"].as_bool()),
            (Some(3), Some(true))
        );
    }
}
