//! JSON request bodies parsed by serde with the hosted error envelope on failure (axum's own
//! `Json` rejection answers in plain text).

use axum::body::Bytes;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ApiResult};

pub fn parse<T: DeserializeOwned>(bytes: &Bytes) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            "the request body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(ApiError::body)
}
