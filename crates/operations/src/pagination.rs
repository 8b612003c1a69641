//! `Marker` / `MaxRecords` pagination, as every Describe operation does it.

use protocol::ApiError;

const DEFAULT_MAX_RECORDS: i32 = 100;
const MIN_MAX_RECORDS: i32 = 20;
const MAX_MAX_RECORDS: i32 = 100;

pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub marker: Option<String>,
}

/// Checks `MaxRecords` against AWS's bounds.
pub fn page_size(max_records: Option<i32>) -> Result<usize, ApiError> {
    match max_records {
        None => Ok(DEFAULT_MAX_RECORDS as usize),
        Some(n) if (MIN_MAX_RECORDS..=MAX_MAX_RECORDS).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid_parameter_value(format!(
            "Invalid value {n} for MaxRecords. Must be between {MIN_MAX_RECORDS} and {MAX_MAX_RECORDS}."
        ))),
    }
}

/// One page of `items`, which must be sorted by `key` with unique keys. The marker is the
/// key of the first item of the next page, so pages stay consistent while items are added
/// or removed between calls.
pub fn paginate<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    marker: Option<&str>,
    max_records: Option<i32>,
) -> Result<Page<T>, ApiError> {
    let size = page_size(max_records)?;
    let mut rest = items.into_iter().skip_while(|item| marker.is_some_and(|m| key(item).as_str() < m));
    let items: Vec<T> = rest.by_ref().take(size).collect();
    let marker = rest.next().map(|next| key(&next));
    Ok(Page { items, marker })
}

/// Key for lists with a fixed order (catalog data): the zero-padded position.
pub fn position_key(index: usize) -> String {
    format!("{index:08}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_every_item_once() {
        let items: Vec<String> = (0..45).map(|i| format!("g{i:02}")).collect();
        let mut seen = Vec::new();
        let mut marker = None;
        loop {
            let page = paginate(items.clone(), String::clone, marker.as_deref(), Some(20)).expect("valid size");
            assert!(page.items.len() <= 20);
            seen.extend(page.items);
            match page.marker {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn rejects_sizes_outside_bounds() {
        assert!(page_size(Some(19)).is_err());
        assert!(page_size(Some(101)).is_err());
        assert_eq!(page_size(None).ok(), Some(100));
    }
}
