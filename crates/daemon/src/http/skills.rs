//! `/v1/skills` and their versions (hosted `beta.skills`): create and new versions from a
//! multipart upload of one directory's files (parts named `files[]`, each `filename` its path
//! such as `my-skill/SKILL.md`, as the SDKs send them), list, retrieve, delete — over
//! `resources::skills`.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use tether_proto::skill::{MAX_SKILL_BYTES, Skill, SkillDeleted, SkillVersion};

use super::error::{ApiError, ApiResult};
use super::files::BinaryString;
use super::query::Query;
use super::shapes::Page;
use super::{Api, body, page};
use crate::resources::skills;

/// The body of `POST /v1/skills`, for the OpenAPI document.
#[derive(schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SkillUpload {
    /// The skill's files, each part's `filename` its path (`my-skill/SKILL.md`).
    #[serde(rename = "files[]")]
    #[schemars(with = "Vec<BinaryString>")]
    files: Vec<String>,
    /// Defaults to SKILL.md's `name`.
    #[schemars(length(max = 255))]
    display_name: Option<String>,
}

/// The body of `POST /v1/skills/{skill_id}/versions`.
#[derive(schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct VersionUpload {
    #[serde(rename = "files[]")]
    #[schemars(with = "Vec<BinaryString>")]
    files: Vec<String>,
}

/// The files (path, bytes) and `display_name` of a multipart upload, at most
/// [`MAX_SKILL_BYTES`] in all (the rest is read and dropped, so the client sees the answer).
async fn read_upload(
    req: Request,
    what: &str,
) -> ApiResult<(Vec<(String, Vec<u8>)>, Option<String>)> {
    let too_large = || ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        kind: "request_too_large",
        message: format!(
            "the skill's files are larger than {MAX_SKILL_BYTES} bytes in all, the most a skill holds; leave out what the skill does not need"
        ),
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_SKILL_BYTES + 1024 * 1024) {
        body::drain(req).await;
        return Err(too_large());
    }
    let mut form = Multipart::from_request(req, &()).await.map_err(|e| {
        ApiError::invalid(format!(
            "{what} takes multipart/form-data with each file in a part named `files[]` whose filename is its path (my-skill/SKILL.md): {e}"
        ))
    })?;
    let bad_form = |e: axum::extract::multipart::MultipartError| {
        ApiError::invalid(format!("the multipart body could not be read: {e}"))
    };
    let mut files = Vec::new();
    let mut display_name = None;
    let mut total: u64 = 0;
    while let Some(field) = form.next_field().await.map_err(bad_form)? {
        match field.name() {
            Some("files[]" | "files") => {
                let path = field.file_name().unwrap_or_default().to_string();
                let bytes = field.bytes().await.map_err(bad_form)?;
                total += bytes.len() as u64;
                if total > MAX_SKILL_BYTES {
                    while let Ok(Some(_)) = form.next_field().await {}
                    return Err(too_large());
                }
                files.push((path, bytes.to_vec()));
            }
            Some("display_name") => display_name = Some(field.text().await.map_err(bad_form)?),
            _ => {}
        }
    }
    Ok((files, display_name))
}

pub async fn create(State(api): State<Api>, req: Request) -> ApiResult<Json<Skill>> {
    let (files, display_name) = read_upload(req, "POST /v1/skills").await?;
    Ok(Json(
        skills::create(&api.rt.store, &api.rt.paths, display_name, files).await?,
    ))
}

/// Newest first, like the hosted listing; `source=anthropic` is empty (tether has none).
pub async fn list(State(api): State<Api>, RawQuery(q): RawQuery) -> ApiResult<Json<Page<Skill>>> {
    let q = Query::parse(q.as_deref());
    let mut all = skills::list(&api.rt.store).await?;
    if let Some(source) = q.one("source")
        && source != "custom"
    {
        all.clear();
    }
    Ok(Json(page::of_query(
        &q,
        all,
        |s| vec![s.created_at.clone(), s.id.clone()],
        true,
        (20, 1000),
    )?))
}

pub async fn retrieve(
    State(api): State<Api>,
    Path(skill_id): Path<String>,
) -> ApiResult<Json<Skill>> {
    Ok(Json(skills::get(&api.rt.store, &skill_id).await?))
}

pub async fn delete(
    State(api): State<Api>,
    Path(skill_id): Path<String>,
) -> ApiResult<Json<SkillDeleted>> {
    Ok(Json(
        skills::delete(&api.rt.store, &api.rt.paths, &skill_id).await?,
    ))
}

pub async fn create_version(
    State(api): State<Api>,
    Path(skill_id): Path<String>,
    req: Request,
) -> ApiResult<Json<SkillVersion>> {
    // An unknown skill is a 404 before the upload is looked at (read, so the client sees it).
    if let Err(e) = skills::get(&api.rt.store, &skill_id).await {
        body::drain(req).await;
        return Err(e.into());
    }
    let (files, _) = read_upload(req, "POST /v1/skills/{skill_id}/versions").await?;
    Ok(Json(
        skills::create_version(&api.rt.store, &api.rt.paths, &skill_id, files).await?,
    ))
}

/// Newest first.
pub async fn list_versions(
    State(api): State<Api>,
    Path(skill_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<SkillVersion>>> {
    let q = Query::parse(q.as_deref());
    let all = skills::versions(&api.rt.store, &skill_id).await?;
    Ok(Json(page::of_query(
        &q,
        all,
        |v| vec![format!("{:0>20}", v.id)],
        true,
        (20, 1000),
    )?))
}

pub async fn retrieve_version(
    State(api): State<Api>,
    Path((skill_id, version)): Path<(String, String)>,
) -> ApiResult<Json<SkillVersion>> {
    Ok(Json(
        skills::get_version(&api.rt.store, &skill_id, &version).await?,
    ))
}

pub async fn delete_version(
    State(api): State<Api>,
    Path((skill_id, version)): Path<(String, String)>,
) -> ApiResult<Json<SkillDeleted>> {
    Ok(Json(
        skills::delete_version(&api.rt.store, &api.rt.paths, &skill_id, &version).await?,
    ))
}
