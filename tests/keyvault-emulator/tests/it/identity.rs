//! Identity endpoints: AAD client credentials (secret and federated assertion), AAD errors, MSAL's
//! discovery documents, IMDS and NMI, and that their tokens open the vault.

use keyvault_emulator::{TokenKind, TokenPresence, VaultSpec};
use serde_json::{Value, json};

use crate::common::*;

const WI_CLIENT: &str = "5d4e3c2b-1a09-4f8e-8d7c-6b5a49382716";
const ISSUER: &str = "https://oidc.prod-aks.azure.com/abc/";
const SUBJECT: &str = "system:serviceaccount:team-a:app";

fn token_url(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
}

fn assert_aad_error(body: &Value, error: &str, code: u64) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let desc = body["error_description"].as_str().unwrap();
    assert!(desc.starts_with(&format!("AADSTS{code}: ")), "{desc}");
    assert!(
        desc.contains(" Trace ID: ")
            && desc.contains(" Correlation ID: ")
            && desc.contains(" Timestamp: "),
        "{desc}"
    );
    let ts = body["timestamp"].as_str().unwrap();
    assert_eq!(ts.len(), "2023-05-06 06:03:00Z".len(), "{ts}");
    assert_eq!(body["trace_id"].as_str().unwrap().len(), 36);
    assert_eq!(body["correlation_id"].as_str().unwrap().len(), 36);
    assert_eq!(
        body["error_uri"],
        format!("https://login.microsoftonline.com/error?code={code}")
    );
}

#[tokio::test]
async fn client_secret_flow_and_errors() {
    let (emu, client) = standard().await;
    emu.set_secret(VAULT, "s", "value", None).unwrap();
    emu.add_vault(VaultSpec::new("othervault", OTHER_TENANT))
        .unwrap();

    let r = client
        .form(
            &token_url(TENANT),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("scope", "https://vault.azure.net/.default"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["access_token", "expires_in", "ext_expires_in", "token_type"]
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    let token = body["access_token"].as_str().unwrap();
    assert!(token.starts_with("eyJ"), "tokens look like JWTs");
    let r = client
        .get(&vault_url(&format!("/secrets/s?{API}")), Some(token))
        .await;
    assert_eq!(r.status, 200);
    let last = emu.request_log().pop().unwrap();
    assert_eq!(last.token, TokenPresence::Valid);
    assert_eq!(last.identity.as_deref(), Some(CLIENT_ID));

    let base = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("scope", "https://vault.azure.net/.default"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v: Vec<(&str, &str)> = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let with_scope = |scope: &'static str| {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", scope),
        ]
    };
    /// What is sent, to which tenant, with the HTTP status (where it is checked), the AAD error and
    /// its code.
    type Refusal<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Option<u16>,
        &'a str,
        u64,
    );
    let refusals: Vec<Refusal> = vec![
        (
            "wrong secret",
            TENANT,
            with(&[("client_secret", "wrong")]),
            Some(401),
            "invalid_client",
            7000215,
        ),
        (
            "neither secret nor assertion",
            TENANT,
            with(&[]),
            Some(401),
            "invalid_client",
            7000218,
        ),
        (
            "unknown tenant",
            "00000000-0000-0000-0000-00000000dead",
            with(&[("client_secret", CLIENT_SECRET)]),
            Some(400),
            "invalid_request",
            90002,
        ),
        (
            "known tenant, but the app lives in another one",
            OTHER_TENANT,
            with(&[("client_secret", CLIENT_SECRET)]),
            Some(400),
            "unauthorized_client",
            700016,
        ),
        (
            "scope without /.default",
            TENANT,
            with_scope("https://vault.azure.net/user_impersonation"),
            None,
            "invalid_scope",
            1002012,
        ),
        (
            "unknown resource",
            TENANT,
            with_scope("https://storage.azure.com/.default"),
            None,
            "invalid_resource",
            500011,
        ),
        (
            "missing grant type",
            TENANT,
            vec![("client_id", CLIENT_ID)],
            None,
            "invalid_request",
            900144,
        ),
        (
            "unsupported grant type",
            TENANT,
            vec![("grant_type", "password"), ("client_id", CLIENT_ID)],
            None,
            "unsupported_grant_type",
            70003,
        ),
    ];
    for (what, tenant, form, status, error, code) in refusals {
        let r = client.form(&token_url(tenant), &form).await;
        if let Some(status) = status {
            assert_eq!(r.status, status, "{what}");
        }
        assert_aad_error(&r.json(), error, code);
    }
    // The correlation id echoes client-request-id.
    let r = client
        .send(
            "POST",
            &token_url(TENANT),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("client-request-id", "11111111-2222-3333-4444-555555555555"),
            ],
            Some(b"grant_type=client_credentials"),
        )
        .await
        .unwrap();
    assert_eq!(
        r.json()["correlation_id"],
        "11111111-2222-3333-4444-555555555555"
    );

    // The v1 endpoint (resource=) answers with string numbers.
    let r = client
        .form(
            &format!("https://login.microsoftonline.com/{TENANT}/oauth2/token"),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("resource", "https://vault.azure.net"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v1 = r.json();
    assert_eq!(v1["expires_in"], "3599");
    assert_eq!(v1["resource"], "https://vault.azure.net");
    assert!(v1["expires_on"].as_str().unwrap().parse::<i64>().is_ok());

    let c = emu.counters();
    assert_eq!(c.tokens(TokenKind::ClientSecret), 2);
    assert_eq!(c.token_requests_for("aad"), 11);
    assert_eq!(c.token_failures, 9);
    // The request log never holds the client secret or a token.
    let log = serde_json::to_string(&emu.request_log()).unwrap();
    assert!(!log.contains(CLIENT_SECRET));
    assert!(!log.contains(token));
    emu.shutdown().await;
}

#[tokio::test]
async fn workload_identity_assertion() {
    let (emu, client) = standard().await;
    emu.add_federated(TENANT, WI_CLIENT, ISSUER, SUBJECT);
    emu.set_secret(VAULT, "s", "value", None).unwrap();
    let assertion = |sub: &str, aud: Value, exp: i64| {
        unsigned_jwt(
            &json!({"iss": ISSUER, "sub": sub, "aud": aud, "exp": exp, "nbf": now() - 5, "iat": now() - 5}),
        )
    };
    let request = |a: String| {
        let client = client.clone();
        async move {
            client
                .form(
                    &token_url(TENANT),
                    &[
                        ("grant_type", "client_credentials"),
                        ("client_id", WI_CLIENT),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", &a),
                        ("scope", "https://vault.azure.net/.default"),
                    ],
                )
                .await
        }
    };
    let r = request(assertion(
        SUBJECT,
        json!(["api://AzureADTokenExchange"]),
        now() + 3600,
    ))
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["access_token"].as_str().unwrap().to_string();
    let r = client
        .get(&vault_url(&format!("/secrets/s?{API}")), Some(&token))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        emu.request_log().pop().unwrap().identity.as_deref(),
        Some(WI_CLIENT)
    );

    let r = request(assertion(
        "system:serviceaccount:team-a:other",
        json!("api://AzureADTokenExchange"),
        now() + 3600,
    ))
    .await;
    assert_eq!(r.status, 400);
    let body = r.json();
    assert_aad_error(&body, "invalid_request", 70021);
    assert!(body["error_description"].as_str().unwrap().contains(&format!("Assertion Issuer: '{ISSUER}'. Assertion Subject: 'system:serviceaccount:team-a:other'. Assertion Audience: 'api://AzureADTokenExchange'.")));

    let r = request(assertion(
        SUBJECT,
        json!("api://AzureADTokenExchange"),
        now() - 60,
    ))
    .await;
    assert_eq!(r.status, 400);
    assert_aad_error(&r.json(), "invalid_client", 700024);

    let r = request(assertion(
        SUBJECT,
        json!("https://kubernetes.default.svc"),
        now() + 3600,
    ))
    .await;
    assert_eq!(r.status, 400);
    assert_aad_error(&r.json(), "invalid_client", 700212);

    let r = request("not-a-jwt".into()).await;
    assert_eq!(r.status, 400);
    assert_aad_error(&r.json(), "invalid_request", 50027);
    assert_eq!(emu.counters().tokens(TokenKind::ClientAssertion), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn msal_discovery_documents() {
    let (emu, client) = standard().await;
    let r = client
        .get(
            &format!(
                "https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration"
            ),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let c = r.json();
    assert_eq!(
        c["token_endpoint"],
        format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
    );
    assert_eq!(
        c["authorization_endpoint"],
        format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize")
    );
    assert_eq!(
        c["issuer"],
        format!("https://login.microsoftonline.com/{TENANT}/v2.0")
    );
    let r = client
        .get("https://login.microsoftonline.com/common/discovery/instance?api-version=1.1&authorization_endpoint=https://login.microsoftonline.com/common/oauth2/authorize", None)
        .await;
    assert_eq!(r.status, 200);
    let d = r.json();
    assert_eq!(
        d["tenant_discovery_endpoint"],
        "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration"
    );
    assert!(d["metadata"].as_array().unwrap().iter().any(|m| {
        m["aliases"]
            .as_array()
            .unwrap()
            .contains(&json!("login.chinacloudapi.cn"))
    }));
    let r = client
        .get(
            "https://login.microsoftonline.com/not-a-tenant/v2.0/.well-known/openid-configuration",
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error_codes"], json!([90002]));
    let r = client
        .get(
            &format!(
                "https://login.chinacloudapi.cn/{TENANT}/v2.0/.well-known/openid-configuration"
            ),
            None,
        )
        .await;
    assert_eq!(
        r.json()["token_endpoint"],
        format!("https://login.chinacloudapi.cn/{TENANT}/oauth2/v2.0/token")
    );
    assert_eq!(emu.counters().discovery_requests, 4);
    emu.shutdown().await;
}

#[tokio::test]
async fn imds_managed_identities() {
    let (emu, client) = standard().await;
    emu.set_secret(VAULT, "s", "value", None).unwrap();
    let imds = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net";
    let get = |url: String, metadata: bool| {
        let client = client.clone();
        async move {
            let headers: Vec<(&str, &str)> = if metadata {
                vec![("Metadata", "true")]
            } else {
                vec![]
            };
            client.send("GET", &url, &headers, None).await.unwrap()
        }
    };
    // No identity on the "VM" yet.
    let r = get(imds.to_string(), true).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": "invalid_request", "error_description": "Identity not found"})
    );

    emu.add_managed_identity(TENANT, "ua-one", false);
    emu.add_managed_identity(TENANT, "ua-two", false);
    let r = get(imds.to_string(), true).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Multiple user assigned identities exist"));

    emu.add_managed_identity(TENANT, "system-mi", true);
    let r = get(imds.to_string(), false).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": "invalid_request", "error_description": "Required metadata header not specified"})
    );

    let r = get(imds.to_string(), true).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.json();
    let mut keys: Vec<&String> = t.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "access_token",
            "client_id",
            "expires_in",
            "expires_on",
            "ext_expires_in",
            "not_before",
            "resource",
            "token_type"
        ]
    );
    assert_eq!(t["client_id"], "system-mi");
    assert_eq!(t["expires_in"], "3599");
    assert_eq!(t["ext_expires_in"], "3599");
    assert!(t["expires_on"].as_str().unwrap().parse::<i64>().unwrap() > now());
    assert_eq!(t["resource"], "https://vault.azure.net");
    assert_eq!(t["token_type"], "Bearer");
    let r = client
        .get(
            &vault_url(&format!("/secrets/s?{API}")),
            t["access_token"].as_str(),
        )
        .await;
    assert_eq!(r.status, 200);

    let r = get(format!("{imds}&client_id=ua-two"), true).await;
    assert_eq!(r.json()["client_id"], "ua-two");
    let r = get(format!("{imds}&client_id=nobody"), true).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error_description"], "Identity not found");
    let r = get(
        "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01".into(),
        true,
    )
    .await;
    assert_eq!(r.status, 400);
    let r = get("http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://unknown.example".into(), true).await;
    assert_eq!(r.json()["error"], "invalid_resource");
    let c = emu.counters();
    assert_eq!(c.tokens(TokenKind::ManagedIdentity), 2);
    assert_eq!(c.token_requests_for("imds"), 8);
    emu.shutdown().await;
}

#[tokio::test]
async fn nmi_pod_identity() {
    let (emu, client) = standard().await;
    emu.set_secret(VAULT, "s", "value", None).unwrap();
    emu.add_pod_identity("team-a", "web-0", "pod-mi", Some(TENANT))
        .unwrap();
    assert!(
        emu.add_pod_identity("team-a", "web-1", "unseeded", None)
            .is_err()
    );
    let url = "http://localhost:2579/host/token/?resource=https://vault.azure.net";
    let r = client
        .send(
            "GET",
            url,
            &[("podns", "team-a"), ("podname", "web-0")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["clientid"], "pod-mi");
    let tok = &body["token"];
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["resource"], "https://vault.azure.net");
    assert_eq!(tok["expires_in"], "3599");
    assert!(tok["expires_on"].is_string() && tok["not_before"].is_string());
    let r = client
        .get(
            &vault_url(&format!("/secrets/s?{API}")),
            tok["access_token"].as_str(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        emu.request_log().pop().unwrap().identity.as_deref(),
        Some("pod-mi")
    );

    let r = client
        .send(
            "GET",
            url,
            &[("podns", "team-a"), ("podname", "web-9")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert!(r.text().contains("team-a/web-9"));
    let r = client.send("GET", url, &[], None).await.unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        "missing 'podname' and 'podns' from request header\n"
    );
    let r = client
        .send(
            "GET",
            "http://localhost:2579/host/token/",
            &[("podns", "team-a"), ("podname", "web-0")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(emu.counters().tokens(TokenKind::PodIdentity), 1);
    emu.shutdown().await;
}
