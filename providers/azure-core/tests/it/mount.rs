//! `mount` against a fake host that answers like Key Vault and AAD: parameters, clouds, auth
//! modes, challenge, token caching, retries, concurrency, version history and error paths.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::*;
use secrets_store_azure_core::{
    ErrorKind, HttpResponse, Method, MountResponse, ProviderError, TransportError, describe, mount,
};
use serde_json::json;

fn host_with_secret(name: &str, value: &str) -> FakeHost {
    let host = FakeHost::default();
    host.azure.borrow_mut().add_secret(name, "v1", value);
    host
}

fn mount_ok(host: &FakeHost, request: &secrets_store_azure_core::MountRequest) -> MountResponse {
    match mount(host, request) {
        Ok(response) => response,
        Err(e) => panic!("mount failed: {e}"),
    }
}

fn mount_err(host: &FakeHost, request: &secrets_store_azure_core::MountRequest) -> ProviderError {
    match mount(host, request) {
        Ok(response) => panic!("mount succeeded: {response:?}"),
        Err(e) => e,
    }
}

fn invalid(host: &FakeHost, request: &secrets_store_azure_core::MountRequest, needle: &str) {
    let e = mount_err(host, request);
    assert_eq!(e.kind, ErrorKind::InvalidParameters, "{e}");
    assert!(
        e.message.contains(needle),
        "{:?} does not contain {needle:?}",
        e.message
    );
    assert!(
        host.batches.borrow().is_empty(),
        "no request may be sent for invalid parameters"
    );
}

// ---------------------------------------------------------------------------------------------
// describe

#[test]
fn describe_lists_every_cloud() {
    let info = describe();
    assert_eq!(info.name, "azure");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    for &host in crate::azure::AZURE_HOSTS {
        assert!(
            info.outbound_hosts.iter().any(|h| h == host),
            "{host} missing"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// the simple path and the request sequence

#[test]
fn cold_mount_probes_gets_a_token_then_fetches_everything_in_one_batch() {
    let host = FakeHost::default();
    for name in ["a", "b", "c"] {
        host.azure
            .borrow_mut()
            .add_secret(name, &format!("ver-{name}"), &format!("value-{name}"));
    }
    let response = mount_ok(
        &host,
        &sp_request(&objects(&[
            ("a", "secret", ""),
            ("b", "secret", "objectAlias: bee"),
            ("c", "secret", "filePermission: \"0400\""),
        ])),
    );

    let batches = host.batches.borrow();
    assert_eq!(batches.len(), 3, "{:?}", host.batch_urls());
    // 1: unauthenticated probe for the challenge.
    assert_eq!(batches[0].len(), 1);
    assert_eq!(
        batches[0][0].url,
        "https://kv1.vault.azure.net/secrets/a?api-version=7.4"
    );
    assert_eq!(batches[0][0].header("Authorization"), None);
    // 2: the token.
    assert_eq!(batches[1].len(), 1);
    assert_eq!(
        batches[1][0].url,
        format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
    );
    assert_eq!(batches[1][0].method, Method::Post);
    assert_eq!(
        String::from_utf8(batches[1][0].body.clone()).unwrap(),
        "grant_type=client_credentials&client_id=sp-client&client_secret=s3cr3t-value&scope=https%3A%2F%2Fvault.azure.net%2F.default"
    );
    // 3: every object at once, authorized.
    assert_eq!(
        batches[2]
            .iter()
            .map(|r| r.url.as_str())
            .collect::<Vec<_>>(),
        [
            "https://kv1.vault.azure.net/secrets/a?api-version=7.4",
            "https://kv1.vault.azure.net/secrets/b?api-version=7.4",
            "https://kv1.vault.azure.net/secrets/c?api-version=7.4"
        ]
    );
    assert!(
        batches[2]
            .iter()
            .all(|r| r.header("Authorization") == Some("Bearer tok-1"))
    );

    let files: Vec<(&str, u32, &[u8])> = response
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.mode, f.contents.as_slice()))
        .collect();
    assert_eq!(
        files,
        [
            ("a", 0o644, &b"value-a"[..]),
            ("bee", 0o644, b"value-b"),
            ("c", 0o400, b"value-c")
        ]
    );
    let versions: Vec<(&str, &str)> = response
        .object_versions
        .iter()
        .map(|v| (v.id.as_str(), v.version.as_str()))
        .collect();
    assert_eq!(
        versions,
        [
            ("secret/a", "ver-a"),
            ("secret/b", "ver-b"),
            ("secret/c", "ver-c")
        ]
    );
    assert!(host.sleeps.borrow().is_empty());
}

#[test]
fn warm_mount_is_one_round_trip() {
    let host = host_with_secret("a", "value");
    let request = sp_request(&objects(&[("a", "secret", "")]));
    mount_ok(&host, &request);
    host.reset_records();
    let response = mount_ok(&host, &request);
    assert_eq!(
        host.batch_urls(),
        vec![vec![
            "https://kv1.vault.azure.net/secrets/a?api-version=7.4".to_string()
        ]]
    );
    assert_eq!(response.files[0].contents, b"value");
}

#[test]
fn large_mounts_are_sent_in_bounded_batches() {
    let host = FakeHost::default();
    let names: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
    for name in &names {
        host.azure.borrow_mut().add_secret(name, "v", name);
    }
    let items: Vec<(&str, &str, &str)> = names.iter().map(|n| (n.as_str(), "secret", "")).collect();
    let response = mount_ok(&host, &sp_request(&objects(&items)));
    let sizes: Vec<usize> = host.batches.borrow().iter().map(Vec::len).collect();
    assert_eq!(sizes, [1, 1, 16, 4]);
    assert_eq!(response.files.len(), 20);
    assert_eq!(response.files[19].contents, b"s19");
}

#[test]
fn empty_objects_array_mounts_nothing() {
    let host = FakeHost::default();
    for objects_yaml in ["array:", "array: []", "{}", "# only a comment"] {
        let response = mount_ok(&host, &sp_request(objects_yaml));
        assert_eq!(response, MountResponse::default());
    }
    assert!(host.batches.borrow().is_empty());
}

#[test]
fn pinned_versions_are_requested_and_reported() {
    let host = FakeHost::default();
    host.azure.borrow_mut().add_secret("a", "old", "old-value");
    host.azure.borrow_mut().add_secret("a", "new", "new-value");
    let response = mount_ok(
        &host,
        &sp_request(&objects(&[
            ("a", "secret", "objectVersion: old"),
            ("a", "secret", "objectAlias: cur\nobjectVersion: latest"),
        ])),
    );
    assert_eq!(response.files[0].contents, b"old-value");
    assert_eq!(response.files[1].contents, b"new-value");
    assert_eq!(response.object_versions[0].version, "old");
    assert_eq!(response.object_versions[1].version, "new");
    let last = host.batches.borrow().last().unwrap().clone();
    assert_eq!(
        last[0].url,
        "https://kv1.vault.azure.net/secrets/a/old?api-version=7.4"
    );
    assert_eq!(
        last[1].url,
        "https://kv1.vault.azure.net/secrets/a?api-version=7.4"
    );
}

// ---------------------------------------------------------------------------------------------
// parameters

#[test]
fn required_parameters() {
    let host = FakeHost::default();
    let o = objects(&[("a", "secret", "")]);
    invalid(
        &host,
        &request(&[("tenantID", TENANT), ("objects", &o)], SP_SECRETS),
        "keyvaultName is not set",
    );
    invalid(
        &host,
        &request(
            &[
                ("keyvaultName", "  "),
                ("tenantID", TENANT),
                ("objects", &o),
            ],
            SP_SECRETS,
        ),
        "keyvaultName is not set",
    );
    invalid(
        &host,
        &request(&[("keyvaultName", "kv1"), ("objects", &o)], SP_SECRETS),
        "tenantID is not set",
    );
    invalid(
        &host,
        &request(&[("keyvaultName", "kv1"), ("tenantID", TENANT)], SP_SECRETS),
        "objects is not set",
    );
    invalid(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("objects", "  "),
            ],
            SP_SECRETS,
        ),
        "objects is not set",
    );
}

#[test]
fn tenant_id_spellings() {
    let o = objects(&[("a", "secret", "")]);
    // tenantID wins over the deprecated tenantId.
    let host = host_with_secret("a", "x");
    mount_ok(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", "preferred"),
                ("tenantId", "old"),
                ("objects", &o),
            ],
            SP_SECRETS,
        ),
    );
    assert!(
        host.token_requests()[0]
            .url
            .contains("/preferred/oauth2/v2.0/token")
    );
    let host = host_with_secret("a", "x");
    mount_ok(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantId", " old "),
                ("objects", &o),
            ],
            SP_SECRETS,
        ),
    );
    assert!(
        host.token_requests()[0]
            .url
            .contains("/old/oauth2/v2.0/token")
    );
    let host = FakeHost::default();
    invalid(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", "a/b"),
                ("objects", &o),
            ],
            SP_SECRETS,
        ),
        "invalid tenantID",
    );
}

#[test]
fn vault_names_are_validated() {
    let o = objects(&[("a", "secret", "")]);
    let host = FakeHost::default();
    for (name, needle) in [
        ("kv", "between 3 and 24"),
        ("a-very-long-key-vault-name", "between 3 and 24"),
        ("kv_1", "must match"),
        ("kv.evil.com", "must match"),
    ] {
        invalid(
            &host,
            &request(
                &[
                    ("keyvaultName", name),
                    ("tenantID", TENANT),
                    ("objects", &o),
                ],
                SP_SECRETS,
            ),
            needle,
        );
    }
}

#[test]
fn boolean_flags_follow_go_parse_bool() {
    let o = objects(&[("a", "secret", "")]);
    let host = FakeHost::default();
    invalid(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("objects", &o),
                ("usePodIdentity", "tru"),
            ],
            SP_SECRETS,
        ),
        "usePodIdentity",
    );
    invalid(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("objects", &o),
                ("useVMManagedIdentity", "yes"),
            ],
            SP_SECRETS,
        ),
        "useVMManagedIdentity",
    );
    invalid(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("objects", &o),
                ("usePodIdentity", "T"),
                ("useVMManagedIdentity", "1"),
            ],
            &[],
        ),
        "cannot enable both",
    );
    invalid(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("objects", &o),
                ("usePodServiceAccountAnnotation", "true"),
            ],
            &[],
        ),
        "usePodServiceAccountAnnotation is not supported",
    );
    // "False", "0", "f" and empty are false: the service principal is used.
    for value in ["False", "0", "f", ""] {
        let host = host_with_secret("a", "x");
        mount_ok(
            &host,
            &request(
                &[
                    ("keyvaultName", "kv1"),
                    ("tenantID", TENANT),
                    ("objects", &o),
                    ("usePodIdentity", value),
                    ("useVMManagedIdentity", value),
                ],
                SP_SECRETS,
            ),
        );
        assert!(
            host.token_requests()[0]
                .url
                .starts_with("https://login.microsoftonline.com/")
        );
    }
}

#[test]
fn object_validation_errors_name_the_object_and_field() {
    let host = FakeHost::default();
    let cases: &[(&str, &str)] = &[
        (
            "  - |\n    objectName: db\n    objectType: foo\n",
            r#"object "db": objectType "foo" is not one of secret, key, cert"#,
        ),
        (
            "  - |\n    objectName: db\n    objectType: Secret\n",
            r#"objectType "Secret" is not one of"#,
        ),
        (
            "  - |\n    objectName: db\n",
            r#"objectType "" is not one of"#,
        ),
        (
            "  - |\n    objectType: secret\n",
            "object at index 0: objectName is not set",
        ),
        (
            "  - |\n    objectName: a/b\n    objectType: secret\n",
            "is not a Key Vault object name",
        ),
        (
            "  - |\n    objectName: db\n    objectType: secret\n    objectFormat: der\n",
            r#"objectFormat "der" is not one of pem, pfx"#,
        ),
        (
            "  - |\n    objectName: db\n    objectType: key\n    objectFormat: pfx\n",
            "objectFormat pfx is only supported for objectType secret",
        ),
        (
            "  - |\n    objectName: db\n    objectType: cert\n    objectEncoding: base64\n",
            "objectEncoding is only supported for objectType secret",
        ),
        (
            "  - |\n    objectName: db\n    objectType: secret\n    objectEncoding: utf16\n",
            r#"objectEncoding "utf16" is not one of"#,
        ),
        (
            "  - |\n    objectName: db\n    objectType: secret\n    filePermission: \"0999\"\n",
            "filePermission \"0999\" must be an octal",
        ),
        (
            "  - |\n    objectName: db\n    objectType: secret\n    objectVersionHistory: \"3\"\n",
            "objectVersionHistory \"3\" must be an integer",
        ),
        (
            "  - |\n    objectName: db\n    objectType: secret\n    objectAlias: ../../etc/passwd\n",
            "must not contain '..'",
        ),
        (
            "  - |\n    objectName: db\n    objectType: secret\n    objectAlias: /etc/passwd\n",
            "must be a relative path",
        ),
        (
            "  - |\n    objectName: db\n    objectType: secret\n    objectNotAfter: 2026-06-05T19:41Z\n",
            "objectNotAfter is not supported",
        ),
        (
            "  - |\n    objectName: db\n    objectType: secret\n    objectType: key\n",
            "already defined",
        ),
        (
            "  - |\n    objectName: db\n    objectType: [secret]\n",
            "objectType must be a string",
        ),
        (
            "  - objectName: db\n    objectType: secret\n",
            "write `- |` before the object",
        ),
        (
            "  - |\n    just a string\n",
            "cannot unmarshal !!str into an object",
        ),
        (
            "  - |\n    objectName: a\n    objectType: secret\n  - |\n    objectName: b\n    objectType: secret\n    objectAlias: a\n",
            "is already the file of object \"a\"",
        ),
    ];
    for (items, needle) in cases {
        let yaml = format!("array:\n{items}");
        invalid(&host, &sp_request(&yaml), needle);
    }
    invalid(
        &host,
        &sp_request("array: [unclosed"),
        "failed to yaml unmarshal objects",
    );
    invalid(
        &host,
        &sp_request("array: just-a-string"),
        "cannot unmarshal !!str into the `array` list",
    );
    let e = mount_err(
        &host,
        &sp_request("array:\n  - |\n    objectName: db-password\n    objectType: foo\n"),
    );
    assert_eq!(e.object.as_deref(), Some("db-password"));
    assert_eq!(
        e.message,
        r#"object "db-password": objectType "foo" is not one of secret, key, cert"#
    );
}

#[test]
fn object_fields_are_trimmed_and_case_insensitive_where_upstream_is() {
    let host = FakeHost::default();
    host.azure.borrow_mut().add_secret("db", "v1", "68656c6c6f");
    let yaml = "array:\n  - |\n    objectName: \"db  \"\n    objectType: ' secret'\n    objectEncoding: HEX\n    objectAlias: ./dir//file\n    objectFormat: PEM\n    unknownField: ignored\n";
    let response = mount_ok(&host, &sp_request(yaml));
    assert_eq!(response.files[0].path, "dir/file");
    assert_eq!(response.files[0].contents, b"hello");
}

#[test]
fn clouds_select_vault_suffix_and_authority() {
    let o = objects(&[("a", "secret", "")]);
    for (cloud, vault, login) in [
        ("", "kv1.vault.azure.net", "login.microsoftonline.com"),
        (
            "AzurePublicCloud",
            "kv1.vault.azure.net",
            "login.microsoftonline.com",
        ),
        (
            "azureusgovernmentcloud",
            "kv1.vault.usgovcloudapi.net",
            "login.microsoftonline.us",
        ),
        (
            "AzureChinaCloud",
            "kv1.vault.azure.cn",
            "login.chinacloudapi.cn",
        ),
        (
            "AZUREGERMANCLOUD",
            "kv1.vault.microsoftazure.de",
            "login.microsoftonline.de",
        ),
    ] {
        let host = host_with_secret("a", "x");
        mount_ok(
            &host,
            &request(
                &[
                    ("keyvaultName", "kv1"),
                    ("tenantID", TENANT),
                    ("cloudName", cloud),
                    ("objects", &o),
                ],
                SP_SECRETS,
            ),
        );
        let requests = host.requests();
        assert_eq!(
            requests[0].url,
            format!("https://{vault}/secrets/a?api-version=7.4"),
            "{cloud}"
        );
        assert_eq!(
            requests[1].url,
            format!("https://{login}/{TENANT}/oauth2/v2.0/token"),
            "{cloud}"
        );
        let suffix = vault.split_once('.').unwrap().1;
        assert!(
            String::from_utf8(requests[1].body.clone())
                .unwrap()
                .ends_with(&format!("scope=https%3A%2F%2F{suffix}%2F.default"))
        );
    }
    let host = FakeHost::default();
    invalid(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("cloudName", "AzureWrongCloud"),
                ("objects", &o),
            ],
            SP_SECRETS,
        ),
        "cloudName \"AzureWrongCloud\" is not valid",
    );
}

#[test]
fn custom_cloud_file_allowed_and_refused() {
    let o = objects(&[("a", "secret", "")]);
    let env = json!({"name": "AzureStackCloud", "activeDirectoryEndpoint": "https://login.stack.example/", "keyVaultDNSSuffix": "vault.stack.example",
                     "resourceManagerEndpoint": "https://management.stack.example/"});
    let mut host = host_with_secret("a", "stack-value");
    host.files.insert(
        "/etc/kubernetes/custom.json".to_string(),
        serde_json::to_vec(&env).unwrap(),
    );
    let attrs = [
        ("keyvaultName", "kv1"),
        ("tenantID", TENANT),
        ("cloudName", "AzureStackCloud"),
        ("cloudEnvFileName", "/etc/kubernetes/custom.json"),
        ("objects", o.as_str()),
    ];
    let response = mount_ok(&host, &request(&attrs, SP_SECRETS));
    assert_eq!(response.files[0].contents, b"stack-value");
    let requests = host.requests();
    assert_eq!(
        requests[0].url,
        "https://kv1.vault.stack.example/secrets/a?api-version=7.4"
    );
    assert_eq!(
        requests[1].url,
        format!("https://login.stack.example/{TENANT}/oauth2/v2.0/token")
    );

    // Not listed in the policy: a clear error that names the path and the remedy.
    let host = FakeHost::default();
    let attrs = [
        ("keyvaultName", "kv1"),
        ("tenantID", TENANT),
        ("cloudName", "azurestackcloud"),
        ("cloudEnvFileName", "/etc/other.json"),
        ("objects", o.as_str()),
    ];
    invalid(
        &host,
        &request(&attrs, SP_SECRETS),
        "\"/etc/other.json\" could not be read (/etc/other.json is not in the provider's host-files policy); the operator must list this path",
    );
    let attrs = [
        ("keyvaultName", "kv1"),
        ("tenantID", TENANT),
        ("cloudName", "AzureStackCloud"),
        ("objects", o.as_str()),
    ];
    invalid(
        &host,
        &request(&attrs, SP_SECRETS),
        "requires cloudEnvFileName",
    );
    let mut host = FakeHost::default();
    host.files.insert(
        "/bad.json".to_string(),
        b"{\"activeDirectoryEndpoint\":\"https://x/\"}".to_vec(),
    );
    let attrs = [
        ("keyvaultName", "kv1"),
        ("tenantID", TENANT),
        ("cloudName", "AzureStackCloud"),
        ("cloudEnvFileName", "/bad.json"),
        ("objects", o.as_str()),
    ];
    invalid(
        &host,
        &request(&attrs, SP_SECRETS),
        "does not set keyVaultDNSSuffix",
    );
}

// ---------------------------------------------------------------------------------------------
// auth modes

#[test]
fn service_principal_credentials_are_case_insensitive_and_required() {
    let o = objects(&[("a", "secret", "")]);
    let host = host_with_secret("a", "x");
    mount_ok(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("objects", &o),
            ],
            &[("ClientID", "sp-client"), ("CLIENTSECRET", "s3cr3t-value")],
        ),
    );
    let host = FakeHost::default();
    invalid(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("objects", &o),
            ],
            &[],
        ),
        "nodePublishSecretRef secret is not set",
    );
    invalid(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("objects", &o),
            ],
            &[("clientid", "x")],
        ),
        "could not find clientsecret",
    );
    invalid(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("objects", &o),
            ],
            &[("clientsecret", "x")],
        ),
        "could not find clientid",
    );
}

#[test]
fn workload_identity_exchanges_the_service_account_token() {
    let o = objects(&[("a", "secret", "")]);
    let host = host_with_secret("a", "wi-value");
    let tokens = sa_tokens("sa-jwt");
    // Workload identity wins over a nodePublishSecretRef.
    let response = mount_ok(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("clientID", "wi-client"),
                ("csi.storage.k8s.io/serviceAccount.tokens", &tokens),
                ("objects", &o),
            ],
            SP_SECRETS,
        ),
    );
    assert_eq!(response.files[0].contents, b"wi-value");
    let token_request = &host.token_requests()[0];
    assert_eq!(
        token_request.url,
        format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
    );
    assert_eq!(
        String::from_utf8(token_request.body.clone()).unwrap(),
        "grant_type=client_credentials&client_id=wi-client&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=sa-jwt&scope=https%3A%2F%2Fvault.azure.net%2F.default"
    );

    let host = FakeHost::default();
    invalid(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("clientID", "wi-client"),
                ("objects", &o),
            ],
            SP_SECRETS,
        ),
        "service account tokens not found",
    );
    let other = json!({"other-audience": {"token": "x", "expirationTimestamp": ""}}).to_string();
    invalid(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("clientID", "wi-client"),
                ("csi.storage.k8s.io/serviceAccount.tokens", &other),
                ("objects", &o),
            ],
            &[],
        ),
        "token for audience api://AzureADTokenExchange not found",
    );
    invalid(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("clientID", "wi-client"),
                ("csi.storage.k8s.io/serviceAccount.tokens", "{not json"),
                ("objects", &o),
            ],
            &[],
        ),
        "failed to unmarshal service account tokens",
    );
    // A rejected assertion is an authentication failure, and the assertion is not echoed.
    let host = host_with_secret("a", "x");
    let bad = sa_tokens("bad-jwt");
    let e = mount_err(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("clientID", "wi-client"),
                ("csi.storage.k8s.io/serviceAccount.tokens", &bad),
                ("objects", &o),
            ],
            &[],
        ),
    );
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
    assert!(e.message.contains("AADSTS700211"), "{e}");
    assert!(!e.message.contains("bad-jwt"));
}

#[test]
fn managed_identity_uses_imds() {
    let o = objects(&[("a", "secret", "")]);
    let host = host_with_secret("a", "mi-value");
    let response = mount_ok(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("useVMManagedIdentity", "true"),
                ("objects", &o),
            ],
            &[],
        ),
    );
    assert_eq!(response.files[0].contents, b"mi-value");
    let token_request = &host.token_requests()[0];
    assert_eq!(token_request.method, Method::Get);
    assert_eq!(
        token_request.url,
        "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net"
    );
    assert_eq!(token_request.header("Metadata"), Some("true"));

    let host = host_with_secret("a", "x");
    // A nodePublishSecretRef does not matter in an explicit mode.
    mount_ok(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("useVMManagedIdentity", "true"),
                ("userAssignedIdentityID", " uami-id "),
                ("objects", &o),
            ],
            SP_SECRETS,
        ),
    );
    assert_eq!(
        host.token_requests()[0].url,
        "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&client_id=uami-id"
    );
}

#[test]
fn pod_identity_uses_nmi() {
    let o = objects(&[("a", "secret", "")]);
    let host = host_with_secret("a", "pi-value");
    // Pod identity wins over clientID (no token parsing in an explicit mode).
    let response = mount_ok(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("usePodIdentity", "true"),
                ("clientID", "ignored"),
                ("objects", &o),
            ],
            &[],
        ),
    );
    assert_eq!(response.files[0].contents, b"pi-value");
    let token_request = &host.token_requests()[0];
    assert_eq!(
        token_request.url,
        "http://localhost:2579/host/token/?resource=https://vault.azure.net"
    );
    assert_eq!(token_request.header("podns"), Some("default"));
    assert_eq!(token_request.header("podname"), Some("app-0"));

    let host = FakeHost::default();
    invalid(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("usePodIdentity", "true"),
                ("objects", &o),
                ("csi.storage.k8s.io/pod.name", ""),
            ],
            &[],
        ),
        "pod information is not available",
    );
    let host = host_with_secret("a", "x");
    host.azure.borrow_mut().script("localhost:2579", 1, || {
        Ok(HttpResponse {
            status: 404,
            headers: vec![],
            body: b"no AzureIdentity matches the pod".to_vec(),
        })
    });
    let e = mount_err(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("usePodIdentity", "true"),
                ("objects", &o),
            ],
            &[],
        ),
    );
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
    assert!(e.message.contains("nmi response failed with status code: 404, response body: no AzureIdentity matches the pod"), "{e}");
}

#[test]
fn wrong_client_secret_is_unauthenticated_without_echoing_it() {
    let o = objects(&[("a", "secret", "")]);
    let host = host_with_secret("a", "x");
    let e = mount_err(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("objects", &o),
            ],
            &[("clientid", "sp-client"), ("clientsecret", "wrong-secret")],
        ),
    );
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
    assert!(
        e.message
            .contains("invalid_client: AADSTS7000215: Invalid client secret provided."),
        "{e}"
    );
    assert!(!e.message.contains("wrong-secret"));
    for (_, message) in host.logs.borrow().iter() {
        assert!(
            !message.contains("wrong-secret") && !message.contains("tok-"),
            "{message}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// challenge

#[test]
fn challenge_with_scope_and_authorization_uri_is_accepted() {
    let host = host_with_secret("a", "x");
    host.azure.borrow_mut().challenge_header =
        Some(r#"Bearer authorization_uri="https://login.microsoftonline.com/t", scope="https://vault.azure.net/.default""#.to_string());
    mount_ok(&host, &sp_request(&objects(&[("a", "secret", "")])));
    assert!(
        String::from_utf8(host.token_requests()[0].body.clone())
            .unwrap()
            .ends_with("scope=https%3A%2F%2Fvault.azure.net%2F.default")
    );
}

#[test]
fn challenge_for_another_domain_is_refused() {
    let host = host_with_secret("a", "x");
    host.azure.borrow_mut().challenge_header = Some(r#"Bearer authorization="https://login.windows.net/t", resource="https://evil.example.com""#.to_string());
    let e = mount_err(&host, &sp_request(&objects(&[("a", "secret", "")])));
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
    assert!(e.message.contains(r#"challenge resource "https://evil.example.com" doesn't match the requested domain "kv1.vault.azure.net""#), "{e}");
    assert!(
        host.token_requests().is_empty(),
        "no token may be requested for a foreign resource"
    );
    assert!(host.cache.borrow().is_empty());
}

#[test]
fn missing_challenge_is_an_error() {
    let host = host_with_secret("a", "x");
    host.azure.borrow_mut().challenge_header = Some("Basic realm=\"kv\"".to_string());
    let e = mount_err(&host, &sp_request(&objects(&[("a", "secret", "")])));
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
    assert!(e.message.contains("no bearer challenge"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// token cache

fn count_token_requests(host: &FakeHost) -> usize {
    host.token_requests().len()
}

#[test]
fn service_principal_tokens_are_keyed_by_secret() {
    let host = host_with_secret("a", "x");
    host.azure
        .borrow_mut()
        .service_principals
        .insert("sp-client".to_string(), "other-secret".to_string());
    let o = objects(&[("a", "secret", "")]);
    let with_secret = |secret: &str| {
        request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("objects", &o),
            ],
            &[("clientid", "sp-client"), ("clientsecret", secret)],
        )
    };
    mount_ok(&host, &with_secret("other-secret"));
    assert_eq!(count_token_requests(&host), 1);
    // Same client id, different secret: never the first identity's token.
    let e = mount_err(&host, &with_secret("s3cr3t-value"));
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
    assert_eq!(count_token_requests(&host), 2);
    mount_ok(&host, &with_secret("other-secret"));
    assert_eq!(
        count_token_requests(&host),
        2,
        "the first identity reuses its token"
    );
    // Nothing secret in cache keys.
    for (key, _) in host.cache_sets.borrow().iter() {
        assert!(!key.contains("secret") && !key.contains("tok-"), "{key}");
    }
    for (_, (value, _)) in host.cache.borrow().iter() {
        assert!(!String::from_utf8_lossy(value).contains("other-secret"));
    }
}

#[test]
fn workload_identity_tokens_are_keyed_by_service_account() {
    let host = host_with_secret("a", "x");
    let o = objects(&[("a", "secret", "")]);
    let tokens = sa_tokens("sa-jwt");
    let wi = |namespace: &str, sa: &str| {
        request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("clientID", "wi-client"),
                ("csi.storage.k8s.io/serviceAccount.tokens", tokens.as_str()),
                ("csi.storage.k8s.io/pod.namespace", namespace),
                ("csi.storage.k8s.io/serviceAccount.name", sa),
                ("objects", o.as_str()),
            ],
            &[],
        )
    };
    mount_ok(&host, &wi("team-a", "app"));
    mount_ok(&host, &wi("team-a", "app"));
    assert_eq!(count_token_requests(&host), 1);
    mount_ok(&host, &wi("team-a", "other-sa"));
    assert_eq!(count_token_requests(&host), 2);
    mount_ok(&host, &wi("team-b", "app"));
    assert_eq!(count_token_requests(&host), 3);
    // Without the service account name the token is not cached at all.
    mount_ok(&host, &wi("team-a", ""));
    mount_ok(&host, &wi("team-a", ""));
    assert_eq!(count_token_requests(&host), 5);
}

#[test]
fn managed_and_pod_identity_tokens_are_keyed_by_identity() {
    let host = host_with_secret("a", "x");
    let o = objects(&[("a", "secret", "")]);
    let mi = |id: &str| {
        request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("useVMManagedIdentity", "true"),
                ("userAssignedIdentityID", id),
                ("objects", o.as_str()),
            ],
            &[],
        )
    };
    mount_ok(&host, &mi(""));
    mount_ok(&host, &mi(""));
    mount_ok(&host, &mi("uami-1"));
    mount_ok(&host, &mi("uami-2"));
    mount_ok(&host, &mi("uami-1"));
    assert_eq!(count_token_requests(&host), 3);
    let pi = |pod: &str| {
        request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("usePodIdentity", "true"),
                ("csi.storage.k8s.io/pod.name", pod),
                ("objects", o.as_str()),
            ],
            &[],
        )
    };
    mount_ok(&host, &pi("p1"));
    mount_ok(&host, &pi("p1"));
    mount_ok(&host, &pi("p2"));
    assert_eq!(count_token_requests(&host), 5);
    let issued = host
        .azure
        .borrow()
        .issued
        .iter()
        .map(|(_, who)| who.clone())
        .collect::<Vec<_>>();
    assert_eq!(issued[0], "mi:system:https://vault.azure.net");
    assert_eq!(issued[1], "mi:uami-1:https://vault.azure.net");
    assert_eq!(issued[3], "pi:default/p1:https://vault.azure.net");
    assert_eq!(issued[4], "pi:default/p2:https://vault.azure.net");
}

#[test]
fn cached_tokens_expire_before_the_token_does() {
    let host = host_with_secret("a", "x");
    let request = sp_request(&objects(&[("a", "secret", "")]));
    mount_ok(&host, &request);
    let token_ttl = host
        .cache_sets
        .borrow()
        .iter()
        .find(|(k, _)| k.starts_with("aad-token/") && !k.ends_with("#claim"))
        .unwrap()
        .1;
    assert_eq!(token_ttl, 3600 - 300);
    host.now.set(START + 3600 - 301);
    mount_ok(&host, &request);
    assert_eq!(count_token_requests(&host), 1);
    // Inside the five-minute margin the cached token is not used, even if the host still has it.
    host.cache
        .borrow_mut()
        .values_mut()
        .for_each(|(_, expires)| *expires = u64::MAX);
    host.now.set(START + 3600 - 299);
    mount_ok(&host, &request);
    assert_eq!(count_token_requests(&host), 2);
}

#[test]
fn rejected_cached_token_is_refreshed_once() {
    let host = host_with_secret("a", "x");
    let request = sp_request(&objects(&[("a", "secret", "")]));
    mount_ok(&host, &request);
    host.azure.borrow_mut().revoke_all();
    host.reset_records();
    let response = mount_ok(&host, &request);
    assert_eq!(response.files[0].contents, b"x");
    let urls = host.batch_urls();
    assert_eq!(urls.len(), 3, "{urls:?}");
    assert!(urls[0][0].contains("/secrets/a"));
    assert!(urls[1][0].starts_with("https://login."));
    assert!(urls[2][0].contains("/secrets/a"));
    assert_eq!(
        host.batches.borrow()[2][0].header("Authorization"),
        Some("Bearer tok-2")
    );

    // A fresh token that is rejected too is final.
    host.azure.borrow_mut().script("/secrets/a", 10, || {
        let mut reply = kv_error(401, "Unauthorized", "AKV10032: Invalid issuer.");
        reply.headers.push(("WWW-Authenticate".to_string(), r#"Bearer authorization="https://login.windows.net/t", resource="https://vault.azure.net""#.to_string()));
        Ok(reply)
    });
    host.reset_records();
    let e = mount_err(&host, &request);
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
    assert!(e.message.contains("AKV10032"), "{e}");
    assert_eq!(e.object.as_deref(), Some("secret/a"));
    assert_eq!(host.token_requests().len(), 1, "exactly one refresh");
}

// ---------------------------------------------------------------------------------------------
// throttling

fn throttled(retry_after: &'static str) -> impl Fn() -> Result<HttpResponse, TransportError> {
    move || {
        let mut reply = kv_error(
            429,
            "Throttled",
            "Request was not processed because too many requests were received.",
        );
        if !retry_after.is_empty() {
            reply
                .headers
                .push(("Retry-After".to_string(), retry_after.to_string()));
        }
        Ok(reply)
    }
}

#[test]
fn throttled_requests_are_retried_after_retry_after() {
    let host = host_with_secret("a", "x");
    host.azure.borrow_mut().add_secret("b", "v", "y");
    let request = sp_request(&objects(&[("a", "secret", ""), ("b", "secret", "")]));
    mount_ok(&host, &request);
    host.reset_records();
    host.random.set(123);
    host.azure
        .borrow_mut()
        .script("/secrets/b", 2, throttled("2"));
    let response = mount_ok(&host, &request);
    assert_eq!(response.files[1].contents, b"y");
    // Jitter comes from the host's randomness and only ever adds to the server's delay.
    assert_eq!(
        *host.sleeps.borrow(),
        vec![Duration::from_millis(2123), Duration::from_millis(2123)]
    );
    // Only the throttled request is resent.
    assert_eq!(
        host.batch_urls().iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 1, 1]
    );
}

#[test]
fn throttling_gives_up_after_three_attempts() {
    let host = host_with_secret("a", "x");
    let request = sp_request(&objects(&[("a", "secret", "")]));
    mount_ok(&host, &request);
    host.reset_records();
    host.azure
        .borrow_mut()
        .script("/secrets/a", 100, throttled("3"));
    let e = mount_err(&host, &request);
    assert_eq!(e.kind, ErrorKind::Throttled(Some(3000)));
    assert_eq!(e.object.as_deref(), Some("secret/a"));
    assert!(
        e.message.contains("429") && e.message.contains("Throttled"),
        "{e}"
    );
    assert_eq!(host.batches.borrow().len(), 3);
    assert_eq!(host.sleeps.borrow().len(), 2);
}

#[test]
fn retry_after_dates_and_backoff_without_a_hint() {
    let host = host_with_secret("a", "x");
    let request = sp_request(&objects(&[("a", "secret", "")]));
    mount_ok(&host, &request);
    host.reset_records();
    // START + 4 s as an HTTP date: Tue, 14 Nov 2023 22:13:24 GMT.
    host.azure
        .borrow_mut()
        .script("/secrets/a", 1, throttled("Tue, 14 Nov 2023 22:13:24 GMT"));
    mount_ok(&host, &request);
    assert_eq!(*host.sleeps.borrow(), vec![Duration::from_secs(4)]);

    host.reset_records();
    host.azure.borrow_mut().script("/secrets/a", 2, || {
        Ok(kv_error(503, "ServiceUnavailable", "try later"))
    });
    mount_ok(&host, &request);
    assert_eq!(
        *host.sleeps.borrow(),
        vec![Duration::from_millis(500), Duration::from_millis(1000)]
    );
}

#[test]
fn long_retry_after_is_not_waited_for() {
    let host = host_with_secret("a", "x");
    let request = sp_request(&objects(&[("a", "secret", "")]));
    mount_ok(&host, &request);
    host.reset_records();
    host.azure
        .borrow_mut()
        .script("/secrets/a", 1, throttled("60"));
    let e = mount_err(&host, &request);
    assert_eq!(e.kind, ErrorKind::Throttled(Some(60_000)));
    assert!(host.sleeps.borrow().is_empty());
}

#[test]
fn token_endpoint_throttling_and_transport_errors_are_retried() {
    let o = objects(&[("a", "secret", "")]);
    let host = host_with_secret("a", "x");
    host.azure.borrow_mut().script("169.254.169.254", 1, || {
        Ok(HttpResponse {
            status: 429,
            headers: vec![("Retry-After".to_string(), "1".to_string())],
            body: b"{}".to_vec(),
        })
    });
    host.azure
        .borrow_mut()
        .script("/secrets/a", 2, || Err(TransportError::Timeout));
    let response = mount_ok(
        &host,
        &request(
            &[
                ("keyvaultName", "kv1"),
                ("tenantID", TENANT),
                ("useVMManagedIdentity", "true"),
                ("objects", &o),
            ],
            &[],
        ),
    );
    assert_eq!(response.files[0].contents, b"x");
    // Probe: two timeouts (backoff 0.5 s, 1 s); IMDS: one 429 with Retry-After: 1.
    assert_eq!(
        *host.sleeps.borrow(),
        vec![
            Duration::from_millis(500),
            Duration::from_millis(1000),
            Duration::from_secs(1)
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// errors

#[test]
fn key_vault_errors_map_to_kinds_and_name_the_object() {
    let host = host_with_secret("a", "x");
    let e = mount_err(
        &host,
        &sp_request(&objects(&[("a", "secret", ""), ("missing", "secret", "")])),
    );
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.object.as_deref(), Some("secret/missing"));
    assert!(
        e.message
            .contains("SecretNotFound: A secrets with (name/id) missing was not found"),
        "{e}"
    );

    for (status, kind) in [
        (403, ErrorKind::PermissionDenied),
        (400, ErrorKind::Upstream(400)),
        (500, ErrorKind::Upstream(500)),
    ] {
        let host = host_with_secret("a", "x");
        host.azure.borrow_mut().add_secret("b", "v", "y");
        host.azure.borrow_mut().script("/secrets/b", 1, move || {
            Ok(kv_error(
                status,
                "Forbidden",
                "The user does not have secrets get permission",
            ))
        });
        // The probe uses secret a; b fails in the batch.
        let e = mount_err(
            &host,
            &sp_request(&objects(&[("a", "secret", ""), ("b", "secret", "")])),
        );
        assert_eq!(e.kind, kind);
        assert_eq!(e.object.as_deref(), Some("secret/b"));
        assert!(
            e.message.contains(&format!("answered HTTP {status}")),
            "{e}"
        );
    }
}

#[test]
fn the_first_failing_object_is_reported() {
    let host = FakeHost::default();
    host.azure.borrow_mut().add_secret("ok", "v", "x");
    let e = mount_err(
        &host,
        &sp_request(&objects(&[
            ("ok", "secret", ""),
            ("k1", "key", ""),
            ("c1", "cert", ""),
        ])),
    );
    assert_eq!(e.object.as_deref(), Some("key/k1"));
    assert!(e.message.contains("KeyNotFound"), "{e}");
}

#[test]
fn denied_destinations_say_which_and_how_to_fix() {
    let mut host = host_with_secret("a", "x");
    host.denied
        .push("https://login.microsoftonline.com".to_string());
    let e = mount_err(&host, &sp_request(&objects(&[("a", "secret", "")])));
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(
        e.message.contains(
            "the host's outbound policy refused the request to https://login.microsoftonline.com"
        ) && e
            .message
            .contains("allow https://login.microsoftonline.com in the azure provider's policy"),
        "{e}"
    );
    assert!(
        host.sleeps.borrow().is_empty(),
        "a policy refusal is not retried"
    );

    let mut host = host_with_secret("a", "x");
    host.denied.push("https://kv1.vault.azure.net".to_string());
    let e = mount_err(&host, &sp_request(&objects(&[("a", "secret", "")])));
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert_eq!(e.object.as_deref(), Some("secret/a"));
    assert!(
        e.message
            .contains("refused the request to https://kv1.vault.azure.net"),
        "{e}"
    );
}

#[test]
fn connection_failures_are_unavailable() {
    let host = host_with_secret("a", "x");
    host.azure
        .borrow_mut()
        .script("login.microsoftonline.com", 10, || {
            Err(TransportError::Connect("connection refused".to_string()))
        });
    let e = mount_err(&host, &sp_request(&objects(&[("a", "secret", "")])));
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("could not reach https://login.microsoftonline.com: connection failed: connection refused"), "{e}");
    assert_eq!(host.sleeps.borrow().len(), 2);
}

#[test]
fn malformed_key_vault_bodies_are_upstream_errors() {
    let host = host_with_secret("a", "x");
    let request = sp_request(&objects(&[("a", "secret", "")]));
    mount_ok(&host, &request);
    host.azure.borrow_mut().script("/secrets/a", 1, || {
        Ok(HttpResponse {
            status: 200,
            headers: vec![],
            body: b"<html>".to_vec(),
        })
    });
    let e = mount_err(&host, &request);
    assert_eq!(e.kind, ErrorKind::Upstream(200));
    assert!(e.message.contains("not the expected JSON"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// content that needs no crypto (byte-exact crypto outputs are in tests/formats.rs)

#[test]
fn secret_encodings() {
    let host = FakeHost::default();
    let raw: Vec<u8> = (0u8..=255).collect();
    use base64::Engine as _;
    host.azure.borrow_mut().add_secret(
        "b64",
        "v",
        &base64::engine::general_purpose::STANDARD.encode(&raw),
    );
    host.azure
        .borrow_mut()
        .add_secret("hex", "v", &hex::encode_upper(&raw));
    host.azure.borrow_mut().add_secret("utf", "v", "héllo ☃");
    let response = mount_ok(
        &host,
        &sp_request(&objects(&[
            ("b64", "secret", "objectEncoding: base64"),
            ("hex", "secret", "objectEncoding: hex"),
            ("utf", "secret", "objectEncoding: utf-8"),
        ])),
    );
    assert_eq!(response.files[0].contents, raw);
    assert_eq!(response.files[1].contents, raw);
    assert_eq!(response.files[2].contents, "héllo ☃".as_bytes());
}

#[test]
fn undecodable_secret_errors_do_not_leak_the_value() {
    let host = host_with_secret("a", "not*base64-SECRETVALUE");
    let e = mount_err(
        &host,
        &sp_request(&objects(&[("a", "secret", "objectEncoding: base64")])),
    );
    assert_eq!(e.kind, ErrorKind::InvalidParameters);
    assert!(
        e.message.contains(
            "failed to decode the secret value as base64: illegal base64 data at input byte 3"
        ),
        "{e}"
    );
    assert!(!e.message.contains("SECRET"));
}

#[test]
fn certificate_backed_secrets_by_content_type() {
    let host = FakeHost::default();
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    host.azure.borrow_mut().add(
        "secrets",
        "pemcert",
        "v1",
        json!({"value": pem, "contentType": "application/x-pem-file", "kid": "https://kv1.vault.azure.net/keys/pemcert/v1"}),
        1,
    );
    host.azure.borrow_mut().add(
        "secrets",
        "odd",
        "v1",
        json!({"value": "x", "contentType": "text/plain", "kid": "https://kv1/keys/odd/v1"}),
        1,
    );
    host.azure.borrow_mut().add(
        "secrets",
        "plain",
        "v1",
        json!({"value": "not a cert", "contentType": "application/x-pkcs12"}),
        1,
    );
    let response = mount_ok(
        &host,
        &sp_request(&objects(&[
            ("pemcert", "secret", ""),
            ("plain", "secret", ""),
        ])),
    );
    assert_eq!(response.files[0].contents, pem.as_bytes());
    // Without a kid the content type does not matter: the value is written as is.
    assert_eq!(response.files[1].contents, b"not a cert");
    let e = mount_err(&host, &sp_request(&objects(&[("odd", "secret", "")])));
    assert!(
        e.message
            .contains("failed to get certificate. unknown content type 'text/plain'"),
        "{e}"
    );
    assert_eq!(e.object.as_deref(), Some("secret/odd"));
}

#[test]
fn unsupported_key_types_are_rejected_by_name() {
    let host = FakeHost::default();
    host.azure.borrow_mut().add(
        "keys",
        "sym",
        "v1",
        json!({"key": {"kty": "oct-HSM", "key_ops": ["wrapKey"]}}),
        1,
    );
    let e = mount_err(&host, &sp_request(&objects(&[("sym", "key", "")])));
    assert_eq!(e.object.as_deref(), Some("key/sym"));
    assert!(
        e.message
            .contains("key type 'oct-HSM' currently not supported"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// version history

fn add_versions(host: &FakeHost, name: &str, versions: &[(&str, i64, bool)]) {
    let mut azure = host.azure.borrow_mut();
    for (version, created, enabled) in versions {
        azure.add(
            "secrets",
            name,
            version,
            json!({"value": format!("value-{version}")}),
            *created,
        );
        azure
            .objects
            .get_mut(&("secrets".to_string(), name.to_string()))
            .unwrap()
            .last_mut()
            .unwrap()
            .enabled = *enabled;
    }
}

#[test]
fn version_history_pages_skips_disabled_and_orders_newest_first() {
    let host = FakeHost::default();
    host.azure.borrow_mut().page_size = 2;
    // Listed in Key Vault's (not chronological) order; v4 is disabled.
    add_versions(
        &host,
        "s",
        &[
            ("v3", 300, true),
            ("v1", 100, true),
            ("v5", 500, true),
            ("v4", 400, false),
            ("v2", 200, true),
            ("v6", 600, true),
        ],
    );
    let response = mount_ok(
        &host,
        &sp_request(&objects(&[(
            "s",
            "secret",
            "objectVersionHistory: 3\nobjectAlias: hist\nfilePermission: \"0440\"",
        )])),
    );
    let files: Vec<(&str, &[u8], u32)> = response
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.contents.as_slice(), f.mode))
        .collect();
    assert_eq!(
        files,
        [
            ("hist/0", &b"value-v6"[..], 0o440),
            ("hist/1", b"value-v5", 0o440),
            ("hist/2", b"value-v3", 0o440)
        ]
    );
    let ids: Vec<(&str, &str)> = response
        .object_versions
        .iter()
        .map(|v| (v.id.as_str(), v.version.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("secret/s/0", "v6"),
            ("secret/s/1", "v5"),
            ("secret/s/2", "v3")
        ]
    );
    // probe, token, three list pages (following nextLinks with :443), then one batch of GETs.
    let urls = host.batch_urls();
    assert_eq!(urls.len(), 6, "{urls:?}");
    assert_eq!(
        urls[2],
        ["https://kv1.vault.azure.net/secrets/s/versions?api-version=7.4"]
    );
    assert_eq!(
        urls[3],
        [
            "https://kv1.vault.azure.net:443/secrets/s/versions?api-version=7.4&$skiptoken=2&maxresults=2"
        ]
    );
    assert_eq!(
        urls[5],
        [
            "https://kv1.vault.azure.net/secrets/s/v6?api-version=7.4",
            "https://kv1.vault.azure.net/secrets/s/v5?api-version=7.4",
            "https://kv1.vault.azure.net/secrets/s/v3?api-version=7.4"
        ]
    );
}

#[test]
fn version_history_starts_at_the_pinned_version() {
    let host = FakeHost::default();
    add_versions(
        &host,
        "s",
        &[
            ("v1", 100, true),
            ("v2", 200, true),
            ("v3", 300, true),
            ("v4", 400, true),
        ],
    );
    let response = mount_ok(
        &host,
        &sp_request(&objects(&[(
            "s",
            "secret",
            "objectVersionHistory: 5\nobjectVersion: v3",
        )])),
    );
    let paths: Vec<(&str, &[u8])> = response
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.contents.as_slice()))
        .collect();
    assert_eq!(
        paths,
        [
            ("s/0", &b"value-v3"[..]),
            ("s/1", b"value-v2"),
            ("s/2", b"value-v1")
        ]
    );

    let e = mount_err(
        &host,
        &sp_request(&objects(&[(
            "s",
            "secret",
            "objectVersionHistory: 2\nobjectVersion: nope",
        )])),
    );
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(
        e.message
            .contains("version nope is not among the object's enabled versions"),
        "{e}"
    );

    // History of 1 (or less) is a single, unsuffixed file.
    let response = mount_ok(
        &host,
        &sp_request(&objects(&[("s", "secret", "objectVersionHistory: 1")])),
    );
    assert_eq!(response.files[0].path, "s");
    assert_eq!(response.object_versions[0].id, "secret/s");
}

#[test]
fn version_history_listing_errors() {
    let host = FakeHost::default();
    let mut azure = host.azure.borrow_mut();
    azure.add("secrets", "s", "only", json!({"value": "x"}), 1);
    azure
        .objects
        .get_mut(&("secrets".to_string(), "s".to_string()))
        .unwrap()[0]
        .enabled = false;
    drop(azure);
    let e = mount_err(
        &host,
        &sp_request(&objects(&[("s", "secret", "objectVersionHistory: 2")])),
    );
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.message.contains("has no enabled versions"), "{e}");

    host.azure.borrow_mut().next_link_host = Some("evil.example.com".to_string());
    host.azure.borrow_mut().page_size = 1;
    host.azure
        .borrow_mut()
        .add("secrets", "t", "t1", json!({"value": "x"}), 1);
    host.azure
        .borrow_mut()
        .add("secrets", "t", "t2", json!({"value": "x"}), 2);
    let e = mount_err(
        &host,
        &sp_request(&objects(&[("t", "secret", "objectVersionHistory: 2")])),
    );
    assert!(
        e.message
            .contains("nextLink points outside the vault (https://evil.example.com)"),
        "{e}"
    );
    let listing = host
        .requests()
        .into_iter()
        .filter(|r| r.url.contains("/t/versions") || r.url.contains("evil"))
        .count();
    assert_eq!(listing, 1, "the foreign link is never followed");
}

fn claim_keys(host: &FakeHost) -> Vec<String> {
    host.cache
        .borrow()
        .keys()
        .filter(|k| k.ends_with("#claim"))
        .cloned()
        .collect()
}

#[test]
fn a_token_request_in_flight_elsewhere_is_waited_for_and_released_after() {
    let host = host_with_secret("a", "x");
    let sp = sp_request(&objects(&[("a", "secret", "")]));
    mount_ok(&host, &sp);
    assert_eq!(count_token_requests(&host), 1);
    assert!(claim_keys(&host).is_empty(), "the claim is released");
    let token_key = host
        .cache
        .borrow()
        .keys()
        .find(|k| k.starts_with("aad-token/"))
        .cloned()
        .unwrap();

    // Another mount of this identity claimed the request and never delivers (it died): this one
    // waits the claim out (5 s in 10 ms steps), then asks itself.
    host.cache.borrow_mut().remove(&token_key);
    host.cache.borrow_mut().insert(
        format!("{token_key}#claim"),
        (b"pending".to_vec(), START + 60),
    );
    host.sleeps.borrow_mut().clear();
    mount_ok(&host, &sp);
    assert_eq!(count_token_requests(&host), 2);
    let sleeps = host.sleeps.borrow().clone();
    assert_eq!(sleeps.len(), 500);
    assert!(sleeps.iter().all(|d| *d == Duration::from_millis(10)));
    assert!(claim_keys(&host).is_empty());

    // A failed request releases its claim at once.
    host.cache.borrow_mut().clear();
    let o = objects(&[("a", "secret", "")]);
    let wrong = request(
        &[
            ("keyvaultName", "kv1"),
            ("tenantID", TENANT),
            ("objects", &o),
        ],
        &[("clientid", "sp-client"), ("clientsecret", "wrong-secret")],
    );
    assert_eq!(mount_err(&host, &wrong).kind, ErrorKind::Unauthenticated);
    assert!(claim_keys(&host).is_empty(), "released after a failure");
}
