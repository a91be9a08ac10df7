//! Azure AD (Entra ID) as clients use it for Key Vault: the v2 (and v1) token endpoint with client
//! credentials (client secret or a federated client assertion), the tenant OpenID configuration and
//! instance discovery that MSAL fetches, and AAD's error JSON (`error`, `error_description` with the
//! AADSTS code, `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`).

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cloud::CloudProfile;
use crate::emulator::Inner;
use crate::observe::TokenPresence;
use crate::server::{Outcome, Req, Resp, json_response, text_response};
use crate::store::IdentityKind;
use crate::token::TokenKind;
use crate::util::{aad_timestamp, b64url_decode, new_uuid, parse_query};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// An AAD error answer.
pub fn error_response(
    cloud: &CloudProfile,
    status: StatusCode,
    error: &str,
    code: u32,
    message: &str,
    correlation: Option<&str>,
) -> Resp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let ts = aad_timestamp(now);
    let trace = new_uuid();
    let corr = correlation.map(str::to_string).unwrap_or_else(new_uuid);
    json_response(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {message} Trace ID: {trace} Correlation ID: {corr} Timestamp: {ts}"),
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": format!("https://{}/error?code={code}", cloud.login_host),
        }),
    )
}

struct Failure {
    status: StatusCode,
    error: &'static str,
    code: u32,
    message: String,
}

fn fail(status: StatusCode, error: &'static str, code: u32, message: String) -> Failure {
    Failure {
        status,
        error,
        code,
        message,
    }
}

fn missing(param: &str) -> Failure {
    fail(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{param}'."),
    )
}

fn tenant_not_found(tenant: &str) -> Failure {
    fail(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
        format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

fn app_not_found(client_id: &str, tenant: &str) -> Failure {
    fail(
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700016,
        format!(
            "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        ),
    )
}

fn resource_not_found(resource: &str, tenant: &str) -> Failure {
    fail(
        StatusCode::BAD_REQUEST,
        "invalid_resource",
        500011,
        format!(
            "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
        ),
    )
}

pub fn handle(inner: &Inner, cloud: &CloudProfile, req: &Req) -> Outcome {
    let segs = req.segments();
    let correlation = req.header("client-request-id").map(str::to_string);
    match (&req.method, segs.as_slice()) {
        (&Method::GET, [_, "discovery", "instance"]) => {
            inner.observer.count(|c| c.discovery_requests += 1);
            Outcome::anonymous(instance_discovery(cloud, req))
        }
        (&Method::GET, [tenant, "v2.0", ".well-known", "openid-configuration"]) => {
            inner.observer.count(|c| c.discovery_requests += 1);
            Outcome::anonymous(openid_configuration(
                inner,
                cloud,
                tenant,
                true,
                correlation.as_deref(),
            ))
        }
        (&Method::GET, [tenant, ".well-known", "openid-configuration"]) => {
            inner.observer.count(|c| c.discovery_requests += 1);
            Outcome::anonymous(openid_configuration(
                inner,
                cloud,
                tenant,
                false,
                correlation.as_deref(),
            ))
        }
        (&Method::GET, [_, "discovery", "v2.0", "keys"])
        | (&Method::GET, [_, "discovery", "keys"]) => {
            inner.observer.count(|c| c.discovery_requests += 1);
            Outcome::anonymous(json_response(StatusCode::OK, &json!({"keys": []})))
        }
        (&Method::POST, [tenant, "oauth2", "v2.0", "token"]) => {
            token(inner, cloud, tenant, req, true)
        }
        (&Method::POST, [tenant, "oauth2", "token"]) => token(inner, cloud, tenant, req, false),
        _ => Outcome::anonymous(text_response(
            StatusCode::NOT_FOUND,
            &format!(
                "keyvault-emulator: no AAD endpoint {} {}\n",
                req.method, req.path
            ),
        )),
    }
}

fn instance_discovery(cloud: &CloudProfile, req: &Req) -> Resp {
    // The tenant discovery endpoint names the host and tenant of the asked-about authority.
    let (host, tenant) = req
        .query_param("authorization_endpoint")
        .and_then(|a| a.strip_prefix("https://"))
        .and_then(|a| {
            let mut parts = a.split('/');
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .unwrap_or_else(|| (cloud.login_host.clone(), "common".into()));
    json_response(
        StatusCode::OK,
        &json!({
            "tenant_discovery_endpoint": format!("https://{host}/{tenant}/v2.0/.well-known/openid-configuration"),
            "api-version": "1.1",
            "metadata": [
                {"preferred_network": "login.microsoftonline.com", "preferred_cache": "login.windows.net",
                 "aliases": ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net"]},
                {"preferred_network": "login.partner.microsoftonline.cn", "preferred_cache": "login.partner.microsoftonline.cn",
                 "aliases": ["login.partner.microsoftonline.cn", "login.chinacloudapi.cn"]},
                {"preferred_network": "login.microsoftonline.de", "preferred_cache": "login.microsoftonline.de",
                 "aliases": ["login.microsoftonline.de"]},
                {"preferred_network": "login.microsoftonline.us", "preferred_cache": "login.microsoftonline.us",
                 "aliases": ["login.microsoftonline.us", "login.usgovcloudapi.net"]},
                {"preferred_network": "login-us.microsoftonline.com", "preferred_cache": "login-us.microsoftonline.com",
                 "aliases": ["login-us.microsoftonline.com"]}
            ]
        }),
    )
}

fn openid_configuration(
    inner: &Inner,
    cloud: &CloudProfile,
    tenant: &str,
    v2: bool,
    correlation: Option<&str>,
) -> Resp {
    let generic = matches!(tenant, "common" | "organizations" | "consumers");
    if !generic && !inner.lock().known_tenant(tenant) {
        let f = tenant_not_found(tenant);
        return error_response(cloud, f.status, f.error, f.code, &f.message, correlation);
    }
    let h = &cloud.login_host;
    let issuer_tid = if generic { "{tenantid}" } else { tenant };
    let (suffix, issuer) = if v2 {
        ("/v2.0", format!("https://{h}/{issuer_tid}/v2.0"))
    } else {
        ("", format!("https://sts.windows.net/{issuer_tid}/"))
    };
    json_response(
        StatusCode::OK,
        &json!({
            "token_endpoint": format!("https://{h}/{tenant}/oauth2{suffix}/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": format!("https://{h}/{tenant}/discovery{suffix}/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": issuer,
            "request_uri_parameter_supported": false,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": format!("https://{h}/{tenant}/oauth2{suffix}/authorize"),
            "device_authorization_endpoint": format!("https://{h}/{tenant}/oauth2{suffix}/devicecode"),
            "http_logout_supported": true,
            "frontchannel_logout_supported": true,
            "end_session_endpoint": format!("https://{h}/{tenant}/oauth2{suffix}/logout"),
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
            "kerberos_endpoint": format!("https://{h}/{tenant}/kerberos"),
            "tenant_region_scope": null,
            "cloud_instance_name": h.trim_start_matches("login."),
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net"
        }),
    )
}

/// Claims read from a client assertion; its signature is not checked (the emulator trusts the
/// seeded federated credentials, not a key set).
struct Assertion {
    iss: String,
    sub: String,
    aud: Vec<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
}

fn read_assertion(jwt: &str) -> Option<Assertion> {
    let payload = jwt.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&b64url_decode(payload)?).ok()?;
    let aud = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    Some(Assertion {
        iss: claims.get("iss")?.as_str()?.to_string(),
        sub: claims.get("sub")?.as_str()?.to_string(),
        aud,
        exp: claims.get("exp").and_then(Value::as_i64),
        nbf: claims.get("nbf").and_then(Value::as_i64),
    })
}

struct Granted {
    kind: TokenKind,
    tenant: String,
    client_id: String,
    object_id: String,
    resource: String,
}

fn token(inner: &Inner, cloud: &CloudProfile, tenant: &str, req: &Req, v2: bool) -> Outcome {
    inner
        .observer
        .count(|c| *c.token_requests.entry("aad".into()).or_insert(0) += 1);
    let form = parse_query(&String::from_utf8_lossy(&req.body));
    let client_id = form
        .iter()
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.clone());
    let correlation = req.header("client-request-id").map(str::to_string);
    match grant(inner, cloud, tenant, &form, v2) {
        Ok(g) => {
            let (access_token, exp) = inner.mint(
                g.kind,
                &g.tenant,
                &g.client_id,
                &g.object_id,
                &g.resource,
                None,
            );
            let now = inner.now();
            let lifetime = exp - now;
            inner
                .observer
                .count(|c| *c.tokens_issued.entry(g.kind).or_insert(0) += 1);
            let body = if v2 {
                json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": access_token})
            } else {
                json!({
                    "token_type": "Bearer",
                    "expires_in": lifetime.to_string(),
                    "ext_expires_in": lifetime.to_string(),
                    "expires_on": exp.to_string(),
                    "not_before": now.to_string(),
                    "resource": g.resource,
                    "access_token": access_token,
                })
            };
            let mut resp = json_response(StatusCode::OK, &body);
            resp.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store, no-cache"),
            );
            Outcome {
                resp,
                token: TokenPresence::Absent,
                identity: Some(g.client_id),
            }
        }
        Err(f) => {
            inner.observer.count(|c| c.token_failures += 1);
            Outcome {
                resp: error_response(
                    cloud,
                    f.status,
                    f.error,
                    f.code,
                    &f.message,
                    correlation.as_deref(),
                ),
                token: TokenPresence::Absent,
                identity: client_id,
            }
        }
    }
}

fn grant(
    inner: &Inner,
    cloud: &CloudProfile,
    tenant: &str,
    form: &[(String, String)],
    v2: bool,
) -> Result<Granted, Failure> {
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let st = inner.lock();
    if !st.known_tenant(tenant) {
        return Err(tenant_not_found(tenant));
    }
    let grant_type = get("grant_type").ok_or_else(|| missing("grant_type"))?;
    if grant_type != "client_credentials" {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        ));
    }
    let client_id = get("client_id").ok_or_else(|| missing("client_id"))?;
    let resource = if v2 {
        let scope = get("scope").ok_or_else(|| missing("scope"))?;
        let Some(s) = scope.split_whitespace().find(|s| s.ends_with("/.default")) else {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            ));
        };
        s.trim_end_matches("/.default").to_string()
    } else {
        get("resource")
            .ok_or_else(|| missing("resource"))?
            .to_string()
    };
    // Each cloud's AAD issues tokens for that cloud's Key Vault only.
    if !cloud.is_vault_audience(&resource) {
        return Err(resource_not_found(&resource, tenant));
    }
    let identity = st.find_identity(Some(tenant), client_id).cloned();

    if let Some(assertion) = get("client_assertion") {
        let at = get("client_assertion_type").unwrap_or_default();
        if at != ASSERTION_TYPE {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                50027,
                format!("Invalid client_assertion_type '{at}'; expected '{ASSERTION_TYPE}'."),
            ));
        }
        let Some(a) = read_assertion(assertion) else {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                50027,
                "JWT token is invalid or malformed.".into(),
            ));
        };
        let now = inner.now();
        if a.exp.is_none_or(|e| e <= now) || a.nbf.is_some_and(|n| n > now + 300) {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                700024,
                format!(
                    "Client assertion is not within its valid time range. Current time: {}, expiry time of assertion {}.",
                    aad_timestamp(now),
                    a.exp.map(aad_timestamp).unwrap_or_else(|| "(none)".into())
                ),
            ));
        }
        let Some(identity) = identity else {
            return Err(app_not_found(client_id, tenant));
        };
        let creds: Vec<_> = st
            .federated
            .iter()
            .filter(|f| {
                f.tenant.eq_ignore_ascii_case(tenant) && f.client_id.eq_ignore_ascii_case(client_id)
            })
            .collect();
        if !a.aud.iter().any(|x| x == EXCHANGE_AUDIENCE)
            && !creds
                .iter()
                .any(|f| f.audiences.iter().any(|fa| a.aud.contains(fa)))
        {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                700212,
                format!(
                    "No matching federated identity record found for presented assertion audience '{}'.",
                    a.aud.join(",")
                ),
            ));
        }
        let matched = creds.iter().any(|f| {
            f.issuer == a.iss
                && f.subject == a.sub
                && f.audiences.iter().any(|fa| a.aud.contains(fa))
        });
        if !matched {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                70021,
                format!(
                    "No matching federated identity record found for presented assertion. Assertion Issuer: '{}'. Assertion Subject: '{}'. Assertion Audience: '{}'. https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation",
                    a.iss,
                    a.sub,
                    a.aud.join(",")
                ),
            ));
        }
        return Ok(Granted {
            kind: TokenKind::ClientAssertion,
            tenant: identity.tenant,
            client_id: identity.client_id,
            object_id: identity.object_id,
            resource,
        });
    }
    if let Some(secret) = get("client_secret") {
        let Some(identity) = identity else {
            return Err(app_not_found(client_id, tenant));
        };
        let ok = identity.kind == IdentityKind::App
            && identity
                .secret
                .as_deref()
                .is_some_and(|s| constant_time_eq(s.as_bytes(), secret.as_bytes()));
        if !ok {
            return Err(fail(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            ));
        }
        return Ok(Granted {
            kind: TokenKind::ClientSecret,
            tenant: identity.tenant,
            client_id: identity.client_id,
            object_id: identity.object_id,
            resource,
        });
    }
    Err(fail(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".into(),
    ))
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
