//! The `wasi:http` `send_request` hook of one store: every request a guest makes arrives here and
//! is admitted against the provider's policy (destination, request budget, concurrency, request
//! body size) before the provider's [`Outbound`] sends it.

use std::future::Future;
use std::sync::Arc;

use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::call::CallState;
use crate::policy::Target;

use super::connect::ConnectError;
use super::exchange::FetchError;
use super::outbound::Outbound;

/// The `wasi:http` hooks of one store.
pub(crate) struct Hooks {
    outbound: Arc<Outbound>,
    call: Arc<CallState>,
}

impl Hooks {
    pub(crate) fn new(outbound: Arc<Outbound>, call: Arc<CallState>) -> Self {
        Hooks { outbound, call }
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Result<(Response<WasiBody>, IoFuture), HttpError>> + Send> {
        let outbound = self.outbound.clone();
        let call = self.call.clone();
        Box::new(async move {
            let response = send(outbound, call, request, options).await?;
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}

/// Admit one guest request and send it; the guest gets the whole response or a `wasi:http` error.
async fn send(
    outbound: Arc<Outbound>,
    call: Arc<CallState>,
    request: Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<Response<WasiBody>, HttpError> {
    let policy = outbound.policy();
    let Some(target) = Target::from_uri(request.uri()) else {
        return Err(HttpError::HttpRequestUriInvalid);
    };
    if policy.allowing(&target).is_none() {
        outbound.deny(&call, &target, "it is not in the policy's allowedHosts");
        return Err(HttpError::HttpRequestDenied);
    }
    let sent = call.count_request();
    if sent >= policy.max_requests_per_mount {
        tracing::warn!(provider = %outbound.provider(), pod = call.pod_label(), limit = policy.max_requests_per_mount,
            "outbound request refused: the mount used up its request budget");
        return Err(HttpError::ConnectionLimitReached);
    }
    if let Some(auth) = request.headers().get(http::header::AUTHORIZATION) {
        call.redactor
            .add_authorization(&String::from_utf8_lossy(auth.as_bytes()));
    }
    let _slot = call
        .request_slot()
        .await
        .map_err(|_| HttpError::InternalError(Some("closed".into())))?;

    let max_request_bytes = policy.max_request_bytes;
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, max_request_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Err(HttpError::HttpRequestBodySize(Some(
                max_request_bytes as u64,
            )));
        }
    };
    let timeouts = outbound.timeouts().narrowed(options);
    let result = outbound
        .clone()
        .route(call.started, target.clone(), parts, body, timeouts)
        .await;
    match result {
        Ok(buffered) => Ok(buffered.response()),
        Err(FetchError::Connect(ConnectError::Prohibited)) => {
            outbound.deny(
                &call,
                &target,
                "its addresses are private and not in the policy's privateNetworks",
            );
            Err(HttpError::DestinationIpProhibited)
        }
        Err(e) => {
            tracing::debug!(provider = %outbound.provider(), pod = call.pod_label(), destination = %target, error = %e, "outbound request failed");
            Err(e.into())
        }
    }
}
