//! Read-side SQL, usable on any connection (the readers' and the writer's).

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use tether_proto::{Event, SessionStatus};

use crate::store::error::StoreError;
use crate::store::rows::{SessionPageQuery, SessionRow};

/// A resource reference (agents, environments): an exact id (`id_sql` with `?1` finds it),
/// else the name of a live resource, else the name of an archived one (`by_name(c, name,
/// archived_too)`); `missing` says what to do when nothing matches.
pub fn resolve_id_or_name(
    c: &Connection,
    reference: &str,
    id_sql: &str,
    by_name: impl Fn(&Connection, &str, bool) -> Result<Option<String>, StoreError>,
    missing: impl FnOnce() -> String,
) -> Result<String, StoreError> {
    let by_id: Option<String> = c
        .prepare_cached(id_sql)?
        .query_row([reference], |r| r.get(0))
        .optional()?;
    if let Some(id) = by_id {
        return Ok(id);
    }
    if let Some(id) = by_name(c, reference, false)? {
        return Ok(id);
    }
    by_name(c, reference, true)?.ok_or_else(|| StoreError::Missing(missing()))
}

const SESSION_COLS: &str = "s.id, s.name, s.title, s.model, s.system, s.workspace, s.workspace_owned, s.max_turns, s.status, s.stop_reason, s.usage, \
    s.last_seq, s.created_at, MAX(s.updated_at, COALESCE(s.last_event_at, '')), s.archived_at, s.forked_from, s.agent_id, s.agent_version, s.tools, s.environment_id, s.env_layer, s.metadata, s.networking, s.outcomes, s.parent_id, s.thread_agent, s.memory, s.deployment_id, s.vault_ids, s.skills, s.agent_overrides";

fn row_to_session(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    let status: String = r.get(8)?;
    let stop: Option<String> = r.get(9)?;
    let usage: String = r.get(10)?;
    Ok(SessionRow {
        id: r.get(0)?,
        name: r.get(1)?,
        title: r.get(2)?,
        model: r.get(3)?,
        system: r.get(4)?,
        workspace: r.get(5)?,
        workspace_owned: r.get(6)?,
        max_turns: r.get(7)?,
        status: serde_json::from_value(serde_json::Value::String(status))
            .unwrap_or(SessionStatus::Idle),
        stop_reason: stop.and_then(|s| serde_json::from_str(&s).ok()),
        usage: serde_json::from_str(&usage).unwrap_or_default(),
        last_seq: r.get::<_, i64>(11)? as u64,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
        archived_at: r.get(14)?,
        forked_from: r.get(15)?,
        agent: match (
            r.get::<_, Option<String>>(16)?,
            r.get::<_, Option<u32>>(17)?,
        ) {
            (Some(id), Some(v)) => Some((id, v)),
            _ => None,
        },
        tools: r
            .get::<_, Option<String>>(18)?
            .and_then(|t| serde_json::from_str(&t).ok()),
        environment: r.get(19)?,
        env_layer: r.get(20)?,
        metadata: r
            .get::<_, Option<String>>(21)?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
        networking: r
            .get::<_, Option<String>>(22)?
            .and_then(|t| serde_json::from_str(&t).ok()),
        outcome_evaluations: r
            .get::<_, Option<String>>(23)?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
        parent_id: r.get(24)?,
        thread_agent: r
            .get::<_, Option<String>>(25)?
            .and_then(|t| serde_json::from_str(&t).ok()),
        memory: r
            .get::<_, Option<String>>(26)?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
        deployment_id: r.get(27)?,
        file_mounts: Vec::new(),
        skills: Vec::new(),
        vault_ids: r
            .get::<_, Option<String>>(28)?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
        skill_refs: r
            .get::<_, Option<String>>(29)?
            .and_then(|t| serde_json::from_str(&t).ok()),
        agent_overrides: r
            .get::<_, Option<String>>(30)?
            .and_then(|t| serde_json::from_str(&t).ok()),
    })
}

/// Rows after this one are not in `events_by_session` yet.
pub fn last_indexed_row(c: &Connection) -> Result<i64, StoreError> {
    Ok(
        c.prepare_cached("SELECT last_row FROM index_state WHERE id = 1")?
            .query_row([], |r| r.get(0))?,
    )
}

/// Newest seq and event time per session among the unindexed tail.
fn tail_stats(
    c: &Connection,
    session: Option<&str>,
) -> Result<HashMap<String, (u64, String)>, StoreError> {
    tail_stats_where(
        c,
        "SELECT session_id, MAX(seq), MAX(processed_at) FROM events WHERE rowid > ?1 AND (?2 IS NULL OR session_id = ?2) GROUP BY session_id",
        session,
    )
}

/// [`tail_stats`] of `parent`'s child threads only: grouping every session's tail rows to
/// read one parent's children was a quarter of the daemon's CPU with 64 threads at work.
fn tail_stats_of_children(
    c: &Connection,
    parent: &str,
) -> Result<HashMap<String, (u64, String)>, StoreError> {
    tail_stats_where(
        c,
        "SELECT session_id, MAX(seq), MAX(processed_at) FROM events WHERE rowid > ?1 AND session_id IN (SELECT id FROM sessions WHERE parent_id = ?2) GROUP BY session_id",
        Some(parent),
    )
}

fn tail_stats_where(
    c: &Connection,
    sql: &str,
    key: Option<&str>,
) -> Result<HashMap<String, (u64, String)>, StoreError> {
    let last = last_indexed_row(c)?;
    let mut st = c.prepare_cached(sql)?;
    let rows = st.query_map(params![last, key], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)? as u64,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (id, seq, at) = row?;
        out.insert(id, (seq, at));
    }
    Ok(out)
}

fn with_tail(mut row: SessionRow, tail: &HashMap<String, (u64, String)>) -> SessionRow {
    if let Some((seq, at)) = tail.get(&row.id) {
        row.last_seq = row.last_seq.max(*seq);
        if *at > row.updated_at {
            row.updated_at = at.clone();
        }
    }
    row
}

pub fn list_sessions(
    c: &Connection,
    include_archived: bool,
) -> Result<Vec<SessionRow>, StoreError> {
    let sql = format!(
        "SELECT {SESSION_COLS} FROM sessions s {} ORDER BY s.created_at, s.id",
        if include_archived {
            "WHERE s.parent_id IS NULL"
        } else {
            "WHERE s.parent_id IS NULL AND s.archived_at IS NULL"
        }
    );
    let tail = tail_stats(c, None)?;
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map([], row_to_session)?;
    rows.map(|r| Ok(with_tail(r?, &tail))).collect()
}

pub fn page_sessions(
    c: &Connection,
    q: &SessionPageQuery,
) -> Result<(Vec<SessionRow>, bool), StoreError> {
    let mut sql = format!("SELECT {SESSION_COLS} FROM sessions s WHERE s.parent_id IS NULL");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if !q.include_archived {
        sql.push_str(" AND s.archived_at IS NULL");
    }
    if !q.statuses.is_empty() {
        let list: Vec<String> = q
            .statuses
            .iter()
            .map(|st| format!("'{}'", st.as_str()))
            .collect();
        sql.push_str(&format!(" AND s.status IN ({})", list.join(",")));
    }
    if let Some(a) = &q.agent_id {
        arg(&mut sql, " AND s.agent_id = ?", a.clone().into());
    }
    if let Some(v) = q.agent_version {
        arg(&mut sql, " AND s.agent_version = ?", i64::from(v).into());
    }
    if let Some(d) = &q.deployment_id {
        arg(&mut sql, " AND s.deployment_id = ?", d.clone().into());
    }
    for (op, bound) in [
        (">", &q.created_gt),
        (">=", &q.created_gte),
        ("<", &q.created_lt),
        ("<=", &q.created_lte),
    ] {
        if let Some(b) = bound {
            arg(
                &mut sql,
                &format!(" AND s.created_at {op} ?"),
                b.clone().into(),
            );
        }
    }
    // Reading towards newer rows: ascending, or a descending listing's previous page.
    let towards_newer = q.desc == q.backward;
    if let Some((at, id)) = &q.after {
        let op = if towards_newer { ">" } else { "<" };
        args.push(at.clone().into());
        args.push(id.clone().into());
        let (a, b) = (args.len() - 1, args.len());
        sql.push_str(&format!(" AND (s.created_at, s.id) {op} (?{a}, ?{b})"));
    }
    let dir = if towards_newer { "ASC" } else { "DESC" };
    sql.push_str(&format!(
        " ORDER BY s.created_at {dir}, s.id {dir} LIMIT {}",
        q.limit + 1
    ));
    let tail = tail_stats(c, None)?;
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(args), row_to_session)?;
    let mut out = rows
        .map(|r| Ok(with_tail(r?, &tail)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let more = out.len() > q.limit as usize;
    out.truncate(q.limit as usize);
    if q.backward {
        out.reverse();
    }
    Ok((out, more))
}

pub fn get_session(c: &Connection, id: &str) -> Result<Option<SessionRow>, StoreError> {
    let sql = format!("SELECT {SESSION_COLS} FROM sessions s WHERE s.id = ?1");
    let row = c
        .prepare_cached(&sql)?
        .query_row([id], row_to_session)
        .optional()?;
    match row {
        Some(r) => Ok(Some(with_tail(r, &tail_stats(c, Some(id))?))),
        None => Ok(None),
    }
}

/// The child threads of a session (archived ones too), in creation order.
pub fn list_threads(c: &Connection, parent: &str) -> Result<Vec<SessionRow>, StoreError> {
    let sql = format!(
        "SELECT {SESSION_COLS} FROM sessions s WHERE s.parent_id = ?1 ORDER BY s.created_at, s.id"
    );
    let tail = tail_stats_of_children(c, parent)?;
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map([parent], row_to_session)?;
    rows.map(|r| Ok(with_tail(r?, &tail))).collect()
}

/// Live children: `thread_agent` is the serde-tagged [`ThreadAgent`] JSON.
const LIVE_CHILD: &str = "parent_id = ?1 AND archived_at IS NULL \
     AND json_extract(thread_agent, '$.type') IS NOT 'advisor'";

pub fn live_child_threads(c: &Connection, parent: &str) -> Result<usize, StoreError> {
    let n: i64 = c
        .prepare_cached(&format!("SELECT COUNT(*) FROM sessions WHERE {LIVE_CHILD}"))?
        .query_row([parent], |r| r.get(0))?;
    Ok(n as usize)
}

pub fn live_thread_named(
    c: &Connection,
    parent: &str,
    name: &str,
) -> Result<Option<String>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT id FROM sessions WHERE {LIVE_CHILD} AND json_extract(thread_agent, '$.name') = ?2 \
         ORDER BY created_at DESC, id DESC LIMIT 1"
    ))?;
    let mut rows = st.query(params![parent, name])?;
    Ok(match rows.next()? {
        Some(r) => Some(r.get(0)?),
        None => None,
    })
}

/// Child threads the log calls running (or rescheduling): what recovery resumes.
pub fn running_threads(c: &Connection) -> Result<Vec<String>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT id FROM sessions WHERE parent_id IS NOT NULL AND archived_at IS NULL AND status IN ('running', 'rescheduling') ORDER BY created_at, id",
    )?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Newest seq of a session (0 if it has no events).
pub fn max_seq(c: &Connection, session_id: &str) -> Result<u64, StoreError> {
    let last = last_indexed_row(c)?;
    let indexed: i64 = c
        .prepare_cached(
            "SELECT COALESCE(MAX(seq), 0) FROM events_by_session WHERE session_id = ?1",
        )?
        .query_row([session_id], |r| r.get(0))?;
    let tail: i64 = c
        .prepare_cached(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE rowid > ?1 AND session_id = ?2",
        )?
        .query_row(params![last, session_id], |r| r.get(0))?;
    Ok(indexed.max(tail) as u64)
}

/// Events with `after < seq < before`. A session's indexed events all precede its tail
/// events (both grow with rowid), so the two parts concatenate in seq order.
pub fn read_events(
    c: &Connection,
    session_id: &str,
    after: u64,
    before: Option<u64>,
    limit: u32,
    descending: bool,
) -> Result<Vec<Event>, StoreError> {
    let last = last_indexed_row(c)?;
    let before = before.map(|b| b as i64).unwrap_or(i64::MAX);
    let (indexed_sql, tail_sql) = if descending {
        (
            "SELECT e.body FROM events_by_session i JOIN events e ON e.rowid = i.row WHERE i.session_id = ?1 AND i.seq > ?2 AND i.seq < ?3 ORDER BY i.seq DESC LIMIT ?4",
            "SELECT body FROM events WHERE rowid > ?5 AND session_id = ?1 AND seq > ?2 AND seq < ?3 ORDER BY rowid DESC LIMIT ?4",
        )
    } else {
        (
            "SELECT e.body FROM events_by_session i JOIN events e ON e.rowid = i.row WHERE i.session_id = ?1 AND i.seq > ?2 AND i.seq < ?3 ORDER BY i.seq ASC LIMIT ?4",
            "SELECT body FROM events WHERE rowid > ?5 AND session_id = ?1 AND seq > ?2 AND seq < ?3 ORDER BY rowid ASC LIMIT ?4",
        )
    };
    let parts: [(&str, bool); 2] = if descending {
        [(tail_sql, true), (indexed_sql, false)]
    } else {
        [(indexed_sql, false), (tail_sql, true)]
    };
    let mut out = Vec::new();
    for (sql, is_tail) in parts {
        let want = i64::from(limit) - out.len() as i64;
        if want <= 0 {
            break;
        }
        let mut st = c.prepare_cached(sql)?;
        let mut rows = if is_tail {
            st.query(params![session_id, after as i64, before, want, last])?
        } else {
            st.query(params![session_id, after as i64, before, want])?
        };
        while let Some(r) = rows.next()? {
            let body: String = r.get(0)?;
            let ev: Event = serde_json::from_str(&body)
                .map_err(|e| StoreError::Read(format!("corrupt event in {session_id}: {e}")))?;
            out.push(ev);
        }
    }
    Ok(out)
}

pub fn resolve(c: &Connection, reference: &str) -> Result<Vec<String>, StoreError> {
    let exact: Option<String> = c
        .prepare_cached(
            "SELECT id FROM sessions WHERE (id = ?1 OR name = ?1) AND parent_id IS NULL",
        )?
        .query_row([reference], |r| r.get(0))
        .optional()?;
    if let Some(id) = exact {
        return Ok(vec![id]);
    }
    // Prefix match on ids; escape LIKE wildcards so user text is literal.
    let escaped = reference
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    let mut st = c.prepare_cached(
        "SELECT id FROM sessions WHERE (id LIKE ?1 ESCAPE '\\' OR id LIKE ?2 ESCAPE '\\') AND parent_id IS NULL ORDER BY id LIMIT 10",
    )?;
    let rows = st.query_map(
        params![format!("{escaped}%"), format!("sesn\\_{escaped}%")],
        |r| r.get::<_, String>(0),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}
