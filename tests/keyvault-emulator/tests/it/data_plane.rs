//! Data-plane behaviour: challenges and token checks, api-version, secrets (set, get, versions,
//! paging, disable/enable), keys (create, import, get, list), 404s and the access list.

use std::time::Duration;

use keyvault_emulator::{KeyOptions, MintToken, ObjectKind, SecretSpec, VaultSpec};
use serde_json::{Value, json};

use crate::common::*;

fn assert_version_id(id: &str, collection: &str, name: &str) -> String {
    let prefix = format!("https://{VAULT}.vault.azure.net/{collection}/{name}/");
    let version = id
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{id} does not start with {prefix}"));
    assert_eq!(version.len(), 32, "{id}");
    assert!(
        version
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id}"
    );
    version.to_string()
}

fn assert_attributes(attrs: &Value, enabled: bool) {
    assert_eq!(attrs["enabled"], enabled, "{attrs}");
    let created = attrs["created"].as_i64().expect("created");
    let updated = attrs["updated"].as_i64().expect("updated");
    assert!(created > 1_600_000_000 && updated >= created, "{attrs}");
    assert_eq!(attrs["recoveryLevel"], "Recoverable+Purgeable");
    assert_eq!(attrs["recoverableDays"], 90);
}

#[tokio::test]
async fn challenge_names_authority_and_resource() {
    let (emu, client) = standard().await;
    let r = client
        .get(&vault_url(&format!("/secrets/missing?{API}")), None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some(
            format!(
                "Bearer authorization=\"https://login.microsoftonline.com/{TENANT}\", resource=\"https://vault.azure.net\""
            )
            .as_str()
        )
    );
    assert_eq!(
        r.json(),
        json!({"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}})
    );
    assert_eq!(emu.counters().challenges, 1);

    // A sovereign cloud's vault challenges with that cloud's authority and resource.
    emu.add_vault(VaultSpec::new("govvault", OTHER_TENANT).in_cloud("AzureUSGovernmentCloud"))
        .unwrap();
    emu.add_app(OTHER_TENANT, "gov-app", "gov-secret");
    let r = client
        .get(
            &format!("https://govvault.vault.usgovcloudapi.net/secrets/x?{API}"),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").unwrap(),
        format!(
            "Bearer authorization=\"https://login.microsoftonline.us/{OTHER_TENANT}\", resource=\"https://vault.usgovcloudapi.net\""
        )
    );
    let gov = client
        .form(
            &format!("https://login.microsoftonline.us/{OTHER_TENANT}/oauth2/v2.0/token"),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "gov-app"),
                ("client_secret", "gov-secret"),
                ("scope", "https://vault.usgovcloudapi.net/.default"),
            ],
        )
        .await;
    assert_eq!(gov.status, 200, "{}", gov.text());
    let gov_token = gov.json()["access_token"].as_str().unwrap().to_string();
    emu.set_secret("govvault", "x", "gov-value", None).unwrap();
    let r = client
        .get(
            &format!("https://govvault.vault.usgovcloudapi.net/secrets/x?{API}"),
            Some(&gov_token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["id"].as_str().unwrap().split('/').nth(2),
        Some("govvault.vault.usgovcloudapi.net")
    );

    // The public cloud's AAD does not issue tokens for the US Gov vault resource.
    let r = client
        .form(
            &format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("scope", "https://vault.usgovcloudapi.net/.default"),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error_codes"], json!([500011]));
    emu.shutdown().await;
}

#[tokio::test]
async fn invalid_tokens_are_challenged() {
    let (emu, client) = standard().await;
    emu.set_secret(VAULT, "s", "v", None).unwrap();
    let url = vault_url(&format!("/secrets/s?{API}"));
    let mint = |tenant: &str, aud: &str, exp: i64| {
        emu.mint_token(&MintToken {
            tenant: tenant.into(),
            client_id: CLIENT_ID.into(),
            audience: aud.into(),
            expires_at: exp,
        })
    };
    let other = keyvault_emulator::Emulator::start(keyvault_emulator::Config::default())
        .await
        .unwrap();
    let foreign = other.mint_token(&MintToken {
        tenant: TENANT.into(),
        client_id: CLIENT_ID.into(),
        audience: "https://vault.azure.net".into(),
        expires_at: now() + 600,
    });
    let cases = [
        (
            mint(TENANT, "https://vault.azure.net", now() - 10),
            "[TokenExpired] Error validating token: 'S2S12086'.",
        ),
        (
            mint(TENANT, "https://management.azure.com/", now() + 600),
            "AKV10022: Invalid audience. Expected https://vault.azure.net, found: https://management.azure.com/.",
        ),
        (
            mint(OTHER_TENANT, "https://vault.azure.net", now() + 600),
            "AKV10032: Invalid issuer.",
        ),
        (foreign, "AKV10046"),
        ("not-a-token".to_string(), "AKV10046"),
    ];
    for (token, message) in cases {
        let r = client.get(&url, Some(&token)).await;
        assert_eq!(r.status, 401, "{message}");
        assert!(r.header("www-authenticate").is_some());
        let body = r.json();
        assert_eq!(body["error"]["code"], "Unauthorized");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(message),
            "{body} vs {message}"
        );
    }
    // Trailing slash on the audience is accepted, as AAD tokens for the resource carry either.
    let ok = mint(TENANT, "https://vault.azure.net/", now() + 600);
    assert_eq!(client.get(&url, Some(&ok)).await.status, 200);

    // A token turns invalid once the emulator clock passes its expiry.
    let token = client.token().await;
    assert_eq!(client.get(&url, Some(&token)).await.status, 200);
    emu.advance_clock(Duration::from_secs(3600));
    let r = client.get(&url, Some(&token)).await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("TokenExpired"));
    let log = emu.request_log();
    assert_eq!(
        log.last().unwrap().token,
        keyvault_emulator::TokenPresence::Invalid
    );
    other.shutdown().await;
    emu.shutdown().await;
}

#[tokio::test]
async fn api_version_is_required() {
    let (emu, client) = standard().await;
    emu.set_secret(VAULT, "s", "v", None).unwrap();
    let token = client.token().await;
    let r = client.get(&vault_url("/secrets/s"), Some(&token)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "BadParameter");
    let r = client
        .get(&vault_url("/secrets/s?api-version=7.3"), Some(&token))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("(7.3) is not recognized"));
    for v in ["7.4", "7.5", "7.6", "2025-07-01"] {
        let r = client
            .get(
                &vault_url(&format!("/secrets/s?api-version={v}")),
                Some(&token),
            )
            .await;
        assert_eq!(r.status, 200, "{v}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn secrets_set_get_versions_and_update() {
    let (emu, client) = standard().await;
    let token = client.token().await;
    let r = client
        .json_call(
            "PUT",
            &vault_url(&format!("/secrets/db-password?{API}")),
            &token,
            &json!({"value": "first", "contentType": "text/plain", "tags": {"env": "test"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let first = r.json();
    assert_eq!(first["value"], "first");
    assert_eq!(first["contentType"], "text/plain");
    assert_eq!(first["tags"], json!({"env": "test"}));
    assert_attributes(&first["attributes"], true);
    let v1 = assert_version_id(first["id"].as_str().unwrap(), "secrets", "db-password");

    let v2 = emu
        .set_secret(VAULT, "db-password", "second", None)
        .unwrap();
    let latest = client
        .get(
            &vault_url(&format!("/secrets/db-password?{API}")),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(latest["value"], "second");
    assert_eq!(
        assert_version_id(latest["id"].as_str().unwrap(), "secrets", "db-password"),
        v2
    );
    assert!(latest.get("contentType").is_none());

    // Names are case-insensitive; ids keep the first spelling.
    let by_version = client
        .get(
            &vault_url(&format!("/secrets/DB-Password/{v1}?{API}")),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(by_version["value"], "first");
    assert_eq!(by_version["id"], first["id"]);

    // Update (PATCH) disables a version; the answer carries no value.
    let r = client
        .json_call(
            "PATCH",
            &vault_url(&format!("/secrets/db-password/{v1}?{API}")),
            &token,
            &json!({"attributes": {"enabled": false}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let updated = r.json();
    assert!(updated.get("value").is_none(), "{updated}");
    assert_eq!(updated["attributes"]["enabled"], false);

    let r = client
        .get(
            &vault_url(&format!("/secrets/db-password/{v1}?{API}")),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json(),
        json!({"error": {"code": "Forbidden", "message": "Operation get is not allowed on a disabled secret.", "innererror": {"code": "SecretDisabled"}}})
    );

    // Disabled versions are listed with enabled=false and without values.
    let list = client
        .get(
            &vault_url(&format!("/secrets/db-password/versions?{API}")),
            Some(&token),
        )
        .await
        .json();
    let items = list["value"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["attributes"]["enabled"], false);
    assert_eq!(items[1]["attributes"]["enabled"], true);
    assert!(items.iter().all(|i| i.get("value").is_none()));
    assert_eq!(items[0]["contentType"], "text/plain");
    assert_eq!(list["nextLink"], Value::Null);

    // Re-enable through the library API; a disabled *latest* version forbids the unversioned get.
    emu.set_enabled(VAULT, ObjectKind::Secret, "db-password", &v1, true)
        .unwrap();
    emu.disable_version(VAULT, ObjectKind::Secret, "db-password", &v2)
        .unwrap();
    assert_eq!(
        client
            .get(
                &vault_url(&format!("/secrets/db-password/{v1}?{API}")),
                Some(&token)
            )
            .await
            .status,
        200
    );
    assert_eq!(
        client
            .get(
                &vault_url(&format!("/secrets/db-password?{API}")),
                Some(&token)
            )
            .await
            .status,
        403
    );

    // Listing the vault's secrets gives unversioned ids.
    emu.set_secret_with(VAULT, "other", SecretSpec::new("x"))
        .unwrap();
    let all = client
        .get(&vault_url(&format!("/secrets?{API}")), Some(&token))
        .await
        .json();
    let ids: Vec<&str> = all["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            "https://myvault.vault.azure.net/secrets/db-password",
            "https://myvault.vault.azure.net/secrets/other"
        ]
    );

    // Invalid body and name.
    let r = client
        .json_call(
            "PUT",
            &vault_url(&format!("/secrets/bad_name?{API}")),
            &token,
            &json!({"value": "v"}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = client
        .json_call(
            "PUT",
            &vault_url(&format!("/secrets/ok?{API}")),
            &token,
            &json!({"nope": 1}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "BadParameter");
    emu.shutdown().await;
}

#[tokio::test]
async fn versions_are_paged_with_next_link() {
    let (emu, client) = standard().await;
    let mut versions = Vec::new();
    for i in 0..30 {
        versions.push(
            emu.set_secret(VAULT, "paged", &format!("v{i}"), None)
                .unwrap(),
        );
    }
    let token = client.token().await;

    let mut url = vault_url(&format!("/secrets/paged/versions?{API}&maxresults=7"));
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = client.get(&url, Some(&token)).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let body = page.json();
        pages += 1;
        let items = body["value"].as_array().unwrap();
        assert!(items.len() <= 7);
        for i in items {
            seen.push(assert_version_id(
                i["id"].as_str().unwrap(),
                "secrets",
                "paged",
            ));
        }
        match body["nextLink"].as_str() {
            Some(next) => {
                assert!(
                    next.starts_with("https://myvault.vault.azure.net:443/secrets/paged/versions?api-version=7.4&$skiptoken="),
                    "{next}"
                );
                assert!(next.ends_with("&maxresults=7"), "{next}");
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(seen, versions);

    // Default page size is 25; out-of-range maxresults is a 400.
    let body = client
        .get(
            &vault_url(&format!("/secrets/paged/versions?{API}")),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(body["value"].as_array().unwrap().len(), 25);
    assert!(body["nextLink"].is_string());
    let r = client
        .get(
            &vault_url(&format!("/secrets/paged/versions?{API}&maxresults=26")),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = client
        .get(
            &vault_url(&format!("/secrets/paged/versions?{API}&$skiptoken=garbage")),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 400);
    emu.shutdown().await;
}

#[tokio::test]
async fn not_found_bodies() {
    let (emu, client) = standard().await;
    let token = client.token().await;
    let cases = [
        (
            "/secrets/nope",
            "SecretNotFound",
            "A secret with (name/id) nope was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
        ),
        (
            "/keys/nokey",
            "KeyNotFound",
            "A key with (name/id) nokey was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
        ),
        (
            "/certificates/nocert",
            "CertificateNotFound",
            "A certificate with (name/id) nocert was not found in this key vault. If you recently deleted this certificate you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
        ),
    ];
    for (path, code, message) in cases {
        let r = client
            .get(&vault_url(&format!("{path}?{API}")), Some(&token))
            .await;
        assert_eq!(r.status, 404);
        assert_eq!(
            r.json(),
            json!({"error": {"code": code, "message": message}})
        );
    }
    let v = emu.set_secret(VAULT, "exists", "x", None).unwrap();
    // A version that differs from the real one in its last digit (a fixed digit would match it one
    // time in sixteen).
    let last = if v.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &v[..31]);
    let r = client
        .get(
            &vault_url(&format!("/secrets/exists/{wrong}?{API}")),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains(&format!("exists/{wrong}")));
    assert_eq!(emu.counters().not_found, 4);

    // A vault that is not seeded.
    let r = client
        .get(
            &format!("https://novault.vault.azure.net/secrets/x?{API}"),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "VaultNotFound");
    emu.shutdown().await;
}

#[tokio::test]
async fn access_list_forbids_other_identities() {
    let (emu, client) = standard().await;
    emu.add_vault(VaultSpec::new("locked", TENANT).with_access(&[CLIENT_ID]))
        .unwrap();
    emu.set_secret("locked", "s", "v", None).unwrap();
    emu.add_app(TENANT, "intruder", "intruder-secret");
    let url = format!("https://locked.vault.azure.net/secrets/s?{API}");
    let allowed = client.token().await;
    assert_eq!(client.get(&url, Some(&allowed)).await.status, 200);
    let r = client
        .form(
            &format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "intruder"),
                ("client_secret", "intruder-secret"),
                ("scope", "https://vault.azure.net/.default"),
            ],
        )
        .await;
    let other = r.json()["access_token"].as_str().unwrap().to_string();
    let r = client.get(&url, Some(&other)).await;
    assert_eq!(r.status, 403);
    let body = r.json();
    assert_eq!(body["error"]["code"], "Forbidden");
    assert_eq!(body["error"]["innererror"]["code"], "AccessDenied");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("The user, group or application 'appid=intruder;oid="),
        "{msg}"
    );
    assert!(msg.contains(&format!("iss=https://sts.windows.net/{TENANT}/' does not have secrets get permission on key vault 'locked;location=eastus'")), "{msg}");
    emu.shutdown().await;
}

#[tokio::test]
async fn keys_create_import_get_list() {
    let (emu, client) = standard().await;
    let token = client.token().await;
    let create = |name: &'static str, body: Value| {
        let client = client.clone();
        let token = token.clone();
        async move {
            client
                .json_call(
                    "POST",
                    &vault_url(&format!("/keys/{name}/create?{API}")),
                    &token,
                    &body,
                )
                .await
        }
    };

    let r = create("rsa-key", json!({"kty": "RSA", "key_size": 2048})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rsa = r.json();
    let jwk = &rsa["key"];
    let version = assert_version_id(jwk["kid"].as_str().unwrap(), "keys", "rsa-key");
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["e"], "AQAB");
    assert_eq!(
        jwk["key_ops"],
        json!([
            "encrypt",
            "decrypt",
            "sign",
            "verify",
            "wrapKey",
            "unwrapKey"
        ])
    );
    let n = base64_url(jwk["n"].as_str().unwrap());
    assert_eq!(n.len(), 256);
    assert!(n[0] & 0x80 != 0);
    assert_attributes(&rsa["attributes"], true);
    assert_eq!(rsa["attributes"]["exportable"], false);
    let mut members: Vec<&String> = jwk.as_object().unwrap().keys().collect();
    members.sort();
    assert_eq!(members, ["e", "key_ops", "kid", "kty", "n"]);

    for (name, crv, len) in [
        ("ec256", "P-256", 32),
        ("ec384", "P-384", 48),
        ("ec521", "P-521", 66),
    ] {
        let r = create(name, json!({"kty": "EC", "crv": crv})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let k = r.json();
        assert_eq!(k["key"]["kty"], "EC");
        assert_eq!(k["key"]["crv"], crv);
        assert_eq!(k["key"]["key_ops"], json!(["sign", "verify"]));
        assert_eq!(base64_url(k["key"]["x"].as_str().unwrap()).len(), len);
        assert_eq!(base64_url(k["key"]["y"].as_str().unwrap()).len(), len);
    }
    let r = create("hsm", json!({"kty": "EC-HSM", "crv": "P-256"})).await;
    assert_eq!(r.json()["key"]["kty"], "EC-HSM");
    for bad in [
        json!({"kty": "RSA", "key_size": 1024}),
        json!({"kty": "EC", "crv": "P-256K"}),
        json!({"kty": "oct"}),
        json!({}),
    ] {
        let r = create("bad", bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["error"]["code"], "BadParameter");
    }

    // Get latest and by version; list versions.
    let got = client
        .get(
            &vault_url(&format!("/keys/rsa-key/{version}?{API}")),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(got["key"], rsa["key"]);
    let latest = client
        .get(&vault_url(&format!("/keys/rsa-key?{API}")), Some(&token))
        .await
        .json();
    assert_eq!(latest["key"], rsa["key"]);
    let list = client
        .get(
            &vault_url(&format!("/keys/rsa-key/versions?{API}")),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(list["value"][0]["kid"], rsa["key"]["kid"]);
    assert!(list["value"][0].get("key").is_none());

    // Import an EC key made by openssl as a JWK; the public point must be openssl's.
    let fx = Fixtures::new();
    fx.run_ec_key("imp.key", "P-256");
    let (d, point) = fx.ec_private_and_public("imp.key");
    let jwk = json!({
        "kty": "EC", "crv": "P-256",
        "x": b64u(&point[1..33]), "y": b64u(&point[33..65]), "d": b64u(&d),
        "key_ops": ["sign"]
    });
    let r = client
        .json_call(
            "PUT",
            &vault_url(&format!("/keys/imported?{API}")),
            &token,
            &json!({"key": jwk, "tags": {"a": "b"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let imported = r.json();
    assert_eq!(imported["key"]["x"], b64u(&point[1..33]));
    assert_eq!(imported["key"]["key_ops"], json!(["sign"]));
    assert!(
        imported["key"].get("d").is_none(),
        "private part must not be returned"
    );
    assert_eq!(imported["tags"], json!({"a": "b"}));
    let r = client
        .json_call("PUT", &vault_url(&format!("/keys/pubonly?{API}")), &token, &json!({"key": {"kty": "EC", "crv": "P-256", "x": b64u(&point[1..33]), "y": b64u(&point[33..65])}}))
        .await;
    assert_eq!(r.status, 400);

    // Import through the library API from PEM; modulus must match openssl's.
    fx.run_rsa_key("lib.key");
    let pem = String::from_utf8(fx.read("lib.key")).unwrap();
    let kv = emu
        .import_key_pem(
            VAULT,
            "from-pem",
            &pem,
            KeyOptions {
                hsm: true,
                ..KeyOptions::default()
            },
        )
        .unwrap();
    let got = client
        .get(
            &vault_url(&format!("/keys/from-pem/{kv}?{API}")),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(got["key"]["kty"], "RSA-HSM");
    let modulus = fx.rsa_modulus_hex("lib.key");
    let n_hex: String = base64_url(got["key"]["n"].as_str().unwrap())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(n_hex, modulus);

    // Disabled key versions are forbidden to get.
    emu.disable_version(VAULT, ObjectKind::Key, "from-pem", &kv)
        .unwrap();
    let r = client
        .get(&vault_url(&format!("/keys/from-pem?{API}")), Some(&token))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["innererror"]["code"], "KeyDisabled");
    emu.shutdown().await;
}

fn base64_url(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64url without padding")
}

fn b64u(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

trait KeyFixtures {
    fn run_ec_key(&self, out: &str, curve: &str);
    fn run_rsa_key(&self, out: &str);
    fn ec_private_and_public(&self, key: &str) -> (Vec<u8>, Vec<u8>);
    fn rsa_modulus_hex(&self, key: &str) -> String;
}

fn hex_block(text: &str, label: &str) -> Vec<u8> {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with(label) {
            inside = true;
            continue;
        }
        if inside {
            if line.starts_with("    ") {
                out.push_str(line.trim().trim_end_matches(':'));
                out.push(':');
            } else {
                break;
            }
        }
    }
    out.split(':')
        .filter(|s| !s.is_empty())
        .map(|h| u8::from_str_radix(h, 16).expect("hex"))
        .collect()
}

impl KeyFixtures for Fixtures {
    fn run_ec_key(&self, out: &str, curve: &str) {
        openssl(
            self.dir.path(),
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                &format!("ec_paramgen_curve:{curve}"),
                "-out",
                out,
            ],
        );
    }

    fn run_rsa_key(&self, out: &str) {
        openssl(
            self.dir.path(),
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                out,
            ],
        );
    }

    fn ec_private_and_public(&self, key: &str) -> (Vec<u8>, Vec<u8>) {
        let text = String::from_utf8(openssl(
            self.dir.path(),
            &["ec", "-in", key, "-noout", "-text"],
        ))
        .unwrap();
        let mut d = hex_block(&text, "priv:");
        while d.len() > 32 && d[0] == 0 {
            d.remove(0);
        }
        (d, hex_block(&text, "pub:"))
    }

    fn rsa_modulus_hex(&self, key: &str) -> String {
        let out = String::from_utf8(openssl(
            self.dir.path(),
            &["rsa", "-in", key, "-noout", "-modulus"],
        ))
        .unwrap();
        out.trim().trim_start_matches("Modulus=").to_string()
    }
}
