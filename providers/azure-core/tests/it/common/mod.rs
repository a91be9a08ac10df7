//! A fake `Host` that answers like Key Vault, AAD, IMDS and NMI: scripted responses, a fake clock,
//! a TTL cache, recorded batches, recorded sleeps (nothing really sleeps).
#![allow(dead_code, clippy::unwrap_used)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use secrets_store_azure_core::{
    Host, HostFileError, HttpRequest, HttpResponse, Level, Method, MountRequest, TransportError,
};
use serde_json::{Value, json};

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const START: u64 = 1_700_000_000;

/// One version of a Key Vault object.
#[derive(Clone, Debug)]
pub struct Version {
    pub version: String,
    /// The bundle without `id`/`kid` (filled in per request).
    pub bundle: Value,
    pub enabled: bool,
    pub created: i64,
    /// Include `attributes` in version listings.
    pub attributes: bool,
}

/// What a scripted response replaces.
pub struct Script {
    pub url_contains: String,
    pub remaining: usize,
    pub reply: Box<dyn Fn() -> Result<HttpResponse, TransportError>>,
}

pub struct FakeAzure {
    /// collection ("secrets"/"keys"/"certificates") → name → versions in creation order.
    pub objects: BTreeMap<(String, String), Vec<Version>>,
    /// Service principals AAD knows: client id → secret.
    pub service_principals: HashMap<String, String>,
    pub valid_tokens: HashSet<String>,
    /// token → the identity it was issued to.
    pub issued: Vec<(String, String)>,
    pub token_lifetime: u64,
    pub page_size: usize,
    /// Overrides the challenge resource (default `https://` + the vault host's DNS suffix).
    pub challenge_header: Option<String>,
    pub scripts: Vec<Script>,
    /// Where `nextLink`s point (default: the vault itself, with `:443`).
    pub next_link_host: Option<String>,
}

impl Default for FakeAzure {
    fn default() -> Self {
        let mut service_principals = HashMap::new();
        service_principals.insert("sp-client".to_string(), "s3cr3t-value".to_string());
        Self {
            objects: BTreeMap::new(),
            service_principals,
            valid_tokens: HashSet::new(),
            issued: Vec::new(),
            token_lifetime: 3600,
            page_size: 25,
            challenge_header: None,
            scripts: Vec::new(),
            next_link_host: None,
        }
    }
}

pub fn json_response(status: u16, body: Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![(
            "Content-Type".to_string(),
            "application/json; charset=utf-8".to_string(),
        )],
        body: serde_json::to_vec(&body).unwrap(),
    }
}

pub fn kv_error(status: u16, code: &str, message: &str) -> HttpResponse {
    json_response(status, json!({"error": {"code": code, "message": message}}))
}

fn form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn query(url: &str) -> HashMap<String, String> {
    url.split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect()
        })
        .unwrap_or_default()
}

impl FakeAzure {
    pub fn add(
        &mut self,
        collection: &str,
        name: &str,
        version: &str,
        bundle: Value,
        created: i64,
    ) {
        self.objects
            .entry((collection.to_string(), name.to_string()))
            .or_default()
            .push(Version {
                version: version.to_string(),
                bundle,
                enabled: true,
                created,
                attributes: true,
            });
    }

    pub fn add_secret(&mut self, name: &str, version: &str, value: &str) {
        let created = START as i64 - 1000 + self.objects.len() as i64;
        self.add(
            "secrets",
            name,
            version,
            json!({"value": value, "attributes": {"enabled": true}}),
            created,
        );
    }

    pub fn script(
        &mut self,
        url_contains: &str,
        times: usize,
        reply: impl Fn() -> Result<HttpResponse, TransportError> + 'static,
    ) {
        self.scripts.push(Script {
            url_contains: url_contains.to_string(),
            remaining: times,
            reply: Box::new(reply),
        });
    }

    fn issue(&mut self, identity: String) -> String {
        let token = format!("tok-{}", self.issued.len() + 1);
        self.valid_tokens.insert(token.clone());
        self.issued.push((token.clone(), identity));
        token
    }

    pub fn revoke_all(&mut self) {
        self.valid_tokens.clear();
    }

    fn challenge(&self, host: &str) -> String {
        if let Some(header) = &self.challenge_header {
            return header.clone();
        }
        let suffix = host.split_once('.').map(|(_, s)| s).unwrap_or(host);
        format!(
            r#"Bearer authorization="https://login.windows.net/{TENANT}", resource="https://{suffix}""#
        )
    }

    pub fn handle(
        &mut self,
        request: &HttpRequest,
        now: u64,
    ) -> Result<HttpResponse, TransportError> {
        if let Some(index) = self
            .scripts
            .iter()
            .position(|s| s.remaining > 0 && request.url.contains(&s.url_contains))
        {
            self.scripts[index].remaining -= 1;
            return (self.scripts[index].reply)();
        }
        let url = request.url.as_str();
        if url.starts_with("https://login.") {
            return Ok(self.aad(request));
        }
        if url.starts_with("http://169.254.169.254/metadata/identity/oauth2/token?") {
            assert_eq!(request.method, Method::Get);
            if request.header("Metadata") != Some("true") {
                return Ok(json_response(
                    400,
                    json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
                ));
            }
            let q = query(url);
            let identity = format!(
                "mi:{}:{}",
                q.get("client_id").map(String::as_str).unwrap_or("system"),
                q["resource"]
            );
            let token = self.issue(identity);
            let expires_on = now + self.token_lifetime;
            return Ok(json_response(
                200,
                json!({"access_token": token, "expires_in": self.token_lifetime.to_string(), "expires_on": expires_on.to_string(),
                       "resource": q["resource"], "token_type": "Bearer"}),
            ));
        }
        if url.starts_with("http://localhost:2579/host/token/?resource=") {
            let (ns, pod) = (
                request.header("podns").unwrap_or_default(),
                request.header("podname").unwrap_or_default(),
            );
            let resource = url.split_once("?resource=").unwrap().1.to_string();
            let token = self.issue(format!("pi:{ns}/{pod}:{resource}"));
            return Ok(json_response(
                200,
                json!({"token": {"access_token": token, "expires_on": (now + self.token_lifetime).to_string(), "resource": resource}, "clientid": "nmi-client"}),
            ));
        }
        if let Some(rest) = url.strip_prefix("https://") {
            let host = rest.split(['/', ':']).next().unwrap().to_string();
            if host.contains(".vault.") {
                return Ok(self.vault(&host, request));
            }
        }
        Err(TransportError::Connect(format!("no route to {url}")))
    }

    fn aad(&mut self, request: &HttpRequest) -> HttpResponse {
        assert_eq!(request.method, Method::Post);
        assert_eq!(
            request.header("Content-Type"),
            Some("application/x-www-form-urlencoded")
        );
        let f = form(&request.body);
        assert_eq!(f["grant_type"], "client_credentials");
        let client_id = f["client_id"].clone();
        let identity = if let Some(assertion) = f.get("client_assertion") {
            assert_eq!(
                f["client_assertion_type"],
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            );
            if assertion.starts_with("bad") {
                return json_response(
                    400,
                    json!({"error": "invalid_client", "error_description": "AADSTS700211: No matching federated identity record found."}),
                );
            }
            format!("wi:{client_id}:{assertion}:{}", f["scope"])
        } else {
            let secret = &f["client_secret"];
            if self.service_principals.get(&client_id) != Some(secret) {
                return json_response(
                    401,
                    json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1"}),
                );
            }
            format!("sp:{client_id}:{secret}:{}", f["scope"])
        };
        let token = self.issue(identity);
        json_response(
            200,
            json!({"token_type": "Bearer", "expires_in": self.token_lifetime, "ext_expires_in": self.token_lifetime, "access_token": token}),
        )
    }

    fn vault(&mut self, host: &str, request: &HttpRequest) -> HttpResponse {
        assert_eq!(request.method, Method::Get);
        let authorized = request
            .header("Authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| self.valid_tokens.contains(t));
        if !authorized {
            let mut reply = kv_error(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
            );
            reply
                .headers
                .push(("WWW-Authenticate".to_string(), self.challenge(host)));
            return reply;
        }
        let q = query(&request.url);
        assert_eq!(q["api-version"], "7.4");
        let path = request
            .url
            .split("://")
            .nth(1)
            .unwrap()
            .split_once('/')
            .unwrap()
            .1
            .split('?')
            .next()
            .unwrap();
        let segments: Vec<String> = path.split('/').map(decode).collect();
        let collection = segments[0].clone();
        let name = segments.get(1).cloned().unwrap_or_default();
        let Some(versions) = self.objects.get(&(collection.clone(), name.clone())) else {
            let code = match collection.as_str() {
                "secrets" => "SecretNotFound",
                "keys" => "KeyNotFound",
                _ => "CertificateNotFound",
            };
            return kv_error(
                404,
                code,
                &format!("A {collection} with (name/id) {name} was not found in this key vault."),
            );
        };
        let base = format!("https://{host}/{collection}/{name}");
        if segments.get(2).map(String::as_str) == Some("versions") {
            let skip: usize = q.get("$skiptoken").map(|s| s.parse().unwrap()).unwrap_or(0);
            let page: Vec<Value> = versions
                .iter()
                .skip(skip)
                .take(self.page_size)
                .map(|v| {
                    let id_field = if collection == "keys" { "kid" } else { "id" };
                    let mut item = json!({ id_field: format!("{base}/{}", v.version) });
                    if v.attributes {
                        item["attributes"] = json!({"enabled": v.enabled, "created": v.created});
                    }
                    item
                })
                .collect();
            let next = (skip + self.page_size < versions.len()).then(|| {
                let link_host = self.next_link_host.clone().unwrap_or(format!("{host}:443"));
                format!("https://{link_host}/{collection}/{name}/versions?api-version=7.4&$skiptoken={}&maxresults={}", skip + self.page_size, self.page_size)
            });
            return json_response(200, json!({"value": page, "nextLink": next}));
        }
        let wanted = segments.get(2).cloned().unwrap_or_default();
        let found = if wanted.is_empty() {
            versions.iter().rev().find(|v| v.enabled)
        } else {
            versions.iter().find(|v| v.version == wanted)
        };
        let Some(v) = found else {
            return kv_error(
                404,
                "NotFound",
                &format!("version {wanted} of {name} was not found"),
            );
        };
        if !v.enabled {
            return kv_error(
                403,
                "Forbidden",
                &format!("Operation get is not allowed on a disabled {collection}."),
            );
        }
        let mut bundle = v.bundle.clone();
        let id = format!("{base}/{}", v.version);
        if collection == "keys" {
            bundle["key"]["kid"] = json!(id);
        } else {
            bundle["id"] = json!(id);
        }
        json_response(200, bundle)
    }
}

pub struct FakeHost {
    pub azure: RefCell<FakeAzure>,
    pub batches: RefCell<Vec<Vec<HttpRequest>>>,
    pub cache: RefCell<HashMap<String, (Vec<u8>, u64)>>,
    pub cache_sets: RefCell<Vec<(String, u32)>>,
    pub now: Cell<u64>,
    pub sleeps: RefCell<Vec<Duration>>,
    pub files: HashMap<String, Vec<u8>>,
    pub logs: RefCell<Vec<(Level, String)>>,
    /// Destinations (`scheme://host[:port]`) the outbound policy refuses.
    pub denied: Vec<String>,
    pub random: Cell<u64>,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self {
            azure: RefCell::new(FakeAzure::default()),
            batches: RefCell::new(Vec::new()),
            cache: RefCell::new(HashMap::new()),
            cache_sets: RefCell::new(Vec::new()),
            now: Cell::new(START),
            sleeps: RefCell::new(Vec::new()),
            files: HashMap::new(),
            logs: RefCell::new(Vec::new()),
            denied: Vec::new(),
            random: Cell::new(0),
        }
    }
}

impl FakeHost {
    /// All requests sent so far, flattened.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.batches.borrow().iter().flatten().cloned().collect()
    }

    pub fn batch_urls(&self) -> Vec<Vec<String>> {
        self.batches
            .borrow()
            .iter()
            .map(|b| b.iter().map(|r| r.url.clone()).collect())
            .collect()
    }

    pub fn reset_records(&self) {
        self.batches.borrow_mut().clear();
        self.sleeps.borrow_mut().clear();
    }

    pub fn token_requests(&self) -> Vec<HttpRequest> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r.url.starts_with("https://login.")
                    || r.url.contains("169.254.169.254")
                    || r.url.contains("localhost:2579")
            })
            .collect()
    }
}

impl Host for FakeHost {
    fn send_all(&self, requests: Vec<HttpRequest>) -> Vec<Result<HttpResponse, TransportError>> {
        self.batches.borrow_mut().push(requests.clone());
        let now = self.now.get();
        requests
            .iter()
            .map(|r| {
                let end = r.url.find("://").map(|i| i + 3).unwrap_or(0);
                let end = r.url[end..]
                    .find(['/', '?'])
                    .map(|i| i + end)
                    .unwrap_or(r.url.len());
                if self.denied.iter().any(|d| *d == r.url[..end]) {
                    return Err(TransportError::Denied(format!(
                        "{} is not in the allow-list",
                        &r.url[..end]
                    )));
                }
                self.azure.borrow_mut().handle(r, now)
            })
            .collect()
    }

    fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
        let cache = self.cache.borrow();
        let (value, expires) = cache.get(key)?;
        (*expires > self.now.get()).then(|| value.clone())
    }

    fn cache_set(&self, key: &str, value: &[u8], ttl_secs: u32) {
        assert!(ttl_secs > 0, "zero TTL for {key}");
        self.cache_sets
            .borrow_mut()
            .push((key.to_string(), ttl_secs));
        self.cache.borrow_mut().insert(
            key.to_string(),
            (value.to_vec(), self.now.get() + u64::from(ttl_secs)),
        );
    }

    fn cache_remove(&self, key: &str) {
        self.cache.borrow_mut().remove(key);
    }

    fn read_host_file(&self, path: &str) -> Result<Vec<u8>, HostFileError> {
        self.files.get(path).cloned().ok_or_else(|| {
            HostFileError(format!("{path} is not in the provider's host-files policy"))
        })
    }

    fn now_unix_secs(&self) -> u64 {
        self.now.get()
    }

    fn sleep(&self, duration: Duration) {
        self.sleeps.borrow_mut().push(duration);
        self.now.set(self.now.get() + duration.as_secs());
    }

    fn random_u64(&self) -> u64 {
        self.random.get()
    }

    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}

/// A request with the given attributes (pod info filled in unless given) and secrets.
pub fn request(attributes: &[(&str, &str)], secrets: &[(&str, &str)]) -> MountRequest {
    let mut attrs: BTreeMap<String, String> = [
        ("csi.storage.k8s.io/pod.name", "app-0"),
        ("csi.storage.k8s.io/pod.namespace", "default"),
        ("csi.storage.k8s.io/pod.uid", "uid-1"),
        ("csi.storage.k8s.io/serviceAccount.name", "app-sa"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in attributes {
        attrs.insert(k.to_string(), v.to_string());
    }
    MountRequest {
        attributes: attrs,
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        default_file_mode: 0o644,
        current_object_versions: Vec::new(),
    }
}

pub const SP_SECRETS: &[(&str, &str)] =
    &[("clientid", "sp-client"), ("clientsecret", "s3cr3t-value")];

/// The `objects` parameter for simple objects: (name, type, extra YAML lines).
pub fn objects(items: &[(&str, &str, &str)]) -> String {
    let mut out = String::from("array:\n");
    for (name, object_type, extra) in items {
        out.push_str(&format!(
            "  - |\n    objectName: {name}\n    objectType: {object_type}\n"
        ));
        for line in extra.lines().filter(|l| !l.is_empty()) {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

/// A service-principal mount of `objects` from vault `kv1` in the public cloud.
pub fn sp_request(objects_yaml: &str) -> MountRequest {
    request(
        &[
            ("keyvaultName", "kv1"),
            ("tenantID", TENANT),
            ("objects", objects_yaml),
        ],
        SP_SECRETS,
    )
}

pub fn sa_tokens(token: &str) -> String {
    json!({"api://AzureADTokenExchange": {"token": token, "expirationTimestamp": "2099-01-01T00:00:00Z"}}).to_string()
}
