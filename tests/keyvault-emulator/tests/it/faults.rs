//! Fault injection (seeded reproducibility, one-shot faults, dropped connections), counters, the
//! request log, and the `/_emulator/` control endpoint.

use keyvault_emulator::{
    Config, Fault, FaultPlan, FaultRule, FaultScope, RequestClass, TokenKind, TokenPresence,
};
use serde_json::json;

use crate::common::*;

fn plan() -> FaultPlan {
    FaultPlan::none().with_rule(FaultRule {
        scope: FaultScope::DataPlaneGet,
        throttle_rate: 0.3,
        retry_after_secs: 7,
        server_error_rate: 0.2,
        drop_rate: 0.1,
        ..FaultRule::default()
    })
}

/// Runs 40 authenticated GETs and returns the outcome of each (`200`, `429`, `503` or `drop`).
async fn run(seed: u64) -> Vec<String> {
    let (emu, client) = standard_with(Config {
        faults: plan(),
        rng_seed: seed,
        ..Config::default()
    })
    .await;
    emu.set_secret(VAULT, "s", "v", None).unwrap();
    // Token requests are outside the rule's scope and always succeed.
    let token = client.token().await;
    let url = vault_url(&format!("/secrets/s?{API}"));
    let mut out = Vec::new();
    for _ in 0..40 {
        let auth = format!("Bearer {token}");
        match client
            .send("GET", &url, &[("authorization", &auth)], None)
            .await
        {
            Ok(r) => {
                if r.status == 429 {
                    assert_eq!(r.header("retry-after").as_deref(), Some("7"));
                    assert_eq!(r.json()["error"]["code"], "Throttled");
                }
                out.push(r.status.to_string());
            }
            Err(_) => out.push("drop".into()),
        }
    }
    let c = emu.counters();
    assert_eq!(c.data_plane_gets, 40);
    let count = |s: &str| out.iter().filter(|o| *o == s).count() as u64;
    assert_eq!(c.throttled, count("429"));
    assert_eq!(c.server_errors, count("503"));
    assert_eq!(c.dropped, count("drop"));
    let dropped_logged = emu
        .request_log()
        .iter()
        .filter(|e| e.status.is_none() && e.fault.as_deref() == Some("drop"))
        .count() as u64;
    assert_eq!(dropped_logged, count("drop"));
    emu.shutdown().await;
    out
}

#[tokio::test]
async fn seeded_faults_are_reproducible() {
    let a = run(42).await;
    let b = run(42).await;
    assert_eq!(a, b, "same seed, same request sequence → same faults");
    for kind in ["200", "429", "503", "drop"] {
        assert!(a.iter().any(|o| o == kind), "{kind} missing from {a:?}");
    }
    let c = run(43).await;
    assert_ne!(a, c, "another seed gives another sequence");
}

#[tokio::test]
async fn one_shot_faults() {
    let (emu, client) = standard().await;
    emu.set_secret(VAULT, "s", "v", None).unwrap();
    let token = client.token().await;
    let url = vault_url(&format!("/secrets/s?{API}"));
    emu.inject(
        FaultScope::DataPlane,
        2,
        Fault::Throttle {
            retry_after_secs: 1,
        },
    );
    for _ in 0..2 {
        let r = client.get(&url, Some(&token)).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    }
    assert_eq!(client.get(&url, Some(&token)).await.status, 200);

    emu.inject(FaultScope::Token, 1, Fault::ServerError { status: 503 });
    let r = client
        .form(
            &format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert!(client.token().await.starts_with("eyJ"));

    emu.add_managed_identity(TENANT, "mi", true);
    emu.inject(FaultScope::Imds, 1, Fault::Drop);
    let imds = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net";
    assert!(
        client
            .send("GET", imds, &[("Metadata", "true")], None)
            .await
            .is_err()
    );
    let r = client
        .send("GET", imds, &[("Metadata", "true")], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    emu.inject(
        FaultScope::Any,
        1,
        Fault::Delay {
            delay: std::time::Duration::from_millis(20),
        },
    );
    assert_eq!(client.get(&url, Some(&token)).await.status, 200);
    emu.inject(FaultScope::DataPlaneGet, 5, Fault::Drop);
    emu.clear_injected();
    assert_eq!(client.get(&url, Some(&token)).await.status, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn counters_and_request_log() {
    let (emu, client) = standard().await;
    emu.set_secret(VAULT, "db-password", "hunter2-do-not-log", None)
        .unwrap();
    emu.set_secret(VAULT, "other", "x", None).unwrap();
    let url = vault_url(&format!("/secrets/db-password?{API}"));
    assert_eq!(client.get(&url, None).await.status, 401);
    let token = client.token().await;
    for _ in 0..2 {
        assert_eq!(client.get(&url, Some(&token)).await.status, 200);
    }
    assert_eq!(
        client
            .get(&vault_url(&format!("/secrets/other?{API}")), Some(&token))
            .await
            .status,
        200
    );

    let c = emu.counters();
    assert_eq!(c.challenges, 1);
    assert_eq!(c.data_plane_gets, 4);
    assert_eq!(c.token_requests_for("aad"), 1);
    assert_eq!(c.tokens(TokenKind::ClientSecret), 1);
    assert_eq!(c.gets_of(VAULT, "secrets", "db-password"), 2);
    assert_eq!(c.gets_of(VAULT, "secrets", "other"), 1);

    let log = emu.request_log();
    assert_eq!(log.len(), 5);
    assert_eq!(log[0].status, Some(401));
    assert_eq!(log[0].token, TokenPresence::Absent);
    assert_eq!(log[0].host, "myvault.vault.azure.net");
    assert_eq!(log[0].path, "/secrets/db-password?api-version=7.4");
    assert_eq!(log[1].class, RequestClass::AadToken);
    assert_eq!(log[1].identity.as_deref(), Some(CLIENT_ID));
    assert_eq!(log[2].token, TokenPresence::Valid);
    assert_eq!(log[2].identity.as_deref(), Some(CLIENT_ID));
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains("hunter2"));
    assert!(!text.contains(&token));
    assert!(!text.contains(CLIENT_SECRET));

    emu.reset_counters();
    assert_eq!(emu.counters(), keyvault_emulator::Counters::default());
    assert!(emu.request_log().is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn control_endpoint() {
    let (emu, client) = standard().await;
    let base = format!("http://{}", emu.http_addr());
    let r = client
        .send("GET", &format!("{base}/_emulator/ca.pem"), &[], None)
        .await
        .unwrap();
    assert_eq!(r.text(), emu.ca_pem());
    let r = client
        .send(
            "PUT",
            &format!("{base}/_emulator/vaults/{VAULT}/secrets/rotated"),
            &[("content-type", "application/json")],
            Some(br#"{"value": "v2", "contentType": "text/plain"}"#),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let version = r.json()["version"].as_str().unwrap().to_string();
    let token = client.token().await;
    let got = client
        .get(&vault_url(&format!("/secrets/rotated?{API}")), Some(&token))
        .await
        .json();
    assert!(got["id"].as_str().unwrap().ends_with(&version));
    let r = client
        .send(
            "PATCH",
            &format!("{base}/_emulator/vaults/{VAULT}/secrets/rotated/{version}"),
            &[],
            Some(br#"{"enabled": false}"#),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        client
            .get(&vault_url(&format!("/secrets/rotated?{API}")), Some(&token))
            .await
            .status,
        403
    );

    let r = client
        .send(
            "POST",
            &format!("{base}/_emulator/inject"),
            &[],
            Some(json!({"scope": "data_plane_get", "count": 1, "fault": {"kind": "throttle", "retry_after_secs": 3}}).to_string().as_bytes()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = client
        .get(&vault_url(&format!("/secrets/rotated?{API}")), Some(&token))
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("3"));

    let r = client
        .send(
            "PUT",
            &format!("{base}/_emulator/faults"),
            &[],
            Some(br#"{"rules": [{"scope": "token", "serverErrorRate": 1.0}]}"#),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = client
        .form(
            &format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(r.status, 503);

    let counters = client
        .send("GET", &format!("{base}/_emulator/counters"), &[], None)
        .await
        .unwrap()
        .json();
    assert_eq!(counters["throttled"], 1);
    let requests = client
        .send("GET", &format!("{base}/_emulator/requests"), &[], None)
        .await
        .unwrap()
        .json();
    assert!(
        requests
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["class"] != "admin")
    );
    let r = client
        .send("POST", &format!("{base}/_emulator/reset"), &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(emu.counters().throttled, 0);
    emu.shutdown().await;
}
