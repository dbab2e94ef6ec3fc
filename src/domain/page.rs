//! Paging of entity lists: the page request and one page of results.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortOrder {
    Asc,
    Desc,
}

/// A page request.
#[derive(Clone, Debug)]
pub struct PageQuery {
    pub page_size: u32,
    pub page: u32,
    /// Case-insensitive substring of name or label.
    pub text_search: Option<String>,
    /// `createdTime`, `name`, `label`, `type`; None sorts by creation.
    pub sort_property: Option<String>,
    pub sort_order: SortOrder,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub total_elements: i64,
}
