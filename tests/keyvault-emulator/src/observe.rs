//! Observation: a bounded request log and counters, both resettable. Entries carry method, host, path,
//! status, whether a valid token was presented and whose it was; never secret values, tokens or
//! credentials (token request bodies are not logged at all).

use parking_lot::{Mutex, MutexGuard};
use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::faults::RequestClass;
use crate::token::TokenKind;

/// What the caller presented as `Authorization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPresence {
    /// No bearer token (or not applicable, e.g. a token request).
    Absent,
    /// A token this emulator issued, unexpired, for this vault's audience and tenant.
    Valid,
    /// Any other token: expired, foreign, wrong audience or tenant, malformed.
    Invalid,
}

/// One request as the emulator saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub seq: u64,
    pub unix_ms: u128,
    pub method: String,
    pub host: String,
    /// Path and query (queries carry no credentials on the routes served).
    pub path: String,
    pub class: RequestClass,
    /// `None` when the connection was dropped without an answer.
    pub status: Option<u16>,
    pub token: TokenPresence,
    /// Client id of the caller (from its valid token, or of the identity a token was issued to).
    pub identity: Option<String>,
    /// The injected fault, if any (`throttle`, `server_error`, `drop`).
    pub fault: Option<String>,
}

/// Counters since start or the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Successful token issuances by flow.
    pub tokens_issued: BTreeMap<TokenKind, u64>,
    /// Token requests by endpoint: `aad`, `imds`, `nmi` (including failures).
    pub token_requests: BTreeMap<String, u64>,
    /// Token requests that were refused.
    pub token_failures: u64,
    /// AAD discovery requests (OpenID configuration, instance discovery).
    pub discovery_requests: u64,
    /// Every data-plane `GET`, answered or not.
    pub data_plane_gets: u64,
    /// Every other data-plane request.
    pub data_plane_writes: u64,
    /// 401 challenges sent by the data plane.
    pub challenges: u64,
    /// 403 answers by the data plane (access list or disabled object).
    pub forbidden: u64,
    /// 404 answers by the data plane.
    pub not_found: u64,
    /// Injected 429s, 5xx and dropped connections.
    pub throttled: u64,
    pub server_errors: u64,
    pub dropped: u64,
    /// Authenticated data-plane `GET`s per object, keyed `vault/secrets/name` (lower case).
    pub gets_per_object: BTreeMap<String, u64>,
}

impl Counters {
    pub fn tokens(&self, kind: TokenKind) -> u64 {
        self.tokens_issued.get(&kind).copied().unwrap_or(0)
    }

    pub fn token_requests_for(&self, endpoint: &str) -> u64 {
        self.token_requests.get(endpoint).copied().unwrap_or(0)
    }

    pub fn gets_of(&self, vault: &str, collection: &str, name: &str) -> u64 {
        self.gets_per_object
            .get(&format!("{vault}/{collection}/{name}").to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }
}

struct Inner {
    log: VecDeque<LogEntry>,
    next_seq: u64,
    counters: Counters,
}

pub struct Observer {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Observer {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                log: VecDeque::new(),
                next_seq: 0,
                counters: Counters::default(),
            }),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    pub fn record(&self, mut entry: LogEntry) {
        let mut g = self.lock();
        entry.seq = g.next_seq;
        g.next_seq += 1;
        if g.log.len() == self.capacity {
            g.log.pop_front();
        }
        g.log.push_back(entry);
    }

    pub fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.lock().counters);
    }

    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    pub fn log(&self) -> Vec<LogEntry> {
        self.lock().log.iter().cloned().collect()
    }

    pub fn reset(&self) {
        let mut g = self.lock();
        g.log.clear();
        g.counters = Counters::default();
    }
}
