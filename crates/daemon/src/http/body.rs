//! JSON request bodies parsed by serde with the hosted error envelope on failure (axum's own
//! `Json` and `Bytes` rejections answer in plain text).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_LENGTH;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ApiResult};

/// The largest request body read (`DefaultBodyLimit` on the router): an agent's system
/// prompt (100,000 characters, up to 4 bytes each) with its tools fits.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// The most of a body read and thrown away before an early answer (see [`drain`]).
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Reads what the client is still sending (up to [`DRAIN_LIMIT`]) and throws it away, so an
/// early answer (401, 404, 413) reaches a client that is still uploading instead of a reset
/// connection mid-write. A client that sent `Expect: 100-continue` waits for the go-ahead, so
/// it is answered at once.
pub async fn drain(req: Request) {
    use futures_util::StreamExt;
    let expects = req
        .headers()
        .get(axum::http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects {
        return;
    }
    let mut data = req.into_body().into_data_stream();
    let mut read = 0usize;
    while let Some(Ok(chunk)) = data.next().await {
        read += chunk.len();
        if read > DRAIN_LIMIT {
            break;
        }
    }
}

/// The raw body, refused in the hosted envelope when too large or unreadable.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Body, ApiError> {
        // A declared length over the limit is refused before the body is touched, so a client
        // that sent `Expect: 100-continue` gets the answer instead of a go-ahead to upload.
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            drain(req).await;
            return Err(too_large());
        }
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ApiError::invalid(format!("the request body could not be read: {e}"))
                }
            })
    }
}

fn too_large() -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        kind: "request_too_large",
        message: format!(
            "the request body is larger than {} MiB, the most this tetherd reads; send less (e.g. put large text in a file in the workspace)",
            MAX_BODY / (1024 * 1024)
        ),
    }
}

pub fn parse<T: DeserializeOwned>(bytes: &Bytes) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            "the request body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(ApiError::body)
}
