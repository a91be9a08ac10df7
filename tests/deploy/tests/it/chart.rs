//! The Helm chart and the plain manifests, checked with a real helm: lint, render with default and
//! non-default values, and check that the rendered objects carry what the deploy issue names —
//! CSIDriver, DaemonSet (driver flags, volumes, propagation, probes, sidecars), the providers'
//! policy file (parsed with the runtime's own `PolicySpec`), minimal RBAC — and that the CRD
//! copies and `deploy/manifests/` are in sync with their sources.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use secrets_store_deploy_tests::{
    DeployError, NAMESPACE, Rendered, Values, at, chart_dir, helm, lint, named, read_repo_file,
    repo_root, seq_at, str_at, strings, template,
};
use secrets_store_runtime::{Policy, PolicySpec};
use serde_norway::Value;

const FULLNAME: &str = "ssw-secrets-store-csi-driver-wasm";
const PROVIDERS_MOUNT: &str = "/etc/secrets-store-wasm/providers";
const AZURE_MODULE_IN_IMAGE: &str = "/usr/lib/secrets-store-wasm/providers/azure.wasm";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn render(values: Values) -> Rendered {
    template(&values).unwrap_or_else(|e| panic!("{e}"))
}

fn render_default() -> Rendered {
    render(Values::default())
}

fn render_custom() -> Rendered {
    render(Values::default().file(fixture("custom.yaml")))
}

/// Helm's error output (not the command line, which repeats the values); panics when rendering
/// succeeds.
fn render_error(values: Values) -> String {
    match template(&values) {
        Ok(_) => panic!("rendering with {values:?} must fail"),
        Err(DeployError::Failed { stderr, .. }) => stderr,
        Err(e) => panic!("rendering failed for another reason than the values: {e}"),
    }
}

fn app_version() -> String {
    let chart: Value = serde_norway::from_str(
        &read_repo_file("deploy/chart/secrets-store-csi-driver-wasm/Chart.yaml").unwrap(),
    )
    .unwrap();
    str_at(&chart, &["appVersion"]).unwrap().to_owned()
}

fn daemonset(r: &Rendered) -> &Value {
    r.one("DaemonSet").expect("exactly one DaemonSet")
}

fn pod_spec(r: &Rendered) -> &Value {
    at(daemonset(r), &["spec", "template", "spec"]).expect("pod spec")
}

fn container<'a>(r: &'a Rendered, name: &str) -> &'a Value {
    named(seq_at(pod_spec(r), &["containers"]), name).unwrap_or_else(|| panic!("container {name}"))
}

fn args(r: &Rendered, container_name: &str) -> Vec<String> {
    strings(seq_at(container(r, container_name), &["args"]))
}

fn volume<'a>(r: &'a Rendered, name: &str) -> &'a Value {
    named(seq_at(pod_spec(r), &["volumes"]), name).unwrap_or_else(|| panic!("volume {name}"))
}

fn mount<'a>(r: &'a Rendered, container_name: &str, volume_name: &str) -> &'a Value {
    named(
        seq_at(container(r, container_name), &["volumeMounts"]),
        volume_name,
    )
    .unwrap_or_else(|| panic!("{container_name} mounts no volume {volume_name}"))
}

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// providers.yaml from the rendered ConfigMap: per provider its `module` and its policy, which must
/// deserialize as the runtime's `PolicySpec` (unknown keys fail) and validate as a `Policy`.
fn providers_config(r: &Rendered) -> BTreeMap<String, (String, PolicySpec)> {
    let name = format!("{FULLNAME}-providers");
    let cm = r
        .of_kind("ConfigMap")
        .find(|o| str_at(o, &["metadata", "name"]) == Some(name.as_str()))
        .unwrap_or_else(|| panic!("ConfigMap {name}"));
    assert_eq!(str_at(cm, &["metadata", "namespace"]), Some(NAMESPACE));
    let text = str_at(cm, &["data", "providers.yaml"]).expect("data providers.yaml");
    let doc = yaml(text);
    let top = doc.as_mapping().expect("providers.yaml is a map");
    assert_eq!(
        top.keys().filter_map(Value::as_str).collect::<Vec<_>>(),
        ["providers"],
        "providers.yaml top-level keys"
    );
    let providers = top
        .get("providers")
        .and_then(Value::as_mapping)
        .expect("providers is a map");
    providers
        .iter()
        .map(|(name, entry)| {
            let name = name.as_str().expect("provider name").to_owned();
            let mut entry = entry.as_mapping().expect("provider entry is a map").clone();
            let module = entry
                .remove("module")
                .and_then(|m| m.as_str().map(str::to_owned))
                .unwrap_or_else(|| panic!("providers.{name}.module is a string"));
            let spec: PolicySpec = serde_norway::from_value(Value::Mapping(entry))
                .unwrap_or_else(|e| panic!("providers.{name} is not a PolicySpec: {e}"));
            Policy::from_spec(&spec)
                .unwrap_or_else(|e| panic!("providers.{name} is not a valid policy: {e}"));
            (name, (module, spec))
        })
        .collect()
}

/// Pod-level consistency any valid DaemonSet has: unique volume names, every mount backed by a
/// volume, the selector matching the template's labels.
fn check_pod_consistency(r: &Rendered) {
    let pod = pod_spec(r);
    let volumes: Vec<&str> = seq_at(pod, &["volumes"])
        .iter()
        .map(|v| str_at(v, &["name"]).expect("volume name"))
        .collect();
    let unique: BTreeSet<&str> = volumes.iter().copied().collect();
    assert_eq!(
        unique.len(),
        volumes.len(),
        "duplicate volumes: {volumes:?}"
    );
    for c in seq_at(pod, &["containers"]) {
        let mut paths = BTreeSet::new();
        for m in seq_at(c, &["volumeMounts"]) {
            let volume = str_at(m, &["name"]).expect("mount name");
            assert!(
                unique.contains(volume),
                "mount of undefined volume {volume}"
            );
            let path = str_at(m, &["mountPath"]).expect("mountPath");
            assert!(paths.insert(path), "two mounts at {path}");
        }
    }
    let ds = daemonset(r);
    let selector = at(ds, &["spec", "selector", "matchLabels"])
        .and_then(Value::as_mapping)
        .expect("selector");
    let labels = at(ds, &["spec", "template", "metadata", "labels"])
        .and_then(Value::as_mapping)
        .expect("pod labels");
    for (k, v) in selector {
        assert_eq!(labels.get(k), Some(v), "selector label {k:?}");
    }
}

/// RBAC rules as (apiGroup, resource, verb) triples; fails on anything broader than that shape.
fn rbac_triples(r: &Rendered) -> BTreeSet<(String, String, String)> {
    let role = r.one("ClusterRole").expect("one ClusterRole");
    assert_eq!(str_at(role, &["metadata", "name"]), Some(FULLNAME));
    let mut triples = BTreeSet::new();
    for rule in seq_at(role, &["rules"]) {
        let keys: BTreeSet<&str> = rule
            .as_mapping()
            .expect("rule")
            .keys()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["apiGroups", "resources", "verbs"]),
            "rule {rule:?} has other fields"
        );
        for group in strings(seq_at(rule, &["apiGroups"])) {
            for resource in strings(seq_at(rule, &["resources"])) {
                for verb in strings(seq_at(rule, &["verbs"])) {
                    triples.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    triples
}

fn triples(group: &str, resource: &str, verbs: &[&str]) -> Vec<(String, String, String)> {
    verbs
        .iter()
        .map(|v| (group.to_owned(), resource.to_owned(), (*v).to_owned()))
        .collect()
}

fn expected_rbac(sync: bool) -> BTreeSet<(String, String, String)> {
    let spc = "secrets-store.csi.x-k8s.io";
    let mut all: BTreeSet<_> = [
        triples(spc, "secretproviderclasses", &["get", "list", "watch"]),
        triples(
            spc,
            "secretproviderclasspodstatuses",
            &["get", "create", "update", "patch"],
        ),
        triples("", "events", &["create", "patch"]),
        triples("", "pods", &["get"]),
    ]
    .into_iter()
    .flatten()
    .collect();
    if sync {
        all.extend(triples(
            "",
            "secrets",
            &["get", "create", "update", "patch"],
        ));
    }
    all
}

fn azure_hosts() -> Vec<String> {
    secrets_store_test_support::AZURE_HOSTS
        .iter()
        .map(|h| h.to_string())
        .collect()
}

/// Where two YAML values first differ, as a path; `None` when equal.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Mapping(x), Value::Mapping(y)) => {
            for (k, v) in x {
                let key = k.as_str().unwrap_or("?");
                match y.get(k) {
                    Some(w) => {
                        if let Some(d) = first_difference(v, w, &format!("{path}.{key}")) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{path}.{key} only on one side")),
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{path}.{} only on one side", k.as_str().unwrap_or("?")))
        }
        (Value::Sequence(x), Value::Sequence(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, &format!("{path}[{i}]"))),
        _ => (a != b).then(|| format!("{path}: {a:?} != {b:?}")),
    }
}

/// `object` read as the Kubernetes API type `T` and written back must be unchanged: a field the
/// API type does not know (a typo, a wrong level) would be dropped, a wrongly typed one refused.
fn check_api_type<T>(object: &Value)
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let id = format!(
        "{} {}",
        str_at(object, &["kind"]).unwrap_or("?"),
        str_at(object, &["metadata", "name"]).unwrap_or("?")
    );
    let typed: T = serde_norway::from_value(object.clone())
        .unwrap_or_else(|e| panic!("{id} is not a valid API object: {e}"));
    let back = serde_norway::to_value(&typed).unwrap();
    if let Some(difference) = first_difference(object, &back, "") {
        panic!("{id} does not survive the API type: {difference}");
    }
}

fn check_api_types(r: &Rendered) {
    use k8s_openapi::api::{apps, core, rbac, storage};
    for object in &r.objects {
        match str_at(object, &["kind"]).unwrap() {
            "ServiceAccount" => check_api_type::<core::v1::ServiceAccount>(object),
            "ConfigMap" => check_api_type::<core::v1::ConfigMap>(object),
            "ClusterRole" => check_api_type::<rbac::v1::ClusterRole>(object),
            "ClusterRoleBinding" => check_api_type::<rbac::v1::ClusterRoleBinding>(object),
            "DaemonSet" => check_api_type::<apps::v1::DaemonSet>(object),
            "CSIDriver" => check_api_type::<storage::v1::CSIDriver>(object),
            // The Prometheus operator's type; not in k8s-openapi.
            "PodMonitor" => {}
            other => panic!("unexpected kind {other}"),
        }
    }
}

#[test]
fn helm_lint_passes_default_strict_and_custom() {
    for (values, strict) in [
        (Values::default(), false),
        (Values::default(), true),
        (Values::default().file(fixture("custom.yaml")), true),
    ] {
        let report = lint(&values, strict).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.contains("0 chart(s) failed"), "{report}");
        assert!(!report.contains("[WARNING]"), "{report}");
        assert!(!report.contains("[ERROR]"), "{report}");
    }
}

#[test]
fn default_render_has_exactly_the_expected_objects() {
    let r = render_default();
    let ids: BTreeSet<(String, String)> = r.ids().into_iter().collect();
    let expected: BTreeSet<(String, String)> = [
        ("ServiceAccount", FULLNAME.to_owned()),
        ("ConfigMap", format!("{FULLNAME}-providers")),
        ("ClusterRole", FULLNAME.to_owned()),
        ("ClusterRoleBinding", FULLNAME.to_owned()),
        ("DaemonSet", FULLNAME.to_owned()),
        ("CSIDriver", "secrets-store.csi.k8s.io".to_owned()),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    assert_eq!(ids, expected);
    assert_eq!(r.objects.len(), expected.len());
    for o in &r.objects {
        let kind = str_at(o, &["kind"]).unwrap();
        assert!(str_at(o, &["apiVersion"]).is_some(), "{kind} apiVersion");
        let namespace = str_at(o, &["metadata", "namespace"]);
        match kind {
            "ClusterRole" | "ClusterRoleBinding" | "CSIDriver" => {
                assert_eq!(namespace, None, "{kind} is cluster-scoped")
            }
            _ => assert_eq!(namespace, Some(NAMESPACE), "{kind} namespace"),
        }
    }
}

#[test]
fn rendered_objects_are_valid_api_objects() {
    check_api_types(&render_default());
    check_api_types(&render_custom());
    let manifests = read_repo_file("deploy/manifests/secrets-store-csi-driver-wasm.yaml").unwrap();
    check_api_types(&Rendered::parse(&manifests, "deploy/manifests").unwrap());
}

#[test]
fn csidriver_fields_follow_values() {
    let r = render_default();
    let driver = r.one("CSIDriver").unwrap();
    assert_eq!(str_at(driver, &["apiVersion"]), Some("storage.k8s.io/v1"));
    assert_eq!(
        str_at(driver, &["metadata", "name"]),
        Some("secrets-store.csi.k8s.io")
    );
    let spec = at(driver, &["spec"]).unwrap();
    assert_eq!(
        spec,
        &yaml(
            "podInfoOnMount: true\nattachRequired: false\nvolumeLifecycleModes: [Ephemeral]\n\
             requiresRepublish: false\n"
        ),
        "default CSIDriver spec (no tokenRequests)"
    );

    let rotated = render(Values::default().set("enableSecretRotation=true"));
    let spec = at(rotated.one("CSIDriver").unwrap(), &["spec"]).unwrap();
    assert_eq!(spec.get("requiresRepublish"), Some(&Value::Bool(true)));

    let custom = render_custom();
    let spec = at(custom.one("CSIDriver").unwrap(), &["spec"]).unwrap();
    assert_eq!(spec.get("requiresRepublish"), Some(&Value::Bool(true)));
    assert_eq!(
        spec.get("tokenRequests"),
        Some(&yaml(
            "- {audience: api://AzureADTokenExchange, expirationSeconds: 3600}\n- {audience: vault}\n"
        ))
    );
}

#[test]
fn daemonset_runs_the_driver_with_the_default_flags_volumes_and_probes() {
    let r = render_default();
    check_pod_consistency(&r);
    let pod = pod_spec(&r);
    let names: Vec<&str> = seq_at(pod, &["containers"])
        .iter()
        .filter_map(|c| str_at(c, &["name"]))
        .collect();
    assert_eq!(
        names,
        ["node-driver-registrar", "secrets-store", "liveness-probe"]
    );
    assert_eq!(str_at(pod, &["serviceAccountName"]), Some(FULLNAME));
    assert_eq!(pod.get("hostNetwork"), None);
    assert_eq!(
        at(pod, &["nodeSelector"]),
        Some(&yaml("kubernetes.io/os: linux"))
    );
    assert_eq!(at(pod, &["tolerations"]), Some(&yaml("- operator: Exists")));
    // Hot reload, not restarts: nothing on the pod template changes with the providers config.
    let annotations = at(
        daemonset(&r),
        &["spec", "template", "metadata", "annotations"],
    )
    .and_then(Value::as_mapping)
    .unwrap();
    assert!(
        annotations
            .keys()
            .filter_map(Value::as_str)
            .all(|k| !k.starts_with("checksum/")),
        "{annotations:?}"
    );

    let driver = container(&r, "secrets-store");
    assert_eq!(
        str_at(driver, &["image"]),
        Some(
            format!(
                "ghcr.io/secrets-store-wasm/secrets-store-host:{}",
                app_version()
            )
            .as_str()
        )
    );
    assert_eq!(
        strings(seq_at(driver, &["command"])),
        ["secrets-store-host", "serve"]
    );
    assert_eq!(
        args(&r, "secrets-store"),
        [
            "--endpoint=unix:///csi/csi.sock",
            "--nodeid=$(KUBE_NODE_NAME)",
            "--kubelet-dir=/var/lib/kubelet",
            "--providers-dir=/etc/secrets-store-wasm/providers",
            "--provider-volume=/var/run/secrets-store-csi-providers",
            "--additional-provider-volume-paths=/etc/kubernetes/secrets-store-csi-providers",
            "--artifact-cache=/var/lib/secrets-store-wasm/cache",
            "--metrics-addr=:8095",
            "--max-call-recv-msg-size=4194304",
        ]
    );
    assert_eq!(
        named(seq_at(driver, &["env"]), "KUBE_NODE_NAME"),
        Some(&yaml(
            "name: KUBE_NODE_NAME\nvalueFrom: {fieldRef: {apiVersion: v1, fieldPath: spec.nodeName}}"
        ))
    );
    assert_eq!(
        at(driver, &["securityContext", "privileged"]),
        Some(&Value::Bool(true))
    );
    let ports = seq_at(driver, &["ports"]);
    assert_eq!(
        named(ports, "healthz"),
        Some(&yaml("{name: healthz, containerPort: 9808, protocol: TCP}"))
    );
    assert_eq!(
        named(ports, "metrics"),
        Some(&yaml("{name: metrics, containerPort: 8095, protocol: TCP}"))
    );
    assert_eq!(
        at(driver, &["livenessProbe", "httpGet"]),
        Some(&yaml("{path: /healthz, port: healthz}"))
    );
    assert_eq!(
        at(driver, &["readinessProbe", "httpGet"]),
        Some(&yaml("{path: /readyz, port: metrics}"))
    );
    assert_eq!(
        at(driver, &["resources"]),
        Some(&yaml(
            "{requests: {cpu: 20m, memory: 32Mi}, limits: {memory: 128Mi}}"
        ))
    );

    // Mounts: only the pods directory propagates, and Bidirectionally.
    let mounts: BTreeMap<&str, &Value> = seq_at(driver, &["volumeMounts"])
        .iter()
        .map(|m| (str_at(m, &["name"]).unwrap(), m))
        .collect();
    assert_eq!(
        mounts.keys().copied().collect::<Vec<_>>(),
        [
            "artifact-cache",
            "mountpoint-dir",
            "plugin-dir",
            "providers",
            "providers-dir",
            "providers-dir-0"
        ]
    );
    for (name, m) in &mounts {
        let propagation = str_at(m, &["mountPropagation"]);
        let expected = (*name == "mountpoint-dir").then_some("Bidirectional");
        assert_eq!(propagation, expected, "{name} mountPropagation");
        assert_eq!(
            m.get("subPath"),
            None,
            "{name}: subPath mounts never update"
        );
    }
    assert_eq!(
        mount(&r, "secrets-store", "mountpoint-dir"),
        &yaml(
            "{name: mountpoint-dir, mountPath: /var/lib/kubelet/pods, mountPropagation: Bidirectional}"
        )
    );
    assert_eq!(
        str_at(mount(&r, "secrets-store", "plugin-dir"), &["mountPath"]),
        Some("/csi")
    );
    assert_eq!(
        mount(&r, "secrets-store", "providers"),
        &yaml(&format!(
            "{{name: providers, mountPath: {PROVIDERS_MOUNT}, readOnly: true}}"
        ))
    );
    assert_eq!(
        str_at(mount(&r, "secrets-store", "artifact-cache"), &["mountPath"]),
        Some("/var/lib/secrets-store-wasm/cache")
    );
    assert_eq!(
        str_at(mount(&r, "secrets-store", "providers-dir"), &["mountPath"]),
        Some("/var/run/secrets-store-csi-providers")
    );
    assert_eq!(
        str_at(
            mount(&r, "secrets-store", "providers-dir-0"),
            &["mountPath"]
        ),
        Some("/etc/kubernetes/secrets-store-csi-providers")
    );

    let host_path = |name: &str| at(volume(&r, name), &["hostPath"]).cloned();
    assert_eq!(
        host_path("mountpoint-dir"),
        Some(yaml(
            "{path: /var/lib/kubelet/pods, type: DirectoryOrCreate}"
        ))
    );
    assert_eq!(
        host_path("registration-dir"),
        Some(yaml(
            "{path: /var/lib/kubelet/plugins_registry/, type: Directory}"
        ))
    );
    assert_eq!(
        host_path("plugin-dir"),
        Some(yaml(
            "{path: /var/lib/kubelet/plugins/csi-secrets-store/, type: DirectoryOrCreate}"
        ))
    );
    assert_eq!(
        host_path("providers-dir"),
        Some(yaml(
            "{path: /var/run/secrets-store-csi-providers, type: DirectoryOrCreate}"
        ))
    );
    assert_eq!(
        host_path("providers-dir-0"),
        Some(yaml(
            "{path: /etc/kubernetes/secrets-store-csi-providers, type: DirectoryOrCreate}"
        ))
    );
    assert_eq!(
        volume(&r, "artifact-cache"),
        &yaml("{name: artifact-cache, emptyDir: {}}")
    );
    assert_eq!(
        at(volume(&r, "providers"), &["projected", "sources"]),
        Some(&yaml(&format!(
            "- configMap: {{name: {FULLNAME}-providers, items: [{{key: providers.yaml, path: providers.yaml}}]}}"
        ))),
        "only the chart's providers.yaml by default: the Azure module comes from the image"
    );
}

#[test]
fn sidecars_have_upstream_arguments_and_images() {
    for (values, kubelet) in [
        (Values::default(), "/var/lib/kubelet"),
        (
            Values::default().set("linux.kubeletRootDir=/data/kubelet"),
            "/data/kubelet",
        ),
    ] {
        let r = render(values);
        check_pod_consistency(&r);
        assert_eq!(
            args(&r, "node-driver-registrar"),
            [
                "--v=5".to_owned(),
                "--csi-address=/csi/csi.sock".to_owned(),
                format!("--kubelet-registration-path={kubelet}/plugins/csi-secrets-store/csi.sock"),
            ]
        );
        assert_eq!(
            str_at(container(&r, "node-driver-registrar"), &["image"]),
            Some("registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.16.0")
        );
        assert_eq!(
            str_at(
                mount(&r, "node-driver-registrar", "plugin-dir"),
                &["mountPath"]
            ),
            Some("/csi")
        );
        assert_eq!(
            str_at(
                mount(&r, "node-driver-registrar", "registration-dir"),
                &["mountPath"]
            ),
            Some("/registration")
        );
        assert_eq!(
            args(&r, "liveness-probe"),
            [
                "--csi-address=/csi/csi.sock",
                "--probe-timeout=3s",
                "--http-endpoint=0.0.0.0:9808",
                "-v=2"
            ]
        );
        assert_eq!(
            str_at(container(&r, "liveness-probe"), &["image"]),
            Some("registry.k8s.io/sig-storage/livenessprobe:v2.18.0")
        );
        assert_eq!(
            str_at(mount(&r, "liveness-probe", "plugin-dir"), &["mountPath"]),
            Some("/csi")
        );
        assert_eq!(
            at(volume(&r, "plugin-dir"), &["hostPath", "path"]),
            Some(&Value::String(format!(
                "{kubelet}/plugins/csi-secrets-store/"
            )))
        );
        assert!(
            args(&r, "secrets-store").contains(&format!("--kubelet-dir={kubelet}")),
            "the driver checks publish targets against the same kubelet dir"
        );
        assert_eq!(
            str_at(mount(&r, "secrets-store", "mountpoint-dir"), &["mountPath"]),
            Some(format!("{kubelet}/pods").as_str())
        );
    }
}

#[test]
fn non_default_values_reach_the_driver() {
    let r = render_custom();
    check_pod_consistency(&r);
    let args = args(&r, "secrets-store");
    for expected in [
        "-v=4",
        "--log-format=json",
        "--enable-secret-rotation",
        "--rotation-poll-interval=90s",
        "--enable-secret-sync",
        "--ca-file=/etc/secrets-store-wasm/ca/ca.crt",
        "--metrics-addr=0.0.0.0:9095",
        "--max-call-recv-msg-size=8388608",
        "--kubelet-dir=/data/kubelet",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
    }
    let driver = container(&r, "secrets-store");
    assert_eq!(
        str_at(driver, &["image"]),
        Some("ghcr.io/secrets-store-wasm/secrets-store-host:9.9.9-test")
    );
    assert_eq!(
        named(seq_at(driver, &["ports"]), "metrics").and_then(|p| p.get("containerPort")),
        Some(&Value::from(9095))
    );
    let pod = pod_spec(&r);
    assert_eq!(pod.get("hostNetwork"), Some(&Value::Bool(true)));
    assert_eq!(str_at(pod, &["dnsPolicy"]), Some("ClusterFirstWithHostNet"));
    assert_eq!(
        str_at(pod, &["priorityClassName"]),
        Some("system-node-critical")
    );
    assert_eq!(
        at(pod, &["tolerations"]),
        Some(&yaml(
            "- operator: Exists\n- {key: dedicated, operator: Equal, value: secrets, effect: NoSchedule}"
        ))
    );
    assert_eq!(
        at(pod, &["nodeSelector"]),
        Some(&yaml("{kubernetes.io/os: linux, pool: system}"))
    );
    assert_eq!(
        str_at(
            daemonset(&r),
            &[
                "spec",
                "template",
                "metadata",
                "annotations",
                "example.com/team"
            ]
        ),
        Some("platform")
    );
    assert_eq!(
        str_at(mount(&r, "secrets-store", "extra"), &["mountPath"]),
        Some("/extra")
    );
    assert_eq!(
        at(volume(&r, "ca-bundle"), &["configMap"]),
        Some(&yaml(
            "{name: corp-ca, items: [{key: bundle.pem, path: ca.crt}]}"
        ))
    );
    assert_eq!(
        mount(&r, "secrets-store", "ca-bundle"),
        &yaml("{name: ca-bundle, mountPath: /etc/secrets-store-wasm/ca, readOnly: true}")
    );

    // JSON logs and verbosity are independent switches.
    let r = render(Values::default().set("logFormatJSON=true"));
    let a = secrets_store_args(&r);
    assert!(a.contains(&"--log-format=json".to_owned()), "{a:?}");
    assert!(!a.iter().any(|a| a.starts_with("-v=")), "{a:?}");
    let r = render(Values::default().set("logVerbosity=2"));
    let a = secrets_store_args(&r);
    assert!(a.contains(&"-v=2".to_owned()), "{a:?}");
    assert!(!a.iter().any(|a| a.starts_with("--log-format")), "{a:?}");
}

fn secrets_store_args(r: &Rendered) -> Vec<String> {
    args(r, "secrets-store")
}

#[test]
fn rotation_and_sync_switch_their_flags_independently() {
    let r = render(
        Values::default()
            .set("enableSecretRotation=true")
            .set("rotationPollInterval=30s"),
    );
    let a = secrets_store_args(&r);
    assert!(a.contains(&"--enable-secret-rotation".to_owned()), "{a:?}");
    assert!(
        a.contains(&"--rotation-poll-interval=30s".to_owned()),
        "{a:?}"
    );
    assert!(!a.contains(&"--enable-secret-sync".to_owned()), "{a:?}");
    assert_eq!(rbac_triples(&r), expected_rbac(false));

    let r = render(Values::default().set("syncSecret.enabled=true"));
    let a = secrets_store_args(&r);
    assert!(a.contains(&"--enable-secret-sync".to_owned()), "{a:?}");
    assert!(!a.iter().any(|a| a.contains("rotation")), "{a:?}");
    let spec = at(r.one("CSIDriver").unwrap(), &["spec"]).unwrap();
    assert_eq!(spec.get("requiresRepublish"), Some(&Value::Bool(false)));
}

#[test]
fn default_providers_config_installs_azure_from_the_image() {
    let r = render_default();
    let config = providers_config(&r);
    assert_eq!(config.keys().collect::<Vec<_>>(), ["azure"]);
    let (module, spec) = &config["azure"];
    assert_eq!(module, AZURE_MODULE_IN_IMAGE);
    // The chart's limits are the driver's defaults; only the hosts are Azure's.
    assert_eq!(
        spec,
        &PolicySpec {
            allowed_hosts: azure_hosts(),
            ..PolicySpec::default()
        }
    );
}

#[test]
fn providers_from_configmaps_are_projected_next_to_their_policy() {
    let r = render_custom();
    let config = providers_config(&r);
    assert_eq!(
        config.keys().collect::<Vec<_>>(),
        ["azure", "mycorp_vault-2"],
        "`disabled` has enabled: false"
    );

    let (module, azure) = &config["azure"];
    assert_eq!(
        module, "azure.wasm.gz",
        "a .gz key keeps the module gzipped"
    );
    assert_eq!(
        azure,
        &PolicySpec {
            allowed_hosts: azure_hosts(),
            host_files: vec![
                "/etc/kubernetes/azurestackcloud.json".into(),
                "/etc/kubernetes/custom-cloud.json".into(),
            ],
            ..PolicySpec::default()
        }
    );

    // Every policy key, set: a field added to PolicySpec breaks this literal until the chart
    // (values.schema.json) and this fixture learn it.
    let (module, mycorp) = &config["mycorp_vault-2"];
    assert_eq!(module, "mycorp_vault-2.wasm");
    assert_eq!(
        mycorp,
        &PolicySpec {
            allowed_hosts: vec!["https://vault.corp.example:8200".into()],
            private_networks: vec!["10.20.0.0/16".into()],
            memory_limit_mib: 128,
            timeout_seconds: 45,
            max_response_bytes: 1_048_576,
            max_request_bytes: 65_536,
            max_requests_per_mount: 200,
            max_concurrent_requests: 4,
            max_files: 50,
            max_total_bytes: 8_388_608,
            host_files: vec!["/etc/kubernetes/custom-cloud.json".into()],
            cache_max_entries: 64,
            cache_max_value_bytes: 4096,
            cache_max_total_bytes: 262_144,
            response_cache_seconds: 20,
            rate_limit_per_host: 2.5,
            rate_limit_burst: 10,
        }
    );

    // One projected volume: the chart's providers.yaml plus each module ConfigMap, named so the
    // relative `module` paths above resolve inside the providers directory.
    assert_eq!(
        at(volume(&r, "providers"), &["projected", "sources"]),
        Some(&yaml(&format!(
            "- configMap: {{name: {FULLNAME}-providers, items: [{{key: providers.yaml, path: providers.yaml}}]}}\n\
             - configMap: {{name: azure-provider, optional: true, items: [{{key: azure.wasm.gz, path: azure.wasm.gz}}]}}\n\
             - configMap: {{name: mycorp-provider, optional: false, items: [{{key: provider.wasm, path: mycorp_vault-2.wasm}}]}}\n"
        )))
    );
    assert_eq!(
        str_at(mount(&r, "secrets-store", "providers"), &["mountPath"]),
        Some(PROVIDERS_MOUNT)
    );

    // The node file both providers read is mounted once, read-only, where the policy names it.
    let pod = pod_spec(&r);
    let host_files: Vec<&Value> = seq_at(pod, &["volumes"])
        .iter()
        .filter(|v| str_at(v, &["name"]).is_some_and(|n| n.starts_with("host-file-")))
        .collect();
    assert_eq!(
        host_files,
        [&yaml(
            "{name: host-file-0, hostPath: {path: /etc/kubernetes/custom-cloud.json, type: File}}"
        )]
    );
    assert_eq!(
        mount(&r, "secrets-store", "host-file-0"),
        &yaml("{name: host-file-0, mountPath: /etc/kubernetes/custom-cloud.json, readOnly: true}")
    );
}

#[test]
fn readme_configmap_provider_values_work_with_set() {
    // The README's commands for serving Azure from a ConfigMap instead of the image.
    let r = render(
        Values::default()
            .set("providers.azure.module.configMap.name=azure-provider")
            .set("providers.azure.module.configMap.key=azure.wasm.gz"),
    );
    let config = providers_config(&r);
    let (module, spec) = &config["azure"];
    assert_eq!(module, "azure.wasm.gz");
    assert_eq!(spec.allowed_hosts, azure_hosts());
    let sources = seq_at(volume(&r, "providers"), &["projected", "sources"]);
    assert_eq!(
        sources.get(1),
        Some(&yaml(
            "configMap: {name: azure-provider, optional: true, items: [{key: azure.wasm.gz, path: azure.wasm.gz}]}"
        ))
    );

    // And a second provider added on the command line.
    let r = render(
        Values::default()
            .set("providers.hello.module.configMap.name=hello")
            .set("providers.hello.module.configMap.key=hello.wasm")
            .set("providers.hello.allowedHosts={https://api.example.com}")
            .set("providers.hello.timeoutSeconds=5"),
    );
    let config = providers_config(&r);
    let (module, spec) = &config["hello"];
    assert_eq!(module, "hello.wasm");
    assert_eq!(
        spec,
        &PolicySpec {
            allowed_hosts: vec!["https://api.example.com".into()],
            timeout_seconds: 5,
            ..PolicySpec::default()
        }
    );
}

#[test]
fn rbac_is_minimal_and_secret_verbs_come_only_with_sync() {
    let r = render_default();
    assert_eq!(rbac_triples(&r), expected_rbac(false));
    let binding = r.one("ClusterRoleBinding").unwrap();
    assert_eq!(
        at(binding, &["roleRef"]),
        Some(&yaml(&format!(
            "{{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {FULLNAME}}}"
        )))
    );
    assert_eq!(
        at(binding, &["subjects"]),
        Some(&yaml(&format!(
            "- {{kind: ServiceAccount, name: {FULLNAME}, namespace: {NAMESPACE}}}"
        )))
    );

    let synced = render(Values::default().set("syncSecret.enabled=true"));
    assert_eq!(rbac_triples(&synced), expected_rbac(true));
    assert_eq!(rbac_triples(&render_custom()), expected_rbac(true));

    let none = render(Values::default().set("rbac.install=false"));
    assert!(none.one("ClusterRole").is_none());
    assert!(none.one("ClusterRoleBinding").is_none());
    assert!(none.one("ServiceAccount").is_some());

    let existing = render(
        Values::default()
            .set("serviceAccount.create=false")
            .set("serviceAccount.name=prebuilt"),
    );
    assert!(existing.one("ServiceAccount").is_none());
    assert_eq!(
        str_at(pod_spec(&existing), &["serviceAccountName"]),
        Some("prebuilt")
    );
    assert_eq!(
        str_at(
            &seq_at(existing.one("ClusterRoleBinding").unwrap(), &["subjects"])[0],
            &["name"]
        ),
        Some("prebuilt")
    );
}

#[test]
fn pod_monitor_is_off_by_default() {
    assert!(render_default().one("PodMonitor").is_none());
    let r = render_custom();
    let monitor = r.one("PodMonitor").expect("PodMonitor when enabled");
    assert_eq!(
        at(monitor, &["spec", "selector", "matchLabels"]),
        at(daemonset(&r), &["spec", "selector", "matchLabels"])
    );
    assert_eq!(
        at(monitor, &["spec", "podMetricsEndpoints"]),
        Some(&yaml("- {port: metrics, path: /metrics, interval: 30s}"))
    );
}

#[test]
fn windows_enabled_fails_with_a_clear_message() {
    let message = render_error(Values::default().set("windows.enabled=true"));
    assert!(
        message.contains("windows.enabled") && message.contains("Linux nodes only"),
        "{message}"
    );
}

#[test]
fn invalid_values_are_refused_with_the_reason() {
    // The schema (values.schema.json) catches these before anything renders.
    for (set, expected) in [
        (
            &["providers.azure.allowedHost={https://a.example}"][..],
            "providers.azure: Additional property allowedHost is not allowed",
        ),
        (
            &["providers.azure.memoryLimitMiB=0"],
            "providers.azure.memoryLimitMiB: Must be greater than or equal to 1",
        ),
        (
            &["providers.azure.module.path=azure.wasm"],
            "providers.azure.module.path: Does not match pattern",
        ),
        (
            &["providers.this-name-is-longer-than-thirty.module.path=/x.wasm"],
            "\"this-name-is-longer-than-thirty\" does not match",
        ),
        (
            &["providers.azure.module.configMap.name=cm"],
            "providers.azure.module.configMap: key is required",
        ),
        (
            &[
                "tokenRequests[0].audience=a",
                "tokenRequests[0].expirationSeconds=60",
            ],
            "tokenRequests.0.expirationSeconds: Must be greater than or equal to 600",
        ),
        (
            &["tokenRequests[0].expirationSeconds=3600"],
            "tokenRequests.0: audience is required",
        ),
        (
            &["linux.metricsAddr=localhost"],
            "linux.metricsAddr: Does not match pattern",
        ),
        (
            &["rotationPollInterval=2 minutes"],
            "rotationPollInterval: Does not match pattern",
        ),
        (
            &["providers.azure.hostFiles[0].path=relative.json"],
            "providers.azure.hostFiles.0.path: Does not match pattern",
        ),
        // What the schema cannot express, the templates refuse.
        (
            &["providers.nomodule.allowedHosts={https://a.example}"],
            "providers.nomodule.module: set path (a module in the driver image) or configMap.name and configMap.key",
        ),
    ] {
        let values = set.iter().fold(Values::default(), |v, s| v.set(*s));
        let message = render_error(values);
        assert!(message.contains(expected), "{set:?}: {message}");
    }
}

#[test]
fn templates_refuse_bad_values_even_without_the_schema() {
    // `--skip-schema-validation` exists; the templates' own checks still hold then.
    for (set, expected) in [
        (
            &["providers.bad!name.module.path=/x.wasm"][..],
            "providers.bad!name: a provider name is 1 to 30 letters",
        ),
        (
            &["providers.azure.module.path=azure.wasm"],
            "providers.azure.module.path \"azure.wasm\": must be an absolute path",
        ),
        (
            &["providers.azure.module.configMap.name=cm"],
            "providers.azure.module.configMap.key: name the ConfigMap key",
        ),
        (
            &["providers.azure.hostFiles[0]=relative.json"],
            "providers.azure.hostFiles[0]: expected an absolute path",
        ),
        (&["providers.azure=x"], "providers.azure: expected a map"),
        (
            &["linux.metricsAddr=localhost"],
            "linux.metricsAddr \"localhost\"",
        ),
        (
            &["tokenRequests[0].expirationSeconds=3600"],
            "tokenRequests[0].audience: required",
        ),
        (&["windows.enabled=true"], "Linux nodes only"),
    ] {
        let values = set.iter().fold(
            Values::default().flag("--skip-schema-validation"),
            |v, s| v.set(*s),
        );
        let message = render_error(values);
        assert!(message.contains(expected), "{set:?}: {message}");
    }
    // Two providers mounting one container path from different node files.
    let message = render_error(
        Values::default()
            .flag("--skip-schema-validation")
            .set("providers.azure.hostFiles[0].path=/etc/cloud.json")
            .set("providers.azure.hostFiles[0].hostPath=/etc/a.json")
            .set("providers.other.module.path=/o.wasm")
            .set("providers.other.hostFiles[0].path=/etc/cloud.json")
            .set("providers.other.hostFiles[0].hostPath=/etc/b.json"),
    );
    assert!(
        message.contains("/etc/cloud.json is mounted from two different node files"),
        "{message}"
    );
}

#[test]
fn chart_crds_are_the_generated_crds() {
    let list = |dir: &Path| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect()
    };
    let generated = list(&repo_root().join("deploy/crds"));
    let chart = list(&chart_dir().join("crds"));
    assert_eq!(generated.len(), 2);
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "deploy/chart/secrets-store-csi-driver-wasm/crds must hold exactly the files of deploy/crds"
    );
    for (name, bytes) in &generated {
        assert!(
            chart[name] == *bytes,
            "chart crds/{name} differs from deploy/crds/{name}: cp deploy/crds/*.yaml deploy/chart/secrets-store-csi-driver-wasm/crds/"
        );
    }
    // Helm sees them as the chart's CRDs.
    let shown = secrets_store_deploy_tests::run_helm([
        std::ffi::OsString::from("show"),
        "crds".into(),
        chart_dir().into(),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let crds = Rendered::parse(&shown, "helm show crds").unwrap();
    let names: BTreeSet<&str> = crds
        .of_kind("CustomResourceDefinition")
        .filter_map(|c| str_at(c, &["metadata", "name"]))
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "secretproviderclasses.secrets-store.csi.x-k8s.io",
            "secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io",
        ])
    );
}

#[test]
fn plain_manifests_are_the_rendered_chart() {
    let helm = helm().unwrap_or_else(|e| panic!("{e}"));
    let script = repo_root().join("deploy/tools/render-manifests.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg("--stdout")
        .env("HELM", &helm)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let fresh = String::from_utf8(output.stdout).unwrap();
    let files: Vec<String> = std::fs::read_dir(repo_root().join("deploy/manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        ["secrets-store-csi-driver-wasm.yaml"],
        "stale files in deploy/manifests"
    );
    let committed = read_repo_file("deploy/manifests/secrets-store-csi-driver-wasm.yaml").unwrap();
    assert!(
        committed == fresh,
        "deploy/manifests is out of date with the chart: run deploy/tools/render-manifests.sh"
    );

    // They are the default objects, in kube-system.
    let manifests = Rendered::parse(&committed, "deploy/manifests").unwrap();
    let kinds = |r: &Rendered| -> Vec<String> { r.ids().into_iter().map(|(k, _)| k).collect() };
    assert_eq!(kinds(&manifests), kinds(&render_default()));
    for o in &manifests.objects {
        if let Some(namespace) = str_at(o, &["metadata", "namespace"]) {
            assert_eq!(namespace, "kube-system");
        }
    }
    assert_eq!(
        str_at(manifests.one("DaemonSet").unwrap(), &["metadata", "name"]),
        Some("secrets-store-csi-driver-wasm")
    );
}

#[test]
fn chart_app_version_is_the_workspace_version() {
    let cargo = read_repo_file("Cargo.toml").unwrap();
    let version = cargo
        .split("[workspace.package]")
        .nth(1)
        .and_then(|section| {
            section
                .lines()
                .take_while(|l| !l.starts_with('['))
                .find_map(|l| l.strip_prefix("version = "))
        })
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("[workspace.package] version");
    assert_eq!(app_version(), version);
}
