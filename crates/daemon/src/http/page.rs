//! Opaque page cursors: `page` in, `next_page`/`prev_page` out. A cursor remembers the order
//! it was made for; reusing it with the other order is refused (hosted behaviour).

use super::error::{ApiError, ApiResult};

/// Where a page starts: strictly after `key` in the listing's order (or strictly before it,
/// for `backward` cursors that `prev_page` hands out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub desc: bool,
    pub backward: bool,
    /// The sort key of the item the page starts next to, e.g. `created_at` + id.
    pub key: Vec<String>,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let mut raw = String::from(if self.desc { "d" } else { "a" });
        raw.push(if self.backward { 'b' } else { 'f' });
        for k in &self.key {
            raw.push('\n');
            raw.push_str(k);
        }
        let hex: String = raw.bytes().map(|b| format!("{b:02x}")).collect();
        format!("page_{hex}")
    }

    /// Parses `page` for a listing in `desc` order.
    pub fn decode(page: &str, desc: bool) -> ApiResult<Cursor> {
        let bad = || {
            ApiError::invalid(format!(
                "page: `{page}` is not a cursor from this server; pass the `next_page` or `prev_page` of an earlier response"
            ))
        };
        let hex = page.strip_prefix("page_").ok_or_else(bad)?;
        if hex.len() % 2 != 0 {
            return Err(bad());
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad())?;
        let raw = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = raw.split('\n');
        let head = parts.next().ok_or_else(bad)?;
        let (cursor_desc, backward) = match head {
            "af" => (false, false),
            "ab" => (false, true),
            "df" => (true, false),
            "db" => (true, true),
            _ => return Err(bad()),
        };
        if cursor_desc != desc {
            return Err(ApiError::invalid(format!(
                "page: this cursor was made for order={}; repeat the request with that order, or start over without `page`",
                if cursor_desc { "desc" } else { "asc" }
            )));
        }
        Ok(Cursor {
            desc,
            backward,
            key: parts.map(str::to_string).collect(),
        })
    }
}

/// One page of an in-memory listing of hosted objects sorted ascending by
/// [`created_at`, `id`], served the way every such list endpoint is: the query's `limit`
/// (20 by default, at most `max_limit`) and `created_at[gt|gte|lt|lte]` bounds, then `page`.
pub fn by_creation<T>(
    q: &super::query::Query,
    all: Vec<T>,
    created_and_id: impl Fn(&T) -> (&str, &str),
    desc: bool,
    max_limit: u32,
) -> ApiResult<super::shapes::Page<T>> {
    let limit = q.limit(20, max_limit)?;
    let range = q.created_at()?;
    let all: Vec<T> = all
        .into_iter()
        .filter(|it| range.contains(created_and_id(it).0))
        .collect();
    let key = |it: &T| {
        let (created, id) = created_and_id(it);
        vec![created.to_string(), id.to_string()]
    };
    let (data, next_page) = slice(all, key, desc, q.one("page"), limit)?;
    Ok(super::shapes::Page { data, next_page })
}

/// The page the query's `page` cursor and `limit` (`default_limit`, at most `max_limit`) ask
/// for, of a listing sorted ascending by `key` (see [`slice`]).
pub fn of_query<T>(
    q: &super::query::Query,
    all: Vec<T>,
    key: impl Fn(&T) -> Vec<String>,
    desc: bool,
    (default_limit, max_limit): (u32, u32),
) -> ApiResult<super::shapes::Page<T>> {
    let limit = q.limit(default_limit, max_limit)?;
    let (data, next_page) = slice(all, key, desc, q.one("page"), limit)?;
    Ok(super::shapes::Page { data, next_page })
}

/// One page of an in-memory listing sorted ascending by `key`: for small collections
/// (agents, versions, environments) where SQL paging buys nothing.
pub fn slice<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> Vec<String>,
    desc: bool,
    page: Option<&str>,
    limit: u32,
) -> ApiResult<(Vec<T>, Option<String>)> {
    if desc {
        items.reverse();
    }
    let start = match page {
        None => 0,
        Some(p) => {
            let c = Cursor::decode(p, desc)?;
            items
                .iter()
                .position(|it| {
                    let k = key(it);
                    if desc { k < c.key } else { k > c.key }
                })
                .unwrap_or(items.len())
        }
    };
    let mut rest: Vec<T> = items.into_iter().skip(start).collect();
    let more = rest.len() > limit as usize;
    rest.truncate(limit as usize);
    let next = if more {
        rest.last().map(|it| {
            Cursor {
                desc,
                backward: false,
                key: key(it),
            }
            .encode()
        })
    } else {
        None
    };
    Ok((rest, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_keep_their_order() {
        let c = Cursor {
            desc: true,
            backward: false,
            key: vec!["2026-11-25T08:00:00.000Z".into(), "sesn_01".into()],
        };
        let s = c.encode();
        assert_eq!(Cursor::decode(&s, true).unwrap(), c);
        assert!(
            Cursor::decode(&s, false)
                .unwrap_err()
                .message
                .contains("order=desc")
        );
        assert!(Cursor::decode("page_zz", true).is_err());
        assert!(Cursor::decode("nope", true).is_err());
    }

    #[test]
    fn slices_walk_every_item_once_in_both_orders() {
        let items: Vec<u32> = (1..=7).collect();
        for desc in [false, true] {
            let mut seen = Vec::new();
            let mut page: Option<String> = None;
            loop {
                let (got, next) = slice(
                    items.clone(),
                    |n| vec![format!("{n:03}")],
                    desc,
                    page.as_deref(),
                    3,
                )
                .unwrap();
                seen.extend(got);
                match next {
                    Some(n) => page = Some(n),
                    None => break,
                }
            }
            let mut want = items.clone();
            if desc {
                want.reverse();
            }
            assert_eq!(seen, want);
        }
    }
}
