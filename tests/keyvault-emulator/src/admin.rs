//! Out-of-process control under `/_emulator/` (plain-HTTP listener, or HTTPS on `localhost`):
//!
//! | request | effect |
//! |---|---|
//! | `GET /_emulator/ca.pem` | the test CA |
//! | `GET /_emulator/counters` | [`crate::Counters`] as JSON |
//! | `GET /_emulator/requests` | the request log as JSON |
//! | `POST /_emulator/reset` | clear counters and log |
//! | `PUT /_emulator/faults` | replace the [`crate::FaultPlan`] (JSON) |
//! | `POST /_emulator/inject` | `{"scope": "data_plane", "count": 2, "fault": {"kind": "throttle", "retry_after_secs": 1}}` |
//! | `PUT /_emulator/vaults/{vault}/secrets/{name}` | new secret version from `{"value", "contentType"?, "enabled"?, "tags"?}`; answers `{"version"}` |
//! | `PATCH /_emulator/vaults/{vault}/{secrets,keys,certificates}/{name}/{version}` | `{"enabled": bool}` |
//! | `POST /_emulator/clock` | `{"advanceSecs": n}` moves the emulator clock forward |

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::emulator::{Api, Inner};
use crate::faults::{Fault, FaultPlan, FaultScope};
use crate::server::{Outcome, Req, Resp, json_response, text_response};
use crate::store::{ObjectKind, SecretSpec};

fn bad(msg: &str) -> Resp {
    json_response(StatusCode::BAD_REQUEST, &json!({"error": msg}))
}

#[derive(Deserialize)]
struct Inject {
    scope: FaultScope,
    count: u32,
    fault: Fault,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Clock {
    advance_secs: i64,
}

pub fn handle(inner: &Arc<Inner>, req: &Req) -> Outcome {
    Outcome::anonymous(route(inner, req))
}

fn route(inner: &Arc<Inner>, req: &Req) -> Resp {
    let api = Api {
        inner: inner.clone(),
    };
    let segs = req.segments();
    match (&req.method, &segs[1..]) {
        (&Method::GET, ["ca.pem"]) => {
            let mut resp = text_response(
                StatusCode::OK,
                inner.ca_pem.get().map(String::as_str).unwrap_or(""),
            );
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-pem-file"),
            );
            resp
        }
        (&Method::GET, ["counters"]) => {
            json_response(StatusCode::OK, &json!(inner.observer.counters()))
        }
        (&Method::GET, ["requests"]) => json_response(StatusCode::OK, &json!(inner.observer.log())),
        (&Method::POST, ["reset"]) => {
            inner.observer.reset();
            json_response(StatusCode::OK, &json!({}))
        }
        (&Method::PUT, ["faults"]) => match serde_json::from_slice::<FaultPlan>(&req.body) {
            Ok(plan) => {
                inner.faults.set_plan(plan);
                json_response(StatusCode::OK, &json!({}))
            }
            Err(e) => bad(&format!("fault plan JSON invalid: {e}")),
        },
        (&Method::POST, ["inject"]) => match serde_json::from_slice::<Inject>(&req.body) {
            Ok(i) => {
                inner.faults.inject(i.scope, i.count, i.fault);
                json_response(StatusCode::OK, &json!({}))
            }
            Err(e) => bad(&format!("inject JSON invalid: {e}")),
        },
        (&Method::POST, ["clock"]) => match serde_json::from_slice::<Clock>(&req.body) {
            Ok(c) if c.advance_secs >= 0 => {
                inner
                    .clock_offset
                    .fetch_add(c.advance_secs, Ordering::Relaxed);
                json_response(StatusCode::OK, &json!({"now": inner.now()}))
            }
            _ => bad("expected {\"advanceSecs\": n} with n >= 0"),
        },
        (&Method::PUT, ["vaults", vault, "secrets", name]) => {
            match serde_json::from_slice::<SecretSpec>(&req.body) {
                Ok(spec) => match api.set_secret(vault, name, spec) {
                    Ok(version) => json_response(StatusCode::OK, &json!({"version": version})),
                    Err(e) => bad(&e.to_string()),
                },
                Err(e) => bad(&format!("secret JSON invalid: {e}")),
            }
        }
        (&Method::PATCH, ["vaults", vault, collection, name, version]) => {
            let kind = match *collection {
                "secrets" => ObjectKind::Secret,
                "keys" => ObjectKind::Key,
                "certificates" => ObjectKind::Certificate,
                _ => return bad("collection must be secrets, keys or certificates"),
            };
            let enabled = serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|v| v.get("enabled").and_then(Value::as_bool));
            match enabled {
                Some(e) => match api.set_enabled(vault, kind, name, version, e) {
                    Ok(()) => json_response(StatusCode::OK, &json!({})),
                    Err(err) => bad(&err.to_string()),
                },
                None => bad("expected {\"enabled\": bool}"),
            }
        }
        _ => text_response(
            StatusCode::NOT_FOUND,
            &format!("no control endpoint {} {}\n", req.method, req.path),
        ),
    }
}
