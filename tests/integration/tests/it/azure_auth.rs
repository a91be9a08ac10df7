//! azure.wasm in the real runtime against the Key Vault emulator over real HTTPS: every identity
//! mode and upstream's precedence between them, the four named clouds and a custom Azure Stack
//! cloud read from a host file. Which flow ran is read from the emulator's counters and request
//! log, not from the provider.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use crate::support::*;
use keyvault_emulator::{LogEntry, RequestClass, TokenKind, VaultSpec};
use secrets_store_contract::ErrorKind;

fn token_requests(emu: &keyvault_emulator::RunningEmulator) -> Vec<LogEntry> {
    emu.request_log()
        .into_iter()
        .filter(|e| {
            matches!(
                e.class,
                RequestClass::AadToken | RequestClass::Imds | RequestClass::Nmi
            )
        })
        .collect()
}

#[tokio::test]
async fn service_principal_keys_are_case_insensitive() {
    let env = Env::start().await;
    let version = env
        .emu
        .set_secret(VAULT, "db-password", "hunter2-e2e", None)
        .unwrap();
    for (id_key, secret_key) in [
        ("clientid", "clientsecret"),
        ("ClientID", "ClientSecret"),
        ("CLIENTID", "clientSecret"),
    ] {
        // A fresh load has an empty cache, so every spelling really asks AAD for a token.
        let azure = load_azure(&env.runtime, policy(ALL_HOSTS));
        env.emu.reset_counters();
        let mount = Mount::new(&secret_object("db-password"))
            .secret(id_key, SP_CLIENT_ID)
            .secret(secret_key, SP_CLIENT_SECRET);
        let response = azure
            .mount(&mount.request(), &mount.call_context())
            .await
            .unwrap();
        assert_eq!(
            text(&response, "db-password"),
            "hunter2-e2e",
            "{id_key}/{secret_key}"
        );
        assert_eq!(version_of(&response), version);
        let counters = env.emu.counters();
        assert_eq!(
            counters.tokens(TokenKind::ClientSecret),
            1,
            "{id_key}/{secret_key}"
        );
        let requests = token_requests(&env.emu);
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].host, "login.microsoftonline.com");
        assert_eq!(requests[0].path, format!("/{TENANT}/oauth2/v2.0/token"));
        assert_eq!(requests[0].identity.as_deref(), Some(SP_CLIENT_ID));
    }
    // The deprecated spelling of the tenant parameter still works.
    let mount = Mount::sp(&secret_object("db-password"))
        .without_param("tenantID")
        .param("tenantId", TENANT);
    assert_eq!(
        text(&env.mount(&mount).await.unwrap(), "db-password"),
        "hunter2-e2e"
    );
}

fn version_of(response: &secrets_store_contract::MountResponse) -> &str {
    version(response, "secret/db-password")
}

#[tokio::test]
async fn workload_identity_exchanges_the_service_account_token() {
    let env = Env::start().await;
    env.emu
        .set_secret(VAULT, "db-password", "wi-value", None)
        .unwrap();
    let token = standard_sa_token(&env.emu);
    let wi = Mount::new(&secret_object("db-password"))
        .param("clientID", WI_CLIENT_ID)
        .sa_token(&token);
    let response = env.mount(&wi).await.unwrap();
    assert_eq!(text(&response, "db-password"), "wi-value");
    let counters = env.emu.counters();
    assert_eq!(counters.tokens(TokenKind::ClientAssertion), 1);
    assert_eq!(counters.tokens(TokenKind::ClientSecret), 0);
    let requests = token_requests(&env.emu);
    assert_eq!(
        (requests[0].host.as_str(), requests[0].identity.as_deref()),
        ("login.microsoftonline.com", Some(WI_CLIENT_ID))
    );
    let data = env
        .emu
        .request_log()
        .into_iter()
        .filter(|e| e.class == RequestClass::DataPlaneGet && e.status == Some(200))
        .count();
    assert_eq!(data, 1);

    // clientID and a token win over a nodePublishSecretRef (a fresh load: nothing cached).
    let precedence = Mount::new(&secret_object("db-password"))
        .param("clientID", WI_CLIENT_ID)
        .sa_token(&token)
        .secret("clientid", SP_CLIENT_ID)
        .secret("clientsecret", SP_CLIENT_SECRET);
    let fresh = load_azure(&env.runtime, policy(ALL_HOSTS));
    env.emu.reset_counters();
    fresh
        .mount(&precedence.request(), &precedence.call_context())
        .await
        .unwrap();
    assert_eq!(env.emu.counters().tokens(TokenKind::ClientAssertion), 1);
    assert_eq!(env.emu.counters().tokens(TokenKind::ClientSecret), 0);

    // A service account without a federated credential is refused by AAD, and the user is told why.
    let stranger = sa_token(
        OIDC_ISSUER,
        &sa_subject(POD_NAMESPACE, "intruder"),
        env.emu.now(),
    );
    let mut refused = Mount::new(&secret_object("db-password"))
        .param("clientID", WI_CLIENT_ID)
        .sa_token(&stranger);
    refused.context.insert(
        "csi.storage.k8s.io/serviceAccount.name".into(),
        "intruder".into(),
    );
    let shown = expect_error(
        env.mount(&refused).await,
        ErrorKind::Unauthenticated,
        &[
            "workload identity token request",
            "https://login.microsoftonline.com",
            "No matching federated identity record",
            "system:serviceaccount:shop:intruder",
        ],
    );
    assert!(!shown.contains(&stranger), "{shown}");

    // clientID without the token kubelet should have supplied.
    let missing = Mount::new(&secret_object("db-password")).param("clientID", WI_CLIENT_ID);
    expect_error(
        env.mount(&missing).await,
        ErrorKind::InvalidParameters,
        &["api://AzureADTokenExchange", "tokenRequests"],
    );
}

#[tokio::test]
async fn vm_managed_identity_system_and_user_assigned() {
    let env = Env::start().await;
    env.emu
        .set_secret(VAULT, "db-password", "mi-value", None)
        .unwrap();

    let system = Mount::new(&secret_object("db-password")).param("useVMManagedIdentity", "true");
    assert_eq!(
        text(&env.mount(&system).await.unwrap(), "db-password"),
        "mi-value"
    );
    let imds = token_requests(&env.emu);
    assert_eq!(imds.len(), 1);
    assert_eq!(imds[0].class, RequestClass::Imds);
    assert_eq!(imds[0].host, "169.254.169.254");
    assert!(
        imds[0]
            .path
            .starts_with("/metadata/identity/oauth2/token?api-version="),
        "{}",
        imds[0].path
    );
    assert!(imds[0].path.contains("resource=https"), "{}", imds[0].path);
    assert!(!imds[0].path.contains("client_id"), "{}", imds[0].path);
    assert_eq!(imds[0].identity.as_deref(), Some(MI_SYSTEM_CLIENT_ID));

    // The explicit mode wins over clientID + token and over a nodePublishSecretRef.
    env.emu.reset_counters();
    let user = Mount::sp(&secret_object("db-password"))
        .param("useVMManagedIdentity", "true")
        .param("userAssignedIdentityID", MI_USER_CLIENT_ID)
        .param("clientID", WI_CLIENT_ID)
        .sa_token(&standard_sa_token(&env.emu));
    assert_eq!(
        text(&env.mount(&user).await.unwrap(), "db-password"),
        "mi-value"
    );
    let imds = token_requests(&env.emu);
    assert_eq!(imds.len(), 1, "{imds:?}");
    assert_eq!(imds[0].class, RequestClass::Imds);
    assert!(
        imds[0]
            .path
            .contains(&format!("client_id={MI_USER_CLIENT_ID}")),
        "{}",
        imds[0].path
    );
    assert_eq!(imds[0].identity.as_deref(), Some(MI_USER_CLIENT_ID));
    assert_eq!(env.emu.counters().tokens(TokenKind::ManagedIdentity), 1);

    // IMDS is plain HTTP to a link-local address: the policy has to name it; the describe list's
    // Key Vault and AAD entries are not enough.
    let no_imds: Vec<&str> = ALL_HOSTS
        .iter()
        .copied()
        .filter(|h| !h.contains("169.254.169.254"))
        .collect();
    let azure = load_azure(&env.runtime, policy(&no_imds));
    let result = azure.mount(&system.request(), &system.call_context()).await;
    let shown = expect_error(
        result,
        ErrorKind::Unavailable,
        &["http://169.254.169.254", "policy"],
    );
    assert!(
        shown.contains("denied by the provider's policy: http://169.254.169.254:80"),
        "{shown}"
    );
}

#[tokio::test]
async fn pod_identity_asks_nmi_for_the_pod() {
    let env = Env::start().await;
    env.emu
        .set_secret(VAULT, "db-password", "pod-identity-value", None)
        .unwrap();
    let mount = Mount::new(&secret_object("db-password")).param("usePodIdentity", "true");
    assert_eq!(
        text(&env.mount(&mount).await.unwrap(), "db-password"),
        "pod-identity-value"
    );
    let nmi = token_requests(&env.emu);
    assert_eq!(nmi.len(), 1);
    assert_eq!(
        (nmi[0].class, nmi[0].host.as_str()),
        (RequestClass::Nmi, "localhost")
    );
    assert!(
        nmi[0]
            .path
            .starts_with("/host/token/?resource=https://vault.azure.net"),
        "{}",
        nmi[0].path
    );
    assert_eq!(nmi[0].identity.as_deref(), Some(POD_IDENTITY_CLIENT_ID));
    assert_eq!(env.emu.counters().tokens(TokenKind::PodIdentity), 1);

    // A pod NMI has no identity for: NMI's answer reaches the user.
    let other = Mount::new(&secret_object("db-password"))
        .param("usePodIdentity", "true")
        .pod(POD_NAMESPACE, "batch-7");
    expect_error(
        env.mount(&other).await,
        ErrorKind::Unauthenticated,
        &[
            "pod identity token request",
            "404",
            "no AzureAssignedIdentity found for pod:shop/batch-7",
        ],
    );
}

#[tokio::test]
async fn missing_or_conflicting_credentials_are_refused_before_any_request() {
    let env = Env::start().await;
    env.emu
        .set_secret(VAULT, "db-password", "x-value", None)
        .unwrap();
    let none = Mount::new(&secret_object("db-password"));
    expect_error(
        env.mount(&none).await,
        ErrorKind::InvalidParameters,
        &["nodePublishSecretRef secret is not set"],
    );
    let half = Mount::new(&secret_object("db-password")).secret("clientid", SP_CLIENT_ID);
    expect_error(
        env.mount(&half).await,
        ErrorKind::InvalidParameters,
        &["could not find clientsecret"],
    );
    let both = Mount::new(&secret_object("db-password"))
        .param("usePodIdentity", "true")
        .param("useVMManagedIdentity", "true");
    expect_error(
        env.mount(&both).await,
        ErrorKind::InvalidParameters,
        &["usePodIdentity", "useVMManagedIdentity"],
    );
    let not_bool = Mount::new(&secret_object("db-password")).param("useVMManagedIdentity", "yes");
    expect_error(
        env.mount(&not_bool).await,
        ErrorKind::InvalidParameters,
        &["useVMManagedIdentity", "\"yes\""],
    );
    assert!(
        env.emu.request_log().is_empty(),
        "nothing may be contacted: {:?}",
        env.emu.request_log()
    );
}

/// (cloudName, vault, vault suffix, AAD host)
const CLOUDS: &[(&str, &str, &str, &str)] = &[
    (
        "AzurePublicCloud",
        VAULT,
        "vault.azure.net",
        "login.microsoftonline.com",
    ),
    (
        "AzureUSGovernmentCloud",
        "e2e-usgov",
        "vault.usgovcloudapi.net",
        "login.microsoftonline.us",
    ),
    (
        "AzureChinaCloud",
        "e2e-china",
        "vault.azure.cn",
        "login.chinacloudapi.cn",
    ),
    (
        "AzureGermanCloud",
        "e2e-german",
        "vault.microsoftazure.de",
        "login.microsoftonline.de",
    ),
];

#[tokio::test]
async fn each_named_cloud_uses_its_own_vault_suffix_and_authority() {
    let env = Env::with(|emu| {
        for (cloud, vault, _, _) in &CLOUDS[1..] {
            emu.add_vault(VaultSpec::new(vault, TENANT).in_cloud(cloud))
                .unwrap();
        }
    })
    .await;
    for (cloud, vault, suffix, login) in CLOUDS {
        let value = format!("value-in-{cloud}");
        env.emu
            .set_secret(vault, "db-password", &value, None)
            .unwrap();
        env.emu.reset_counters();
        let mut mount = Mount::sp(&secret_object("db-password")).param("keyvaultName", vault);
        // The public cloud is the default; the others are named (case-insensitively, as upstream).
        if *cloud != "AzurePublicCloud" {
            mount = mount.param("cloudName", &cloud.to_ascii_lowercase());
        }
        let response = env
            .mount(&mount)
            .await
            .unwrap_or_else(|e| panic!("{cloud}: {e}"));
        assert_eq!(text(&response, "db-password"), value);
        let log = env.emu.request_log();
        let hosts: Vec<&str> = log.iter().map(|e| e.host.as_str()).collect();
        let vault_host = format!("{vault}.{suffix}");
        assert_eq!(
            hosts,
            [vault_host.as_str(), login, vault_host.as_str()],
            "{cloud}: challenge, token, object"
        );
        assert_eq!(log[1].path, format!("/{TENANT}/oauth2/v2.0/token"));
    }
    let unknown = Mount::sp(&secret_object("db-password")).param("cloudName", "AzureMarsCloud");
    expect_error(
        env.mount(&unknown).await,
        ErrorKind::InvalidParameters,
        &["cloudName", "AzureMarsCloud"],
    );
}

#[tokio::test]
async fn azure_stack_cloud_comes_from_a_host_file_the_policy_lists() {
    let env = Env::with(|emu| {
        emu.add_vault(VaultSpec::new("e2e-stack", TENANT).in_cloud("AzureStackCloud"))
            .unwrap();
    })
    .await;
    env.emu
        .set_secret("e2e-stack", "db-password", "on-prem-value", None)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("azurestackcloud.json");
    std::fs::write(
        &env_file,
        serde_json::json!({
            "name": "AzureStackCloud",
            "managementPortalURL": "https://portal.local.azurestack.external/",
            "resourceManagerEndpoint": "https://management.local.azurestack.external/",
            "activeDirectoryEndpoint": format!("https://{STACK_LOGIN_HOST}/"),
            "keyVaultDNSSuffix": STACK_VAULT_SUFFIX,
            "keyVaultEndpoint": format!("https://{STACK_VAULT_SUFFIX}/"),
        })
        .to_string(),
    )
    .unwrap();
    let stack_hosts = [
        format!("https://*.{STACK_VAULT_SUFFIX}"),
        format!("https://{STACK_LOGIN_HOST}"),
    ];
    let mut spec = policy(&stack_hosts.iter().map(String::as_str).collect::<Vec<_>>());
    spec.host_files = vec![env_file.clone()];
    let azure = load_azure(&env.runtime, spec.clone());
    let mount = Mount::sp(&secret_object("db-password"))
        .param("keyvaultName", "e2e-stack")
        .param("cloudName", "AzureStackCloud")
        .param("cloudEnvFileName", env_file.to_str().unwrap());
    let response = azure
        .mount(&mount.request(), &mount.call_context())
        .await
        .unwrap();
    assert_eq!(text(&response, "db-password"), "on-prem-value");
    let hosts: Vec<String> = env.emu.request_log().into_iter().map(|e| e.host).collect();
    assert_eq!(
        hosts,
        [
            format!("e2e-stack.{STACK_VAULT_SUFFIX}"),
            STACK_LOGIN_HOST.to_string(),
            format!("e2e-stack.{STACK_VAULT_SUFFIX}")
        ]
    );

    // The same file, not listed in the policy's hostFiles: refused, and the message says how to fix it.
    spec.host_files.clear();
    let unlisted = load_azure(&env.runtime, spec);
    let path = env_file.display().to_string();
    expect_error(
        unlisted
            .mount(&mount.request(), &mount.call_context())
            .await,
        ErrorKind::InvalidParameters,
        &["cloudEnvFileName", &path, "hostFiles"],
    );
    let without_file = mount.clone().without_param("cloudEnvFileName");
    expect_error(
        env.mount(&without_file).await,
        ErrorKind::InvalidParameters,
        &["AzureStackCloud", "cloudEnvFileName"],
    );
}
