//! The object store and everything the API server does to objects: server-set metadata, optimistic
//! concurrency on `resourceVersion`, finalizers, garbage collection through owner references, list
//! snapshots at a resourceVersion, and fan-out of changes to watches.
//!
//! Resource versions come from one counter for all types, as etcd revisions do. Every change is kept
//! in a bounded history (with the object before and after), which serves watches that start at an
//! older resourceVersion and consistent paged lists; what fell out of the history is "compacted":
//! starting a watch or continuing a list from there fails with 410 Expired.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::resources::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;

/// Store key: resource type index, namespace ("" for cluster-scoped), name.
pub(crate) type Key = (usize, String, String);

/// Kind of change, as a watch event type names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub res: usize,
    pub kind: ChangeKind,
    /// The object before the change (None for Added).
    pub old: Option<Value>,
    /// The object after the change; for Deleted, its final state with the deletion's resourceVersion.
    pub new: Value,
}

/// An open watch.
pub(crate) struct Watcher {
    pub id: u64,
    pub res: usize,
    pub version: String,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub bookmarks: bool,
    pub tx: mpsc::UnboundedSender<Bytes>,
}

impl Watcher {
    fn selects(&self, object: &Value) -> bool {
        let ns_ok = match &self.namespace {
            Some(ns) => {
                object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    == Some(ns.as_str())
            }
            None => true,
        };
        ns_ok && self.labels.matches(object) && self.fields.matches(object)
    }
}

/// How DELETE treats dependents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Propagation {
    Background,
    Orphan,
}

/// Options of a DELETE.
#[derive(Clone, Debug)]
pub(crate) struct DeleteOptions {
    pub propagation: Propagation,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl Default for DeleteOptions {
    fn default() -> Self {
        Self {
            propagation: Propagation::Background,
            uid: None,
            resource_version: None,
        }
    }
}

/// Where a watch starts.
pub(crate) enum WatchStart {
    /// Synthetic ADDED events for the current state, then changes (no resourceVersion, or "0").
    Now,
    /// Changes after this resourceVersion.
    After(u64),
}

pub(crate) struct State {
    pub resources: Vec<ResourceType>,
    pub objects: BTreeMap<Key, Value>,
    pub rv: u64,
    history: VecDeque<Change>,
    /// Oldest resourceVersion a watch or a consistent list may start from.
    pub compacted: u64,
    pub history_limit: usize,
    pub watchers: Vec<Watcher>,
    next_watcher: u64,
    pub gc: bool,
    pub require_namespaces: bool,
}

/// The object's `metadata` map, created if missing. `object` must be a JSON object (callers check).
fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    match object.get_mut("metadata") {
        Some(Value::Object(meta)) => meta,
        _ => unreachable!("metadata was just made an object"),
    }
}

fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub(crate) fn now_rfc3339() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn new_uid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn random_suffix() -> String {
    // The alphabet apiserver uses for generateName (no vowels, no look-alikes).
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// DNS subdomain as object names must be.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && !name.is_empty()
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn is_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Checks metadata.name and labels the way apiserver validation does.
fn validate(resource: &ResourceType, object: &Value) -> Result<(), ApiError> {
    let name = meta_str(object, "name");
    if !is_dns_subdomain(name) {
        return Err(ApiError::invalid(
            resource,
            name,
            "metadata.name",
            name,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', \
             and must start and end with an alphanumeric character (e.g. 'example.com', regex used for \
             validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ));
    }
    if let Some(labels) = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
    {
        for (key, value) in labels {
            let (prefix, label_name) = match key.rsplit_once('/') {
                Some((p, n)) => (Some(p), n),
                None => (None, key.as_str()),
            };
            if prefix.is_some_and(|p| !is_dns_subdomain(p)) || !is_label_name(label_name) {
                return Err(ApiError::invalid(
                    resource,
                    name,
                    "metadata.labels",
                    key,
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and \
                     end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex \
                     used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                ));
            }
            let text = value.as_str().unwrap_or("");
            if !value.is_string() || (!text.is_empty() && !is_label_name(text)) {
                return Err(ApiError::invalid(
                    resource,
                    name,
                    &format!("metadata.labels.{key}"),
                    text,
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' \
                     or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or \
                     'my_value',  or '12345', regex used for validation is \
                     '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                ));
            }
        }
    }
    Ok(())
}

/// Strategy steps apiserver applies to Secrets on every write.
fn secret_defaults(resource: &ResourceType, object: &mut Value) {
    if !(resource.group.is_empty() && resource.plural == "secrets") {
        return;
    }
    if let Some(Value::Object(string_data)) =
        object.as_object_mut().and_then(|o| o.remove("stringData"))
    {
        use base64::Engine as _;
        if !object.get("data").is_some_and(Value::is_object) {
            object["data"] = json!({});
        }
        for (key, value) in string_data {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(value.as_str().unwrap_or(""));
            object["data"][key] = Value::String(encoded);
        }
    }
    if object
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        object["type"] = json!("Opaque");
    }
}

/// Everything but metadata, to decide whether `generation` moves.
fn without_metadata(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("apiVersion");
        map.remove("kind");
    }
    copy
}

impl State {
    pub fn new(
        resources: Vec<ResourceType>,
        history_limit: usize,
        gc: bool,
        require_namespaces: bool,
    ) -> Self {
        Self {
            resources,
            objects: BTreeMap::new(),
            // Start well above zero so that "0" (any version) is never a real version.
            rv: 1000,
            history: VecDeque::new(),
            compacted: 1000,
            history_limit,
            watchers: Vec::new(),
            next_watcher: 1,
            gc,
            require_namespaces,
        }
    }

    pub fn resource_index(&self, group: &str, plural: &str) -> Option<usize> {
        self.resources
            .iter()
            .position(|r| r.group == group && r.plural == plural)
    }

    fn resource_by_kind(&self, api_version: &str, kind: &str) -> Option<usize> {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        self.resources
            .iter()
            .position(|r| r.group == group && r.kind == kind)
    }

    fn key(&self, res: usize, namespace: &str, name: &str) -> Key {
        let ns = if self.resources[res].namespaced {
            namespace
        } else {
            ""
        };
        (res, ns.to_string(), name.to_string())
    }

    /// The object at `version` (only `apiVersion` differs between versions).
    pub fn at_version(&self, res: usize, version: &str, object: &Value) -> Value {
        let mut copy = object.clone();
        copy["apiVersion"] = json!(self.resources[res].api_version(version));
        copy["kind"] = json!(self.resources[res].kind);
        copy
    }

    pub fn get(&self, res: usize, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&self.key(res, namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&self.resources[res], name))
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Objects of `res` as they were at resourceVersion `rv`, keyed by (namespace, name).
    pub fn snapshot(
        &self,
        res: usize,
        rv: u64,
    ) -> Result<BTreeMap<(String, String), Value>, ApiError> {
        if rv > self.rv {
            return Err(ApiError::new(
                504,
                "Timeout",
                format!(
                    "Timeout: Too large resource version: {rv}, current: {}",
                    self.rv
                ),
            ));
        }
        if rv < self.compacted {
            return Err(ApiError::expired(format!(
                "too old resource version: {rv} ({})",
                self.compacted
            )));
        }
        let mut map: BTreeMap<(String, String), Value> = self
            .objects
            .range((res, String::new(), String::new())..(res + 1, String::new(), String::new()))
            .map(|((_, ns, name), v)| ((ns.clone(), name.clone()), v.clone()))
            .collect();
        for change in self.history.iter().rev() {
            if change.rv <= rv {
                break;
            }
            if change.res != res {
                continue;
            }
            let key = (
                meta_str(&change.new, "namespace").to_string(),
                meta_str(&change.new, "name").to_string(),
            );
            match (&change.kind, &change.old) {
                (ChangeKind::Added, _) => {
                    map.remove(&key);
                }
                (_, Some(old)) => {
                    map.insert(key, old.clone());
                }
                (_, None) => {}
            }
        }
        Ok(map)
    }

    /// Records a change: history, and every watch that selects the object.
    fn record(&mut self, change: Change) {
        let res = change.res;
        let mut dead = Vec::new();
        for watcher in self.watchers.iter().filter(|w| w.res == res) {
            let was = change.old.as_ref().is_some_and(|o| watcher.selects(o));
            let is = watcher.selects(&change.new);
            let kind = match change.kind {
                ChangeKind::Added if is => "ADDED",
                ChangeKind::Modified if was && is => "MODIFIED",
                ChangeKind::Modified if is => "ADDED",
                ChangeKind::Modified if was => "DELETED",
                ChangeKind::Deleted if is => "DELETED",
                _ => continue,
            };
            let object = self.at_version(res, &watcher.version, &change.new);
            if watcher.tx.send(event_line(kind, &object)).is_err() {
                dead.push(watcher.id);
            }
        }
        self.watchers.retain(|w| !dead.contains(&w.id));
        self.history.push_back(change);
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.rv;
            }
        }
    }

    /// Forgets the whole change history: every watch or list continuation from an earlier
    /// resourceVersion now fails with 410 Expired.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    /// POST: create an object. `from_client` objects must not carry a resourceVersion.
    pub fn create(
        &mut self,
        res: usize,
        namespace: &str,
        mut object: Value,
        from_client: bool,
    ) -> Result<Value, ApiError> {
        let resource = self.resources[res].clone();
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let meta = meta_mut(&mut object);
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty()
            && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
            && !prefix.is_empty()
        {
            name = format!("{prefix}{}", random_suffix());
            meta.insert("name".into(), json!(name));
        }
        if from_client
            && meta
                .get("resourceVersion")
                .and_then(Value::as_str)
                .is_some_and(|rv| !rv.is_empty())
        {
            return Err(ApiError::new(
                500,
                "InternalError",
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if resource.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        } else {
            meta.remove("namespace");
        }
        if name.is_empty() {
            return Err(ApiError::invalid(
                &resource,
                "",
                "metadata.name",
                "",
                "name or generateName is required",
            ));
        }
        validate(&resource, &object)?;
        let key = self.key(res, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&resource, &name));
        }
        if self.require_namespaces
            && resource.namespaced
            && let Some(ns_res) = self.resource_index("", "namespaces")
            && !self
                .objects
                .contains_key(&(ns_res, String::new(), namespace.to_string()))
        {
            return Err(ApiError::not_found(&self.resources[ns_res], namespace));
        }
        secret_defaults(&resource, &mut object);
        let rv = self.next_rv();
        let meta = meta_mut(&mut object);
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("managedFields");
        if resource.tracks_generation() {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        object["apiVersion"] = json!(resource.storage_api_version());
        object["kind"] = json!(resource.kind);
        self.objects.insert(key, object.clone());
        self.record(Change {
            rv,
            res,
            kind: ChangeKind::Added,
            old: None,
            new: object.clone(),
        });
        self.collect_garbage();
        Ok(object)
    }

    /// PUT: replace an object. A non-empty resourceVersion must be the current one.
    pub fn update(
        &mut self,
        res: usize,
        namespace: &str,
        name: &str,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        let resource = self.resources[res].clone();
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let key = self.key(res, namespace, name);
        let Some(existing) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(&resource, name));
        };
        let body_name = meta_str(&object, "name").to_string();
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = meta_str(&object, "namespace").to_string();
        if resource.namespaced && !body_ns.is_empty() && body_ns != namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let rv = meta_str(&object, "resourceVersion").to_string();
        if !rv.is_empty() && rv != meta_str(&existing, "resourceVersion") {
            return Err(ApiError::stale(&resource, name));
        }
        let uid = meta_str(&object, "uid").to_string();
        if !uid.is_empty() && uid != meta_str(&existing, "uid") {
            return Err(ApiError::conflict(
                &resource,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&existing, "uid")
                ),
            ));
        }
        let meta = meta_mut(&mut object);
        meta.insert("name".into(), json!(name));
        if resource.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        }
        // Server-owned fields keep their stored values.
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match existing.get("metadata").and_then(|m| m.get(field)) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        meta.remove("managedFields");
        meta.insert(
            "resourceVersion".into(),
            existing["metadata"]["resourceVersion"].clone(),
        );
        object["apiVersion"] = json!(resource.storage_api_version());
        object["kind"] = json!(resource.kind);
        validate(&resource, &object)?;
        secret_defaults(&resource, &mut object);
        if object == existing {
            // apiserver short-circuits an update that changes nothing: no new resourceVersion, no event.
            return Ok(existing);
        }
        if resource.tracks_generation() && without_metadata(&object) != without_metadata(&existing)
        {
            let generation = existing["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut object).insert("generation".into(), json!(generation));
        }
        let rv = self.next_rv();
        meta_mut(&mut object).insert("resourceVersion".into(), json!(rv.to_string()));
        let finalized = object.pointer("/metadata/deletionTimestamp").is_some()
            && object
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        self.objects.insert(key.clone(), object.clone());
        self.record(Change {
            rv,
            res,
            kind: ChangeKind::Modified,
            old: Some(existing),
            new: object.clone(),
        });
        if finalized {
            // The last finalizer is gone from an object being deleted: it goes now.
            self.remove(&key, Propagation::Background);
        }
        self.collect_garbage();
        Ok(object)
    }

    /// PATCH with a JSON merge patch or a JSON patch.
    pub fn patch(
        &mut self,
        res: usize,
        namespace: &str,
        name: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        let resource = self.resources[res].clone();
        let existing = self.get(res, namespace, name)?;
        let mut patched = existing.clone();
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/merge-patch+json" => {
                let patch: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                json_patch::merge(&mut patched, &patch);
            }
            "application/json-patch+json" => {
                let patch: json_patch::Patch = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                json_patch::patch(&mut patched, &patch).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                    )
                })?;
            }
            other => return Err(ApiError::unsupported_patch(other)),
        }
        // A resourceVersion in the patch is a precondition.
        let rv = meta_str(&patched, "resourceVersion").to_string();
        if rv.is_empty() {
            meta_mut(&mut patched).insert(
                "resourceVersion".into(),
                existing["metadata"]["resourceVersion"].clone(),
            );
        } else if rv != meta_str(&existing, "resourceVersion") {
            return Err(ApiError::stale(&resource, name));
        }
        let meta = meta_mut(&mut patched);
        meta.insert("name".into(), json!(name));
        self.update(res, namespace, name, patched)
    }

    /// DELETE one object.
    pub fn delete(
        &mut self,
        res: usize,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let resource = self.resources[res].clone();
        let key = self.key(res, namespace, name);
        let Some(existing) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(&resource, name));
        };
        if let Some(uid) = options
            .uid
            .as_deref()
            .filter(|u| *u != meta_str(&existing, "uid"))
        {
            return Err(ApiError::conflict(
                &resource,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&existing, "uid")
                ),
            ));
        }
        if let Some(rv) = options
            .resource_version
            .as_deref()
            .filter(|r| *r != meta_str(&existing, "resourceVersion"))
        {
            return Err(ApiError::conflict(
                &resource,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&existing, "resourceVersion")
                ),
            ));
        }
        let has_finalizers = existing
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if existing.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(existing);
            }
            let mut object = existing.clone();
            let rv = self.next_rv();
            let meta = meta_mut(&mut object);
            meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            self.objects.insert(key, object.clone());
            self.record(Change {
                rv,
                res,
                kind: ChangeKind::Modified,
                old: Some(existing),
                new: object.clone(),
            });
            return Ok(object);
        }
        let deleted = self.remove(&key, options.propagation);
        self.collect_garbage();
        deleted.ok_or_else(|| ApiError::not_found(&resource, name))
    }

    /// Removes an object now and records the deletion; orphans its dependents if asked.
    fn remove(&mut self, key: &Key, propagation: Propagation) -> Option<Value> {
        let existing = self.objects.remove(key)?;
        let rv = self.next_rv();
        let mut last = existing.clone();
        meta_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
        self.record(Change {
            rv,
            res: key.0,
            kind: ChangeKind::Deleted,
            old: Some(existing.clone()),
            new: last.clone(),
        });
        if propagation == Propagation::Orphan {
            let uid = meta_str(&existing, "uid").to_string();
            let dependents: Vec<Key> = self
                .objects
                .iter()
                .filter(|(_, o)| {
                    owner_refs(o)
                        .iter()
                        .any(|r| r.get("uid").and_then(Value::as_str) == Some(&uid))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for dep in dependents {
                let Some(old) = self.objects.get(&dep).cloned() else {
                    continue;
                };
                let mut new = old.clone();
                let refs: Vec<Value> = owner_refs(&old)
                    .into_iter()
                    .filter(|r| r.get("uid").and_then(Value::as_str) != Some(&uid))
                    .collect();
                let rv = self.next_rv();
                let meta = meta_mut(&mut new);
                if refs.is_empty() {
                    meta.remove("ownerReferences");
                } else {
                    meta.insert("ownerReferences".into(), Value::Array(refs));
                }
                meta.insert("resourceVersion".into(), json!(rv.to_string()));
                self.objects.insert(dep.clone(), new.clone());
                self.record(Change {
                    rv,
                    res: dep.0,
                    kind: ChangeKind::Modified,
                    old: Some(old),
                    new,
                });
            }
        }
        Some(last)
    }

    /// Whether an owner reference of an object in `namespace` points at an existing object.
    /// Owners of kinds this server does not serve cannot be checked and count as present.
    fn owner_present(&self, namespace: &str, owner: &Value) -> bool {
        let field = |f: &str| owner.get(f).and_then(Value::as_str).unwrap_or("");
        let Some(res) = self.resource_by_kind(field("apiVersion"), field("kind")) else {
            return true;
        };
        self.objects
            .get(&self.key(res, namespace, field("name")))
            .is_some_and(|o| meta_str(o, "uid") == field("uid"))
    }

    /// The garbage collector, run synchronously after every write: deletes (in the background
    /// propagation sense, so transitively) every object all of whose owners are gone.
    pub fn collect_garbage(&mut self) {
        if !self.gc {
            return;
        }
        loop {
            let orphans: Vec<Key> = self
                .objects
                .iter()
                .filter(|(_, o)| o.pointer("/metadata/deletionTimestamp").is_none())
                .filter(|((_, ns, _), o)| {
                    let refs = owner_refs(o);
                    !refs.is_empty() && refs.iter().all(|r| !self.owner_present(ns, r))
                })
                .map(|(k, _)| k.clone())
                .collect();
            if orphans.is_empty() {
                return;
            }
            for key in orphans {
                let Some(object) = self.objects.get(&key).cloned() else {
                    continue;
                };
                let has_finalizers = object
                    .pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|f| !f.is_empty());
                if has_finalizers {
                    let mut new = object.clone();
                    let rv = self.next_rv();
                    let meta = meta_mut(&mut new);
                    meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                    meta.insert("resourceVersion".into(), json!(rv.to_string()));
                    self.objects.insert(key.clone(), new.clone());
                    self.record(Change {
                        rv,
                        res: key.0,
                        kind: ChangeKind::Modified,
                        old: Some(object),
                        new,
                    });
                } else {
                    self.remove(&key, Propagation::Background);
                }
            }
        }
    }

    /// Registers a watch after sending what precedes it; `Err` ends the watch with an ERROR event.
    #[allow(clippy::too_many_arguments)]
    pub fn start_watch(
        &mut self,
        res: usize,
        version: &str,
        namespace: Option<String>,
        labels: LabelSelector,
        fields: FieldSelector,
        start: WatchStart,
        send_initial_events: bool,
        bookmarks: bool,
        tx: mpsc::UnboundedSender<Bytes>,
    ) -> Result<u64, ApiError> {
        let id = self.next_watcher;
        self.next_watcher += 1;
        let watcher = Watcher {
            id,
            res,
            version: version.to_string(),
            namespace,
            labels,
            fields,
            bookmarks,
            tx,
        };
        match start {
            WatchStart::Now => {
                let objects: Vec<Value> = self
                    .objects
                    .range(
                        (res, String::new(), String::new())
                            ..(res + 1, String::new(), String::new()),
                    )
                    .map(|(_, o)| o.clone())
                    .filter(|o| watcher.selects(o))
                    .collect();
                for object in objects {
                    let _ = watcher
                        .tx
                        .send(event_line("ADDED", &self.at_version(res, version, &object)));
                }
                if send_initial_events {
                    let _ = watcher.tx.send(self.bookmark_line(res, version, true));
                }
            }
            WatchStart::After(rv) => {
                if rv > self.rv {
                    return Err(ApiError::new(
                        504,
                        "Timeout",
                        format!(
                            "Timeout: Too large resource version: {rv}, current: {}",
                            self.rv
                        ),
                    ));
                }
                if rv < self.compacted {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        self.compacted
                    )));
                }
                for change in self.history.iter().filter(|c| c.rv > rv && c.res == res) {
                    let was = change.old.as_ref().is_some_and(|o| watcher.selects(o));
                    let is = watcher.selects(&change.new);
                    let kind = match change.kind {
                        ChangeKind::Added if is => "ADDED",
                        ChangeKind::Modified if was && is => "MODIFIED",
                        ChangeKind::Modified if is => "ADDED",
                        ChangeKind::Modified if was => "DELETED",
                        ChangeKind::Deleted if is => "DELETED",
                        _ => continue,
                    };
                    let _ = watcher.tx.send(event_line(
                        kind,
                        &self.at_version(res, version, &change.new),
                    ));
                }
            }
        }
        self.watchers.push(watcher);
        Ok(id)
    }

    /// A BOOKMARK event at the current resourceVersion.
    pub fn bookmark_line(&self, res: usize, version: &str, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({ "resourceVersion": self.rv.to_string() });
        if initial_events_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let object = json!({
            "kind": self.resources[res].kind,
            "apiVersion": self.resources[res].api_version(version),
            "metadata": metadata,
        });
        event_line("BOOKMARK", &object)
    }

    /// Sends a bookmark to every watch that allows them.
    pub fn send_bookmarks(&mut self) {
        let lines: Vec<(u64, Bytes)> = self
            .watchers
            .iter()
            .filter(|w| w.bookmarks)
            .map(|w| (w.id, self.bookmark_line(w.res, &w.version, false)))
            .collect();
        let mut dead = Vec::new();
        for (id, line) in lines {
            if let Some(w) = self.watchers.iter().find(|w| w.id == id)
                && w.tx.send(line).is_err()
            {
                dead.push(id);
            }
        }
        self.watchers.retain(|w| !dead.contains(&w.id));
    }

    /// Ends a watch (its response body finishes), with a bookmark first if it allows them.
    pub fn end_watch(&mut self, id: u64, with_bookmark: bool) {
        if let Some(pos) = self.watchers.iter().position(|w| w.id == id) {
            let watcher = self.watchers.remove(pos);
            if with_bookmark && watcher.bookmarks {
                let _ = watcher
                    .tx
                    .send(self.bookmark_line(watcher.res, &watcher.version, false));
            }
        }
    }
}

fn owner_refs(object: &Value) -> Vec<Value> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// One line of a watch response.
pub(crate) fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A watch ERROR event carrying a Status.
pub(crate) fn error_line(error: &ApiError) -> Bytes {
    event_line("ERROR", &error.status())
}
