//! Nothing secret leaks: every auth mode and a range of failures run through azure.wasm with all
//! logging at trace level (under the driver's caps on chatty libraries), and neither the log output
//! nor any error message may contain a secret value, a client secret, the service-account token
//! or an access token (the emulator's tokens, like AAD's, are JWTs: `eyJ…`).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use crate::support::*;
use keyvault_emulator::{Fault, FaultScope, VaultSpec};

const SECRET_VALUES: &[(&str, &str)] = &[
    ("db-password", "Sup3r-Secret-DB-Password"),
    ("api-key", "api-key-7f3e9c1d2b4a"),
    ("locked", "locked-away-value-99"),
];

// All on the test's thread: the current-thread runtime runs the provider, the runtime's network
// tasks and the emulator, so the thread's subscriber sees every line they log.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_or_token_reaches_logs_or_errors() {
    let (logs, _guard) = capture_logs();
    let env = Env::with(|emu| {
        emu.add_vault(VaultSpec::new("e2e-locked", TENANT).with_access(&[SP2_CLIENT_ID]))
            .unwrap();
    })
    .await;
    for (name, value) in SECRET_VALUES {
        env.emu.set_secret(VAULT, name, value, None).unwrap();
    }
    env.emu
        .set_secret("e2e-locked", "locked", "locked-away-value-99", None)
        .unwrap();
    let both = objects(&[
        object(&[("objectName", "db-password"), ("objectType", "secret")]),
        object(&[("objectName", "api-key"), ("objectType", "secret")]),
    ]);
    let wi_token = standard_sa_token(&env.emu);
    let other_token = sa_token(
        OIDC_ISSUER,
        &sa_subject(POD_NAMESPACE, "other"),
        env.emu.now(),
    );
    let mut wrong_subject = Mount::new(&secret_object("db-password"))
        .param("clientID", WI_CLIENT_ID)
        .sa_token(&other_token);
    wrong_subject.context.insert(
        "csi.storage.k8s.io/serviceAccount.name".into(),
        "other".into(),
    );

    let mut errors = Vec::new();
    let mut successes = 0;
    let mounts = vec![
        Mount::sp(&both),
        Mount::sp(&both),
        Mount::new(&both)
            .param("clientID", WI_CLIENT_ID)
            .sa_token(&wi_token),
        Mount::new(&both).param("useVMManagedIdentity", "true"),
        Mount::new(&both)
            .param("useVMManagedIdentity", "true")
            .param("userAssignedIdentityID", MI_USER_CLIENT_ID),
        Mount::new(&both).param("usePodIdentity", "true"),
        // Failures: AAD refusals, Key Vault refusals, bad input.
        Mount::new(&both)
            .secret("clientid", SP_CLIENT_ID)
            .secret("clientsecret", "Wrong-Client-Secret-123"),
        wrong_subject,
        Mount::sp(&secret_object("locked")).param("keyvaultName", "e2e-locked"),
        Mount::sp(&secret_object("missing")),
        Mount::sp(&objects(&[object(&[
            ("objectName", "db-password"),
            ("objectType", "secret"),
            ("objectEncoding", "hex"),
        ])])),
        Mount::sp(&objects(&[object(&[
            ("objectName", "db-password"),
            ("objectType", "nonsense"),
        ])])),
        Mount::new(&both)
            .param("usePodIdentity", "true")
            .pod(POD_NAMESPACE, "not-bound"),
    ];
    for mount in &mounts {
        match env.mount(mount).await {
            Ok(_) => successes += 1,
            Err(e) => errors.push(e.to_string()),
        }
    }
    // Throttled on every attempt, dropped connections, and a destination outside the policy.
    let throttle = Fault::Throttle {
        retry_after_secs: 0,
    };
    for (fault, count) in [(throttle, 6), (Fault::Drop, 5)] {
        env.emu.inject(FaultScope::DataPlaneGet, count, fault);
        errors.push(env.mount(&Mount::sp(&both)).await.unwrap_err().to_string());
        env.emu.clear_injected();
    }
    let login_only = load_azure(&env.runtime, policy(&["https://login.microsoftonline.com"]));
    let mount = Mount::sp(&both);
    errors.push(
        login_only
            .mount(&mount.request(), &mount.call_context())
            .await
            .unwrap_err()
            .to_string(),
    );

    assert_eq!(successes, 6, "the six good mounts work: {errors:#?}");
    assert_eq!(errors.len(), 10, "{errors:#?}");
    let logs = logs.text();
    // The capture works: the runtime's and the provider's own lines are there.
    assert!(logs.contains("mounting 2 object(s)"), "{logs}");
    assert!(logs.contains("outbound request denied"), "{logs}");

    let mut forbidden: Vec<String> = SECRET_VALUES.iter().map(|(_, v)| v.to_string()).collect();
    forbidden.extend(
        [
            SP_CLIENT_SECRET,
            SP2_CLIENT_SECRET,
            "Wrong-Client-Secret-123",
        ]
        .map(String::from),
    );
    for token in [&wi_token, &other_token] {
        forbidden.push(token.to_string());
        // Each JWT segment on its own, too (a token split across log fields is still a leak).
        forbidden.extend(token.split('.').map(String::from));
    }
    forbidden.push("eyJ".to_string());
    for needle in &forbidden {
        assert!(
            !logs.contains(needle.as_str()),
            "{needle:?} leaked into the logs"
        );
        for error in &errors {
            assert!(
                !error.contains(needle.as_str()),
                "{needle:?} leaked into an error: {error}"
            );
        }
    }
    println!(
        "{} bytes of trace-level logs and {} error messages checked",
        logs.len(),
        errors.len()
    );
}
