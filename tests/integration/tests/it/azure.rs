//! azure.wasm in the real runtime against the Key Vault emulator over real HTTPS: versions and
//! version history, rotation between mounts, the token and challenge caches and the concurrency of
//! a mount (read off the emulator's counters and request log), throttling, and every error path
//! with the message and error kind the user gets.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::time::{Duration, Instant};

use crate::support::*;
use keyvault_emulator::{
    Fault, FaultPlan, FaultRule, FaultScope, ObjectKind, RequestClass, TokenKind, VaultSpec,
};
use secrets_store_contract::ErrorKind;
use secrets_store_runtime::{CallError, PolicySpec};

/// `count` versions of secret `name` valued `v0`…, one emulator second apart (so creation times
/// order them); returns the version ids, oldest first.
fn versions(emu: &keyvault_emulator::RunningEmulator, name: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            emu.advance_clock(Duration::from_secs(1));
            emu.set_secret(VAULT, name, &format!("v{i}"), None).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn version_history_pages_skips_disabled_and_starts_at_the_pinned_version() {
    let env = Env::start().await;
    // 30 versions: more than one page (Key Vault pages by 25).
    let ids = versions(&env.emu, "rotating", 30);
    for disabled in [27, 28, 3] {
        env.emu
            .disable_version(VAULT, ObjectKind::Secret, "rotating", &ids[disabled])
            .unwrap();
    }
    let history = |extra: &[(&str, &str)]| {
        let mut fields = vec![("objectName", "rotating"), ("objectType", "secret")];
        fields.extend_from_slice(extra);
        objects(&[object(&fields)])
    };

    let response = env
        .mount(&Mount::sp(&history(&[("objectVersionHistory", "5")])))
        .await
        .unwrap();
    let got: Vec<(String, String, String)> = response
        .files
        .iter()
        .zip(&response.object_versions)
        .map(|(f, v)| {
            (
                f.path.clone(),
                String::from_utf8(f.contents.clone()).unwrap(),
                format!("{}={}", v.id, v.version),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [29, 26, 25, 24, 23]
        .iter()
        .enumerate()
        .map(|(pos, i)| {
            (
                format!("rotating/{pos}"),
                format!("v{i}"),
                format!("secret/rotating/{pos}={}", ids[*i]),
            )
        })
        .collect();
    assert_eq!(got, want, "newest enabled first, disabled versions skipped");
    let lists: Vec<String> = env
        .emu
        .request_log()
        .into_iter()
        .filter(|e| e.path.contains("/versions"))
        .map(|e| e.path)
        .collect();
    assert_eq!(lists.len(), 2, "both pages of the version list: {lists:?}");
    assert!(lists[1].contains("skiptoken"), "{lists:?}");

    // Starting at a pinned version, and asking for more than there are: every enabled version.
    let pinned = env
        .mount(&Mount::sp(&history(&[
            ("objectVersionHistory", "3"),
            ("objectVersion", &ids[25]),
        ])))
        .await
        .unwrap();
    let values: Vec<String> = pinned
        .files
        .iter()
        .map(|f| String::from_utf8(f.contents.clone()).unwrap())
        .collect();
    assert_eq!(values, ["v25", "v24", "v23"]);
    let all = env
        .mount(&Mount::sp(&history(&[("objectVersionHistory", "100")])))
        .await
        .unwrap();
    assert_eq!(all.files.len(), 27);
    assert_eq!(text(&all, "rotating/26"), "v0");

    // A history of one is a plain file, as without the parameter.
    let one = env
        .mount(&Mount::sp(&history(&[("objectVersionHistory", "1")])))
        .await
        .unwrap();
    assert_eq!(text(&one, "rotating"), "v29");
    assert_eq!(version(&one, "secret/rotating"), ids[29]);

    // A pinned version that is disabled is not in the history.
    let gone = env
        .mount(&Mount::sp(&history(&[
            ("objectVersionHistory", "3"),
            ("objectVersion", &ids[27]),
        ])))
        .await;
    expect_error(
        gone,
        ErrorKind::NotFound,
        &[
            "secret/rotating",
            &ids[27],
            "not among the object's enabled versions",
        ],
    );
}

#[tokio::test]
async fn keys_and_certificates_have_versions_and_histories_too() {
    let env = Env::start().await;
    let pki = crate::support::pki::pki();
    let mut key_versions = Vec::new();
    for fixture in ["rsa2048", "p256", "p384"] {
        env.emu.advance_clock(Duration::from_secs(1));
        let pem = &pki.key(fixture).private_pem;
        key_versions.push(
            env.emu
                .import_key_pem(VAULT, "signing", pem, Default::default())
                .unwrap(),
        );
    }
    let mut cert_versions = Vec::new();
    for leaf in [&pki.rsa_leaf, &pki.ec_leaf] {
        env.emu.advance_clock(Duration::from_secs(1));
        let import = keyvault_emulator::CertificateImport::pfx(leaf.pfx_unencrypted.clone(), None);
        cert_versions.push(
            env.emu
                .import_certificate(VAULT, "tls", import)
                .unwrap()
                .version,
        );
    }
    let history = |name: &str, kind: &str, alias: &str| {
        object(&[
            ("objectName", name),
            ("objectType", kind),
            ("objectAlias", alias),
            ("objectVersionHistory", "5"),
        ])
    };
    let objs = objects(&[
        history("signing", "key", "signing"),
        object(&[
            ("objectName", "signing"),
            ("objectType", "key"),
            ("objectVersion", &key_versions[0]),
            ("objectAlias", "signing-first.pub"),
        ]),
        history("tls", "cert", "tls-cert"),
        history("tls", "secret", "tls-secret"),
        history("tls", "key", "tls-key"),
    ]);
    let response = env.mount(&Mount::sp(&objs)).await.unwrap();
    for (position, fixture) in ["p384", "p256", "rsa2048"].iter().enumerate() {
        assert_eq!(
            text(&response, &format!("signing/{position}")),
            pki.key(fixture).public_pem,
            "signing/{position}"
        );
        assert_eq!(
            version(&response, &format!("key/signing/{position}")),
            key_versions[2 - position]
        );
    }
    assert_eq!(
        text(&response, "signing-first.pub"),
        pki.key("rsa2048").public_pem
    );
    assert_eq!(version(&response, "key/signing"), key_versions[0]);
    for (position, leaf) in [&pki.ec_leaf, &pki.rsa_leaf].iter().enumerate() {
        assert_eq!(
            text(&response, &format!("tls-cert/{position}")),
            leaf.cert_pem
        );
        assert_eq!(
            text(&response, &format!("tls-secret/{position}")),
            leaf.full_chain_pem
        );
        assert_eq!(
            text(&response, &format!("tls-key/{position}")),
            leaf.public_pem
        );
        for kind in ["cert", "secret", "key"] {
            assert_eq!(
                version(&response, &format!("{kind}/tls/{position}")),
                cert_versions[1 - position]
            );
        }
    }
    assert_eq!(response.files.len(), 3 + 1 + 2 * 3);
}

#[tokio::test]
async fn pinned_versions_and_reported_versions() {
    let env = Env::start().await;
    let ids = versions(&env.emu, "pinned", 3);
    let objs = objects(&[
        object(&[
            ("objectName", "pinned"),
            ("objectType", "secret"),
            ("objectVersion", &ids[0]),
            ("objectAlias", "first"),
        ]),
        object(&[
            ("objectName", "pinned"),
            ("objectType", "secret"),
            ("objectVersion", "latest"),
            ("objectAlias", "latest"),
        ]),
        object(&[
            ("objectName", "pinned"),
            ("objectType", "secret"),
            ("objectAlias", "current"),
        ]),
    ]);
    let response = env.mount(&Mount::sp(&objs)).await.unwrap();
    assert_eq!(
        (
            text(&response, "first").as_str(),
            text(&response, "latest").as_str(),
            text(&response, "current").as_str()
        ),
        ("v0", "v2", "v2")
    );
    let reported: Vec<&str> = response
        .object_versions
        .iter()
        .map(|v| v.version.as_str())
        .collect();
    assert_eq!(
        reported,
        [ids[0].as_str(), ids[2].as_str(), ids[2].as_str()]
    );
    assert!(
        response
            .object_versions
            .iter()
            .all(|v| v.id == "secret/pinned")
    );
}

#[tokio::test]
async fn a_rotated_secret_reaches_the_next_mount() {
    let env = Env::start().await;
    let first = env
        .emu
        .set_secret(VAULT, "db-password", "before-rotation", None)
        .unwrap();
    let mount = Mount::sp(&secret_object("db-password"));
    let before = env.mount(&mount).await.unwrap();
    assert_eq!(
        (
            text(&before, "db-password").as_str(),
            version(&before, "secret/db-password")
        ),
        ("before-rotation", first.as_str())
    );
    let second = env
        .emu
        .set_secret(VAULT, "db-password", "after-rotation", None)
        .unwrap();
    let after = env.mount(&mount).await.unwrap();
    assert_eq!(
        (
            text(&after, "db-password").as_str(),
            version(&after, "secret/db-password")
        ),
        ("after-rotation", second.as_str())
    );
    assert_ne!(first, second);
}

/// Stores `NAME-value` under each name and returns the `objects` parameter that mounts them all.
fn seed_secrets<S: AsRef<str>>(env: &Env, names: &[S]) -> String {
    for name in names {
        let name = name.as_ref();
        env.emu
            .set_secret(VAULT, name, &format!("{name}-value"), None)
            .unwrap();
    }
    objects(
        &names
            .iter()
            .map(|n| object(&[("objectName", n.as_ref()), ("objectType", "secret")]))
            .collect::<Vec<_>>(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_mounts_of_one_identity_ask_for_one_token() {
    let env = Env::start().await;
    env.emu
        .set_secret(VAULT, "alpha", "alpha-value", None)
        .unwrap();
    // Token requests take a while, as they do against Entra ID: the others start meanwhile.
    env.emu.set_faults(FaultPlan::none().with_rule(FaultRule {
        scope: FaultScope::Token,
        latency: Duration::from_millis(200),
        ..FaultRule::default()
    }));
    let objs = objects(&[object(&[("objectName", "alpha"), ("objectType", "secret")])]);
    let mount = Mount::sp(&objs);
    let (a, b, c, d, e, f) = tokio::join!(
        env.mount(&mount),
        env.mount(&mount),
        env.mount(&mount),
        env.mount(&mount),
        env.mount(&mount),
        env.mount(&mount)
    );
    for response in [a, b, c, d, e, f] {
        assert_eq!(text(&response.unwrap(), "alpha"), "alpha-value");
    }
    let c = env.emu.counters();
    assert_eq!(c.token_requests_for("aad"), 1, "{c:?}");
}

#[tokio::test]
async fn the_token_and_the_challenge_are_cached_per_identity() {
    let env = Env::start().await;
    let names = ["alpha", "beta", "gamma"];
    let objs = seed_secrets(&env, &names);
    let authenticated_gets = |emu: &keyvault_emulator::RunningEmulator| -> u64 {
        emu.counters().gets_per_object.values().sum()
    };

    // Cold: one challenge, one token request, then the objects.
    env.mount(&Mount::sp(&objs)).await.unwrap();
    let c = env.emu.counters();
    assert_eq!(
        (
            c.challenges,
            c.token_requests_for("aad"),
            authenticated_gets(&env.emu),
            c.data_plane_gets
        ),
        (1, 1, 3, 4)
    );

    // Warm, same identity: the objects alone.
    env.emu.reset_counters();
    let warm = env.mount(&Mount::sp(&objs)).await.unwrap();
    assert_eq!(text(&warm, "gamma"), "gamma-value");
    let c = env.emu.counters();
    assert_eq!(
        (
            c.challenges,
            c.token_requests_for("aad"),
            authenticated_gets(&env.emu),
            c.data_plane_gets
        ),
        (0, 0, 3, 3)
    );

    // Another identity gets its own token (the vault's challenge is still known).
    env.emu.reset_counters();
    let other = Mount::new(&objs)
        .secret("clientid", SP2_CLIENT_ID)
        .secret("clientsecret", SP2_CLIENT_SECRET);
    env.mount(&other).await.unwrap();
    let c = env.emu.counters();
    assert_eq!(
        (
            c.challenges,
            c.token_requests_for("aad"),
            c.tokens(TokenKind::ClientSecret)
        ),
        (0, 1, 1)
    );
    let token_log: Vec<_> = env
        .emu
        .request_log()
        .into_iter()
        .filter(|e| e.class == RequestClass::AadToken)
        .collect();
    assert_eq!(token_log[0].identity.as_deref(), Some(SP2_CLIENT_ID));

    // The same client id with a different secret is a different credential: no cached token for it.
    env.emu.reset_counters();
    let wrong = Mount::new(&objs)
        .secret("clientid", SP_CLIENT_ID)
        .secret("clientsecret", "not-the-secret");
    expect_error(
        env.mount(&wrong).await,
        ErrorKind::Unauthenticated,
        &["invalid_client"],
    );
    assert_eq!(env.emu.counters().token_requests_for("aad"), 1);

    // An identity token the vault now rejects (emulator clock past its expiry) is replaced once.
    env.emu.advance_clock(Duration::from_secs(2 * 3600));
    env.emu.reset_counters();
    let renewed = env.mount(&Mount::sp(&objs)).await.unwrap();
    assert_eq!(text(&renewed, "alpha"), "alpha-value");
    let c = env.emu.counters();
    assert_eq!(c.token_requests_for("aad"), 1, "{c:?}");
    assert_eq!(authenticated_gets(&env.emu), 3);
}

#[tokio::test]
async fn all_objects_of_a_mount_are_fetched_at_once() {
    let env = Env::start().await;
    let names: Vec<String> = (0..10).map(|i| format!("object-{i}")).collect();
    let objs = seed_secrets(&env, &names);
    // Warm up the challenge and the token so the measured mount is the ten GETs.
    env.mount(&Mount::sp(&objs)).await.unwrap();
    let latency = Duration::from_millis(1500);
    env.emu.set_faults(FaultPlan::none().with_rule(FaultRule {
        scope: FaultScope::DataPlaneGet,
        latency,
        ..Default::default()
    }));
    env.emu.reset_counters();
    let started = Instant::now();
    let response = env.mount(&Mount::sp(&objs)).await.unwrap();
    let elapsed = started.elapsed();
    env.emu.set_faults(FaultPlan::none());
    assert_eq!(response.files.len(), 10);
    let answered: Vec<u128> = env
        .emu
        .request_log()
        .into_iter()
        .filter(|e| e.class == RequestClass::DataPlaneGet)
        .map(|e| e.unix_ms)
        .collect();
    assert_eq!(answered.len(), 10);
    // Every GET is held `latency` before it is answered (and logged): had any GET waited for
    // another's answer, the answers would lie at least one latency apart.
    let spread = answered.iter().max().unwrap() - answered.iter().min().unwrap();
    assert!(
        spread < latency.as_millis(),
        "answers spread over {spread} ms: the GETs did not overlap"
    );
    println!(
        "10 GETs with {latency:?} latency each: mount took {elapsed:?}, answers within {spread} ms"
    );
}

#[tokio::test]
async fn more_objects_than_one_batch() {
    let env = Env::start().await;
    let names: Vec<String> = (0..40).map(|i| format!("many-{i:02}")).collect();
    let objs = seed_secrets(&env, &names);
    let response = env.mount(&Mount::sp(&objs)).await.unwrap();
    let got: Vec<(String, String)> = response
        .files
        .iter()
        .map(|f| {
            (
                f.path.clone(),
                String::from_utf8(f.contents.clone()).unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.clone(), format!("{n}-value")))
        .collect();
    assert_eq!(got, want, "every object, in the order of the class");
    assert_eq!(env.emu.counters().gets_per_object.values().sum::<u64>(), 40);
}

#[tokio::test]
async fn many_pods_mount_at_once() {
    let env = Env::start().await;
    let version_id = env
        .emu
        .set_secret(VAULT, "shared", "shared-value", None)
        .unwrap();
    let mut mounts = tokio::task::JoinSet::new();
    for i in 0..12 {
        // Half the pods use the service principal, half the node's managed identity.
        let pod = format!("pod-{i}");
        let mount = if i % 2 == 0 {
            Mount::sp(&secret_object("shared")).pod(POD_NAMESPACE, &pod)
        } else {
            Mount::new(&secret_object("shared"))
                .param("useVMManagedIdentity", "true")
                .pod(POD_NAMESPACE, &pod)
        };
        let azure = env.azure.clone();
        mounts.spawn(async move { azure.mount(&mount.request(), &mount.call_context()).await });
    }
    let mut done = 0;
    while let Some(result) = mounts.join_next().await {
        let response = result.unwrap().unwrap();
        assert_eq!(text(&response, "shared"), "shared-value");
        assert_eq!(version(&response, "secret/shared"), version_id);
        done += 1;
    }
    assert_eq!(
        done, 12,
        "more mounts than instance slots (4): the rest wait their turn"
    );
    // Identical GETs in flight (same URL and credential) share one exchange, so the vault sees
    // at most one GET per mount, usually far fewer.
    let c = env.emu.counters();
    let gets: u64 = c.gets_per_object.values().sum();
    assert!((1..=12).contains(&gets), "{c:?}");
    println!(
        "12 concurrent cold mounts: {} challenge(s), {} AAD and {} IMDS token request(s), {gets} object GET(s)",
        c.challenges,
        c.token_requests_for("aad"),
        c.token_requests_for("imds")
    );
}

#[tokio::test]
async fn throttling_is_retried_after_the_servers_retry_after() {
    let env = Env::start().await;
    env.emu
        .set_secret(VAULT, "db-password", "eventually", None)
        .unwrap();
    let mount = Mount::sp(&secret_object("db-password"));
    env.mount(&mount).await.unwrap();
    env.emu.reset_counters();
    env.emu.inject(
        FaultScope::DataPlaneGet,
        1,
        Fault::Throttle {
            retry_after_secs: 1,
        },
    );
    let started = Instant::now();
    let response = env.mount(&mount).await.unwrap();
    println!(
        "throttled once with Retry-After: 1; the mount took {:?}",
        started.elapsed()
    );
    assert_eq!(text(&response, "db-password"), "eventually");
    let log = env.emu.request_log();
    let statuses: Vec<Option<u16>> = log.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [Some(429), Some(200)]);
    assert_eq!(log[0].path, log[1].path);
    assert!(
        log[1].unix_ms - log[0].unix_ms >= 1000,
        "the retry waited for Retry-After"
    );

    // AAD throttles the token request of a fresh identity once: retried as well.
    env.emu.reset_counters();
    env.emu.inject(
        FaultScope::Token,
        1,
        Fault::Throttle {
            retry_after_secs: 1,
        },
    );
    let other = Mount::new(&secret_object("db-password"))
        .secret("clientid", SP2_CLIENT_ID)
        .secret("clientsecret", SP2_CLIENT_SECRET);
    assert_eq!(
        text(&env.mount(&other).await.unwrap(), "db-password"),
        "eventually"
    );
    let token_statuses: Vec<Option<u16>> = env
        .emu
        .request_log()
        .iter()
        .filter(|e| e.class == RequestClass::AadToken)
        .map(|e| e.status)
        .collect();
    assert_eq!(token_statuses, [Some(429), Some(200)]);
    let c = env.emu.counters();
    assert_eq!(
        (
            c.throttled,
            c.token_requests_for("aad"),
            c.tokens(TokenKind::ClientSecret)
        ),
        (1, 2, 1)
    );

    // Throttled on every attempt: the mount fails as throttled and names the object.
    env.emu.inject(
        FaultScope::DataPlaneGet,
        10,
        Fault::Throttle {
            retry_after_secs: 1,
        },
    );
    let shown = expect_error(
        env.mount(&mount).await,
        ErrorKind::Throttled(Some(1000)),
        &["secret/db-password", "429", "Throttled"],
    );
    env.emu.clear_injected();
    println!("{shown}");
}

#[tokio::test]
async fn bad_parameters_are_refused_before_any_request() {
    let env = Env::start().await;
    let secret = |extra: &[(&str, &str)]| {
        let mut fields = vec![("objectName", "db-password"), ("objectType", "secret")];
        fields.extend_from_slice(extra);
        object(&fields)
    };
    let cases: Vec<(Mount, Vec<&str>)> = vec![
        (
            Mount::sp(&secret_object("x")).param("keyvaultName", "kv"),
            vec!["Invalid vault name", "\"kv\"", "between 3 and 24"],
        ),
        (
            Mount::sp(&secret_object("x")).param("keyvaultName", "my_vault!"),
            vec!["Invalid vault name", "my_vault!"],
        ),
        (
            Mount::sp(&secret_object("x")).param("keyvaultName", &"v".repeat(25)),
            vec!["Invalid vault name"],
        ),
        (
            Mount::sp(&secret_object("x")).without_param("keyvaultName"),
            vec!["keyvaultName is not set"],
        ),
        (
            Mount::sp(&secret_object("x")).without_param("tenantID"),
            vec!["tenantID is not set"],
        ),
        (
            Mount::sp(&objects(&[object(&[
                ("objectName", "db-password"),
                ("objectType", "blob"),
            ])])),
            vec!["\"db-password\"", "objectType \"blob\""],
        ),
        (
            Mount::sp(&objects(&[secret(&[("filePermission", "0999")])])),
            vec!["\"db-password\"", "filePermission \"0999\""],
        ),
        (
            Mount::sp(&objects(&[secret(&[("objectAlias", "../../etc/passwd")])])),
            vec!["\"db-password\"", "../../etc/passwd", "'..'"],
        ),
        (
            Mount::sp(&objects(&[secret(&[("objectAlias", "/etc/passwd")])])),
            vec!["\"db-password\"", "relative"],
        ),
        (
            Mount::sp(&objects(&[
                secret(&[("objectAlias", "same")]),
                object(&[
                    ("objectName", "other"),
                    ("objectType", "secret"),
                    ("objectAlias", "same"),
                ]),
            ])),
            vec![
                "\"other\"",
                "file name \"same\"",
                "already the file of",
                "\"db-password\"",
            ],
        ),
        (
            Mount::sp(&objects(&[object(&[
                ("objectName", "k"),
                ("objectType", "key"),
                ("objectEncoding", "hex"),
            ])])),
            vec!["\"k\"", "objectEncoding"],
        ),
        (
            Mount::sp(&objects(&[object(&[
                ("objectName", "c"),
                ("objectType", "cert"),
                ("objectFormat", "pfx"),
            ])])),
            vec!["\"c\"", "objectFormat pfx"],
        ),
        (
            Mount::sp(&objects(&[secret(&[("objectVersionHistory", "'3'")])])),
            vec!["objectVersionHistory"],
        ),
        (Mount::sp("array: [unterminated"), vec!["objects"]),
    ];
    for (mount, needles) in cases {
        expect_error(
            env.mount(&mount).await,
            ErrorKind::InvalidParameters,
            &needles,
        );
    }
    assert!(
        env.emu.request_log().is_empty(),
        "nothing may be contacted: {:?}",
        env.emu.request_log()
    );
}

#[tokio::test]
async fn key_vault_and_aad_errors_name_the_object_and_the_cause() {
    let env = Env::with(|emu| {
        // Only the second service principal may read this vault.
        emu.add_vault(VaultSpec::new("e2e-locked", TENANT).with_access(&[SP2_CLIENT_ID]))
            .unwrap();
    })
    .await;
    env.emu.set_secret(VAULT, "present", "here", None).unwrap();
    env.emu
        .set_secret("e2e-locked", "guarded", "locked-value", None)
        .unwrap();
    let old = env
        .emu
        .set_secret(VAULT, "switched-off", "old", None)
        .unwrap();
    env.emu
        .set_secret(VAULT, "switched-off", "new", None)
        .unwrap();
    env.emu
        .disable_version(VAULT, ObjectKind::Secret, "switched-off", &old)
        .unwrap();

    // A missing object fails the whole mount (even after a good one) and is named.
    let missing = objects(&[
        object(&[("objectName", "present"), ("objectType", "secret")]),
        object(&[("objectName", "absent"), ("objectType", "secret")]),
    ]);
    expect_error(
        env.mount(&Mount::sp(&missing)).await,
        ErrorKind::NotFound,
        &["secret/absent", "404", "SecretNotFound"],
    );
    let missing_key = objects(&[object(&[("objectName", "absent"), ("objectType", "key")])]);
    expect_error(
        env.mount(&Mount::sp(&missing_key)).await,
        ErrorKind::NotFound,
        &["key/absent", "KeyNotFound"],
    );

    let disabled = objects(&[object(&[
        ("objectName", "switched-off"),
        ("objectType", "secret"),
        ("objectVersion", &old),
    ])]);
    expect_error(
        env.mount(&Mount::sp(&disabled)).await,
        ErrorKind::PermissionDenied,
        &["secret/switched-off", &old, "403", "disabled secret"],
    );

    // (The runtime blanks every nodePublishSecretRef value out of messages, the client id too,
    // so Key Vault's `appid=` reads `[REDACTED]` here; the managed identity's below is shown.)
    let locked = Mount::sp(&secret_object("guarded")).param("keyvaultName", "e2e-locked");
    expect_error(
        env.mount(&locked).await,
        ErrorKind::PermissionDenied,
        &[
            "secret/guarded",
            "403",
            "AccessDenied",
            "does not have secrets get permission",
            "e2e-locked",
        ],
    );
    let allowed = Mount::new(&secret_object("guarded"))
        .param("keyvaultName", "e2e-locked")
        .secret("clientid", SP2_CLIENT_ID)
        .secret("clientsecret", SP2_CLIENT_SECRET);
    assert_eq!(
        text(&env.mount(&allowed).await.unwrap(), "guarded"),
        "locked-value"
    );
    // The node's managed identity has no access either.
    let imds = Mount::new(&secret_object("guarded"))
        .param("keyvaultName", "e2e-locked")
        .param("useVMManagedIdentity", "true");
    expect_error(
        env.mount(&imds).await,
        ErrorKind::PermissionDenied,
        &["secret/guarded", &format!("appid={MI_SYSTEM_CLIENT_ID}")],
    );

    let wrong_secret = Mount::new(&secret_object("present"))
        .secret("clientid", SP_CLIENT_ID)
        .secret("clientsecret", "wrong-secret-value");
    let shown = expect_error(
        env.mount(&wrong_secret).await,
        ErrorKind::Unauthenticated,
        &[
            "service principal token request",
            "https://login.microsoftonline.com",
            "HTTP 401",
            "invalid_client",
            "AADSTS7000215",
        ],
    );
    assert!(!shown.contains("wrong-secret-value"), "{shown}");

    let wrong_tenant = Mount::sp(&secret_object("present")).param("tenantID", UNKNOWN_TENANT);
    expect_error(
        env.mount(&wrong_tenant).await,
        ErrorKind::Unauthenticated,
        &["HTTP 400", "AADSTS90002", UNKNOWN_TENANT],
    );

    let no_vault = Mount::sp(&secret_object("present")).param("keyvaultName", "e2e-nowhere");
    let azure = load_azure(
        &runtime(network(&env.emu, &["e2e-nowhere.vault.azure.net"])),
        policy(ALL_HOSTS),
    );
    let result = azure
        .mount(&no_vault.request(), &no_vault.call_context())
        .await;
    expect_error(
        result,
        ErrorKind::NotFound,
        &[
            "secret/present",
            "https://e2e-nowhere.vault.azure.net",
            "VaultNotFound",
        ],
    );
}

#[tokio::test]
async fn network_failures_say_where_and_why() {
    let env = Env::start().await;
    env.emu
        .set_secret(VAULT, "db-password", "unreachable", None)
        .unwrap();
    let mount = Mount::sp(&secret_object("db-password"));

    // A destination the policy does not list: denied, and both the provider's message and the
    // runtime's note name it.
    let no_vault_hosts: Vec<&str> = ALL_HOSTS
        .iter()
        .copied()
        .filter(|h| !h.contains("vault.azure.net"))
        .collect();
    let azure = load_azure(&env.runtime, policy(&no_vault_hosts));
    let result = azure.mount(&mount.request(), &mount.call_context()).await;
    let Err(CallError::Provider { denied, .. }) = &result else {
        panic!("{result:?}")
    };
    assert_eq!(denied, &["https://e2e-kv.vault.azure.net:443"]);
    let shown = expect_error(
        result,
        ErrorKind::Unavailable,
        &[
            "secret/db-password",
            "outbound policy refused the request to https://e2e-kv.vault.azure.net;",
            "allow https://e2e-kv.vault.azure.net in the azure provider's policy",
            "denied by the provider's policy: https://e2e-kv.vault.azure.net:443",
        ],
    );
    println!("{shown}");
    assert!(env.emu.request_log().is_empty());

    // TLS without the emulator's CA: the certificate is not trusted.
    let mut untrusting = network(&env.emu, &[]);
    untrusting.extra_roots.clear();
    let azure = load_azure(&runtime(untrusting), policy(ALL_HOSTS));
    let result = azure.mount(&mount.request(), &mount.call_context()).await;
    expect_error(
        result,
        ErrorKind::Unavailable,
        &[
            "secret/db-password",
            "https://e2e-kv.vault.azure.net",
            "TLS",
        ],
    );

    // A secret larger than the policy lets a response be.
    let big = "x".repeat(100 << 10);
    env.emu.set_secret(VAULT, "huge", &big, None).unwrap();
    let small = PolicySpec {
        max_response_bytes: 64 << 10,
        ..policy(ALL_HOSTS)
    };
    let azure = load_azure(&env.runtime, small);
    let huge = Mount::sp(&secret_object("huge"));
    let result = azure.mount(&huge.request(), &huge.call_context()).await;
    let shown = expect_error(result, ErrorKind::Unavailable, &["secret/huge", "65536"]);
    println!("{shown}");

    // The vault drops every connection.
    env.emu.inject(FaultScope::DataPlaneGet, 20, Fault::Drop);
    let shown = expect_error(
        env.mount(&mount).await,
        ErrorKind::Unavailable,
        &[
            "secret/db-password",
            "could not reach https://e2e-kv.vault.azure.net",
        ],
    );
    env.emu.clear_injected();
    println!("{shown}");
    assert!(env.emu.counters().dropped >= 1);
    // The host and the vault are fine afterwards.
    assert_eq!(
        text(&env.mount(&mount).await.unwrap(), "db-password"),
        "unreachable"
    );
}
