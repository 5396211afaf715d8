//! The hosted error envelope: `{type: "error", error: {type, message}, request_id}` with the
//! status codes the hosted service uses for each kind of failure.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tether_proto::{ErrorBody, ErrorCode};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Hosted `error.type`: `invalid_request_error`, `not_found_error`, ...
    pub kind: &'static str,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "not_found_error",
            message: message.into(),
        }
    }

    /// A credential that is valid but does not open this (hosted `permission_error`).
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            kind: "permission_error",
            message: message.into(),
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "authentication_error",
            message: "missing or wrong API token: send `x-api-key: <token>` or `Authorization: Bearer <token>`; `tether http-token` prints it".into(),
        }
    }

    /// A JSON body serde refused: says which field and what was expected.
    pub fn body(e: serde_json::Error) -> ApiError {
        ApiError::invalid(format!("invalid request body: {e}"))
    }
}

impl From<ErrorBody> for ApiError {
    fn from(e: ErrorBody) -> ApiError {
        let (status, kind) = match e.code {
            ErrorCode::NotFound => (StatusCode::NOT_FOUND, "not_found_error"),
            // The hosted API answers conflicts with 409 but keeps the generic type.
            ErrorCode::Conflict => (StatusCode::CONFLICT, "invalid_request_error"),
            ErrorCode::ReadOnly | ErrorCode::PermissionDenied => {
                (StatusCode::FORBIDDEN, "permission_error")
            }
            ErrorCode::Storage | ErrorCode::Internal => {
                (StatusCode::INTERNAL_SERVER_ERROR, "api_error")
            }
            ErrorCode::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "overloaded_error"),
            ErrorCode::MemoryPreconditionFailed => {
                (StatusCode::CONFLICT, "memory_precondition_failed_error")
            }
            ErrorCode::MemoryPathConflict => (StatusCode::CONFLICT, "memory_path_conflict_error"),
            _ => (StatusCode::BAD_REQUEST, "invalid_request_error"),
        };
        ApiError {
            status,
            kind,
            message: e.message,
        }
    }
}

impl From<crate::store::error::StoreError> for ApiError {
    fn from(e: crate::store::error::StoreError) -> ApiError {
        ApiError::from(ErrorBody::from(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = crate::ids::request_id();
        let body = serde_json::json!({
            "type": "error",
            "error": { "type": self.kind, "message": self.message },
            "request_id": request_id,
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Ok(v) = request_id.parse() {
            resp.headers_mut().insert("request-id", v);
        }
        resp
    }
}
