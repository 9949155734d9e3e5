//! A route's SCF sink: the batch as function events (`connectors/function.rs`) in `ClientContext`
//! of signed `Invoke` calls, cut to SCF's request limit (6 MB sync, 128 KB async, measured on
//! the serialized request). What an answer means (README "Function triggers", the SCF table):
//! HTTP 200, no `Response.Error` and an `InvokeResult` of 0 delivers; throttling, unavailable
//! resources, internal errors, 5xx and transport errors are on the way (retried for as long as
//! it takes); a non-zero `InvokeResult` is the function failing (attempts, then dead letter);
//! refused credentials, bad parameters, a function not found or not permitted are the bridge's
//! settings (said loudly, retried slowly, messages held).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::header::CONTENT_TYPE;
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::config::{Invocation, ScfSinkConfig};
use super::tc3::Signing;
use crate::connectors::function::{invoke_in_turn, quoted, transport_failure, Limit};
use crate::flow::{BoxError, Retry, Sink, SinkError};
use crate::message::Message;
use crate::settings::Secret;

const SERVICE: &str = "scf";
const VERSION: &str = "2018-04-16";
const CONTENT: &str = "application/json; charset=utf-8";

/// An SCF connection: the API client and the credentials, shared by its routes.
pub struct Client {
    http: reqwest::Client,
    url: Url,
    /// What `Host` carries and the signature covers: host[:port].
    host: String,
    region: String,
    secret_id: Secret,
    secret_key: Secret,
    token: Option<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScfError {
    #[error("{code}: {message} (RequestId {request_id})")]
    Api {
        code: String,
        message: String,
        request_id: String,
    },
    #[error(
        "the function failed (InvokeResult {result}, FunctionRequestId {request_id}): {message}"
    )]
    Function {
        result: i64,
        message: String,
        request_id: String,
    },
    #[error("the API answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("the answer carries no InvokeResult (RequestId {0}): no proof that the function ran")]
    NoResult(String),
    #[error("{0}")]
    Transport(String),
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "Response")]
    response: Response,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Response {
    error: Option<ApiError>,
    result: Option<InvokeResult>,
    // The API leaves fields null where they do not apply (async invocations): every one of
    // them is optional.
    request_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiError {
    code: String,
    message: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct InvokeResult {
    invoke_result: Option<i64>,
    err_msg: Option<String>,
    function_request_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Invoke<'a> {
    function_name: &'a str,
    namespace: &'a str,
    qualifier: &'a str,
    invocation_type: &'a str,
    client_context: &'a str,
}

impl Client {
    pub fn new(
        http: reqwest::Client,
        url: Url,
        region: String,
        secret_id: Secret,
        secret_key: Secret,
        token: Option<Secret>,
    ) -> Self {
        let mut host = url.host_str().unwrap_or_default().to_owned();
        if let Some(port) = url.port() {
            host = format!("{host}:{port}");
        }
        Client {
            http,
            url,
            host,
            region,
            secret_id,
            secret_key,
            token,
        }
    }

    /// One signed call of `action`; the API's `Response`, errors included.
    async fn call(&self, action: &str, payload: Vec<u8>) -> Result<Response, SinkError> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let authorization = Signing {
            secret_id: self.secret_id.expose(),
            secret_key: &self.secret_key,
            service: SERVICE,
            timestamp,
            headers: &[
                ("content-type", CONTENT),
                ("host", &self.host),
                ("x-tc-action", action),
            ],
            payload: &payload,
        }
        .authorization();
        let mut request = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, CONTENT)
            .header("Authorization", authorization)
            .header("X-TC-Action", action)
            .header("X-TC-Version", VERSION)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Region", &self.region);
        if let Some(token) = &self.token {
            request = request.header("X-TC-Token", token.expose());
        }
        let response = request.body(payload).send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        if status != StatusCode::OK {
            let retry = match status.as_u16() {
                408 | 429 | 500..=599 => Retry::Retriable,
                // Not the API that answered (a wrong endpoint, a proxy refusing).
                _ => Retry::Configuration,
            };
            let body = quoted(&body);
            return Err(SinkError::new(
                "unexpected_status",
                retry,
                ScfError::Status { status, body },
            ));
        }
        serde_json::from_slice::<Answer>(&body)
            .map(|a| a.response)
            .map_err(|_| {
                let body = quoted(&body);
                // Counted as attempts: an answer that never parses must not hold the
                // messages forever.
                SinkError::new(
                    "unexpected_answer",
                    Retry::Attempts,
                    ScfError::Status { status, body },
                )
            })
    }

    /// The connection check: a read-only call (`ListFunctions`, one entry) that the API
    /// authenticates.
    pub async fn check(&self) -> Result<String, BoxError> {
        let response = self
            .call("ListFunctions", br#"{"Limit":1}"#.to_vec())
            .await?;
        match response.error {
            Some(e) => Err(api_error(e, response.request_id.unwrap_or_default()).into()),
            None => Ok(format!(
                "{} authenticates the key ({})",
                self.host, self.region
            )),
        }
    }
}

/// What an API error code means for the messages.
fn classify(code: &str) -> (&'static str, Retry) {
    let family = code.split('.').next().unwrap_or(code);
    match family {
        _ if code == "FailedOperation.FunctionStatusError" => ("unavailable", Retry::Retriable),
        "RequestLimitExceeded" | "LimitExceeded" => ("throttled", Retry::Retriable),
        "ResourceUnavailable" | "InternalError" | "ResourceInUse" => {
            ("unavailable", Retry::Retriable)
        }
        "AuthFailure" | "InvalidCredential" => ("auth_failure", Retry::Configuration),
        "UnauthorizedOperation" | "OperationDenied" => ("unauthorized", Retry::Configuration),
        "ResourceNotFound" => ("not_found", Retry::Configuration),
        "InvalidParameter"
        | "InvalidParameterValue"
        | "MissingParameter"
        | "UnknownParameter"
        | "InvalidAction"
        | "UnsupportedOperation"
        | "UnsupportedRegion"
        | "UnsupportedProtocol"
        | "NoSuchVersion" => ("invalid_parameter", Retry::Configuration),
        "RequestSizeLimitExceeded" => ("too_large", Retry::Permanent),
        _ => ("function_error", Retry::Attempts),
    }
}

fn api_error(e: ApiError, request_id: String) -> ScfError {
    ScfError::Api {
        code: e.code,
        message: e.message.unwrap_or_default(),
        request_id,
    }
}

fn transport(e: reqwest::Error) -> SinkError {
    let (kind, text) = transport_failure(e);
    SinkError::new(kind, Retry::Retriable, ScfError::Transport(text))
}

/// A route's sink on an SCF connection.
pub struct ScfSink {
    client: Arc<Client>,
    route: Arc<str>,
    function: String,
    namespace: String,
    qualifier: String,
    invocation: Invocation,
    base64: bool,
    /// The request's bytes around the event.
    overhead: usize,
}

impl ScfSink {
    pub fn new(client: Arc<Client>, route: &str, c: &ScfSinkConfig) -> Self {
        let mut sink = ScfSink {
            client,
            route: route.into(),
            function: c.function.clone(),
            namespace: c.namespace.clone(),
            qualifier: c.qualifier.clone(),
            invocation: c.invocation,
            base64: c.base64_payload,
            overhead: 0,
        };
        sink.overhead = sink.request("").len();
        sink
    }

    fn request(&self, event: &str) -> Vec<u8> {
        let invoke = Invoke {
            function_name: &self.function,
            namespace: &self.namespace,
            qualifier: &self.qualifier,
            invocation_type: self.invocation.api_name(),
            client_context: event,
        };
        // Serializing strings into a Vec cannot fail.
        serde_json::to_vec(&invoke).unwrap_or_default()
    }

    async fn invoke(&self, event: Vec<u8>) -> Result<(), SinkError> {
        // The event is held only until the request that carries it is built.
        let body = self.request(&String::from_utf8_lossy(&event));
        drop(event);
        let response = self.client.call("Invoke", body).await?;
        if let Some(e) = response.error {
            let (kind, retry) = classify(&e.code);
            return Err(SinkError::new(
                kind,
                retry,
                api_error(e, response.request_id.unwrap_or_default()),
            ));
        }
        let result = response.result.as_ref().and_then(|r| r.invoke_result);
        match (result, self.invocation) {
            (Some(0), _) => Ok(()),
            // SCF queued the event: an async invocation's answer carries no result.
            (None, Invocation::Async) => Ok(()),
            (Some(result), _) => {
                let r = response.result.unwrap_or_default();
                Err(SinkError::new(
                    "function_error",
                    Retry::Attempts,
                    ScfError::Function {
                        result,
                        message: r.err_msg.unwrap_or_default(),
                        request_id: r.function_request_id.unwrap_or_default(),
                    },
                ))
            }
            // No proof that the function ran.
            (None, Invocation::Sync) => Err(SinkError::new(
                "unexpected_answer",
                Retry::Attempts,
                ScfError::NoResult(response.request_id.unwrap_or_default()),
            )),
        }
    }
}

#[async_trait]
impl Sink for ScfSink {
    async fn send(&self, batch: &[&Message]) -> Vec<Result<(), SinkError>> {
        let limit = Limit {
            bytes: self.invocation.request_limit(),
            setting: match self.invocation {
                Invocation::Sync => "SCF's limit for sync invocations",
                Invocation::Async => "SCF's limit for async invocations",
            },
            overhead: self.overhead,
            escaped: true,
        };
        invoke_in_turn(&self.route, batch, self.base64, limit, |event| {
            self.invoke(event)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_classified_as_documented() {
        let retry = |code| classify(code).1;
        for code in [
            "RequestLimitExceeded",
            "RequestLimitExceeded.UinLimitExceeded",
            "ResourceUnavailable.InsufficientBalance",
            "InternalError.System",
            "LimitExceeded.Concurrency",
        ] {
            assert_eq!(retry(code), Retry::Retriable, "{code}");
        }
        for code in [
            "AuthFailure.SignatureFailure",
            "AuthFailure.SecretIdNotFound",
            "InvalidParameter.Payload",
            "InvalidParameterValue.Qualifier",
            "ResourceNotFound.Function",
            "UnauthorizedOperation.CAM",
        ] {
            assert_eq!(retry(code), Retry::Configuration, "{code}");
        }
        assert_eq!(retry("FailedOperation.InvokeFunction"), Retry::Attempts);
        assert_eq!(
            retry("FailedOperation.FunctionStatusError"),
            Retry::Retriable
        );
        assert_eq!(retry("InvalidCredential"), Retry::Configuration);
        assert_eq!(retry("RequestSizeLimitExceeded"), Retry::Permanent);
    }
}
