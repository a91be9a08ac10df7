//! The Key Vault data plane: authentication (401 challenge with the vault's authority and resource),
//! `api-version`, the per-vault access list, and the secret, key and certificate operations with the
//! service's JSON shapes, paging and error bodies.

use std::sync::Arc;

use http::{HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

use crate::certs::{self, CONTENT_TYPE_PKCS12};
use crate::cloud::CloudProfile;
use crate::emulator::Inner;
use crate::keys::{self, Curve, PublicKey};
use crate::observe::TokenPresence;
use crate::server::{Outcome, Req, Resp, json_response};
use crate::store::{
    Attrs, CertVersion, ImportOptions, KeyOptions, KeyVersion, ObjectKind, SecretSpec,
    SecretVersion, Tags, Vault, Versions,
};
use crate::token::TokenError;
use crate::util::{b64std, b64std_decode};

const NOT_FOUND_HELP: &str = "If you recently deleted this {noun} you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182";
const DEFAULT_PAGE: usize = 25;

fn kv_error(status: StatusCode, code: &str, message: &str) -> Resp {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn kv_error_inner(status: StatusCode, code: &str, message: &str, inner: &str) -> Resp {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message, "innererror": {"code": inner}}}),
    )
}

fn bad_parameter(message: &str) -> Resp {
    kv_error(StatusCode::BAD_REQUEST, "BadParameter", message)
}

fn not_found(kind: ObjectKind, id: &str) -> Resp {
    let code = match kind {
        ObjectKind::Secret => "SecretNotFound",
        ObjectKind::Key => "KeyNotFound",
        ObjectKind::Certificate => "CertificateNotFound",
    };
    let help = NOT_FOUND_HELP.replace("{noun}", kind.noun());
    kv_error(
        StatusCode::NOT_FOUND,
        code,
        &format!(
            "A {} with (name/id) {id} was not found in this key vault. {help}",
            kind.noun()
        ),
    )
}

fn disabled(kind: ObjectKind) -> Resp {
    let inner = match kind {
        ObjectKind::Secret => "SecretDisabled",
        ObjectKind::Key => "KeyDisabled",
        ObjectKind::Certificate => "CertificateDisabled",
    };
    kv_error_inner(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &format!(
            "Operation get is not allowed on a disabled {}.",
            kind.noun()
        ),
        inner,
    )
}

fn challenge(cloud: &CloudProfile, tenant: &str, message: &str) -> Resp {
    let mut resp = kv_error(StatusCode::UNAUTHORIZED, "Unauthorized", message);
    let header = format!(
        "Bearer authorization=\"{}\", resource=\"{}\"",
        cloud.authority(tenant),
        cloud.resource
    );
    if let Ok(v) = HeaderValue::from_str(&header) {
        resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// `7.4`–`7.x` and the date-named versions from 2025 on (what current SDKs send).
fn api_version_supported(v: &str) -> bool {
    let base = v.split('-').collect::<Vec<_>>();
    if let Some(rest) = v.strip_prefix("7.") {
        let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
        return minor.parse::<u32>().is_ok_and(|m| m >= 4);
    }
    base.len() >= 3
        && base[0].len() == 4
        && base[0].parse::<u32>().is_ok_and(|y| y >= 2025)
        && base[1].parse::<u32>().is_ok()
        && base[2].parse::<u32>().is_ok()
}

struct Caller {
    client_id: String,
    object_id: String,
    tenant: String,
}

/// Checks `Authorization`; on failure returns the 401 to send.
fn authenticate(
    inner: &Inner,
    vault: &Vault,
    req: &Req,
) -> Result<Caller, Box<(Resp, TokenPresence)>> {
    let cloud = &vault.cloud;
    let header = req.header("authorization").unwrap_or("");
    let Some(token) = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return Err(Box::new((
            challenge(
                cloud,
                &vault.tenant,
                "AKV10000: Request is missing a Bearer or PoP token.",
            ),
            TokenPresence::Absent,
        )));
    };
    let deny = |msg: String| {
        Err(Box::new((
            challenge(cloud, &vault.tenant, &msg),
            TokenPresence::Invalid,
        )))
    };
    let claims = match inner.tokens.verify(token) {
        Ok(c) => c,
        Err(TokenError::Malformed) | Err(TokenError::BadSignature) => {
            return deny(
                "AKV10046: Unable to resolve the key used for signature validation.".into(),
            );
        }
    };
    if claims.exp <= inner.now() {
        return deny("[TokenExpired] Error validating token: 'S2S12086'.".into());
    }
    if !cloud.is_vault_audience(&claims.aud) {
        return deny(format!(
            "AKV10022: Invalid audience. Expected {}, found: {}.",
            cloud.resource, claims.aud
        ));
    }
    if !claims.tid.eq_ignore_ascii_case(&vault.tenant) {
        return deny(format!(
            "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{}/, found {}.",
            vault.tenant, claims.iss
        ));
    }
    Ok(Caller {
        client_id: claims.appid,
        object_id: claims.oid,
        tenant: claims.tid,
    })
}

fn forbidden(vault: &Vault, caller: &Caller, permission: &str) -> Resp {
    kv_error_inner(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &format!(
            "The user, group or application 'appid={};oid={};iss=https://sts.windows.net/{}/' does not have {} permission on key vault '{};location={}'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
            caller.client_id,
            caller.object_id,
            caller.tenant,
            permission,
            vault.name,
            vault.location
        ),
        "AccessDenied",
    )
}

fn opt_tags(tags: &Option<Tags>) -> Option<Value> {
    tags.as_ref().map(|t| json!(t))
}

fn secret_bundle(vault: &Vault, name: &str, v: &SecretVersion, with_value: bool) -> Value {
    let mut m = serde_json::Map::new();
    if with_value {
        m.insert("value".into(), json!(v.value));
    }
    if let Some(ct) = &v.content_type {
        m.insert("contentType".into(), json!(ct));
    }
    m.insert(
        "id".into(),
        json!(vault.object_id(ObjectKind::Secret, name, Some(&v.version))),
    );
    if v.managed {
        m.insert("managed".into(), json!(true));
    }
    m.insert("attributes".into(), v.attrs.to_json(&[]));
    if let Some(t) = opt_tags(&v.tags) {
        m.insert("tags".into(), t);
    }
    if v.managed {
        m.insert(
            "kid".into(),
            json!(vault.object_id(ObjectKind::Key, name, Some(&v.version))),
        );
    }
    Value::Object(m)
}

fn secret_item(id: String, v: &SecretVersion) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(id));
    m.insert("attributes".into(), v.attrs.to_json(&[]));
    if let Some(t) = opt_tags(&v.tags) {
        m.insert("tags".into(), t);
    }
    if let Some(ct) = &v.content_type {
        m.insert("contentType".into(), json!(ct));
    }
    if v.managed {
        m.insert("managed".into(), json!(true));
    }
    Value::Object(m)
}

fn key_attrs(a: &Attrs) -> Value {
    a.to_json(&[("exportable", json!(false))])
}

fn key_bundle(vault: &Vault, name: &str, v: &KeyVersion) -> Value {
    let kid = vault.object_id(ObjectKind::Key, name, Some(&v.version));
    let mut m = serde_json::Map::new();
    m.insert("key".into(), v.public.to_jwk(&kid, v.hsm, &v.key_ops));
    m.insert("attributes".into(), key_attrs(&v.attrs));
    if let Some(t) = opt_tags(&v.tags) {
        m.insert("tags".into(), t);
    }
    if v.managed {
        m.insert("managed".into(), json!(true));
    }
    Value::Object(m)
}

fn key_item(kid: String, v: &KeyVersion) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("kid".into(), json!(kid));
    m.insert("attributes".into(), key_attrs(&v.attrs));
    if let Some(t) = opt_tags(&v.tags) {
        m.insert("tags".into(), t);
    }
    if v.managed {
        m.insert("managed".into(), json!(true));
    }
    Value::Object(m)
}

fn policy_json(vault: &Vault, name: &str) -> Option<Value> {
    let p = vault.policies.get(&name.to_ascii_lowercase())?;
    let mut body = p.body.clone();
    if let Value::Object(m) = &mut body {
        let mut out = serde_json::Map::new();
        out.insert(
            "id".into(),
            json!(format!(
                "{}/policy",
                vault.object_id(ObjectKind::Certificate, name, None)
            )),
        );
        for (k, v) in m.iter() {
            out.insert(k.clone(), v.clone());
        }
        out.insert(
            "attributes".into(),
            json!({"enabled": true, "created": p.created, "updated": p.updated}),
        );
        return Some(Value::Object(out));
    }
    None
}

fn cert_bundle(vault: &Vault, name: &str, v: &CertVersion) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(
        "id".into(),
        json!(vault.object_id(ObjectKind::Certificate, name, Some(&v.version))),
    );
    m.insert(
        "kid".into(),
        json!(vault.object_id(ObjectKind::Key, name, Some(&v.version))),
    );
    m.insert(
        "sid".into(),
        json!(vault.object_id(ObjectKind::Secret, name, Some(&v.version))),
    );
    m.insert("x5t".into(), json!(v.x5t));
    m.insert("cer".into(), json!(b64std(&v.der)));
    m.insert("attributes".into(), v.attrs.to_json(&[]));
    if let Some(p) = policy_json(vault, name) {
        m.insert("policy".into(), p);
    }
    if let Some(t) = opt_tags(&v.tags) {
        m.insert("tags".into(), t);
    }
    Value::Object(m)
}

fn cert_item(id: String, v: &CertVersion) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(id));
    m.insert("x5t".into(), json!(v.x5t));
    m.insert("attributes".into(), v.attrs.to_json(&[]));
    if let Some(t) = opt_tags(&v.tags) {
        m.insert("tags".into(), t);
    }
    Value::Object(m)
}

/// One page of a listing, with the service's `nextLink` (`:443`, `$skiptoken`) or `null`.
fn page(vault: &Vault, req: &Req, items: Vec<Value>, api_version: &str) -> Resp {
    let max = match req.query_param("maxresults") {
        None => DEFAULT_PAGE,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=25).contains(&n) => n,
            _ => {
                return bad_parameter(&format!(
                    "Invalid value '{s}' for maxresults; it must be an integer between 1 and 25."
                ));
            }
        },
    };
    let start = match req.query_param("$skiptoken") {
        None => 0,
        Some(tok) => match decode_skiptoken(tok) {
            Some(n) => n,
            None => return bad_parameter("The $skiptoken parameter is invalid."),
        },
    };
    let end = (start + max).min(items.len());
    let slice: Vec<Value> = items
        .get(start..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let next = if end < items.len() {
        let mut link = format!(
            "https://{}.{}:443{}?api-version={}&$skiptoken={}",
            vault.name,
            vault.cloud.vault_suffix,
            req.path,
            crate::util::percent_encode(api_version),
            crate::util::percent_encode(&encode_skiptoken(end))
        );
        if req.query_param("maxresults").is_some() {
            link.push_str(&format!("&maxresults={max}"));
        }
        json!(link)
    } else {
        Value::Null
    };
    json_response(StatusCode::OK, &json!({"value": slice, "nextLink": next}))
}

fn encode_skiptoken(offset: usize) -> String {
    b64std(
        json!({"NextMarker": format!("2!{offset}!"), "TargetLocation": 0})
            .to_string()
            .as_bytes(),
    )
}

fn decode_skiptoken(tok: &str) -> Option<usize> {
    let raw = b64std_decode(tok)?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    let marker = v.get("NextMarker")?.as_str()?;
    marker.strip_prefix("2!")?.strip_suffix('!')?.parse().ok()
}

fn parse_body(req: &Req) -> Result<Value, Box<Resp>> {
    if req.body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&req.body).map_err(|e| {
        Box::new(bad_parameter(&format!(
            "The request body is not valid JSON: {e}"
        )))
    })
}

fn body_attrs(body: &Value) -> (Option<bool>, Option<i64>, Option<i64>) {
    let a = body.get("attributes");
    (
        a.and_then(|a| a.get("enabled")).and_then(Value::as_bool),
        a.and_then(|a| a.get("nbf")).and_then(Value::as_i64),
        a.and_then(|a| a.get("exp")).and_then(Value::as_i64),
    )
}

fn body_tags(body: &Value) -> Option<Tags> {
    body.get("tags").and_then(|t| {
        t.as_object().map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
    })
}

enum Op {
    List(ObjectKind),
    Versions(ObjectKind, String),
    Get(ObjectKind, String, Option<String>),
    SetSecret(String),
    Update(ObjectKind, String, String),
    CreateKey(String),
    ImportKey(String),
    ImportCert(String),
    GetPolicy(String),
}

impl Op {
    fn permission(&self) -> String {
        match self {
            Op::List(k) | Op::Versions(k, _) => format!("{} list", k.collection()),
            Op::Get(k, ..) => format!("{} get", k.collection()),
            Op::SetSecret(_) => "secrets set".into(),
            Op::Update(k, ..) => format!("{} update", k.collection()),
            Op::CreateKey(_) => "keys create".into(),
            Op::ImportKey(_) => "keys import".into(),
            Op::ImportCert(_) => "certificates import".into(),
            Op::GetPolicy(_) => "certificates get".into(),
        }
    }
}

fn parse_op(method: &Method, segs: &[&str]) -> Option<Op> {
    let kind = match *segs.first()? {
        "secrets" => ObjectKind::Secret,
        "keys" => ObjectKind::Key,
        "certificates" => ObjectKind::Certificate,
        _ => return None,
    };
    let name = segs.get(1).map(|s| s.to_string());
    match (method.clone(), segs.len()) {
        (Method::GET, 1) => Some(Op::List(kind)),
        (Method::GET, 2) => Some(Op::Get(kind, name?, None)),
        (Method::GET, 3) if segs[2] == "versions" => Some(Op::Versions(kind, name?)),
        (Method::GET, 3) if kind == ObjectKind::Certificate && segs[2] == "policy" => {
            Some(Op::GetPolicy(name?))
        }
        (Method::GET, 3) => Some(Op::Get(kind, name?, Some(segs[2].to_string()))),
        (Method::PUT, 2) if kind == ObjectKind::Secret => Some(Op::SetSecret(name?)),
        (Method::PUT, 2) if kind == ObjectKind::Key => Some(Op::ImportKey(name?)),
        (Method::PATCH, 3) => Some(Op::Update(kind, name?, segs[2].to_string())),
        (Method::POST, 3) if kind == ObjectKind::Key && segs[2] == "create" => {
            Some(Op::CreateKey(name?))
        }
        (Method::POST, 3) if kind == ObjectKind::Certificate && segs[2] == "import" => {
            Some(Op::ImportCert(name?))
        }
        _ => None,
    }
}

pub async fn handle(
    inner: &Arc<Inner>,
    vault_name: &str,
    cloud: &CloudProfile,
    req: &Req,
) -> Outcome {
    let vault = {
        let st = inner.lock();
        match st.vault(vault_name) {
            Ok(v) if v.cloud.vault_suffix == cloud.vault_suffix => Some(v.clone_shallow()),
            _ => None,
        }
    };
    let Some(vault) = vault else {
        return Outcome::anonymous(kv_error(
            StatusCode::NOT_FOUND,
            "VaultNotFound",
            &format!(
                "keyvault-emulator has no vault '{vault_name}' in {} (the real service would fail DNS resolution).",
                cloud.name
            ),
        ));
    };
    let caller = match authenticate(inner, &vault, req) {
        Ok(c) => c,
        Err(denied) => {
            let (resp, token) = *denied;
            return Outcome {
                resp,
                token,
                identity: None,
            };
        }
    };
    let identity = Some(caller.client_id.clone());
    let done = |resp: Resp| Outcome {
        resp,
        token: TokenPresence::Valid,
        identity: identity.clone(),
    };
    let api_version = match req.query_param("api-version") {
        None | Some("") => {
            return done(bad_parameter(
                "The 'api-version' query parameter is missing. Specify a supported api-version such as 7.4.",
            ));
        }
        Some(v) if !api_version_supported(v) => {
            return done(bad_parameter(&format!(
                "The specified version ({v}) is not recognized. Consider using the latest supported version (7.6)."
            )));
        }
        Some(v) => v.to_string(),
    };
    let segs = req.segments();
    let Some(op) = parse_op(&req.method, &segs) else {
        return done(kv_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!(
                "The requested operation {} {} is not supported by this service.",
                req.method, req.path
            ),
        ));
    };
    if !vault.allows(&caller.client_id, &caller.object_id) {
        return done(forbidden(&vault, &caller, &op.permission()));
    }
    if let Op::Get(kind, name, _) = &op {
        inner.observer.count(|c| {
            *c.gets_per_object
                .entry(
                    format!("{}/{}/{}", vault.name, kind.collection(), name).to_ascii_lowercase(),
                )
                .or_insert(0) += 1;
        });
    }
    done(run(inner, &vault.name, req, op, &api_version).await)
}

async fn run(inner: &Arc<Inner>, vault_name: &str, req: &Req, op: Op, api_version: &str) -> Resp {
    match op {
        Op::CreateKey(name) => return create_key(inner, vault_name, &name, req).await,
        Op::ImportKey(name) => return import_key(inner, vault_name, &name, req),
        Op::ImportCert(name) => return import_cert(inner, vault_name, &name, req),
        Op::SetSecret(name) => return set_secret(inner, vault_name, &name, req),
        Op::Update(kind, name, version) => {
            return update(inner, vault_name, kind, &name, &version, req);
        }
        _ => {}
    }
    let st = inner.lock();
    let Ok(vault) = st.vault(vault_name) else {
        return not_found(ObjectKind::Secret, vault_name);
    };
    match op {
        Op::List(kind) => {
            let items = match kind {
                ObjectKind::Secret => vault
                    .secrets
                    .values()
                    .filter_map(|o| {
                        o.latest()
                            .map(|v| secret_item(vault.object_id(kind, &o.name, None), v))
                    })
                    .collect(),
                ObjectKind::Key => vault
                    .keys
                    .values()
                    .filter_map(|o| {
                        o.latest()
                            .map(|v| key_item(vault.object_id(kind, &o.name, None), v))
                    })
                    .collect(),
                ObjectKind::Certificate => vault
                    .certificates
                    .values()
                    .filter_map(|o| {
                        o.latest()
                            .map(|v| cert_item(vault.object_id(kind, &o.name, None), v))
                    })
                    .collect(),
            };
            page(vault, req, items, api_version)
        }
        Op::Versions(kind, name) => {
            let key = name.to_ascii_lowercase();
            let items: Option<Vec<Value>> = match kind {
                ObjectKind::Secret => vault.secrets.get(&key).map(|o| {
                    o.versions
                        .iter()
                        .map(|v| secret_item(vault.object_id(kind, &o.name, Some(&v.version)), v))
                        .collect()
                }),
                ObjectKind::Key => vault.keys.get(&key).map(|o| {
                    o.versions
                        .iter()
                        .map(|v| key_item(vault.object_id(kind, &o.name, Some(&v.version)), v))
                        .collect()
                }),
                ObjectKind::Certificate => vault.certificates.get(&key).map(|o| {
                    o.versions
                        .iter()
                        .map(|v| cert_item(vault.object_id(kind, &o.name, Some(&v.version)), v))
                        .collect()
                }),
            };
            // Listing the versions of a missing object is an empty list in the service.
            page(vault, req, items.unwrap_or_default(), api_version)
        }
        Op::Get(kind, name, version) => get_object(vault, kind, &name, version.as_deref()),
        Op::GetPolicy(name) => match policy_json(vault, &name) {
            Some(p) => json_response(StatusCode::OK, &p),
            None => not_found(ObjectKind::Certificate, &name),
        },
        _ => bad_parameter("unsupported operation"),
    }
}

fn pick<'a, V: crate::store::HasVersion>(
    o: &'a Versions<V>,
    version: Option<&str>,
) -> Option<&'a V> {
    match version {
        None | Some("") => o.latest(),
        Some(v) => o.get(v),
    }
}

fn get_object(vault: &Vault, kind: ObjectKind, name: &str, version: Option<&str>) -> Resp {
    let key = name.to_ascii_lowercase();
    let id = match version {
        Some(v) => format!("{name}/{v}"),
        None => name.to_string(),
    };
    match kind {
        ObjectKind::Secret => match vault
            .secrets
            .get(&key)
            .and_then(|o| pick(o, version).map(|v| (o, v)))
        {
            None => not_found(kind, &id),
            Some((_, v)) if !v.attrs.enabled => disabled(kind),
            Some((o, v)) => json_response(StatusCode::OK, &secret_bundle(vault, &o.name, v, true)),
        },
        ObjectKind::Key => match vault
            .keys
            .get(&key)
            .and_then(|o| pick(o, version).map(|v| (o, v)))
        {
            None => not_found(kind, &id),
            Some((_, v)) if !v.attrs.enabled => disabled(kind),
            Some((o, v)) => json_response(StatusCode::OK, &key_bundle(vault, &o.name, v)),
        },
        ObjectKind::Certificate => {
            match vault
                .certificates
                .get(&key)
                .and_then(|o| pick(o, version).map(|v| (o, v)))
            {
                None => not_found(kind, &id),
                Some((o, v)) => json_response(StatusCode::OK, &cert_bundle(vault, &o.name, v)),
            }
        }
    }
}

fn set_secret(inner: &Inner, vault: &str, name: &str, req: &Req) -> Resp {
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Some(value) = body.get("value").and_then(Value::as_str) else {
        return bad_parameter("The request is missing the required property 'value'.");
    };
    if !crate::util::valid_object_name(name) {
        return bad_parameter(&format!(
            "The secret name '{name}' is invalid. Secret names may contain only 0-9, a-z, A-Z and -."
        ));
    }
    let (enabled, nbf, exp) = body_attrs(&body);
    let spec = SecretSpec {
        value: value.to_string(),
        content_type: body
            .get("contentType")
            .and_then(Value::as_str)
            .map(str::to_string),
        enabled,
        tags: body_tags(&body),
        not_before: nbf,
        expires: exp,
    };
    let now = inner.now();
    let mut st = inner.lock();
    match st.add_secret(vault, name, spec, now) {
        Ok(version) => render_version(&st, vault, ObjectKind::Secret, name, &version, true),
        Err(e) => bad_parameter(&e.to_string()),
    }
}

fn render_version(
    st: &crate::store::State,
    vault: &str,
    kind: ObjectKind,
    name: &str,
    version: &str,
    with_value: bool,
) -> Resp {
    let Ok(v) = st.vault(vault) else {
        return not_found(kind, name);
    };
    let key = name.to_ascii_lowercase();
    let body = match kind {
        ObjectKind::Secret => v.secrets.get(&key).and_then(|o| {
            o.get(version)
                .map(|s| secret_bundle(v, &o.name, s, with_value))
        }),
        ObjectKind::Key => v
            .keys
            .get(&key)
            .and_then(|o| o.get(version).map(|k| key_bundle(v, &o.name, k))),
        ObjectKind::Certificate => v
            .certificates
            .get(&key)
            .and_then(|o| o.get(version).map(|c| cert_bundle(v, &o.name, c))),
    };
    match body {
        Some(b) => json_response(StatusCode::OK, &b),
        None => not_found(kind, &format!("{name}/{version}")),
    }
}

fn update(
    inner: &Inner,
    vault: &str,
    kind: ObjectKind,
    name: &str,
    version: &str,
    req: &Req,
) -> Resp {
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let (enabled, nbf, exp) = body_attrs(&body);
    let tags = body_tags(&body);
    let content_type = body
        .get("contentType")
        .and_then(Value::as_str)
        .map(str::to_string);
    let key_ops: Option<Vec<String>> = body.get("key_ops").and_then(|k| {
        k.as_array().map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
    });
    let now = inner.now();
    let mut st = inner.lock();
    let Ok(v) = st.vault_mut(vault) else {
        return not_found(kind, name);
    };
    let key = name.to_ascii_lowercase();
    let attrs_and_tags: Option<(&mut Attrs, &mut Option<Tags>)> = match kind {
        ObjectKind::Secret => v
            .secrets
            .get_mut(&key)
            .and_then(|o| o.get_mut(version))
            .map(|s| {
                if let Some(ct) = content_type.clone() {
                    s.content_type = Some(ct);
                }
                (&mut s.attrs, &mut s.tags)
            }),
        ObjectKind::Key => v
            .keys
            .get_mut(&key)
            .and_then(|o| o.get_mut(version))
            .map(|k| {
                if let Some(ops) = key_ops.clone() {
                    k.key_ops = ops;
                }
                (&mut k.attrs, &mut k.tags)
            }),
        ObjectKind::Certificate => v
            .certificates
            .get_mut(&key)
            .and_then(|o| o.get_mut(version))
            .map(|c| (&mut c.attrs, &mut c.tags)),
    };
    let Some((attrs, t)) = attrs_and_tags else {
        return not_found(kind, &format!("{name}/{version}"));
    };
    if let Some(e) = enabled {
        attrs.enabled = e;
    }
    if nbf.is_some() {
        attrs.nbf = nbf;
    }
    if exp.is_some() {
        attrs.exp = exp;
    }
    attrs.updated = now;
    if tags.is_some() {
        *t = tags;
    }
    // The service's update answers carry no secret value.
    render_version(&st, vault, kind, name, version, false)
}

async fn create_key(inner: &Arc<Inner>, vault: &str, name: &str, req: &Req) -> Resp {
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if !crate::util::valid_object_name(name) {
        return bad_parameter(&format!("The key name '{name}' is invalid."));
    }
    let Some(kty) = body.get("kty").and_then(Value::as_str) else {
        return bad_parameter("The request is missing the required property 'kty'.");
    };
    let hsm = kty.ends_with("-HSM");
    let base = kty.trim_end_matches("-HSM");
    let material = match base {
        "RSA" => {
            let bits = body.get("key_size").and_then(Value::as_u64).unwrap_or(2048) as usize;
            if ![2048, 3072, 4096].contains(&bits) {
                return bad_parameter(&format!(
                    "The specified key size {bits} is not supported. Supported RSA key sizes are 2048, 3072 and 4096."
                ));
            }
            tokio::task::spawn_blocking(move || keys::generate_rsa(bits)).await
        }
        "EC" => {
            let crv = body.get("crv").and_then(Value::as_str).unwrap_or("P-256");
            let Some(curve) = Curve::parse(crv) else {
                return bad_parameter(&format!("The specified curve '{crv}' is not supported."));
            };
            tokio::task::spawn_blocking(move || keys::generate_ec(curve)).await
        }
        _ => {
            return bad_parameter(&format!(
                "The specified key type '{kty}' is not supported by a vault."
            ));
        }
    };
    let public = match material {
        Ok(Ok(m)) => m.public,
        Ok(Err(e)) => {
            return kv_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                &e.to_string(),
            );
        }
        Err(e) => {
            return kv_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                &e.to_string(),
            );
        }
    };
    store_key(inner, vault, name, public, hsm, &body)
}

fn store_key(
    inner: &Inner,
    vault: &str,
    name: &str,
    public: PublicKey,
    hsm: bool,
    body: &Value,
) -> Resp {
    let (enabled, nbf, exp) = body_attrs(body);
    let key_ops = body
        .get("key_ops")
        .or_else(|| body.get("key").and_then(|k| k.get("key_ops")))
        .and_then(|k| {
            k.as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
        });
    let opts = KeyOptions {
        hsm,
        enabled,
        key_ops,
        tags: body_tags(body),
        not_before: nbf,
        expires: exp,
    };
    let now = inner.now();
    let mut st = inner.lock();
    match st.add_key(vault, name, public, opts, now) {
        Ok(version) => render_version(&st, vault, ObjectKind::Key, name, &version, false),
        Err(e) => bad_parameter(&e.to_string()),
    }
}

fn import_key(inner: &Inner, vault: &str, name: &str, req: &Req) -> Resp {
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Some(jwk) = body.get("key") else {
        return bad_parameter("The request is missing the required property 'key'.");
    };
    match PublicKey::from_import_jwk(jwk) {
        Ok((public, jwk_hsm)) => {
            let hsm = jwk_hsm || body.get("Hsm").and_then(Value::as_bool).unwrap_or(false);
            store_key(inner, vault, name, public, hsm, &body)
        }
        Err(e) => bad_parameter(&e.to_string()),
    }
}

fn import_cert(inner: &Inner, vault: &str, name: &str, req: &Req) -> Resp {
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Some(value) = body.get("value").and_then(Value::as_str) else {
        return bad_parameter("The request is missing the required property 'value'.");
    };
    if !crate::util::valid_object_name(name) {
        return bad_parameter(&format!("The certificate name '{name}' is invalid."));
    }
    let pwd = body.get("pwd").and_then(Value::as_str);
    let content_type = body
        .pointer("/policy/secret_props/contentType")
        .and_then(Value::as_str)
        .unwrap_or(CONTENT_TYPE_PKCS12)
        .to_string();
    if content_type != certs::CONTENT_TYPE_PKCS12 && content_type != certs::CONTENT_TYPE_PEM {
        return bad_parameter(&format!(
            "The specified content type '{content_type}' is not supported. Supported content types are application/x-pkcs12 and application/x-pem-file."
        ));
    }
    let parsed = match certs::parse_import_value(value, pwd) {
        Ok(p) => p,
        Err(msg) => return bad_parameter(&msg),
    };
    let (enabled, _, _) = body_attrs(&body);
    let now = inner.now();
    let mut st = inner.lock();
    let opts = ImportOptions {
        content_type: Some(&content_type),
        enabled,
        tags: body_tags(&body),
    };
    match st.import_certificate(vault, name, &parsed, opts, now) {
        Ok(imported) => render_version(
            &st,
            vault,
            ObjectKind::Certificate,
            name,
            &imported.version,
            false,
        ),
        Err(e) => bad_parameter(&e.to_string()),
    }
}

impl Vault {
    /// A copy without the objects, enough for authentication and routing decisions.
    fn clone_shallow(&self) -> Vault {
        Vault {
            name: self.name.clone(),
            cloud: self.cloud.clone(),
            tenant: self.tenant.clone(),
            location: self.location.clone(),
            access: self.access.clone(),
            secrets: Default::default(),
            keys: Default::default(),
            certificates: Default::default(),
            policies: Default::default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        for ok in [
            "7.4",
            "7.5",
            "7.6",
            "7.6-preview.2",
            "2025-07-01",
            "2026-04-01",
        ] {
            assert!(api_version_supported(ok), "{ok}");
        }
        for bad in ["7.3", "7.0", "2016-10-01", "", "abc", "8"] {
            assert!(!api_version_supported(bad), "{bad}");
        }
    }

    #[test]
    fn skiptoken_roundtrip() {
        assert_eq!(decode_skiptoken(&encode_skiptoken(25)), Some(25));
        assert_eq!(decode_skiptoken("!!"), None);
    }
}
