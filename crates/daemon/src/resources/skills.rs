//! Skills (hosted `/v1/skills`): a directory of files with a `SKILL.md` whose YAML front
//! matter gives its `name` (a kebab-case slug, the directory it is mounted as) and
//! `description`. Each upload is a new version; a version's files are content-addressed blobs
//! shared with [`super::files`] (rows of `skill_files` name them, so the blob sweep keeps them).
//!
//! Agents reference skills by `{type: custom, skill_id, version}`; a session mounts each
//! one's files read-only at `/skills/<name>/` and announces name, description and path in its
//! system prompt, so the model reads SKILL.md with its tools when it needs it (progressive
//! disclosure, as hosted). tether serves only custom skills.
//!
//! Crash safety as for files: every blob is written to a fsynced temp file first; on the
//! writer thread the blobs are renamed into place and the rows inserted in one transaction.
//! A kill in between leaves blobs no row names, which the start-up sweep removes.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use tether_proto::skill::{
    MAX_AGENT_SKILLS, MAX_SKILL_BYTES, MOUNT_ROOT, MountedSkill, Skill, SkillDeleted, SkillKind,
    SkillRef, SkillSource, SkillVersion,
};
use tether_proto::{ErrorBody, ErrorCode, Paths};

use super::files::{self, Upload};
use crate::ids;
use crate::store::Store;
use crate::store::error::StoreError;

/// At most this many files in one upload.
const MAX_FILES: usize = 1000;

fn invalid(msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidParams, msg)
}

fn skill_missing(id: &str) -> String {
    format!("no skill `{id}`; `tether skills ls` (or GET /v1/skills) lists them")
}

fn version_missing(skill: &str, version: &str) -> String {
    format!(
        "skill `{skill}` has no version `{version}`; GET /v1/skills/{skill}/versions lists them (or use `latest`)"
    )
}

/// An upload's files: (path, content).
pub type Files = Vec<(String, Vec<u8>)>;

/// An upload checked: its directory's name, SKILL.md's front matter, and the files by their
/// path inside the directory.
#[derive(Debug)]
pub struct Checked {
    pub name: String,
    pub description: String,
    pub files: Vec<(String, Vec<u8>)>,
}

/// Whether `s` is a skill name: lowercase letters, digits and single hyphens, at most 64.
fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// `name` and `description` from SKILL.md's front matter (`---` lines around `key: value`
/// pairs; quoted values and `>`/`|` blocks are understood).
pub fn front_matter(text: &str) -> Result<(Option<String>, Option<String>), String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some("---") {
        return Err(
            "SKILL.md must start with YAML front matter: a `---` line, `name: my-skill`, `description: what it does and when to use it`, and a closing `---`".into(),
        );
    }
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut block: Option<(String, bool)> = None; // (key, folded)
    let mut closed = false;
    for line in lines {
        if line.trim_end() == "---" {
            closed = true;
            break;
        }
        if let Some((key, folded)) = &block {
            if line.starts_with(' ') || line.starts_with('\t') || line.trim().is_empty() {
                let entry = fields.entry(key.clone()).or_default();
                if !entry.is_empty() {
                    entry.push(if *folded { ' ' } else { '\n' });
                }
                entry.push_str(line.trim());
                continue;
            }
            block = None;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.starts_with([' ', '\t']) {
            continue;
        }
        let key = key.trim().to_string();
        let value = value.trim();
        match value {
            ">" | ">-" | "|" | "|-" => {
                block = Some((key.clone(), value.starts_with('>')));
                fields.insert(key, String::new());
            }
            _ => {
                let unquoted = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                    .unwrap_or(value);
                fields.insert(key, unquoted.to_string());
            }
        }
    }
    if !closed {
        return Err("SKILL.md's front matter has no closing `---` line".into());
    }
    let get = |k: &str| {
        fields
            .get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    Ok((get("name"), get("description")))
}

/// Checks an upload: every path is `<dir>/<relative path>` under one directory, with
/// `<dir>/SKILL.md` among them whose front matter has a description and a kebab-case name
/// (or the directory's name is one).
pub fn check(files: Vec<(String, Vec<u8>)>) -> Result<Checked, ErrorBody> {
    const HOW: &str = "upload one directory's files, each named by its path (my-skill/SKILL.md, my-skill/scripts/run.py), with SKILL.md at the top of the directory (`tether skills create DIR` does this)";
    if files.is_empty() {
        return Err(invalid(format!("files: none were sent; {HOW}")));
    }
    if files.len() > MAX_FILES {
        return Err(invalid(format!(
            "files: {} files; a skill holds at most {MAX_FILES}",
            files.len()
        )));
    }
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    if total > MAX_SKILL_BYTES {
        return Err(invalid(format!(
            "files: {total} bytes in all; a skill holds at most {MAX_SKILL_BYTES}"
        )));
    }
    let mut dir: Option<String> = None;
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for (path, bytes) in files {
        let p = Path::new(&path);
        let parts: Option<Vec<&str>> = p
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect();
        let parts = match parts {
            Some(parts) if parts.len() >= 2 && !path.chars().any(char::is_control) => parts,
            _ => {
                return Err(invalid(format!(
                    "files: `{path}` is not a path inside a skill's directory; {HOW}"
                )));
            }
        };
        match &dir {
            None => dir = Some(parts[0].to_string()),
            Some(d) if d != parts[0] => {
                return Err(invalid(format!(
                    "files: `{path}` is not in `{d}/`, where the other files are; all of a skill's files share one top-level directory"
                )));
            }
            Some(_) => {}
        }
        let rel = parts[1..].join("/");
        if out.iter().any(|(r, _)| *r == rel) {
            return Err(invalid(format!("files: `{path}` was sent twice")));
        }
        out.push((rel, bytes));
    }
    let dir = dir.unwrap_or_default();
    let Some((_, skill_md)) = out.iter().find(|(r, _)| r == "SKILL.md") else {
        return Err(invalid(format!(
            "files: no `{dir}/SKILL.md`; a skill needs one at the top of its directory"
        )));
    };
    let text = std::str::from_utf8(skill_md)
        .map_err(|_| invalid(format!("{dir}/SKILL.md is not UTF-8 text")))?;
    let (name, description) = front_matter(text).map_err(|e| invalid(format!("{dir}/{e}")))?;
    let name = match name {
        Some(n) if is_slug(&n) => n,
        Some(n) => {
            return Err(invalid(format!(
                "{dir}/SKILL.md: name `{n}` is not a skill name: use lowercase letters, digits and hyphens (at most 64), e.g. `pdf-forms`"
            )));
        }
        None if is_slug(&dir) => dir.clone(),
        None => {
            return Err(invalid(format!(
                "{dir}/SKILL.md: its front matter has no `name` and the directory name `{dir}` is not a skill name; add `name: my-skill` (lowercase letters, digits, hyphens)"
            )));
        }
    };
    let Some(description) = description else {
        return Err(invalid(format!(
            "{dir}/SKILL.md: its front matter has no `description`; add one line saying what the skill does and when to use it (the model sees only this until it opens SKILL.md)"
        )));
    };
    if description.chars().count() > 1024 {
        return Err(invalid(format!(
            "{dir}/SKILL.md: the description is longer than 1024 characters; shorten it and move the details into the body"
        )));
    }
    Ok(Checked {
        name,
        description,
        files: out,
    })
}

/// A skill upload's files from the socket (base64 content).
pub fn decode_files(
    files: Vec<tether_proto::skill::SkillFile>,
) -> Result<Vec<(String, Vec<u8>)>, ErrorBody> {
    use base64::Engine as _;
    files
        .into_iter()
        .map(|f| {
            base64::engine::general_purpose::STANDARD
                .decode(f.content_base64.as_bytes())
                .map(|b| (f.path.clone(), b))
                .map_err(|e| {
                    ErrorBody::new(
                        ErrorCode::InvalidParams,
                        format!("files: the content of `{}` is not base64: {e}", f.path),
                    )
                })
        })
        .collect()
}

/// Versions are epoch microseconds (hosted), increasing within a skill.
fn next_version(c: &Connection, skill_id: &str) -> Result<String, StoreError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let last: Option<i64> = c
        .prepare_cached("SELECT MAX(CAST(id AS INTEGER)) FROM skill_versions WHERE skill_id = ?1")?
        .query_row([skill_id], |r| r.get(0))?;
    Ok(now.max(last.unwrap_or(0) + 1).to_string())
}

/// Blobs written and fsynced, waiting to be placed: (temp, sha256, size, path in the skill).
type Sealed = Vec<(PathBuf, String, u64, String)>;

fn seal_all(paths: &Paths, files: Vec<(String, Vec<u8>)>) -> Result<Sealed, ErrorBody> {
    let mut sealed: Sealed = Vec::new();
    let cleanup = |sealed: &Sealed| {
        for (tmp, ..) in sealed {
            let _ = std::fs::remove_file(tmp);
        }
    };
    for (rel, bytes) in files {
        let step = Upload::start(paths, MAX_SKILL_BYTES).and_then(|mut up| {
            match up.write(&bytes) {
                Ok(()) => {}
                Err(e) => {
                    up.abort();
                    return Err(e);
                }
            }
            up.seal()
        });
        match step {
            Ok((tmp, sha, size)) => sealed.push((tmp, sha, size, rel)),
            Err(e) => {
                cleanup(&sealed);
                return Err(e.into());
            }
        }
    }
    Ok(sealed)
}

/// On the writer: places the blobs and inserts the version with its files.
fn insert_version(
    c: &Connection,
    paths: &Paths,
    skill_id: &str,
    checked_name: &str,
    description: &str,
    sealed: &Sealed,
) -> Result<SkillVersion, StoreError> {
    let version = SkillVersion {
        id: next_version(c, skill_id)?,
        object_type: "skill_version".into(),
        skill_id: skill_id.to_string(),
        name: checked_name.to_string(),
        description: description.to_string(),
        created_at: ids::now_rfc3339(),
    };
    c.execute(
        "INSERT INTO skill_versions (skill_id, id, name, description, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            version.skill_id,
            version.id,
            version.name,
            version.description,
            version.created_at
        ],
    )
    .map_err(|e| StoreError::Write(e.to_string()))?;
    for (tmp, sha, size, rel) in sealed {
        files::place_blob(tmp, &files::blob_path(paths, sha)).map_err(StoreError::Write)?;
        c.execute(
            "INSERT INTO skill_files (skill_id, version_id, path, sha256, size_bytes)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![skill_id, version.id, rel, sha, *size as i64],
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    c.execute(
        "UPDATE skills SET updated_at = ?2 WHERE id = ?1",
        params![skill_id, version.created_at],
    )
    .map_err(|e| StoreError::Write(e.to_string()))?;
    Ok(version)
}

/// Stores a new skill from an upload's files (its first version).
pub async fn create(
    store: &Store,
    paths: &Paths,
    display_name: Option<String>,
    files: Vec<(String, Vec<u8>)>,
) -> Result<Skill, ErrorBody> {
    let checked = check(files)?;
    let display_name = match display_name.map(|d| d.trim().to_string()) {
        Some(d) if d.chars().count() > 255 || d.contains(['\n', '\r']) => {
            return Err(invalid(
                "display_name: one line of at most 255 characters, please",
            ));
        }
        Some(d) if !d.is_empty() => d,
        _ => checked.name.clone(),
    };
    let sealed = seal_all(paths, checked.files)?;
    let cleanup: Vec<PathBuf> = sealed.iter().map(|s| s.0.clone()).collect();
    let paths2 = paths.clone();
    let (name, description) = (checked.name, checked.description);
    let stored = store
        .write(move |c| {
            let id = ids::skill_id();
            let now = ids::now_rfc3339();
            c.execute(
                "INSERT INTO skills (id, display_name, name, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![id, display_name, name, now],
            )
            .map_err(|e| StoreError::Write(e.to_string()))?;
            insert_version(c, &paths2, &id, &name, &description, &sealed)?;
            get_in(c, &id)?.ok_or_else(|| StoreError::Missing(skill_missing(&id)))
        })
        .await;
    for tmp in cleanup {
        let _ = std::fs::remove_file(tmp);
    }
    Ok(stored?)
}

/// Adds a version to `skill_id`; its SKILL.md must give the skill's name.
pub async fn create_version(
    store: &Store,
    paths: &Paths,
    skill_id: &str,
    files: Vec<(String, Vec<u8>)>,
) -> Result<SkillVersion, ErrorBody> {
    get(store, skill_id).await?;
    let checked = check(files)?;
    let sealed = seal_all(paths, checked.files)?;
    let cleanup: Vec<PathBuf> = sealed.iter().map(|s| s.0.clone()).collect();
    let paths2 = paths.clone();
    let id = skill_id.to_string();
    let stored = store
        .write(move |c| {
            let Some(skill_name) = c
                .prepare_cached("SELECT name FROM skills WHERE id = ?1")?
                .query_row([&id], |r| r.get::<_, String>(0))
                .optional()?
            else {
                return Err(StoreError::Missing(skill_missing(&id)));
            };
            if skill_name != checked.name {
                return Err(StoreError::Invalid(format!(
                    "SKILL.md names the skill `{}`, but skill `{id}` is `{skill_name}`: a skill's name never changes; set `name: {skill_name}` in SKILL.md, or create a new skill",
                    checked.name
                )));
            }
            insert_version(c, &paths2, &id, &checked.name, &checked.description, &sealed)
        })
        .await;
    for tmp in cleanup {
        let _ = std::fs::remove_file(tmp);
    }
    Ok(stored?)
}

const SKILL_COLS: &str = "s.id, s.display_name, s.created_at, s.updated_at,
    (SELECT v.id FROM skill_versions v WHERE v.skill_id = s.id
     ORDER BY CAST(v.id AS INTEGER) DESC LIMIT 1)";

fn row_to_skill(r: &rusqlite::Row<'_>) -> rusqlite::Result<Skill> {
    Ok(Skill {
        id: r.get(0)?,
        object_type: "skill".into(),
        display_name: r.get(1)?,
        created_at: r.get(2)?,
        updated_at: r.get(3)?,
        latest_version_id: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
        source: SkillSource {
            kind: "custom".into(),
        },
    })
}

fn get_in(c: &Connection, id: &str) -> Result<Option<Skill>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {SKILL_COLS} FROM skills s WHERE s.id = ?1"
    ))?
    .query_row([id], row_to_skill)
    .optional()?)
}

pub async fn get(store: &Store, id: &str) -> Result<Skill, ErrorBody> {
    let key = id.to_string();
    store
        .read(move |c| get_in(c, &key))
        .await?
        .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, skill_missing(id)))
}

/// A skill by id, or by name (display name or slug; the newest match).
pub async fn find(store: &Store, reference: &str) -> Result<Skill, ErrorBody> {
    let key = reference.to_string();
    let id: Option<String> = store
        .read(move |c| {
            Ok(c.prepare_cached(
                "SELECT id FROM skills WHERE id = ?1 OR name = ?1 OR display_name = ?1
                 ORDER BY (id = ?1) DESC, created_at DESC, id DESC LIMIT 1",
            )?
            .query_row([&key], |r| r.get(0))
            .optional()?)
        })
        .await?;
    get(store, id.as_deref().unwrap_or(reference)).await
}

/// Every skill, oldest first.
pub async fn list(store: &Store) -> Result<Vec<Skill>, ErrorBody> {
    Ok(store
        .read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {SKILL_COLS} FROM skills s ORDER BY s.created_at, s.id"
            ))?;
            let rows = st.query_map([], row_to_skill)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?)
}

fn row_to_version(r: &rusqlite::Row<'_>) -> rusqlite::Result<SkillVersion> {
    Ok(SkillVersion {
        skill_id: r.get(0)?,
        id: r.get(1)?,
        object_type: "skill_version".into(),
        name: r.get(2)?,
        description: r.get(3)?,
        created_at: r.get(4)?,
    })
}

const VERSION_COLS: &str = "skill_id, id, name, description, created_at";

/// A skill's versions, oldest first.
pub async fn versions(store: &Store, skill_id: &str) -> Result<Vec<SkillVersion>, ErrorBody> {
    get(store, skill_id).await?;
    let key = skill_id.to_string();
    Ok(store
        .read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {VERSION_COLS} FROM skill_versions WHERE skill_id = ?1
                 ORDER BY CAST(id AS INTEGER)"
            ))?;
            let rows = st.query_map([&key], row_to_version)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?)
}

/// The version `version` (or `latest`) of `skill_id`.
fn version_in(
    c: &Connection,
    skill_id: &str,
    version: &str,
) -> Result<Option<SkillVersion>, StoreError> {
    let sql = if version == "latest" {
        format!(
            "SELECT {VERSION_COLS} FROM skill_versions WHERE skill_id = ?1 AND ?2 = 'latest'
             ORDER BY CAST(id AS INTEGER) DESC LIMIT 1"
        )
    } else {
        format!("SELECT {VERSION_COLS} FROM skill_versions WHERE skill_id = ?1 AND id = ?2")
    };
    Ok(c.prepare_cached(&sql)?
        .query_row([skill_id, version], row_to_version)
        .optional()?)
}

pub async fn get_version(
    store: &Store,
    skill_id: &str,
    version: &str,
) -> Result<SkillVersion, ErrorBody> {
    get(store, skill_id).await?;
    let (s, v) = (skill_id.to_string(), version.to_string());
    store
        .read(move |c| version_in(c, &s, &v))
        .await?
        .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, version_missing(skill_id, version)))
}

/// The paths of a version's files, sorted.
pub async fn version_files(
    store: &Store,
    skill_id: &str,
    version: &str,
) -> Result<Vec<String>, ErrorBody> {
    let (s, v) = (skill_id.to_string(), version.to_string());
    Ok(store
        .read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT path FROM skill_files WHERE skill_id = ?1 AND version_id = ?2 ORDER BY path",
            )?;
            let rows = st.query_map([&s, &v], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await?)
}

fn shas_of(c: &Connection, sql: &str, args: &[&str]) -> Result<Vec<String>, StoreError> {
    let mut st = c.prepare_cached(sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(args), |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<String>, _>>()?)
}

/// Deletes the skill with all its versions; their blobs go when nothing else names them.
pub async fn delete(store: &Store, paths: &Paths, id: &str) -> Result<SkillDeleted, ErrorBody> {
    let key = id.to_string();
    let shas = store
        .write(move |c| {
            if get_in(c, &key)?.is_none() {
                return Err(StoreError::Missing(skill_missing(&key)));
            }
            let shas = shas_of(
                c,
                "SELECT DISTINCT sha256 FROM skill_files WHERE skill_id = ?1",
                &[&key],
            )?;
            c.execute("DELETE FROM skill_files WHERE skill_id = ?1", [&key])
                .and_then(|_| c.execute("DELETE FROM skill_versions WHERE skill_id = ?1", [&key]))
                .and_then(|_| c.execute("DELETE FROM skills WHERE id = ?1", [&key]))
                .map_err(|e| StoreError::Write(e.to_string()))?;
            Ok(shas)
        })
        .await?;
    for sha in shas {
        files::release_blob(store, paths, sha).await;
    }
    Ok(SkillDeleted {
        id: id.to_string(),
        object_type: "skill_deleted".into(),
    })
}

/// Deletes one version. A skill always has one (its `latest`), so its last version is
/// refused: delete the skill instead.
pub async fn delete_version(
    store: &Store,
    paths: &Paths,
    skill_id: &str,
    version: &str,
) -> Result<SkillDeleted, ErrorBody> {
    get(store, skill_id).await?;
    let (s, v) = (skill_id.to_string(), version.to_string());
    let shas = store
        .write(move |c| {
            let Some(found) = version_in(c, &s, &v)? else {
                return Err(StoreError::Missing(version_missing(&s, &v)));
            };
            let count: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM skill_versions WHERE skill_id = ?1")?
                .query_row([&s], |r| r.get(0))?;
            if count <= 1 {
                return Err(StoreError::Conflict(format!(
                    "version `{}` is the only version of skill `{s}`, and a skill always has one; delete the skill instead (DELETE /v1/skills/{s} or `tether skills rm {s}`)",
                    found.id
                )));
            }
            let shas = shas_of(
                c,
                "SELECT DISTINCT sha256 FROM skill_files WHERE skill_id = ?1 AND version_id = ?2",
                &[&s, &found.id],
            )?;
            c.execute(
                "DELETE FROM skill_files WHERE skill_id = ?1 AND version_id = ?2",
                params![s, found.id],
            )
            .and_then(|_| {
                c.execute(
                    "DELETE FROM skill_versions WHERE skill_id = ?1 AND id = ?2",
                    params![s, found.id],
                )
            })
            .map_err(|e| StoreError::Write(e.to_string()))?;
            Ok((found.id, shas))
        })
        .await?;
    let (id, shas) = shas;
    for sha in shas {
        files::release_blob(store, paths, sha).await;
    }
    Ok(SkillDeleted {
        id,
        object_type: "skill_version_deleted".into(),
    })
}

/// Checks an agent's `skills` against the store (on the writer, inside the agent's write):
/// custom skills that exist, at a version they have (or `latest`), each once, at most 20.
pub fn check_refs(c: &Connection, refs: &[SkillRef]) -> Result<(), StoreError> {
    if refs.len() > MAX_AGENT_SKILLS {
        return Err(StoreError::Invalid(format!(
            "skills: {} skills; an agent takes at most {MAX_AGENT_SKILLS}",
            refs.len()
        )));
    }
    for (i, r) in refs.iter().enumerate() {
        if r.kind == SkillKind::Anthropic {
            return Err(StoreError::Invalid(format!(
                "skills[{i}]: `{}` is an Anthropic skill, and tetherd serves only custom skills; upload the skill's directory (`tether skills create DIR` or POST /v1/skills) and reference it as {{\"type\": \"custom\", \"skill_id\": ...}}",
                r.skill_id
            )));
        }
        if refs[..i].iter().any(|o| o.skill_id == r.skill_id) {
            return Err(StoreError::Invalid(format!(
                "skills[{i}]: skill `{}` is listed twice",
                r.skill_id
            )));
        }
        if get_in(c, &r.skill_id)?.is_none() {
            return Err(StoreError::Missing(format!(
                "skills[{i}]: {}",
                skill_missing(&r.skill_id)
            )));
        }
        let v = r.version.as_deref().unwrap_or("latest");
        if version_in(c, &r.skill_id, v)?.is_none() {
            return Err(StoreError::Missing(format!(
                "skills[{i}]: {}",
                version_missing(&r.skill_id, v)
            )));
        }
    }
    Ok(())
}

/// [`check_refs`] outside an agent's write: a session's own skills
/// (`agent_with_overrides.skills`), checked before the session is made.
pub async fn check_session_refs(store: &Store, refs: &[SkillRef]) -> Result<(), ErrorBody> {
    let refs = refs.to_vec();
    Ok(store.read(move |c| check_refs(c, &refs)).await?)
}

/// An agent's skills resolved for a session: each version's name, description and files
/// (blob, path inside the skill). A skill deleted since is an error naming it.
pub async fn resolve(
    store: &Store,
    paths: &Paths,
    refs: &[SkillRef],
) -> Result<Vec<MountedSkill>, ErrorBody> {
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let refs = refs.to_vec();
    let found = store
        .read(move |c| {
            let mut out = Vec::new();
            for r in &refs {
                let v = r.version.as_deref().unwrap_or("latest");
                let Some(version) = version_in(c, &r.skill_id, v)? else {
                    return Err(StoreError::Missing(format!(
                        "the agent's skill `{}` (version {v}) no longer exists; update the agent's skills",
                        r.skill_id
                    )));
                };
                let mut st = c.prepare_cached(
                    "SELECT path, sha256 FROM skill_files WHERE skill_id = ?1 AND version_id = ?2 ORDER BY path",
                )?;
                let files = st
                    .query_map([&r.skill_id, &version.id], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                out.push((version, files));
            }
            Ok(out)
        })
        .await?;
    Ok(found
        .into_iter()
        .map(|(v, files)| MountedSkill {
            mount_path: format!("{MOUNT_ROOT}/{}", v.name),
            skill_id: v.skill_id,
            version: v.id,
            name: v.name,
            description: v.description,
            files: files
                .into_iter()
                .map(|(rel, sha)| (files::blob_path(paths, &sha).display().to_string(), rel))
                .collect(),
        })
        .collect())
}

/// Sandbox mounts for a session's skills: each skill's tree built under
/// `sessions/<id>/skills/<name>/` (hard links to the blobs), bound read-only at its
/// `mount_path`. Derived each time the session loads; nothing there is authoritative.
pub fn sandbox_mounts(
    paths: &Paths,
    session_id: &str,
    skills: &[MountedSkill],
) -> Vec<crate::sandbox::Mount> {
    let root = paths.sessions_dir().join(session_id).join("skills");
    let _ = std::fs::remove_dir_all(&root);
    let mut out = Vec::new();
    for s in skills {
        let dir = root.join(&s.name);
        let mut ok = crate::private::create_dir(&dir).is_ok();
        for (blob, rel) in &s.files {
            let dst = dir.join(rel);
            if let Some(parent) = dst.parent()
                && let Err(e) = std::fs::create_dir_all(parent)
            {
                tracing::warn!(dir = %parent.display(), "cannot create a skill's directory: {e}");
                ok = false;
                continue;
            }
            if std::fs::hard_link(blob, &dst).is_err()
                && let Err(e) = std::fs::copy(blob, &dst)
            {
                tracing::warn!(blob, "cannot place a skill's file: {e}");
            }
        }
        if ok {
            out.push(crate::sandbox::Mount {
                src: dir,
                dst: s.mount_path.clone().into(),
                read_only: true,
            });
        }
    }
    out
}

/// The skills' part of the system prompt: name, description and where SKILL.md is, so the
/// model opens it (and the files it points to) only when a task calls for it.
pub fn prompt(skills: &[MountedSkill]) -> String {
    if skills.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n\nSkills are available: folders of instructions, scripts and resources for particular tasks, mounted read-only. When a task matches a skill's description, read its SKILL.md first (with your file or shell tools) and follow it; open the other files it mentions only as needed.\n<available_skills>",
    );
    for s in skills {
        out.push_str(&format!(
            "\n<skill>\n<name>{}</name>\n<description>{}</description>\n<location>{}/SKILL.md</location>\n</skill>",
            s.name, s.description, s.mount_path
        ));
    }
    out.push_str("\n</available_skills>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(front: &str) -> Vec<u8> {
        format!("---\n{front}\n---\n# Body\n").into_bytes()
    }

    #[test]
    fn front_matter_is_read() {
        let (n, d) =
            front_matter("---\nname: pdf-forms\ndescription: \"Fill PDF forms.\"\n---\nbody")
                .unwrap();
        assert_eq!(n.as_deref(), Some("pdf-forms"));
        assert_eq!(d.as_deref(), Some("Fill PDF forms."));
        let (_, d) =
            front_matter("---\nname: x\ndescription: >\n  one\n  two\nlicense: MIT\n---\n")
                .unwrap();
        assert_eq!(d.as_deref(), Some("one two"));
        assert!(front_matter("# no front matter").is_err());
        assert!(front_matter("---\nname: x\n").is_err());
    }

    #[test]
    fn uploads_are_checked_with_reasons() {
        let ok = check(vec![
            (
                "my-skill/SKILL.md".into(),
                md("name: my-skill\ndescription: Does it."),
            ),
            ("my-skill/scripts/run.py".into(), b"print(1)".to_vec()),
        ])
        .unwrap();
        assert_eq!(ok.name, "my-skill");
        assert_eq!(ok.description, "Does it.");
        let rels: Vec<&str> = ok.files.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(rels, ["SKILL.md", "scripts/run.py"]);
        // The name may come from the directory.
        let ok = check(vec![("from-dir/SKILL.md".into(), md("description: D"))]).unwrap();
        assert_eq!(ok.name, "from-dir");

        let cases: Vec<(Files, &str)> = vec![
            (vec![], "none were sent"),
            (
                vec![("upload".into(), b"x".to_vec())],
                "`upload` is not a path",
            ),
            (
                vec![("a/../b/SKILL.md".into(), md("name: a\ndescription: d"))],
                "is not a path",
            ),
            (
                vec![
                    ("a/SKILL.md".into(), md("name: a\ndescription: d")),
                    ("b/x".into(), b"x".to_vec()),
                ],
                "is not in `a/`",
            ),
            (
                vec![("a/README.md".into(), b"x".to_vec())],
                "no `a/SKILL.md`",
            ),
            (
                vec![("a/SKILL.md".into(), md("name: a"))],
                "no `description`",
            ),
            (
                vec![("a/SKILL.md".into(), md("name: Bad Name\ndescription: d"))],
                "not a skill name",
            ),
            (
                vec![("a/SKILL.md".into(), b"just text".to_vec())],
                "front matter",
            ),
        ];
        for (files, want) in cases {
            let e = check(files).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParams);
            assert!(e.message.contains(want), "{want}: {}", e.message);
        }
    }

    fn store() -> (tempfile::TempDir, Store, Paths) {
        crate::store::in_temp_home()
    }

    fn upload(desc: &str) -> Vec<(String, Vec<u8>)> {
        vec![
            (
                "greeter/SKILL.md".into(),
                md(&format!("name: greeter\ndescription: {desc}")),
            ),
            ("greeter/scripts/hi.sh".into(), b"echo hi".to_vec()),
        ]
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn versions_resolve_and_their_blobs_live_as_long_as_they_do() {
        let (_tmp, store, paths) = store();
        let s = create(&store, &paths, None, upload("v1")).await.unwrap();
        assert_eq!(s.display_name, "greeter");
        assert!(s.id.starts_with("skill_"));
        let v2 = create_version(&store, &paths, &s.id, upload("v2"))
            .await
            .unwrap();
        let s = get(&store, &s.id).await.unwrap();
        assert_eq!(s.latest_version_id, v2.id);
        let all = versions(&store, &s.id).await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[0].id.parse::<u64>().unwrap() < all[1].id.parse::<u64>().unwrap());

        let latest = SkillRef {
            kind: SkillKind::Custom,
            skill_id: s.id.clone(),
            version: None,
        };
        let mounted = resolve(&store, &paths, std::slice::from_ref(&latest))
            .await
            .unwrap();
        assert_eq!(mounted[0].description, "v2");
        assert_eq!(mounted[0].mount_path, "/skills/greeter");
        assert!(prompt(&mounted).contains("/skills/greeter/SKILL.md"));
        let blob = mounted[0].files[1].0.clone();
        assert!(Path::new(&blob).exists());

        // Another name in a new version is refused; the last version can't go.
        let other = vec![("x/SKILL.md".into(), md("name: other\ndescription: d"))];
        let e = create_version(&store, &paths, &s.id, other)
            .await
            .unwrap_err();
        assert!(e.message.contains("never changes"), "{}", e.message);
        delete_version(&store, &paths, &s.id, &all[0].id)
            .await
            .unwrap();
        let e = delete_version(&store, &paths, &s.id, &v2.id)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);

        // Refs: an Anthropic skill, a missing version, a missing skill.
        let e = store
            .read({
                let r = SkillRef {
                    kind: SkillKind::Anthropic,
                    skill_id: "xlsx".into(),
                    version: None,
                };
                move |c| check_refs(c, &[r])
            })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("only custom skills"), "{e}");
        let bad = SkillRef {
            version: Some(all[0].id.clone()),
            ..latest.clone()
        };
        let e = store
            .read(move |c| check_refs(c, &[bad]))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Missing(_)), "{e}");

        delete(&store, &paths, &s.id).await.unwrap();
        assert!(!Path::new(&blob).exists(), "the blob went with its skill");
        let e = get(&store, &s.id).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains(&s.id));
        assert!(resolve(&store, &paths, &[latest]).await.is_err());
    }
}
