//! HTTP side of the fake server: routes request paths the way apiserver's RequestInfo does, applies
//! the RBAC simulation and the test hooks, and turns store results into responses (JSON objects,
//! lists, Status errors, or a chunked stream of watch events).

use std::convert::Infallible;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::selector::{FieldSelector, LabelSelector, parse_query};
use crate::status::ApiError;
use crate::store::{DeleteOptions, Propagation, WatchStart, error_line};
use crate::{Action, Handle, RequestRecord};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Largest request body accepted (apiserver's limit is about 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

pub(crate) async fn serve(listener: TcpListener, handle: Handle) {
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "fake apiserver: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let handle = handle.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(handle.respond(request).await) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "fake apiserver: connection ended with an error");
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

fn json_response(code: u16, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)).boxed_unsync());
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(error: &ApiError) -> Response<Body> {
    json_response(error.code, &error.status())
}

/// A resource request, as apiserver's RequestInfo splits the path.
struct ResourcePath {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

enum Route {
    Resource(ResourcePath),
    /// `/api/v1` or `/apis/<group>/<version>`: resource discovery.
    GroupVersion(String, String),
    Other(String),
}

fn route(path: &str) -> Route {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(crate::selector::percent_decode)
        .collect();
    let (group, version, rest) = match segments.as_slice() {
        [api, version, rest @ ..] if api == "api" => (String::new(), version.clone(), rest),
        [apis, group, version, rest @ ..] if apis == "apis" => {
            (group.clone(), version.clone(), rest)
        }
        _ => return Route::Other(path.to_string()),
    };
    let (namespace, rest) = match rest {
        [ns, namespace, tail @ ..] if ns == "namespaces" && !tail.is_empty() => {
            (Some(namespace.clone()), tail)
        }
        _ => (None, rest),
    };
    match rest {
        [] => Route::GroupVersion(group, version),
        [plural, tail @ ..] if tail.len() <= 2 => Route::Resource(ResourcePath {
            group,
            version,
            namespace,
            plural: plural.clone(),
            name: tail.first().cloned(),
            subresource: tail.get(1).cloned(),
        }),
        _ => Route::Other(path.to_string()),
    }
}

fn truthy(value: Option<&String>) -> bool {
    matches!(value.map(String::as_str), Some("true" | "1"))
}

impl Handle {
    pub(crate) async fn respond(&self, request: Request<Incoming>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let query_text = request.uri().query().unwrap_or("").to_string();
        let header_text = |name: header::HeaderName| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header_text(header::CONTENT_TYPE).unwrap_or_default();
        let user_agent = header_text(header::USER_AGENT);
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return error_response(&ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    "the request is too large",
                ));
            }
        };
        let mut record = RequestRecord {
            method: method.to_string(),
            path: path.clone(),
            query: query_text.clone(),
            verb: String::new(),
            group: String::new(),
            resource: String::new(),
            namespace: None,
            name: None,
            status: 0,
            user_agent,
        };
        let response = match route(&path) {
            Route::Resource(target) => {
                let query = parse_query(&query_text);
                record.group = target.group.clone();
                record.resource = target.plural.clone();
                record.namespace = target.namespace.clone();
                record.name = target.name.clone();
                self.resource_request(&method, target, &query, &content_type, &body, &mut record)
                    .await
            }
            Route::GroupVersion(group, version) => self.discovery_resources(&group, &version),
            Route::Other(path) => self.non_resource(&path),
        };
        record.status = response.status().as_u16();
        self.control().requests.push(record);
        response
    }

    fn non_resource(&self, path: &str) -> Response<Body> {
        match path.trim_end_matches('/') {
            "/version" => json_response(
                200,
                &json!({
                    "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake",
                    "gitCommit": "", "gitTreeState": "clean", "buildDate": "",
                    "goVersion": "", "compiler": "fake", "platform": "linux/amd64"
                }),
            ),
            "/healthz" | "/readyz" | "/livez" => {
                let mut response =
                    Response::new(Full::new(Bytes::from_static(b"ok")).boxed_unsync());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain"),
                );
                response
            }
            "/api" => json_response(
                200,
                &json!({
                    "kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.addr().to_string()}]
                }),
            ),
            "/apis" => {
                let state = self.state();
                let mut groups: Vec<(String, Vec<String>)> = Vec::new();
                for r in state.resources.iter().filter(|r| !r.group.is_empty()) {
                    match groups.iter_mut().find(|(g, _)| *g == r.group) {
                        Some((_, versions)) => {
                            for v in &r.versions {
                                if !versions.contains(v) {
                                    versions.push(v.clone());
                                }
                            }
                        }
                        None => groups.push((r.group.clone(), r.versions.clone())),
                    }
                }
                let groups: Vec<Value> = groups
                    .into_iter()
                    .map(|(name, versions)| {
                        let versions: Vec<Value> = versions
                            .iter()
                            .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                            .collect();
                        json!({"name": name, "preferredVersion": versions[0], "versions": versions})
                    })
                    .collect();
                json_response(
                    200,
                    &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
                )
            }
            _ => error_response(&ApiError::resource_not_found()),
        }
    }

    fn discovery_resources(&self, group: &str, version: &str) -> Response<Body> {
        let state = self.state();
        let resources: Vec<Value> = state
            .resources
            .iter()
            .filter(|r| r.group == group && r.versions.iter().any(|v| v == version))
            .map(|r| {
                json!({
                    "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
                })
            })
            .collect();
        if resources.is_empty() {
            return error_response(&ApiError::resource_not_found());
        }
        let group_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        json_response(
            200,
            &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
        )
    }

    async fn resource_request(
        &self,
        method: &Method,
        target: ResourcePath,
        query: &std::collections::BTreeMap<String, String>,
        content_type: &str,
        body: &Bytes,
        record: &mut RequestRecord,
    ) -> Response<Body> {
        let (res, resource) = {
            let state = self.state();
            match state.resource_index(&target.group, &target.plural) {
                Some(res) => (res, state.resources[res].clone()),
                None => return error_response(&ApiError::resource_not_found()),
            }
        };
        if !resource.versions.contains(&target.version) || target.subresource.is_some() {
            return error_response(&ApiError::resource_not_found());
        }
        if !resource.namespaced && target.namespace.is_some() {
            return error_response(&ApiError::resource_not_found());
        }
        let watch = truthy(query.get("watch"));
        let verb = match (method.as_str(), target.name.is_some()) {
            ("GET", true) => "get",
            ("GET", false) if watch => "watch",
            ("GET", false) => "list",
            ("POST", false) => "create",
            ("PUT", true) => "update",
            ("PATCH", true) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => return error_response(&ApiError::method_not_allowed(method.as_str())),
        };
        record.verb = verb.to_string();
        // Single-object verbs and create on a namespaced type need a namespace in the path.
        let namespace = match (&target.namespace, resource.namespaced) {
            (Some(ns), _) => ns.clone(),
            (None, true) if !matches!(verb, "list" | "watch") => {
                return error_response(&ApiError::method_not_allowed(method.as_str()));
            }
            _ => String::new(),
        };
        let name = target.name.clone().unwrap_or_default();

        let forbidden = self.control().forbidden.iter().any(|rule| {
            (rule.verb == verb || rule.verb == "*")
                && rule.group == resource.group
                && rule.resource == resource.plural
                && rule
                    .namespace
                    .as_ref()
                    .is_none_or(|ns| Some(ns) == target.namespace.as_ref())
        });
        if forbidden {
            return error_response(&ApiError::forbidden(
                &resource,
                None,
                &name,
                verb,
                &self.shared.user,
                target.namespace.as_deref(),
            ));
        }

        // At most one queued hook or failure per request, in the order they were queued.
        let action = {
            let mut control = self.control();
            let position = control.pending.iter().position(|p| {
                p.verb == verb && p.group == resource.group && p.resource == resource.plural
            });
            position.map(|i| control.pending.remove(i).action)
        };
        match action {
            Some(Action::Run(hook)) => hook(self),
            Some(Action::Fail(error)) => return error_response(&error),
            None => {}
        }

        if query.get("dryRun").is_some_and(|v| !v.is_empty()) {
            return error_response(&ApiError::bad_request(
                "dryRun is not supported by the fake API server",
            ));
        }
        let version = target.version.as_str();
        let namespace_filter = target.namespace.clone();
        let result = match verb {
            "get" => {
                let state = self.state();
                state.get(res, &namespace, &name).map(|o| (200, state.at_version(res, version, &o)))
            }
            "list" => self.list_response(res, version, namespace_filter, query),
            "watch" => return self.watch(res, version, namespace_filter, query),
            "create" => self.decode(body, &resource, version).and_then(|object| {
                let mut state = self.state();
                state.create(res, &namespace, object, true).map(|o| (201, state.at_version(res, version, &o)))
            }),
            "update" => self.decode(body, &resource, version).and_then(|object| {
                let mut state = self.state();
                state.update(res, &namespace, &name, object).map(|o| (200, state.at_version(res, version, &o)))
            }),
            "patch" => {
                let mut state = self.state();
                state
                    .patch(res, &namespace, &name, content_type, body)
                    .map(|o| (200, state.at_version(res, version, &o)))
            }
            "delete" => delete_options(query, body).and_then(|options| {
                let mut state = self.state();
                let deleted = state.delete(res, &namespace, &name, &options)?;
                if resource.custom || resource.plural == "pods" || deleted.pointer("/metadata/deletionTimestamp").is_some()
                {
                    Ok((200, state.at_version(res, version, &deleted)))
                } else {
                    let mut details = json!({
                        "name": name, "kind": resource.plural,
                        "uid": deleted.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)
                    });
                    if !resource.group.is_empty() {
                        details["group"] = json!(resource.group);
                    }
                    Ok((200, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})))
                }
            }),
            "deletecollection" => self.delete_collection(res, version, namespace_filter, query, body),
            _ => Err(ApiError::method_not_allowed(method.as_str())),
        };
        match result {
            Ok((code, value)) => json_response(code, &value),
            Err(error) => error_response(&error),
        }
    }

    /// Parses a write body and checks its apiVersion and kind against the URL.
    fn decode(
        &self,
        body: &Bytes,
        resource: &crate::ResourceType,
        version: &str,
    ) -> Result<Value, ApiError> {
        let object: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not a JSON object: {e}"))
        })?;
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the request body is not a JSON object",
            ));
        }
        let expected = resource.api_version(version);
        if let Some(api_version) = object.get("apiVersion").and_then(Value::as_str)
            && !api_version.is_empty()
            && api_version != expected
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({expected})"
            )));
        }
        if let Some(kind) = object.get("kind").and_then(Value::as_str)
            && !kind.is_empty()
            && kind != resource.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                resource.kind
            )));
        }
        Ok(object)
    }

    fn list_response(
        &self,
        res: usize,
        version: &str,
        namespace: Option<String>,
        query: &std::collections::BTreeMap<String, String>,
    ) -> Result<(u16, Value), ApiError> {
        let state = self.state();
        let resource = state.resources[res].clone();
        let labels =
            LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))?;
        let fields = FieldSelector::parse(
            query.get("fieldSelector").map(String::as_str).unwrap_or(""),
            resource.custom,
        )?;
        let limit: usize = match query.get("limit").filter(|l| !l.is_empty()) {
            Some(l) => l
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
            None => 0,
        };
        let (snapshot_rv, start_after) = match query.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => decode_continue(token)?,
            None => {
                let rv = match query.get("resourceVersion").map(String::as_str) {
                    None | Some("") | Some("0") => state.rv,
                    Some(text) => {
                        let rv: u64 = text.parse().map_err(|_| {
                            ApiError::bad_request(format!("invalid resource version {text:?}"))
                        })?;
                        match query.get("resourceVersionMatch").map(String::as_str) {
                            Some("Exact") => rv,
                            _ if rv > state.rv => {
                                return Err(ApiError::new(
                                    504,
                                    "Timeout",
                                    format!(
                                        "Timeout: Too large resource version: {rv}, current: {}",
                                        state.rv
                                    ),
                                ));
                            }
                            _ => state.rv,
                        }
                    }
                };
                (rv, None)
            }
        };
        let snapshot = state.snapshot(res, snapshot_rv).map_err(|e| {
            if e.code == 410 && start_after.is_some() {
                ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start \
                     a new list without the continue parameter.",
                )
            } else {
                e
            }
        })?;
        let mut items = Vec::new();
        let mut next = None;
        for ((ns, name), object) in snapshot {
            if namespace.as_ref().is_some_and(|want| *want != ns) {
                continue;
            }
            if start_after
                .as_ref()
                .is_some_and(|(sns, sname)| (&ns, &name) <= (sns, sname))
            {
                continue;
            }
            if !labels.matches(&object) || !fields.matches(&object) {
                continue;
            }
            if limit > 0 && items.len() == limit {
                next = Some(encode_continue(snapshot_rv, &items_last_key(&items)));
                break;
            }
            items.push(state.at_version(res, version, &object));
        }
        let mut metadata = json!({ "resourceVersion": snapshot_rv.to_string() });
        if let Some(token) = next {
            metadata["continue"] = json!(token);
        }
        Ok((
            200,
            json!({
                "kind": format!("{}List", resource.kind),
                "apiVersion": resource.api_version(version),
                "metadata": metadata,
                "items": items,
            }),
        ))
    }

    fn delete_collection(
        &self,
        res: usize,
        version: &str,
        namespace: Option<String>,
        query: &std::collections::BTreeMap<String, String>,
        body: &Bytes,
    ) -> Result<(u16, Value), ApiError> {
        let options = delete_options(query, body)?;
        let (_, listed) = self.list_response(res, version, namespace, query)?;
        let mut state = self.state();
        let mut deleted = Vec::new();
        for item in listed["items"].as_array().cloned().unwrap_or_default() {
            let ns = item
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            let name = item
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if let Ok(object) = state.delete(res, ns, name, &options) {
                deleted.push(state.at_version(res, version, &object));
            }
        }
        let resource = &state.resources[res];
        Ok((
            200,
            json!({
                "kind": format!("{}List", resource.kind),
                "apiVersion": resource.api_version(version),
                "metadata": { "resourceVersion": state.rv.to_string() },
                "items": deleted,
            }),
        ))
    }

    fn watch(
        &self,
        res: usize,
        version: &str,
        namespace: Option<String>,
        query: &std::collections::BTreeMap<String, String>,
    ) -> Response<Body> {
        let custom = self.state().resources[res].custom;
        let labels = match LabelSelector::parse(
            query.get("labelSelector").map(String::as_str).unwrap_or(""),
        ) {
            Ok(l) => l,
            Err(e) => return error_response(&e),
        };
        let fields = match FieldSelector::parse(
            query.get("fieldSelector").map(String::as_str).unwrap_or(""),
            custom,
        ) {
            Ok(f) => f,
            Err(e) => return error_response(&e),
        };
        let bookmarks = truthy(query.get("allowWatchBookmarks"));
        let send_initial = truthy(query.get("sendInitialEvents"));
        if send_initial && !bookmarks {
            return error_response(&ApiError::new(
                422,
                "Invalid",
                "sendInitialEvents is forbidden for watch unless allowWatchBookmarks=true",
            ));
        }
        let start = match query.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => WatchStart::Now,
            Some(_) if send_initial => WatchStart::Now,
            Some(text) => match text.parse() {
                Ok(rv) => WatchStart::After(rv),
                Err(_) => {
                    return error_response(&ApiError::bad_request(format!(
                        "invalid resource version {text:?}"
                    )));
                }
            },
        };
        let timeout = match query.get("timeoutSeconds").filter(|t| !t.is_empty()) {
            Some(t) => match t.parse::<u64>() {
                Ok(secs) => Some(Duration::from_secs(secs)),
                Err(_) => {
                    return error_response(&ApiError::bad_request(format!(
                        "invalid timeoutSeconds {t:?}"
                    )));
                }
            },
            None => None,
        };
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let started = self.state().start_watch(
            res,
            version,
            namespace,
            labels,
            fields,
            start,
            send_initial,
            bookmarks,
            tx.clone(),
        );
        match started {
            Ok(id) => {
                if let Some(timeout) = timeout {
                    let handle = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(timeout).await;
                        handle.state().end_watch(id, true);
                    });
                }
            }
            // apiserver reports a watch that cannot start from its resourceVersion in the stream.
            Err(error) => {
                let _ = tx.send(error_line(&error));
            }
        }
        drop(tx);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|line| (Ok::<_, Infallible>(Frame::data(line)), rx))
        });
        let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    }
}

fn items_last_key(items: &[Value]) -> (String, String) {
    items
        .last()
        .map(|o| {
            let field = |f: &str| {
                o.pointer(&format!("/metadata/{f}"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            (field("namespace"), field("name"))
        })
        .unwrap_or_default()
}

fn encode_continue(rv: u64, (namespace, name): &(String, String)) -> String {
    let token = json!({ "v": "meta.k8s.io/v1", "rv": rv, "start": [namespace, name] });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, Option<(String, String)>), ApiError> {
    let invalid = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let rv = value
        .get("rv")
        .and_then(Value::as_u64)
        .ok_or_else(invalid)?;
    let start = value
        .get("start")
        .and_then(Value::as_array)
        .ok_or_else(invalid)?;
    let part = |i: usize| {
        start
            .get(i)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(invalid)
    };
    Ok((rv, Some((part(0)?, part(1)?))))
}

fn delete_options(
    query: &std::collections::BTreeMap<String, String>,
    body: &Bytes,
) -> Result<DeleteOptions, ApiError> {
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let policy = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| query.get("propagationPolicy").cloned());
    let orphan = body
        .get("orphanDependents")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let propagation = match policy.as_deref() {
        Some("Orphan") => Propagation::Orphan,
        Some("Background" | "Foreground") | None if !orphan => Propagation::Background,
        None => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported propagationPolicy {other:?}"
            )));
        }
    };
    let precondition = |f: &str| {
        body.pointer(&format!("/preconditions/{f}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(DeleteOptions {
        propagation,
        uid: precondition("uid"),
        resource_version: precondition("resourceVersion"),
    })
}
