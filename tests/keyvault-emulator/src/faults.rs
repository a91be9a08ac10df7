//! Fault injection: latency, throttling (429 + `Retry-After`), server errors and dropped connections,
//! drawn from one seeded RNG so a fixed seed and the same request sequence give the same faults, plus
//! deterministic one-shot faults ("the next N data-plane requests answer 429").

use parking_lot::{Mutex, MutexGuard};
use std::collections::VecDeque;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

/// What a request is, for routing faults and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestClass {
    /// `GET` on a vault host.
    DataPlaneGet,
    /// Any other method on a vault host.
    DataPlaneWrite,
    /// `POST …/oauth2/(v2.0/)token` on an AAD host.
    AadToken,
    /// OpenID configuration, instance discovery and keys on an AAD host.
    AadDiscovery,
    /// IMDS `/metadata/identity/oauth2/token`.
    Imds,
    /// NMI `/host/token/`.
    Nmi,
    /// `/_emulator/…` control requests (never faulted).
    Admin,
    /// Anything the emulator does not serve.
    Unknown,
}

/// Which requests a fault rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FaultScope {
    /// Data-plane `GET`s only.
    DataPlaneGet,
    /// Every data-plane request.
    DataPlane,
    /// AAD token requests.
    Token,
    /// IMDS token requests.
    Imds,
    /// NMI token requests.
    Nmi,
    /// Every request except `/_emulator/` control requests.
    #[default]
    Any,
}

impl FaultScope {
    pub fn matches(self, class: RequestClass) -> bool {
        use RequestClass as C;
        match self {
            FaultScope::DataPlaneGet => class == C::DataPlaneGet,
            FaultScope::DataPlane => matches!(class, C::DataPlaneGet | C::DataPlaneWrite),
            FaultScope::Token => class == C::AadToken,
            FaultScope::Imds => class == C::Imds,
            FaultScope::Nmi => class == C::Nmi,
            FaultScope::Any => class != C::Admin,
        }
    }
}

/// A probabilistic fault rule. Rates are probabilities in `0.0..=1.0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultRule {
    pub scope: FaultScope,
    /// Added to every matching request.
    #[serde(with = "millis")]
    pub latency: Duration,
    /// Uniform extra delay in `0..=jitter` on top of `latency`.
    #[serde(with = "millis")]
    pub jitter: Duration,
    /// Probability of answering 429 with `Retry-After: retry_after_secs`.
    pub throttle_rate: f64,
    pub retry_after_secs: u64,
    /// Probability of answering `server_error_status` (default 503).
    pub server_error_rate: f64,
    pub server_error_status: u16,
    /// Probability of closing the connection without an answer.
    pub drop_rate: f64,
}

impl Default for FaultRule {
    fn default() -> Self {
        Self {
            scope: FaultScope::Any,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            throttle_rate: 0.0,
            retry_after_secs: 1,
            server_error_rate: 0.0,
            server_error_status: 503,
            drop_rate: 0.0,
        }
    }
}

/// All probabilistic rules in force; every matching rule applies (latencies add up, the first rule
/// that fires decides the answer).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultPlan {
    pub rules: Vec<FaultRule>,
}

impl FaultPlan {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn with_rule(mut self, rule: FaultRule) -> Self {
        self.rules.push(rule);
        self
    }
}

/// A fault that replaces the answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Fault {
    /// 429 with `Retry-After`.
    Throttle { retry_after_secs: u64 },
    /// A 5xx answer.
    ServerError { status: u16 },
    /// Close the connection without answering.
    Drop,
    /// Answer normally after a delay.
    Delay {
        #[serde(with = "millis")]
        delay: Duration,
    },
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    pub delay: Duration,
    pub fault: Option<Fault>,
}

struct OneShot {
    scope: FaultScope,
    remaining: u32,
    fault: Fault,
}

struct EngineState {
    plan: FaultPlan,
    rng: StdRng,
    one_shots: VecDeque<OneShot>,
}

/// Decides faults per request; shared by all connections.
pub struct FaultEngine {
    state: Mutex<EngineState>,
}

impl FaultEngine {
    pub fn new(plan: FaultPlan, seed: u64) -> Self {
        Self {
            state: Mutex::new(EngineState {
                plan,
                rng: StdRng::seed_from_u64(seed),
                one_shots: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, EngineState> {
        self.state.lock()
    }

    pub fn set_plan(&self, plan: FaultPlan) {
        self.lock().plan = plan;
    }

    /// Restarts the random sequence (e.g. between two runs that must see the same faults).
    pub fn reseed(&self, seed: u64) {
        self.lock().rng = StdRng::seed_from_u64(seed);
    }

    pub fn inject(&self, scope: FaultScope, count: u32, fault: Fault) {
        if count > 0 {
            self.lock().one_shots.push_back(OneShot {
                scope,
                remaining: count,
                fault,
            });
        }
    }

    pub fn clear_one_shots(&self) {
        self.lock().one_shots.clear();
    }

    pub fn decide(&self, class: RequestClass) -> Decision {
        if class == RequestClass::Admin {
            return Decision::default();
        }
        let mut st = self.lock();
        if let Some(pos) = st.one_shots.iter().position(|o| o.scope.matches(class)) {
            let fault = st.one_shots[pos].fault;
            st.one_shots[pos].remaining -= 1;
            if st.one_shots[pos].remaining == 0 {
                st.one_shots.remove(pos);
            }
            return match fault {
                Fault::Delay { delay } => Decision { delay, fault: None },
                f => Decision {
                    delay: Duration::ZERO,
                    fault: Some(f),
                },
            };
        }
        let EngineState { plan, rng, .. } = &mut *st;
        let mut decision = Decision::default();
        for rule in plan.rules.iter().filter(|r| r.scope.matches(class)) {
            // Draw every number for every matching rule so that one outcome does not shift the
            // sequence of the others: the same seed gives the same faults request by request.
            let jitter_draw: f64 = rng.random();
            let drop_draw: f64 = rng.random();
            let throttle_draw: f64 = rng.random();
            let error_draw: f64 = rng.random();
            decision.delay += rule.latency + rule.jitter.mul_f64(jitter_draw);
            if decision.fault.is_some() {
                continue;
            }
            if drop_draw < rule.drop_rate {
                decision.fault = Some(Fault::Drop);
            } else if throttle_draw < rule.throttle_rate {
                decision.fault = Some(Fault::Throttle {
                    retry_after_secs: rule.retry_after_secs,
                });
            } else if error_draw < rule.server_error_rate {
                decision.fault = Some(Fault::ServerError {
                    status: rule.server_error_status,
                });
            }
        }
        decision
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn plan() -> FaultPlan {
        FaultPlan::none().with_rule(FaultRule {
            scope: FaultScope::DataPlaneGet,
            throttle_rate: 0.3,
            server_error_rate: 0.3,
            drop_rate: 0.1,
            jitter: Duration::from_millis(5),
            ..FaultRule::default()
        })
    }

    #[test]
    fn same_seed_same_sequence() {
        let run = |seed| {
            let e = FaultEngine::new(plan(), seed);
            (0..200)
                .map(|_| e.decide(RequestClass::DataPlaneGet))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let faults = run(7).iter().filter(|d| d.fault.is_some()).count();
        assert!(faults > 40 && faults < 160, "{faults}");
    }

    #[test]
    fn scope_and_one_shots() {
        let e = FaultEngine::new(plan(), 1);
        assert_eq!(e.decide(RequestClass::AadToken), Decision::default());
        e.inject(
            FaultScope::DataPlane,
            2,
            Fault::Throttle {
                retry_after_secs: 1,
            },
        );
        assert_eq!(e.decide(RequestClass::AadToken).fault, None);
        for _ in 0..2 {
            assert_eq!(
                e.decide(RequestClass::DataPlaneWrite).fault,
                Some(Fault::Throttle {
                    retry_after_secs: 1
                })
            );
        }
        assert_eq!(e.decide(RequestClass::DataPlaneWrite), Decision::default());
        assert_eq!(e.decide(RequestClass::Admin), Decision::default());
    }
}
