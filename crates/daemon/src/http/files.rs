//! `/v1/files`: upload (multipart/form-data, as the SDKs send it, streamed to disk), list,
//! metadata, content, delete — over `resources::files`.

use axum::Json;
use axum::body::Body as RawBody;
use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tether_proto::file::{FileDeleted, FileMetadata};

use super::error::{ApiError, ApiResult};
use super::query::Query;
use super::shapes::Page;
use super::{Api, body, page};
use crate::resources::files::{self, Upload, UploadError};

/// The multipart envelope around a file (boundaries, part headers, small fields) that the
/// declared length may exceed the file limit by.
const ENVELOPE: u64 = 64 * 1024;

/// The body of `POST /v1/files`, for the OpenAPI document: the one part it reads.
#[derive(schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct FileUpload {
    /// The file's bytes (a part named `file`; its `filename` is kept).
    #[schemars(with = "BinaryString")]
    file: String,
}

/// `{type: string, format: binary}`.
pub struct BinaryString;

impl schemars::JsonSchema for BinaryString {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BinaryString".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "binary" })
    }
}

fn too_large(max: u64) -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        kind: "request_too_large",
        message: files::too_large_message(max),
    }
}

pub async fn upload(State(api): State<Api>, req: Request) -> ApiResult<Json<FileMetadata>> {
    let max = api.rt.config.files.max_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max.saturating_add(ENVELOPE)) {
        body::drain(req).await;
        return Err(too_large(max));
    }
    let mut form = Multipart::from_request(req, &()).await.map_err(|e| {
        ApiError::invalid(format!(
            "POST /v1/files takes multipart/form-data with the file in a part named `file`: {e}"
        ))
    })?;
    let bad_form = |e: axum::extract::multipart::MultipartError| {
        ApiError::invalid(format!("the multipart body could not be read: {e}"))
    };
    while let Some(mut field) = form.next_field().await.map_err(bad_form)? {
        if field.name() != Some("file") {
            continue;
        }
        let filename = files::clean_filename(field.file_name());
        let mime_type = field
            .content_type()
            .filter(|t| !t.is_empty() && *t != "application/octet-stream")
            .map(str::to_string)
            .unwrap_or_else(|| files::guess_mime(&filename).to_string());
        let mut up = Upload::start(&api.rt.paths, max).map_err(upload_error)?;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if let Err(e) = up.write(&chunk) {
                        up.abort();
                        if matches!(e, UploadError::TooLarge { .. }) {
                            // Read what is still coming, so the client sees the answer.
                            while let Ok(Some(_)) = field.chunk().await {}
                        }
                        return Err(upload_error(e));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    up.abort();
                    return Err(bad_form(e));
                }
            }
        }
        let meta = up
            .finish(&api.rt.store, &api.rt.paths, filename, mime_type)
            .await?;
        return Ok(Json(meta));
    }
    Err(ApiError::invalid(
        "file: required; send the file as a multipart/form-data part named `file`",
    ))
}

fn upload_error(e: UploadError) -> ApiError {
    match e {
        UploadError::TooLarge { max } => too_large(max),
        UploadError::Io(m) => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "api_error",
            message: m,
        },
    }
}

/// Newest first, like the hosted listing; `scope_id` keeps a session's outputs only.
pub async fn list(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<FileMetadata>>> {
    let q = Query::parse(q.as_deref());
    let all = files::list(&api.rt.store, q.one("scope_id")).await?;
    Ok(Json(page::of_query(
        &q,
        all,
        |f| vec![f.created_at.clone(), f.id.clone()],
        true,
        (20, 1000),
    )?))
}

pub async fn retrieve(
    State(api): State<Api>,
    Path(file_id): Path<String>,
) -> ApiResult<Json<FileMetadata>> {
    Ok(Json(files::get(&api.rt.store, &file_id).await?))
}

/// The content, streamed from its blob.
pub async fn download(State(api): State<Api>, Path(file_id): Path<String>) -> ApiResult<Response> {
    let meta = files::get(&api.rt.store, &file_id).await?;
    let blob = files::blob_path(&api.rt.paths, &meta.sha256);
    let f = tokio::fs::File::open(&blob).await.map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        kind: "api_error",
        message: format!("the content of file `{file_id}` cannot be read: {e}"),
    })?;
    let stream = tokio_util::io::ReaderStream::new(f);
    let disposition = format!(
        "attachment; filename=\"{}\"",
        meta.filename
            .chars()
            .map(
                |c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                    c
                } else {
                    '_'
                }
            )
            .collect::<String>()
    );
    Ok((
        [
            (header::CONTENT_TYPE, meta.mime_type.clone()),
            (header::CONTENT_LENGTH, meta.size_bytes.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        RawBody::from_stream(stream),
    )
        .into_response())
}

pub async fn delete(
    State(api): State<Api>,
    Path(file_id): Path<String>,
) -> ApiResult<Json<FileDeleted>> {
    Ok(Json(
        files::delete(&api.rt.store, &api.rt.paths, &file_id).await?,
    ))
}

// ---- session resources: `/v1/sessions/{id}/resources` ----

use tether_proto::file::{ResourceParam, ResourceUpdate, SessionResource, SessionResourceDeleted};

use crate::resources::attach;

async fn require_session(api: &Api, session_id: &str) -> ApiResult<()> {
    api.rt
        .store
        .require_exact_id(
            "sessions",
            session_id,
            format!("no session `{session_id}`; GET /v1/sessions lists them"),
        )
        .await?;
    Ok(())
}

/// `POST …/resources` takes a file only (hosted rule): `{type: "file", file_id, mount_path?}`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddResource {
    /// Always `file`.
    #[serde(rename = "type")]
    #[schemars(regex(pattern = "^file$"))]
    kind: String,
    file_id: String,
    #[serde(default)]
    mount_path: Option<String>,
}

pub async fn list_resources(
    State(api): State<Api>,
    Path(session_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<SessionResource>>> {
    require_session(&api, &session_id).await?;
    let q = Query::parse(q.as_deref());
    let all = attach::list(&api.rt.store, &session_id).await?;
    Ok(Json(page::of_query(
        &q,
        all,
        |r| vec![r.id().to_string()],
        false,
        (1000, 1000),
    )?))
}

pub async fn add_resource(
    State(api): State<Api>,
    Path(session_id): Path<String>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<SessionResource>> {
    require_session(&api, &session_id).await?;
    let add: AddResource = body::parse(&bytes)?;
    if add.kind != "file" {
        return Err(ApiError::invalid(format!(
            "type: `{}` can't be added to a running session; only `file` can (repositories are given when the session is created)",
            add.kind
        )));
    }
    let param = ResourceParam::File {
        file_id: add.file_id,
        mount_path: add.mount_path,
    };
    let mut planned = attach::plan(&api.rt.store, &[param]).await?;
    let taken = attach::list(&api.rt.store, &session_id).await?;
    if let Some(p) = planned.first() {
        let path = attach::mount_of(&p.resource);
        if let Some(other) = taken
            .iter()
            .map(attach::mount_of)
            .find(|t| attach::mounts_clash(t, path))
        {
            return Err(ApiError::invalid(format!(
                "mount_path: `{path}` clashes with `{other}`, another resource of this session (the same path, or one inside the other); choose another"
            )));
        }
    }
    attach::insert(&api.rt.store, &session_id, &planned).await?;
    let added = planned
        .pop()
        .ok_or_else(|| ApiError::invalid("resources: nothing to add"))?;
    // A running sandbox sees the file at once.
    if let Some(sha) = &added.sha256 {
        attach::place_added(
            &api.rt.paths,
            &session_id,
            sha,
            attach::mount_of(&added.resource),
        );
    }
    Ok(Json(added.resource))
}

pub async fn retrieve_resource(
    State(api): State<Api>,
    Path((session_id, resource_id)): Path<(String, String)>,
) -> ApiResult<Json<SessionResource>> {
    require_session(&api, &session_id).await?;
    Ok(Json(
        attach::get(&api.rt.store, &session_id, &resource_id).await?,
    ))
}

/// A repository's new token. tetherd clones once, when the session is created, and keeps no
/// token, so the token is checked and dropped.
pub async fn update_resource(
    State(api): State<Api>,
    Path((session_id, resource_id)): Path<(String, String)>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<SessionResource>> {
    require_session(&api, &session_id).await?;
    let r = attach::get(&api.rt.store, &session_id, &resource_id).await?;
    let _update: ResourceUpdate = body::parse(&bytes)?;
    if !matches!(r, SessionResource::GithubRepository { .. }) {
        return Err(ApiError::invalid(format!(
            "resource `{resource_id}` is a file; only a github_repository takes a new authorization_token"
        )));
    }
    Ok(Json(r))
}

pub async fn delete_resource(
    State(api): State<Api>,
    Path((session_id, resource_id)): Path<(String, String)>,
) -> ApiResult<Json<SessionResourceDeleted>> {
    require_session(&api, &session_id).await?;
    Ok(Json(
        attach::delete(&api.rt.store, &api.rt.paths, &session_id, &resource_id).await?,
    ))
}
