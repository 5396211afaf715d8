//! Query strings as the official SDKs send them: arrays as repeated `key[]=` (brackets
//! format), ranges as `created_at[gte]=`, and `beta=true` on everything (ignored).

use super::error::{ApiError, ApiResult};

pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn one(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key[]` (or plain repeated `key`); a comma list is split too.
    pub fn all(&self, key: &str) -> Vec<&str> {
        let bracketed = format!("{key}[]");
        self.0
            .iter()
            .filter(|(k, _)| *k == bracketed || k == key)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    pub fn bool(&self, key: &str) -> ApiResult<bool> {
        match self.one(key) {
            None => Ok(false),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(ApiError::invalid(format!(
                "{key}: expected true or false, got `{v}`"
            ))),
        }
    }

    pub fn u64(&self, key: &str) -> ApiResult<Option<u64>> {
        self.one(key)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::invalid(format!("{key}: expected a whole number, got `{v}`"))
                })
            })
            .transpose()
    }

    /// `limit`, defaulting to `default` and refusing values outside 1..=max.
    pub fn limit(&self, default: u32, max: u32) -> ApiResult<u32> {
        match self.u64("limit")? {
            None => Ok(default),
            Some(n) if n >= 1 && n <= u64::from(max) => Ok(n as u32),
            Some(n) => Err(ApiError::invalid(format!(
                "limit: expected 1 to {max}, got {n}"
            ))),
        }
    }

    /// `order=asc|desc`; true for descending.
    pub fn descending(&self, default_desc: bool) -> ApiResult<bool> {
        match self.one("order") {
            None => Ok(default_desc),
            Some("asc") => Ok(false),
            Some("desc") => Ok(true),
            Some(v) => Err(ApiError::invalid(format!(
                "order: expected `asc` or `desc`, got `{v}`"
            ))),
        }
    }

    /// `created_at[gt|gte|lt|lte]` as RFC 3339 bounds, checked to be timestamps. Returned
    /// as SQL-comparable strings in tether's own millisecond UTC form.
    pub fn created_at(&self) -> ApiResult<TimeRange> {
        let mut r = TimeRange::default();
        for (op, slot) in [
            ("gt", &mut r.gt),
            ("gte", &mut r.gte),
            ("lt", &mut r.lt),
            ("lte", &mut r.lte),
        ] {
            let key = format!("created_at[{op}]");
            if let Some(v) = self.one(&key) {
                // Any offset and any year RFC 3339 allows (the document says `date-time`).
                let t = chrono::DateTime::parse_from_rfc3339(v.trim()).map_err(|_| {
                    ApiError::invalid(format!(
                        "{key}: expected an RFC 3339 timestamp like 2026-11-25T08:00:00Z, got `{v}`"
                    ))
                })?;
                let utc = t.with_timezone(&chrono::Utc);
                *slot = Some(utc.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
            }
        }
        Ok(r)
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct TimeRange {
    pub gt: Option<String>,
    pub gte: Option<String>,
    pub lt: Option<String>,
    pub lte: Option<String>,
}

impl TimeRange {
    pub fn contains(&self, at: &str) -> bool {
        self.gt.as_deref().is_none_or(|b| at > b)
            && self.gte.as_deref().is_none_or(|b| at >= b)
            && self.lt.as_deref().is_none_or(|b| at < b)
            && self.lte.as_deref().is_none_or(|b| at <= b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_style_arrays_ranges_and_flags() {
        let q = Query::parse(Some(
            "statuses%5B%5D=idle&statuses%5B%5D=running&limit=5&beta=true&include_archived=true&created_at%5Bgte%5D=2026-11-25T08:00:00Z",
        ));
        assert_eq!(q.all("statuses"), vec!["idle", "running"]);
        assert_eq!(q.limit(20, 100).unwrap(), 5);
        assert!(q.bool("include_archived").unwrap());
        let r = q.created_at().unwrap();
        assert_eq!(r.gte.as_deref(), Some("2026-11-25T08:00:00.000Z"));
        assert!(r.contains("2026-11-25T08:00:00.000Z"));
        assert!(!r.contains("2026-11-25T07:59:59.999Z"));
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let q = Query::parse(Some("limit=0&order=up&include_archived=maybe"));
        assert!(q.limit(20, 100).unwrap_err().message.contains("1 to 100"));
        assert!(q.descending(true).unwrap_err().message.contains("asc"));
        assert!(q.bool("include_archived").is_err());
        let q = Query::parse(Some("created_at[gt]=2026-11-25T09:30:00.5%2B01:30"));
        assert_eq!(
            q.created_at().unwrap().gt.as_deref(),
            Some("2026-11-25T08:00:00.500Z")
        );
        let q = Query::parse(Some("created_at[gt]=1900-01-01t00:00:00z"));
        assert_eq!(
            q.created_at().unwrap().gt.as_deref(),
            Some("1900-01-01T00:00:00.000Z")
        );
        let q = Query::parse(Some("created_at[lt]=yesterday"));
        assert!(q.created_at().unwrap_err().message.contains("RFC 3339"));
    }
}
