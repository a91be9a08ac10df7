//! One mount: parameters → vault challenge → access token → version lists → object GETs → files.
//!
//! Round trips: a cold mount probes the vault (401 challenge), asks AAD/IMDS/NMI for a token and
//! then fetches every object in one concurrent batch; a warm mount (challenge and token cached
//! by the host) is the batch alone. Objects with a version history add their list pages before the
//! batch.

use secrets_store_contract::{
    ErrorKind, File, MountRequest, MountResponse, ObjectVersion, ProviderError,
};

use crate::auth::{self, AccessToken};
use crate::challenge::{self, ChallengeError, VaultChallenge};
use crate::content::{self, ContentError};
use crate::http::{self, Outcome, SleepBudget};
use crate::keyvault::{self, BodyError, VersionItem};
use crate::params::{self, AuthMode, KeyVaultObject, MountConfig, ObjectType};
use crate::{Host, HttpRequest, HttpResponse, Level, Method, TransportError};

/// A verified challenge is remembered this long per vault.
const CHALLENGE_TTL_SECS: u32 = 24 * 3600;
/// Version-list pages followed per object (Key Vault returns up to 25 versions a page).
const MAX_VERSION_PAGES: usize = 200;
/// A mount asking AAD for a token leaves a claim in the shared cache, so that mounts of the same
/// identity starting meanwhile wait for its token instead of asking too. The claim outlives a token
/// request's retries only if its mount dies; then it expires and the waiters ask themselves.
const CLAIM_TTL_SECS: u32 = 10;
const CLAIM_POLL: std::time::Duration = std::time::Duration::from_millis(10);
/// How long a mount waits for another's token: 5 s.
const CLAIM_POLLS: u32 = 500;
const POD_UID: &str = "csi.storage.k8s.io/pod.uid";

pub(crate) fn mount(
    host: &dyn Host,
    request: &MountRequest,
) -> Result<MountResponse, ProviderError> {
    let read = |path: &str| host.read_host_file(path);
    let config = params::parse_parameters(&request.attributes, &request.secrets, &read)?;
    if config.objects.is_empty() {
        host.log(Level::Info, "objects array is empty: nothing to mount");
        return Ok(MountResponse::default());
    }
    let pod_uid = request
        .attributes
        .get(POD_UID)
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let mut session = Session {
        host,
        config: &config,
        vault_url: config.vault_url(),
        vault_host: config.vault_host(),
        pod_uid,
        budget: SleepBudget::default(),
        challenge: None,
        token: None,
        token_from_cache: false,
        refreshed: false,
    };
    host.log(
        Level::Info,
        &format!(
            "mounting {} object(s) from {} with {} for pod {}/{}",
            config.objects.len(),
            session.vault_url,
            config.auth.describe(),
            config.pod_namespace,
            config.pod_name
        ),
    );
    session.run(request.default_file_mode)
}

/// One file to produce.
struct Fetch {
    object: usize,
    version: String,
    path: String,
    uid: String,
}

struct Session<'a> {
    host: &'a dyn Host,
    config: &'a MountConfig,
    vault_url: String,
    vault_host: String,
    pod_uid: String,
    budget: SleepBudget,
    challenge: Option<VaultChallenge>,
    token: Option<AccessToken>,
    /// The current token came from the cache (a 401 then warrants one fresh token).
    token_from_cache: bool,
    /// A 401 already led to a fresh token in this mount.
    refreshed: bool,
}

fn error(kind: ErrorKind, object: Option<String>, message: String) -> ProviderError {
    ProviderError {
        kind,
        object,
        message,
    }
}

/// `scheme://host[:port]` of a URL, for messages and policy hints.
fn destination(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

fn transport_error(
    object: Option<String>,
    url: &str,
    what: &str,
    e: &TransportError,
) -> ProviderError {
    let destination = destination(url);
    let message = match e {
        TransportError::Denied(reason) => {
            // The wasm host's reason is the destination itself: say it once.
            let why = if reason.is_empty() || reason == destination {
                String::new()
            } else {
                format!(" ({reason})")
            };
            format!(
                "{what}: the host's outbound policy refused the request to {destination}{why}; allow {destination} in the azure provider's policy"
            )
        }
        other => format!("{what}: could not reach {destination}: {other}"),
    };
    error(ErrorKind::Unavailable, object, message)
}

/// Printable text of an error body, bounded, for messages.
fn snippet(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    text.trim().to_string()
}

fn status_kind(status: u16, retry_after_ms: Option<u64>) -> ErrorKind {
    match status {
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        429 => ErrorKind::Throttled(retry_after_ms),
        503 if retry_after_ms.is_some() => ErrorKind::Throttled(retry_after_ms),
        503 => ErrorKind::Unavailable,
        other => ErrorKind::Upstream(other),
    }
}

impl Session<'_> {
    fn run(&mut self, default_file_mode: u32) -> Result<MountResponse, ProviderError> {
        let objects = &self.config.objects;
        let first = &objects[0];
        let probe = keyvault::object_url(
            &self.vault_url,
            first.object_type,
            &first.name,
            &first.version,
        );
        self.ensure_challenge(&probe, &first.uid())?;
        self.ensure_token()?;

        let histories = self.list_versions()?;
        let mut fetches = Vec::new();
        for (index, object) in objects.iter().enumerate() {
            if !object.history() {
                fetches.push(Fetch {
                    object: index,
                    version: object.version.clone(),
                    path: object.file_name.clone(),
                    uid: object.uid(),
                });
                continue;
            }
            let versions = histories.get(&index).map(Vec::as_slice).unwrap_or_default();
            for (position, version) in select_history(object, versions)?.into_iter().enumerate() {
                fetches.push(Fetch {
                    object: index,
                    version,
                    path: format!("{}/{position}", object.file_name),
                    uid: format!("{}/{position}", object.uid()),
                });
            }
        }

        let requests: Vec<(String, String)> = fetches
            .iter()
            .map(|f| {
                let object = &objects[f.object];
                (
                    keyvault::object_url(
                        &self.vault_url,
                        object.object_type,
                        &object.name,
                        &f.version,
                    ),
                    label(object, &f.version),
                )
            })
            .collect();
        let responses = self.send_authorized(&requests)?;

        let mut response = MountResponse::default();
        for (fetch, reply) in fetches.into_iter().zip(responses) {
            let object = &objects[fetch.object];
            let (contents, version) = self.object_content(object, &fetch.version, &reply)?;
            response.files.push(File {
                path: fetch.path,
                mode: object.file_permission.unwrap_or(default_file_mode),
                contents,
            });
            response.object_versions.push(ObjectVersion {
                id: fetch.uid,
                version,
            });
        }
        self.host.log(
            Level::Info,
            &format!(
                "mounted {} file(s) from {}",
                response.files.len(),
                self.vault_url
            ),
        );
        Ok(response)
    }

    fn object_content(
        &self,
        object: &KeyVaultObject,
        version: &str,
        reply: &HttpResponse,
    ) -> Result<(Vec<u8>, String), ProviderError> {
        let what = label(object, version);
        let body_error = |e: BodyError| {
            error(
                ErrorKind::Upstream(reply.status),
                Some(object.uid()),
                format!("{what}: {e}"),
            )
        };
        let content_error = |e: ContentError| {
            error(
                ErrorKind::InvalidParameters,
                Some(object.uid()),
                format!("{what}: {e}"),
            )
        };
        match object.object_type {
            ObjectType::Secret => {
                let bundle = keyvault::parse_secret(&reply.body).map_err(body_error)?;
                let version = keyvault::version_from_id(bundle.id.as_deref().unwrap_or_default());
                Ok((
                    content::secret_content(&bundle, object).map_err(content_error)?,
                    version,
                ))
            }
            ObjectType::Key => {
                let key = keyvault::parse_key(&reply.body).map_err(body_error)?;
                Ok((
                    content::key_content(&key).map_err(content_error)?,
                    keyvault::version_from_id(&key.kid),
                ))
            }
            ObjectType::Cert => {
                let cert = keyvault::parse_certificate(&reply.body).map_err(body_error)?;
                Ok((
                    content::certificate_content(&cert).map_err(content_error)?,
                    keyvault::version_from_id(&cert.id),
                ))
            }
        }
    }

    /// Follows the version lists of every object with a version history, all objects' pages
    /// concurrently.
    fn list_versions(
        &mut self,
    ) -> Result<std::collections::BTreeMap<usize, Vec<VersionItem>>, ProviderError> {
        let mut lists = std::collections::BTreeMap::new();
        let mut next: Vec<(usize, String)> = self
            .config
            .objects
            .iter()
            .enumerate()
            .filter(|(_, o)| o.history())
            .map(|(i, o)| {
                (
                    i,
                    keyvault::versions_url(&self.vault_url, o.object_type, &o.name),
                )
            })
            .collect();
        let mut pages = 0;
        while !next.is_empty() {
            pages += 1;
            if pages > MAX_VERSION_PAGES {
                let object = &self.config.objects[next[0].0];
                return Err(error(
                    ErrorKind::Upstream(200),
                    Some(object.uid()),
                    format!(
                        "{}: the version list has more than {MAX_VERSION_PAGES} pages",
                        object.uid()
                    ),
                ));
            }
            let requests: Vec<(String, String)> = next
                .iter()
                .map(|(i, url)| {
                    (
                        url.clone(),
                        format!("{} (version list)", self.config.objects[*i].uid()),
                    )
                })
                .collect();
            let responses = self.send_authorized(&requests)?;
            let mut following = Vec::new();
            for ((index, _), reply) in next.iter().zip(responses) {
                let object = &self.config.objects[*index];
                let page = keyvault::parse_version_page(&reply.body).map_err(|e| {
                    error(
                        ErrorKind::Upstream(reply.status),
                        Some(object.uid()),
                        format!("{} (version list): {e}", object.uid()),
                    )
                })?;
                lists
                    .entry(*index)
                    .or_insert_with(Vec::new)
                    .extend(page.items);
                if let Some(link) = page.next_link {
                    if !same_vault(&link, &self.vault_host) {
                        return Err(error(
                            ErrorKind::Upstream(200),
                            Some(object.uid()),
                            format!(
                                "{} (version list): Key Vault's nextLink points outside the vault ({})",
                                object.uid(),
                                destination(&link)
                            ),
                        ));
                    }
                    following.push((*index, link));
                }
            }
            next = following;
        }
        Ok(lists)
    }

    fn ensure_challenge(
        &mut self,
        probe_url: &str,
        probe_label: &str,
    ) -> Result<(), ProviderError> {
        if self.challenge.is_some() {
            return Ok(());
        }
        let key = auth::challenge_cache_key(&self.vault_host);
        if let Some(cached) = self
            .host
            .cache_get(&key)
            .and_then(|b| serde_json::from_slice::<VaultChallenge>(&b).ok())
        {
            // The cache is only as trustworthy as the host: check the domain again.
            let header = format!("Bearer scope=\"{}\"", cached.scope);
            if challenge::verify([header.as_str()], &self.vault_host).is_ok() {
                self.host.log(
                    Level::Debug,
                    &format!("using the cached challenge of {}", self.vault_host),
                );
                self.challenge = Some(cached);
                return Ok(());
            }
            self.host.cache_remove(&key);
        }
        let probe = HttpRequest {
            method: Method::Get,
            url: probe_url.to_string(),
            headers: vec![("Accept".to_string(), "application/json".to_string())],
            body: Vec::new(),
        };
        let outcome =
            http::send_with_retries(self.host, &mut self.budget, std::slice::from_ref(&probe))
                .pop();
        let reply = match outcome {
            Some(Ok(reply)) => reply,
            Some(Err(e)) => {
                return Err(transport_error(
                    Some(probe_label.to_string()),
                    probe_url,
                    probe_label,
                    &e,
                ));
            }
            None => {
                return Err(error(
                    ErrorKind::Internal,
                    None,
                    "the host returned no response".to_string(),
                ));
            }
        };
        if reply.status != 401 {
            if (200..300).contains(&reply.status) {
                return Err(error(
                    ErrorKind::Upstream(reply.status),
                    Some(probe_label.to_string()),
                    format!(
                        "{} answered an unauthenticated request with HTTP {} instead of a bearer challenge",
                        self.vault_url, reply.status
                    ),
                ));
            }
            return Err(self.reply_error(probe_label, &reply));
        }
        let challenge = verify_reply(&reply, &self.vault_host).map_err(|e| {
            error(
                ErrorKind::Unauthenticated,
                Some(probe_label.to_string()),
                format!("{}: {e}", self.vault_url),
            )
        })?;
        if let Ok(value) = serde_json::to_vec(&challenge) {
            self.host.cache_set(&key, &value, CHALLENGE_TTL_SECS);
        }
        self.challenge = Some(challenge);
        Ok(())
    }

    fn token_key(&self) -> Option<String> {
        let scope = &self.challenge.as_ref()?.scope;
        auth::token_cache_key(self.config, &self.pod_uid, scope)
    }

    fn ensure_token(&mut self) -> Result<(), ProviderError> {
        if self.token.is_some() {
            return Ok(());
        }
        let Some(challenge) = self.challenge.clone() else {
            return Err(error(
                ErrorKind::Internal,
                None,
                "no vault challenge before the token request".to_string(),
            ));
        };
        let key = self.token_key();
        // After a rejection the cached token is not trusted again in this mount.
        let trust_cache = !self.refreshed;
        let cached = match key.as_deref() {
            Some(k) if trust_cache => self.cached_token(k).or_else(|| self.token_from_peer(k)),
            _ => None,
        };
        if let Some(token) = cached {
            self.host.log(
                Level::Debug,
                &format!("using a cached {} token", self.config.auth.describe()),
            );
            self.token = Some(token);
            self.token_from_cache = true;
            return Ok(());
        }
        let claim = key.as_deref().map(claim_key);
        if let Some(claim) = &claim {
            self.host.cache_set(claim, b"pending", CLAIM_TTL_SECS);
        }
        let acquired = self.acquire_token(&challenge);
        // Released once the token is stored, or at once on failure (the waiters then ask themselves).
        if let (Some(claim), Err(_)) = (&claim, &acquired) {
            self.host.cache_remove(claim);
        }
        let token = acquired?;
        let ttl = token.cache_ttl(self.host.now_unix_secs());
        if let (Some(key), true, Ok(value)) = (&key, ttl > 0, serde_json::to_vec(&token)) {
            self.host
                .cache_set(key, &value, u32::try_from(ttl).unwrap_or(u32::MAX));
        }
        if let Some(claim) = &claim {
            self.host.cache_remove(claim);
        }
        self.token = Some(token);
        self.token_from_cache = false;
        Ok(())
    }

    /// A still-valid token of this identity from the shared cache.
    fn cached_token(&self, key: &str) -> Option<AccessToken> {
        let now = self.host.now_unix_secs();
        self.host
            .cache_get(key)
            .and_then(|b| serde_json::from_slice::<AccessToken>(&b).ok())
            .filter(|t| t.cache_ttl(now) > 0)
    }

    /// When another mount of this identity is asking AAD right now, its token once it is stored.
    fn token_from_peer(&self, key: &str) -> Option<AccessToken> {
        let claim = claim_key(key);
        // No claim: nobody is asking.
        self.host.cache_get(&claim)?;
        self.host.log(
            Level::Debug,
            &format!(
                "waiting for the {} token another mount is requesting",
                self.config.auth.describe()
            ),
        );
        for _ in 0..CLAIM_POLLS {
            self.host.sleep(CLAIM_POLL);
            if let Some(token) = self.cached_token(key) {
                return Some(token);
            }
            // Released without a token: that request failed.
            self.host.cache_get(&claim)?;
        }
        None
    }

    fn acquire_token(&mut self, challenge: &VaultChallenge) -> Result<AccessToken, ProviderError> {
        let mode = self.config.auth.describe();
        let request = auth::token_request(self.config, challenge);
        let url = request.url.clone();
        let what = format!("{mode} token request");
        let reply = match http::send_with_retries(
            self.host,
            &mut self.budget,
            std::slice::from_ref(&request),
        )
        .pop()
        {
            Some(Ok(reply)) => reply,
            Some(Err(e)) => return Err(transport_error(None, &url, &what, &e)),
            None => {
                return Err(error(
                    ErrorKind::Internal,
                    None,
                    "the host returned no response".to_string(),
                ));
            }
        };
        let now = self.host.now_unix_secs();
        if reply.status == 200 {
            let parsed = match self.config.auth {
                AuthMode::PodIdentity => auth::parse_nmi_response(&reply.body),
                _ => auth::parse_token_response(&reply.body, now),
            };
            return parsed.map_err(|e| {
                error(
                    ErrorKind::Unauthenticated,
                    None,
                    format!("{what} to {}: {e}", destination(&url)),
                )
            });
        }
        let retry_after = http::server_delay(&reply, now).map(|d| d.as_millis() as u64);
        let kind = match reply.status {
            400 | 401 | 403 | 404 => ErrorKind::Unauthenticated,
            status => status_kind(status, retry_after),
        };
        let message = match self.config.auth {
            AuthMode::PodIdentity => format!(
                "{what}: nmi response failed with status code: {}, response body: {}",
                reply.status,
                snippet(&reply.body)
            ),
            _ => format!(
                "{what} to {} failed with HTTP {}: {}",
                destination(&url),
                reply.status,
                auth::parse_aad_error(&reply.body).unwrap_or_else(|| snippet(&reply.body))
            ),
        };
        Err(error(kind, None, message))
    }

    fn reply_error(&self, what: &str, reply: &HttpResponse) -> ProviderError {
        let retry_after =
            http::server_delay(reply, self.host.now_unix_secs()).map(|d| d.as_millis() as u64);
        let detail = match keyvault::parse_error(&reply.body) {
            Some(e) if !e.code.is_empty() || !e.message.is_empty() => {
                format!("{}: {}", e.code, e.message)
            }
            _ => snippet(&reply.body),
        };
        let object = what.split(' ').next().map(str::to_string);
        error(
            status_kind(reply.status, retry_after),
            object,
            format!(
                "{what}: {} answered HTTP {}: {detail}",
                self.vault_url, reply.status
            ),
        )
    }

    /// Sends authorized GETs (URL, label) concurrently; on a 401 gets one fresh token and
    /// resends the rejected requests. Returns the successful responses in order, or the error of
    /// the first request (in input order) that failed.
    fn send_authorized(
        &mut self,
        requests: &[(String, String)],
    ) -> Result<Vec<HttpResponse>, ProviderError> {
        let mut outcomes = self.send_with_token(requests.iter().map(|(url, _)| url.as_str()))?;
        let rejected: Vec<usize> = (0..outcomes.len())
            .filter(|i| matches!(&outcomes[*i], Ok(reply) if reply.status == 401))
            .collect();
        if let Some(first) = rejected.first().copied() {
            let renewed = match &outcomes[first] {
                Ok(reply) => verify_reply(reply, &self.vault_host).ok(),
                Err(_) => None,
            };
            let challenge_changed = renewed
                .as_ref()
                .is_some_and(|c| Some(&c.scope) != self.challenge.as_ref().map(|c| &c.scope));
            if !self.refreshed && (self.token_from_cache || challenge_changed) {
                self.host.log(
                    Level::Info,
                    "Key Vault rejected the access token; getting a fresh one",
                );
                self.refreshed = true;
                if let Some(key) = self.token_key() {
                    self.host.cache_remove(&key);
                }
                if let (Some(renewed), true) = (renewed, challenge_changed) {
                    if let Ok(value) = serde_json::to_vec(&renewed) {
                        self.host.cache_set(
                            &auth::challenge_cache_key(&self.vault_host),
                            &value,
                            CHALLENGE_TTL_SECS,
                        );
                    }
                    self.challenge = Some(renewed);
                }
                self.token = None;
                self.ensure_token()?;
                let retried =
                    self.send_with_token(rejected.iter().map(|i| requests[*i].0.as_str()))?;
                for (index, outcome) in rejected.iter().zip(retried) {
                    outcomes[*index] = outcome;
                }
            }
        }
        let mut replies = Vec::with_capacity(outcomes.len());
        for ((url, what), outcome) in requests.iter().zip(outcomes) {
            match outcome {
                Ok(reply) if (200..300).contains(&reply.status) => replies.push(reply),
                Ok(reply) => return Err(self.reply_error(what, &reply)),
                Err(e) => {
                    let object = what.split(' ').next().map(str::to_string);
                    return Err(transport_error(object, url, what, &e));
                }
            }
        }
        Ok(replies)
    }

    fn send_with_token<'u>(
        &mut self,
        urls: impl Iterator<Item = &'u str>,
    ) -> Result<Vec<Outcome>, ProviderError> {
        let Some(token) = self.token.as_ref() else {
            return Err(error(
                ErrorKind::Internal,
                None,
                "no access token".to_string(),
            ));
        };
        let authorization = format!("Bearer {}", token.token);
        let user_agent = format!("secrets-store-wasm-azure/{}", env!("CARGO_PKG_VERSION"));
        let requests: Vec<HttpRequest> = urls
            .map(|url| HttpRequest {
                method: Method::Get,
                url: url.to_string(),
                headers: vec![
                    ("Authorization".to_string(), authorization.clone()),
                    ("Accept".to_string(), "application/json".to_string()),
                    ("User-Agent".to_string(), user_agent.clone()),
                ],
                body: Vec::new(),
            })
            .collect();
        Ok(http::send_with_retries(
            self.host,
            &mut self.budget,
            &requests,
        ))
    }
}

/// `secret/name` or `secret/name@version`, for messages.
fn label(object: &KeyVaultObject, version: &str) -> String {
    if version.is_empty() {
        object.uid()
    } else {
        format!("{} (version {version})", object.uid())
    }
}

fn verify_reply(reply: &HttpResponse, vault_host: &str) -> Result<VaultChallenge, ChallengeError> {
    let values = reply
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str());
    challenge::verify(values, vault_host)
}

/// Whether a nextLink stays on the vault (`https://{vault}[:443]/…`).
fn same_vault(link: &str, vault_host: &str) -> bool {
    let Some(rest) = link.strip_prefix("https://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.strip_suffix(":443").unwrap_or(authority);
    host.eq_ignore_ascii_case(vault_host)
        && !link.bytes().any(|b| b.is_ascii_control() || b == b' ')
}

/// The versions written for an object with `objectVersionHistory: N`: its enabled versions
/// newest first (by creation time; ties keep Key Vault's order), starting at the requested
/// version, at most N of them.
///
/// Upstream's loop appends one more entry than asked for (`name/0` … `name/N`) when enough
/// versions exist; this provider writes exactly N, as upstream documents.
fn select_history(
    object: &KeyVaultObject,
    versions: &[VersionItem],
) -> Result<Vec<String>, ProviderError> {
    let mut sorted: Vec<&VersionItem> = versions.iter().collect();
    sorted.sort_by_key(|v| std::cmp::Reverse(v.created));
    let start = if object.version.is_empty() {
        0
    } else {
        sorted
            .iter()
            .position(|v| v.version == object.version)
            .ok_or_else(|| {
                error(
                    ErrorKind::NotFound,
                    Some(object.uid()),
                    format!(
                        "{}: version {} is not among the object's enabled versions",
                        object.uid(),
                        object.version
                    ),
                )
            })?
    };
    let count = usize::try_from(object.version_history).unwrap_or(0);
    let selected: Vec<String> = sorted
        .iter()
        .skip(start)
        .take(count)
        .map(|v| v.version.clone())
        .collect();
    if selected.is_empty() {
        return Err(error(
            ErrorKind::NotFound,
            Some(object.uid()),
            format!("{} has no enabled versions", object.uid()),
        ));
    }
    Ok(selected)
}

/// The cache key of the claim on a token request, beside the token's own key.
fn claim_key(token_key: &str) -> String {
    format!("{token_key}#claim")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(
            destination("https://kv.vault.azure.net/secrets/x?api-version=7.4"),
            "https://kv.vault.azure.net"
        );
        assert_eq!(
            destination("http://localhost:2579/host/token/?resource=x"),
            "http://localhost:2579"
        );
        assert_eq!(destination("weird"), "weird");
    }

    #[test]
    fn next_links_must_stay_on_the_vault() {
        assert!(same_vault(
            "https://kv.vault.azure.net:443/secrets/s/versions?x=1",
            "kv.vault.azure.net"
        ));
        assert!(same_vault(
            "https://KV.vault.azure.net/secrets/s/versions",
            "kv.vault.azure.net"
        ));
        assert!(!same_vault(
            "https://kv.vault.azure.net.evil.com/x",
            "kv.vault.azure.net"
        ));
        assert!(!same_vault(
            "http://kv.vault.azure.net/x",
            "kv.vault.azure.net"
        ));
        assert!(!same_vault(
            "https://kv.vault.azure.net:8443/x",
            "kv.vault.azure.net"
        ));
    }
}
