//! HTTP plumbing shared by every provider: client construction (TLS roots),
//! endpoint validation, secret headers, the streaming request with idle timeout
//! and cancellation, error envelopes, `retry-after`, and the classification of
//! transport failures. Each wire protocol only supplies its credentials check, its
//! request body and a [`WireParser`] (`Endpoint::request`).

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Once;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::sse::{SseDecoder, SseEvent};
use super::{ModelRequest, ModelResponse, ProviderError, StreamEvent, Who, shorten, stream_kind};

/// Time allowed for the TCP + TLS connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the response head or the body may stay silent before the request
/// fails with [`ProviderError::Transport`] (providers send keep-alives while
/// they think, so a live stream is never this quiet).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

const USER_AGENT: &str = concat!("tether/", env!("CARGO_PKG_VERSION"));
/// Error bodies are read up to this size; the rest is ignored.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// A `retry-after` longer than this is treated as this (guards against absurd values).
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

static CRYPTO_PROVIDER: Once = Once::new();

/// reqwest is built with `rustls-no-provider`: install ring as the process-wide
/// rustls provider before the first client is built. If something else already
/// installed one, that one is kept.
pub(crate) fn install_crypto_provider() {
    CRYPTO_PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A header value marked sensitive (never printed by reqwest/hyper debug output).
pub(crate) fn sensitive_header(value: &str, what: &str) -> Result<HeaderValue, ProviderError> {
    let mut header = HeaderValue::from_str(value.trim()).map_err(|_| {
        ProviderError::Config(format!(
            "the {what} contains characters that cannot be sent in an HTTP header: check it \
             for stray quotes or line breaks"
        ))
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// Folds one wire protocol's SSE events into a [`ModelResponse`].
pub(crate) trait WireParser: Send {
    /// Handles one SSE event (`event` is the `event:` name, empty when absent);
    /// `Ok(Some(..))` once the response is complete.
    fn handle(
        &mut self,
        event: &str,
        data: &str,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<Option<ModelResponse>, ProviderError>;

    /// The body ended without the final event: a complete response if the
    /// protocol allows that, else `None` (a truncated stream).
    fn at_end(&mut self) -> Option<ModelResponse> {
        None
    }
}

/// One provider endpoint: URL, client and the headers every request carries
/// (authentication and configured extras, all marked sensitive).
#[derive(Clone)]
pub(crate) struct Endpoint {
    client: reqwest::Client,
    pub url: Url,
    headers: HeaderMap,
    /// Whether an authentication header is configured.
    pub has_auth: bool,
    pub idle_timeout: Duration,
    pub who: Who,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are secrets: only their names are shown.
        f.debug_struct("Endpoint")
            .field("url", &self.url.as_str())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    pub fn new(
        base_url: &str,
        path: &str,
        headers: HeaderMap,
        has_auth: bool,
        who: Who,
    ) -> Result<Endpoint, ProviderError> {
        let url = endpoint_url(base_url, path, &who)?;
        let client = build_client(&url)?;
        Ok(Endpoint {
            client,
            url,
            headers,
            has_auth,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            who,
        })
    }

    #[cfg(test)]
    pub fn has_header(&self, name: &str) -> bool {
        self.headers.contains_key(name)
    }

    /// Whether requests go to `domain` or one of its subdomains (where a missing key can
    /// only mean a 401, unlike a local server that needs none).
    pub fn goes_to(&self, domain: &str) -> bool {
        self.url.host_str().is_some_and(|h| {
            h == domain
                || h.strip_suffix(domain)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
    }

    pub fn host(&self) -> String {
        self.url
            .host_str()
            .unwrap_or("the model server")
            .to_string()
    }

    /// What every client's `stream` does: refuses at once when `cancel` has already fired
    /// or `credentials` (the client's check) failed, builds the body (which may refuse the
    /// request as [`ProviderError::Config`]), logs the request, then [`Endpoint::stream`]s
    /// it through `parser`.
    pub async fn request(
        &self,
        req: &ModelRequest,
        credentials: Result<(), ProviderError>,
        body: impl FnOnce(&ModelRequest) -> Result<Value, ProviderError>,
        parser: &mut dyn WireParser,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ModelResponse, ProviderError> {
        if cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        credentials?;
        let body = body(req)?;
        tracing::debug!(
            model = %req.model,
            endpoint = %self.url,
            messages = req.messages.len(),
            tools = req.tools.len(),
            "model request"
        );
        self.stream(&body, cancel, parser, on_event).await
    }

    /// POSTs `body` and folds the SSE response with `parser`. Does not retry.
    /// Returns `Err(Cancelled)` promptly when `cancel` fires (the response stream
    /// is dropped, which closes the connection).
    pub async fn stream(
        &self,
        body: &Value,
        cancel: &CancellationToken,
        parser: &mut dyn WireParser,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ModelResponse, ProviderError> {
        if cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        let body = serde_json::to_vec(body)
            .map_err(|e| ProviderError::Config(format!("could not encode the request: {e}")))?;
        let request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .body(body);

        let response = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(ProviderError::Cancelled),
            sent = tokio::time::timeout(self.idle_timeout, request.send()) => match sent {
                Err(_) => {
                    return Err(ProviderError::Transport(format!(
                        "no response from {} within {}",
                        self.host(),
                        humantime::format_duration(self.idle_timeout)
                    )));
                }
                Ok(Err(e)) => return Err(ProviderError::Transport(error_chain(&e))),
                Ok(Ok(response)) => response,
            },
        };

        let headers = response.headers();
        let request_id = headers
            .get("request-id")
            .or_else(|| headers.get("x-request-id"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let status = response.status();
        if !status.is_success() {
            let error = self.error_response(response, cancel).await?;
            tracing::warn!(
                status = status.as_u16(),
                request_id = %request_id,
                error = %error,
                "model request failed"
            );
            return Err(error);
        }

        let result = self.read_stream(response, cancel, parser, on_event).await;
        match &result {
            Ok(response) => tracing::debug!(
                request_id = %request_id,
                stop_reason = %response.stop_reason,
                input_tokens = response.usage.input_tokens,
                output_tokens = response.usage.output_tokens,
                "model response complete"
            ),
            Err(ProviderError::Cancelled) => {
                tracing::debug!(request_id = %request_id, "model request cancelled");
            }
            Err(error) => {
                tracing::warn!(request_id = %request_id, error = %error, "model stream failed");
            }
        }
        result
    }

    /// Reads a non-2xx response into [`ProviderError::Status`].
    async fn error_response(
        &self,
        mut response: reqwest::Response,
        cancel: &CancellationToken,
    ) -> Result<ProviderError, ProviderError> {
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        let read = async {
            let mut body = Vec::new();
            while body.len() < MAX_ERROR_BODY {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) => break,
                    // A cut error body still leaves the status to report.
                    Err(_) => break,
                }
            }
            body
        };
        let body = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(ProviderError::Cancelled),
            body = tokio::time::timeout(self.idle_timeout, read) => body.unwrap_or_default(),
        };
        let (kind, message) = parse_error_envelope(status, &body);
        Ok(ProviderError::Status {
            status: status.as_u16(),
            kind,
            message,
            retry_after,
        })
    }

    async fn read_stream(
        &self,
        response: reqwest::Response,
        cancel: &CancellationToken,
        parser: &mut dyn WireParser,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ModelResponse, ProviderError> {
        let mut body = std::pin::pin!(idle_guarded(response.bytes_stream(), self.idle_timeout));
        let mut sse = SseDecoder::default();
        loop {
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(ProviderError::Cancelled),
                next = body.next() => next,
            };
            match next {
                None => return parser.at_end().ok_or_else(truncated),
                Some(Err(e)) => return Err(classify_body_error(e, &self.host())),
                Some(Ok(chunk)) => {
                    if let Some(done) = fold_chunk(&mut sse, &chunk, parser, on_event)? {
                        // Let hyper see the end of the body if it is already
                        // buffered, so the connection can go back to the pool.
                        let _ = body.next().now_or_never();
                        return Ok(done);
                    }
                }
            }
        }
    }
}

/// Feeds one body chunk's events to `parser`; `Some` once the response is complete.
fn fold_chunk(
    sse: &mut SseDecoder,
    chunk: &[u8],
    parser: &mut dyn WireParser,
    on_event: &mut (dyn FnMut(StreamEvent) + Send),
) -> Result<Option<ModelResponse>, ProviderError> {
    let flow = sse
        .feed(chunk, &mut |event: SseEvent<'_>| match parser.handle(
            event.event,
            event.data,
            on_event,
        ) {
            Ok(None) => ControlFlow::Continue(()),
            Ok(Some(done)) => ControlFlow::Break(Ok(done)),
            Err(e) => ControlFlow::Break(Err(e)),
        })
        .map_err(|e| malformed(format!("the model stream is not a valid event stream: {e}")))?;
    match flow {
        ControlFlow::Break(done) => done.map(Some),
        ControlFlow::Continue(()) => Ok(None),
    }
}

fn truncated() -> ProviderError {
    ProviderError::Stream {
        kind: stream_kind::TRUNCATED.to_string(),
        message: stream_kind::TRUNCATED_MESSAGE.to_string(),
    }
}

/// [`Endpoint::stream`]'s fold without the network: SSE-decodes `chunks` and
/// feeds `parser`.
pub(crate) fn parse_body(
    chunks: Vec<Bytes>,
    parser: &mut dyn WireParser,
    on_event: &mut (dyn FnMut(StreamEvent) + Send),
) -> Result<ModelResponse, ProviderError> {
    let mut sse = SseDecoder::default();
    for chunk in chunks {
        if let Some(done) = fold_chunk(&mut sse, &chunk, parser, on_event)? {
            return Ok(done);
        }
    }
    parser.at_end().ok_or_else(truncated)
}

/// Extra configured headers (`[providers.NAME] headers`), marked sensitive.
pub(crate) fn extra_headers(
    headers: &std::collections::BTreeMap<String, String>,
    into: &mut HeaderMap,
) -> Result<(), ProviderError> {
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            ProviderError::Config(format!(
                "the configured header name {name:?} is not a valid HTTP header name"
            ))
        })?;
        into.insert(
            name.clone(),
            sensitive_header(value, &format!("header {name}"))?,
        );
    }
    Ok(())
}

pub(crate) fn malformed(message: String) -> ProviderError {
    ProviderError::Stream {
        kind: stream_kind::MALFORMED.to_string(),
        message,
    }
}

/// Parses one SSE `data:` payload as a JSON object, or a malformed-stream error
/// that quotes the offending line (truncated).
pub(crate) fn parse_object(event: &str, data: &str) -> Result<Value, ProviderError> {
    let value: Value = serde_json::from_str(data).map_err(|e| {
        malformed(format!(
            "the model stream sent an event that is not JSON (event {event:?}: {e}): {}",
            shorten(data, 200)
        ))
    })?;
    if !value.is_object() {
        return Err(malformed(format!(
            "the model stream sent an event that is not a JSON object (event {event:?}): {}",
            shorten(data, 200)
        )));
    }
    Ok(value)
}

pub(crate) fn u64_field(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

pub(crate) fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// `{base_url}{path}`, validated.
pub(crate) fn endpoint_url(base_url: &str, path: &str, who: &Who) -> Result<Url, ProviderError> {
    let given = base_url.trim();
    let invalid = |why: String| {
        ProviderError::Config(format!(
            "invalid base URL {given:?} for {} ({why}): set {} to something like {}",
            who.api, who.base_url_var, who.example_url
        ))
    };
    let base = Url::parse(given).map_err(|e| invalid(e.to_string()))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(invalid("it must be an http:// or https:// URL".to_string()));
    }
    if base.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host".to_string()));
    }
    let endpoint = format!("{}{path}", base.as_str().trim_end_matches('/'));
    Url::parse(&endpoint).map_err(|e| invalid(e.to_string()))
}

pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(Duration::from_secs(60))
        .user_agent(USER_AGENT)
}

/// With `rustls-no-provider`, reqwest verifies certificates through
/// `rustls-platform-verifier`, which on Linux loads the system's CA roots
/// (`rustls-native-certs`: `SSL_CERT_FILE`/`SSL_CERT_DIR` or the distro bundle)
/// while the client is built, and fails the build when it finds none. A plain
/// `http://` endpoint (a local mock) does not need roots, so it falls back to an
/// empty root store instead of failing.
pub(crate) fn build_client(endpoint: &Url) -> Result<reqwest::Client, ProviderError> {
    install_crypto_provider();
    match client_builder().build() {
        Ok(client) => Ok(client),
        Err(e) if endpoint.scheme() == "http" => {
            tracing::debug!(
                error = %error_chain(&e),
                "no usable TLS roots; plain-http endpoint, continuing without them"
            );
            client_builder()
                .tls_certs_only(std::iter::empty())
                .build()
                .map_err(|e| {
                    ProviderError::Config(format!(
                        "could not create the HTTP client: {}",
                        error_chain(&e)
                    ))
                })
        }
        Err(e) => Err(ProviderError::Config(format!(
            "could not set up TLS for {} ({}): install the system CA certificates (e.g. the \
             ca-certificates package) or point SSL_CERT_FILE at a PEM bundle",
            endpoint.host_str().unwrap_or("the model server"),
            error_chain(&e)
        ))),
    }
}

/// An error and its sources, `a: b: c`, without repeats.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// `retry-after-ms` (milliseconds) wins over `retry-after` (seconds); both may
/// be fractional. HTTP dates and negative or non-numeric values are ignored.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| -> Option<f64> {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    let secs = number("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| number("retry-after"))?;
    let secs = secs.min(MAX_RETRY_AFTER.as_secs_f64());
    Duration::try_from_secs_f64(secs).ok()
}

/// `(error.type, error.message)` from the `{"type":"error","error":{..}}`
/// envelope, else a kind guessed from the status and the raw body (shortened).
pub(crate) fn parse_error_envelope(status: reqwest::StatusCode, body: &[u8]) -> (String, String) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    // Anthropic: `error.type`; OpenAI: `error.type` (may be null) and `error.code`;
    // some compatible servers send `{"error": "text"}`.
    let kind = error
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .or_else(|| error.and_then(|e| e.get("code")).and_then(Value::as_str))
        .map(str::to_string);
    let message = error
        .and_then(|e| e.get("message").and_then(Value::as_str).or(e.as_str()))
        .map(str::to_string);
    let kind = kind.unwrap_or_else(|| kind_for_status(status.as_u16()).to_string());
    let message = message.unwrap_or_else(|| {
        let raw = String::from_utf8_lossy(body);
        if raw.trim().is_empty() {
            status
                .canonical_reason()
                .unwrap_or("no error message")
                .to_string()
        } else {
            shorten(&raw, 500)
        }
    });
    (kind, message)
}

/// The API's error type for a status, for bodies that carry no envelope.
pub(crate) fn kind_for_status(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "http_error",
    }
}

/// A body error: reqwest's, or no bytes for the idle timeout.
#[derive(Debug)]
pub(crate) enum BodyError {
    Http(reqwest::Error),
    Idle(Duration),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Http(e) => f.write_str(&error_chain(e)),
            BodyError::Idle(d) => write!(
                f,
                "no data from the model for {}",
                humantime::format_duration(*d)
            ),
        }
    }
}

/// The body stream, failing with [`BodyError::Idle`] when no chunk arrives for
/// `idle`; ends after the first error.
pub(crate) fn idle_guarded<S>(
    body: S,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, BodyError>>
where
    S: Stream<Item = reqwest::Result<Bytes>>,
{
    futures_util::stream::unfold(
        (Box::pin(body), false),
        move |(mut body, failed)| async move {
            if failed {
                return None;
            }
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), (body, false))),
                Ok(Some(Err(e))) => Some((Err(BodyError::Http(e)), (body, true))),
                Ok(None) => None,
                Err(_) => Some((Err(BodyError::Idle(idle)), (body, true))),
            }
        },
    )
}

/// Connection-level failures (reset, timeout, hung) are `Transport`; a body that
/// was simply cut short is a truncated `Stream`.
pub(crate) fn classify_body_error(error: BodyError, host: &str) -> ProviderError {
    match error {
        BodyError::Idle(d) => ProviderError::Transport(format!(
            "no data from {host} for {}; the connection looks hung",
            humantime::format_duration(d)
        )),
        BodyError::Http(e) => {
            if e.is_timeout() || is_connection_failure(&e) {
                ProviderError::Transport(error_chain(&e))
            } else {
                ProviderError::Stream {
                    kind: stream_kind::TRUNCATED.to_string(),
                    message: format!("{}: {}", stream_kind::TRUNCATED_MESSAGE, error_chain(&e)),
                }
            }
        }
    }
}

pub(crate) fn is_connection_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::TimedOut
                    | ErrorKind::NotConnected
            )
        {
            return true;
        }
        current = e.source();
    }
    false
}
