//! Managed identity endpoints on the plain-HTTP listener: IMDS
//! (`/metadata/identity/oauth2/token`, `Metadata: true` required, numbers as strings) and the
//! aad-pod-identity NMI host endpoint (`/host/token/` with `podns`/`podname` headers, answering
//! `{"token": {…}, "clientid": …}` as the upstream Azure provider parses it).

use http::StatusCode;
use serde_json::json;

use crate::emulator::Inner;
use crate::observe::TokenPresence;
use crate::server::{Outcome, Req, Resp, json_response, text_response};
use crate::store::{Identity, IdentityKind};
use crate::token::TokenKind;

fn imds_error(status: StatusCode, error: &str, description: &str) -> Resp {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

struct Issued {
    access_token: String,
    client_id: String,
    expires_in: i64,
    expires_on: i64,
    not_before: i64,
}

fn issue(inner: &Inner, kind: TokenKind, id: &Identity, resource: &str) -> Issued {
    let (access_token, exp) = inner.mint(
        kind,
        &id.tenant,
        &id.client_id,
        &id.object_id,
        resource,
        None,
    );
    let now = inner.now();
    inner
        .observer
        .count(|c| *c.tokens_issued.entry(kind).or_insert(0) += 1);
    Issued {
        access_token,
        client_id: id.client_id.clone(),
        expires_in: exp - now,
        expires_on: exp,
        not_before: now,
    }
}

fn known_resource(inner: &Inner, resource: &str) -> bool {
    inner.clouds.by_audience(resource).is_some()
}

pub fn handle_imds(inner: &Inner, req: &Req) -> Outcome {
    inner
        .observer
        .count(|c| *c.token_requests.entry("imds".into()).or_insert(0) += 1);
    let result = imds(inner, req);
    match result {
        Ok((resp, client)) => Outcome {
            resp,
            token: TokenPresence::Absent,
            identity: Some(client),
        },
        Err(resp) => {
            inner.observer.count(|c| c.token_failures += 1);
            Outcome::anonymous(*resp)
        }
    }
}

fn imds(inner: &Inner, req: &Req) -> Result<(Resp, String), Box<Resp>> {
    if req.method != http::Method::GET {
        return Err(Box::new(imds_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "The request method is not supported; use GET.",
        )));
    }
    if !req
        .header("metadata")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Err(Box::new(imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified",
        )));
    }
    if req.query_param("api-version").is_none_or(str::is_empty) {
        return Err(Box::new(imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'api-version' is missing",
        )));
    }
    let Some(resource) = req.query_param("resource").filter(|r| !r.is_empty()) else {
        return Err(Box::new(imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required audience parameter not specified",
        )));
    };
    let st = inner.lock();
    let managed: Vec<&Identity> = st
        .identities
        .iter()
        .filter(|i| i.kind == IdentityKind::ManagedIdentity)
        .collect();
    let requested = req
        .query_param("client_id")
        .or_else(|| req.query_param("object_id"))
        .filter(|c| !c.is_empty());
    let identity = match requested {
        Some(id) => managed
            .iter()
            .find(|i| i.client_id.eq_ignore_ascii_case(id) || i.object_id.eq_ignore_ascii_case(id))
            .copied(),
        None => match managed.iter().find(|i| i.system_assigned) {
            Some(i) => Some(*i),
            None if managed.len() > 1 => {
                return Err(Box::new(imds_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request",
                )));
            }
            None => managed.first().copied(),
        },
    };
    let Some(identity) = identity.cloned() else {
        return Err(Box::new(imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Identity not found",
        )));
    };
    drop(st);
    if !known_resource(inner, resource) {
        return Err(Box::new(imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            &format!(
                "AADSTS500011: The resource principal named {resource} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
                identity.tenant
            ),
        )));
    }
    let t = issue(inner, TokenKind::ManagedIdentity, &identity, resource);
    let resp = json_response(
        StatusCode::OK,
        &json!({
            "access_token": t.access_token,
            "client_id": t.client_id,
            "expires_in": t.expires_in.to_string(),
            "expires_on": t.expires_on.to_string(),
            "ext_expires_in": t.expires_in.to_string(),
            "not_before": t.not_before.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }),
    );
    Ok((resp, identity.client_id))
}

pub fn handle_nmi(inner: &Inner, req: &Req) -> Outcome {
    inner
        .observer
        .count(|c| *c.token_requests.entry("nmi".into()).or_insert(0) += 1);
    match nmi(inner, req) {
        Ok((resp, client)) => Outcome {
            resp,
            token: TokenPresence::Absent,
            identity: Some(client),
        },
        Err(resp) => {
            inner.observer.count(|c| c.token_failures += 1);
            Outcome::anonymous(*resp)
        }
    }
}

fn nmi(inner: &Inner, req: &Req) -> Result<(Resp, String), Box<Resp>> {
    let podns = req.header("podns").unwrap_or("");
    let podname = req.header("podname").unwrap_or("");
    if podns.is_empty() || podname.is_empty() {
        return Err(Box::new(text_response(
            StatusCode::BAD_REQUEST,
            "missing 'podname' and 'podns' from request header\n",
        )));
    }
    if !req.peer.ip().is_loopback() {
        return Err(Box::new(text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "request remote address is not from a host\n",
        )));
    }
    let Some(resource) = req.query_param("resource").filter(|r| !r.is_empty()) else {
        return Err(Box::new(text_response(
            StatusCode::BAD_REQUEST,
            "parameter resource cannot be empty\n",
        )));
    };
    let st = inner.lock();
    let binding = st
        .pods
        .iter()
        .find(|p| p.namespace == podns && p.pod == podname)
        .cloned();
    let Some(binding) = binding else {
        return Err(Box::new(text_response(
            StatusCode::NOT_FOUND,
            &format!(
                "no AzureAssignedIdentity found for pod:{podns}/{podname} in assigned state\n"
            ),
        )));
    };
    if let Some(asked) = req.query_param("client_id").filter(|c| !c.is_empty())
        && !asked.eq_ignore_ascii_case(&binding.client_id)
    {
        return Err(Box::new(text_response(
            StatusCode::NOT_FOUND,
            &format!(
                "no AzureAssignedIdentity found for pod:{podns}/{podname} with client id {asked}\n"
            ),
        )));
    }
    let identity = st
        .identities
        .iter()
        .find(|i| {
            i.kind == IdentityKind::ManagedIdentity
                && i.client_id.eq_ignore_ascii_case(&binding.client_id)
        })
        .cloned();
    drop(st);
    let Some(identity) = identity else {
        return Err(Box::new(text_response(
            StatusCode::FORBIDDEN,
            &format!(
                "failed to get service principal token for pod:{podns}/{podname}: identity {} is not assigned to the node\n",
                binding.client_id
            ),
        )));
    };
    if !known_resource(inner, resource) {
        return Err(Box::new(text_response(
            StatusCode::FORBIDDEN,
            &format!(
                "failed to get service principal token for pod:{podns}/{podname}: AADSTS500011: The resource principal named {resource} was not found in the tenant named {}.\n",
                identity.tenant
            ),
        )));
    }
    let t = issue(inner, TokenKind::PodIdentity, &identity, resource);
    let resp = json_response(
        StatusCode::OK,
        &json!({
            "token": {
                "access_token": t.access_token,
                "refresh_token": "",
                "expires_in": t.expires_in.to_string(),
                "expires_on": t.expires_on.to_string(),
                "not_before": t.not_before.to_string(),
                "resource": resource,
                "token_type": "Bearer",
            },
            "clientid": t.client_id,
        }),
    );
    Ok((resp, identity.client_id))
}
