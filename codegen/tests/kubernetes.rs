//! The Kubernetes manifests of `generated/kubernetes/`, checked by a schema validator and
//! against the compose deployment they translate.
//!
//! Built-in kinds go through PyPI's kubernetes-validate (Kubernetes 1.31's schemas,
//! `--strict`: an unknown field is an error). Kinds it has no schema for (KEDA's
//! ScaledObject, the Kustomization) are checked with the `jsonschema` package against the
//! schemas committed under `codegen/tests/kubernetes/`; a kind with neither fails. Each check
//! has a negative twin showing the validator rejects a broken manifest. The Rust checks then
//! hold the manifests to docker-compose.yml: the same variables and secrets per service, the
//! same commands, health checks and stop grace.
//!
//! Needs the test venv (`scripts/install-test-deps.sh`); a missing tool fails the test with
//! that hint, never skips it. The PgBouncer check also needs pgbouncer, pg_isready and the
//! tests' PostgreSQL (trust auth for `postgres`), as codegen/tests/deploy_validators.rs.

use serde_json::Value as Json;
use sluice_codegen::emit::{GeneratedFile, deploy, kubernetes};
use sluice_codegen::model::Config;
use sluice_testkit::process::{free_port, is_root, wait_for_port};
use sluice_testkit::venv::INSTALL_HINT;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const KUBERNETES_VERSION: &str = "1.31.0";
const SLUICE_SERVICES: [&str; 4] = ["init", "webserver", "scheduler", "worker"];
/// (apiVersion, kind, schema file under codegen/tests/kubernetes/) for kinds that
/// kubernetes-validate has no schema for.
const COMMITTED_SCHEMAS: [(&str, &str, &str); 2] = [
    ("keda.sh/v1alpha1", "ScaledObject", "scaledobject-keda-v1alpha1.json"),
    ("kustomize.config.k8s.io/v1beta1", "Kustomization", "kustomization-v1beta1.json"),
];
/// Validates documents of one apiVersion and kind against a JSON schema; prints each error
/// with its path and exits 1 on any, 2 when no document had that kind.
const SCHEMA_CHECK: &str = r#"
import json, sys, yaml, jsonschema
schema_path, api_version, kind, *paths = sys.argv[1:]
with open(schema_path) as f:
    schema = json.load(f)
validator = jsonschema.validators.validator_for(schema)
validator.check_schema(schema)
validator = validator(schema)
seen = failed = 0
for path in paths:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for doc in docs:
        if doc.get("apiVersion") != api_version or doc.get("kind") != kind:
            continue
        seen += 1
        name = (doc.get("metadata") or {}).get("name", "?")
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
            where = ".".join(map(str, error.absolute_path)) or "(top)"
            print(f"ERROR {path} {kind}/{name}: {where}: {error.message}")
            failed = 1
        if not failed:
            print(f"INFO {path} {kind}/{name} valid against {schema_path}")
sys.exit(failed if seen else 2)
"#;

// ---------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------

#[test]
fn every_manifest_is_valid_for_kubernetes_and_keda() {
    for config in [sample(), other_config()] {
        let manifests = Manifests::new(&config);
        match manifests.validate() {
            Ok(report) => {
                // Every document was checked by one validator or the other.
                let docs = manifests.documents().len();
                let checked =
                    report.lines().filter(|l| l.contains("passed for resource") || l.contains(" valid against "));
                assert_eq!(checked.count(), docs, "each of the {docs} documents is validated once:\n{report}");
            }
            Err(e) => panic!("the generated manifests do not validate:\n{e}"),
        }
    }
}

#[test]
fn the_validator_rejects_a_replica_count_that_is_no_integer() {
    let m = Manifests::new(&sample());
    m.edit("worker.yaml", "\n  replicas: 2\n", "\n  replicas: \"three\"\n");
    m.assert_rejected("'three' is not of type 'integer'");
}

#[test]
fn the_validator_rejects_an_unknown_field() {
    let m = Manifests::new(&sample());
    m.edit("worker.yaml", "\n  replicas: 2\n", "\n  replica: 2\n");
    m.assert_rejected("('replica' was unexpected)");
}

#[test]
fn the_validator_rejects_a_deployment_without_selector() {
    let m = Manifests::new(&sample());
    let selector = "  selector:\n    matchLabels:\n      app.kubernetes.io/instance: \"mlsp\"\n      \
                    app.kubernetes.io/component: scheduler\n";
    m.edit("scheduler.yaml", selector, "");
    m.assert_rejected("'selector' is a required property");
}

#[test]
fn the_committed_schema_rejects_a_misnamed_scaledobject_field() {
    let m = Manifests::new(&sample());
    m.edit("worker-autoscaler.yaml", "  maxReplicaCount: ", "  maxReplicas: ");
    m.assert_rejected("('maxReplicas' was unexpected)");
}

#[test]
fn the_committed_schema_rejects_trigger_metadata_that_is_no_string() {
    // KEDA's metadata is a map of strings: an unquoted number is a classic mistake.
    let m = Manifests::new(&sample());
    m.edit("worker-autoscaler.yaml", "databaseIndex: \"1\"", "databaseIndex: 1");
    m.assert_rejected("1 is not of type 'string'");
}

#[test]
fn a_kind_without_any_schema_fails() {
    let m = Manifests::new(&sample());
    let extra = "apiVersion: example.com/v1\nkind: Frobnicator\nmetadata:\n  name: x\nspec: {}\n";
    m.write("frobnicator.yaml", extra);
    m.assert_rejected("no schema for example.com/v1 Frobnicator");
}

// ---------------------------------------------------------------------------------------
// What the manifests say, against docker-compose.yml
// ---------------------------------------------------------------------------------------

#[test]
fn the_manifests_match_the_compose_deployment() {
    check_invariants(&sample());
}

#[test]
fn the_manifests_match_the_compose_deployment_for_another_config() {
    let config = other_config();
    check_invariants(&config);
    let m = Manifests::new(&config);
    let scaler = m.object("ScaledObject", "acme-sluice-worker");
    assert_eq!(scaler["spec"]["maxReplicaCount"], 16, "ceil(parallelism 64 / concurrency 4)");
    let worker = container(&m.object("Deployment", "acme-sluice-worker"));
    assert!(env_names(worker).contains("EXTRA_API_KEY"), "an `extra` ${{VAR}} reaches the workers");
    assert_eq!(
        m.object("Deployment", "acme-sluice-pgbouncer")["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example:5000/acme/sluice:1.2.3-pgbouncer"
    );
}

#[test]
fn the_pgbouncer_image_is_named_after_the_sluice_image() {
    for (image, expected) in [
        ("mlsp/sluice:latest", "mlsp/sluice:latest-pgbouncer"),
        ("mlsp/sluice", "mlsp/sluice:latest-pgbouncer"),
        ("registry.example:5000/sluice", "registry.example:5000/sluice:latest-pgbouncer"),
        ("registry.example:5000/sluice:2@sha256:abc", "registry.example:5000/sluice:2-pgbouncer"),
    ] {
        assert_eq!(kubernetes::pgbouncer_image(image), expected, "{image}");
    }
}

#[test]
fn a_project_that_cannot_name_objects_is_refused() {
    let mut config = sample();
    config.deployment.project.value = "9lives".into();
    let err = kubernetes::render(&config, "pipelines.yaml").expect_err("a name starting with a digit");
    assert!(err.to_string().contains("cannot prefix Kubernetes object names"), "{err}");
    // `_` is fine for compose; object names get `-` instead, Redis keys keep the project.
    config.deployment.project.value = "big_data".into();
    let m = Manifests::from_files(kubernetes::render(&config, "pipelines.yaml").expect("render"));
    m.object("Deployment", "big-data-worker");
    let scaler = m.object("ScaledObject", "big-data-worker");
    assert_eq!(scaler["spec"]["triggers"][0]["metadata"]["stream"], "sluice:big_data:queue:default");
}

/// PgBouncer started as its Deployment starts it: the container's script writes the auth
/// file and the `[databases]` entry, then PgBouncer reads the ConfigMap's ini; only the
/// container paths and the listen port are rewritten. Then the readiness probe's command
/// and a query through it, against the local PostgreSQL.
#[test]
fn pgbouncer_serves_queries_with_the_configmap_ini_and_startup_script() {
    let mut config = sample();
    // The local PostgreSQL's trusted role and database stand for the managed ones.
    config.deployment.metadata_db.user.value = "postgres".into();
    config.deployment.metadata_db.name.value = "postgres".into();
    let m = Manifests::new(&config);
    let ini_map = m.object("ConfigMap", "mlsp-pgbouncer");
    let deployment = m.object("Deployment", "mlsp-pgbouncer");
    let c = container(&deployment);
    let dir = m.dir.path().join("pgbouncer-run");
    let (etc, run) = (dir.join("etc"), dir.join("run"));
    for d in [&dir, &etc, &run] {
        fs::create_dir_all(d).expect("mkdir");
    }
    // As in the pod, PgBouncer runs as uid 10001 (setpriv when the test runs as root): the
    // directories must let it in, the run dir as an emptyDir does.
    chmod(m.dir.path(), 0o755);
    chmod(&dir, 0o755);
    chmod(&etc, 0o755);
    chmod(&run, 0o777);
    let port = free_port();
    let listen = format!("listen_port = {}", config.pgbouncer.listen_port.value);
    let ini = str_of(&ini_map["data"]["pgbouncer.ini"]).replace("/run/pgbouncer", &run.to_string_lossy());
    assert!(ini.contains(&listen), "{listen} in the ini");
    fs::write(etc.join("pgbouncer.ini"), ini.replace(&listen, &format!("listen_port = {port}"))).expect("ini");

    let command: Vec<String> = strings(&c["command"]);
    let script = command.last().expect("script").replace("$$", "$");
    let script =
        script.replace("/run/pgbouncer", &run.to_string_lossy()).replace("/etc/pgbouncer", &etc.to_string_lossy());
    let password = r#"pa"ss w$rd'1"#;
    let mut cmd = if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=10001", "--regid=10001", "--clear-groups", &command[0]]);
        cmd
    } else {
        Command::new(&command[0])
    };
    cmd.args(&command[1..command.len() - 1]).arg(script).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for e in c["env"].as_array().expect("env") {
        let name = str_of(&e["name"]);
        let value = match (&e["value"], &e["valueFrom"]) {
            (Json::String(v), _) => v.clone(),
            (_, from) if from.get("secretKeyRef").is_some() => password.to_string(),
            (_, from) => match str_of(&from["configMapKeyRef"]["key"]).as_str() {
                kubernetes::POSTGRES_HOST_VAR => "127.0.0.1".into(),
                kubernetes::POSTGRES_PORT_VAR => sluice_testkit::postgres::port().to_string(),
                other => panic!("pgbouncer reads {other}"),
            },
        };
        cmd.env(name, value);
    }
    let log = dir.join("pgbouncer.log");
    let file = fs::File::create(&log).expect("log");
    let mut child =
        cmd.stdin(Stdio::null()).stdout(file.try_clone().expect("log")).stderr(file).spawn().expect("spawn");
    let started = wait_for_port(port, &mut child);
    let stop = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    if let Err(e) = started {
        stop(&mut child);
        panic!("pgbouncer did not start: {e}\n{}", fs::read_to_string(&log).unwrap_or_default());
    }

    let probe = strings(&c["readinessProbe"]["exec"]["command"]);
    let probe = replace_arg(&probe, "-p", &port.to_string());
    let ready = Command::new(&probe[0]).args(&probe[1..]).output();
    let query = Command::new("psql")
        .arg(format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5"))
        .args(["-X", "-At", "-c", "SELECT 1"])
        .env("PGPASSWORD", password)
        .output();
    let wrong = Command::new("psql")
        .arg(format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5"))
        .args(["-X", "-At", "-c", "SELECT 1"])
        .env("PGPASSWORD", "wrong")
        .output();
    stop(&mut child);
    let log = fs::read_to_string(&log).unwrap_or_default();
    let ready = ready.unwrap_or_else(|e| panic!("pg_isready: {e}; {INSTALL_HINT}"));
    assert_success("the readiness probe", &ready);
    let query = query.unwrap_or_else(|e| panic!("psql: {e}; {INSTALL_HINT}"));
    assert_success(&format!("a query through pgbouncer (log:\n{log})"), &query);
    assert_eq!(stdout(&query).trim(), "1");
    let wrong = wrong.expect("psql");
    assert!(!wrong.status.success() && stderr(&wrong).contains("authentication failed"), "{}", stderr(&wrong));
}

// ---------------------------------------------------------------------------------------
// Invariants
// ---------------------------------------------------------------------------------------

fn check_invariants(config: &Config) {
    let d = &config.deployment;
    let m = Manifests::new(config);
    let compose_files = deploy::render(config, "pipelines.yaml").expect("compose");
    let compose_text = &compose_files.iter().find(|f| f.path == "docker-compose.yml").expect("compose").contents;
    let compose: Json = serde_saphyr::from_str(compose_text).expect("compose parses");
    let env_example = &compose_files.iter().find(|f| f.path == ".env.example").expect(".env.example").contents;
    // Every variable compose reads from .env (a key of the Secret), and the secrets among them.
    let dotenv: BTreeMap<String, String> = env_example
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let secrets: BTreeSet<&str> = dotenv.iter().filter(|(_, v)| v.is_empty()).map(|(k, _)| k.as_str()).collect();
    assert!(secrets.contains(d.metadata_db.password.value.env.as_str()));
    let prefix = d.project.value.replace('_', "-");
    let secret_name = format!("{prefix}-secrets");
    let services_name = format!("{prefix}-services");
    let settings = &m.object("ConfigMap", &format!("{prefix}-settings"))["data"];
    let settings: BTreeMap<String, String> =
        settings.as_object().expect("data").iter().map(|(k, v)| (k.clone(), str_of(v))).collect();

    // Selectors: each Deployment selects its own pods; each Service and PDB selects the
    // pods of exactly one Deployment.
    let docs = m.documents();
    let deployments: Vec<&Json> = docs.iter().filter(|d| d["kind"] == "Deployment").collect();
    let pod_labels = |d: &Json| d["spec"]["template"]["metadata"]["labels"].clone();
    for dep in &deployments {
        assert!(selects(&dep["spec"]["selector"]["matchLabels"], &pod_labels(dep)), "{}", dep["metadata"]["name"]);
    }
    for doc in &docs {
        let selector = match doc["kind"].as_str() {
            Some("Service") => &doc["spec"]["selector"],
            Some("PodDisruptionBudget") => &doc["spec"]["selector"]["matchLabels"],
            _ => continue,
        };
        let matched: Vec<&&Json> = deployments.iter().filter(|dep| selects(selector, &pod_labels(dep))).collect();
        assert_eq!(matched.len(), 1, "{} selects one Deployment", doc["metadata"]["name"]);
        assert_eq!(matched[0]["metadata"]["name"], doc["metadata"]["name"], "named after what it selects");
    }

    // Every container: resources, a locked-down security context, and its environment.
    let workloads: Vec<&Json> =
        docs.iter().filter(|d| matches!(d["kind"].as_str(), Some("Deployment" | "Job"))).collect();
    for w in &workloads {
        let pod = &w["spec"]["template"]["spec"];
        let name = str_of(&w["metadata"]["name"]);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(pod["securityContext"]["runAsUser"], kubernetes::RUN_AS_USER, "{name}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        assert_eq!(pod["enableServiceLinks"], false, "{name}: Service links would set SLUICE_WEBSERVER_PORT");
        for c in pod["containers"].as_array().expect("containers") {
            for key in ["requests", "limits"] {
                for what in ["cpu", "memory"] {
                    assert!(c["resources"][key][what].is_string(), "{name}: resources.{key}.{what}");
                }
            }
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{name}");
            check_env(&name, c, &secrets, &dotenv, &secret_name, &services_name);
        }
    }

    // Each sluice service against its compose twin.
    let object = |service: &str| format!("{prefix}-{service}");
    let fake: BTreeMap<String, String> = dotenv
        .keys()
        .map(|k| (k.clone(), format!("test-{}", k.to_lowercase().replace('_', "-"))))
        .chain([
            (kubernetes::POSTGRES_HOST_VAR.to_string(), "postgres".to_string()),
            (kubernetes::POSTGRES_PORT_VAR.to_string(), "5432".to_string()),
            (kubernetes::REDIS_HOST_VAR.to_string(), "redis".to_string()),
            (kubernetes::REDIS_PORT_VAR.to_string(), "6379".to_string()),
        ])
        .collect();
    for service in SLUICE_SERVICES {
        let kind = if service == "init" { "Job" } else { "Deployment" };
        let workload = m.object(kind, &object(service));
        let c = container(&workload);
        let theirs = &compose["services"][service];
        let compose_env: BTreeMap<String, String> = theirs["environment"]
            .as_object()
            .expect("environment")
            .iter()
            .map(|(k, v)| (k.clone(), str_of(v)))
            .collect();

        // The same secrets: what compose interpolates from .env is what the Secret gives.
        let compose_secrets: BTreeSet<String> = compose_env.values().flat_map(|v| interpolated(v)).collect();
        let ours: BTreeSet<String> = c["env"]
            .as_array()
            .expect("env")
            .iter()
            .filter_map(|e| e["valueFrom"]["secretKeyRef"]["key"].as_str().map(str::to_string))
            .collect();
        assert_eq!(ours, compose_secrets, "{service}: the Secret's keys it reads");

        // The same variables, with the same values once both are filled from the same .env
        // (compose's `pgbouncer` is the PgBouncer Service here).
        let expanded = expand_env(&c, &settings, &fake);
        let inputs: BTreeSet<&str> = [
            kubernetes::POSTGRES_HOST_VAR,
            kubernetes::POSTGRES_PORT_VAR,
            kubernetes::REDIS_HOST_VAR,
            kubernetes::REDIS_PORT_VAR,
            d.metadata_db.password.value.env.as_str(),
        ]
        .into();
        for (name, value) in &compose_env {
            let want = interpolate(value, &fake).replace("@pgbouncer:", &format!("@{}:", object("pgbouncer")));
            assert_eq!(expanded.get(name), Some(&want), "{service}.{name}");
        }
        for name in expanded.keys() {
            assert!(compose_env.contains_key(name) || inputs.contains(name.as_str()), "{service}: {name} is extra");
        }

        assert_eq!(strings(&c["args"]), strings(&theirs["command"]), "{service}: arguments");
        assert_eq!(c["image"], d.image.as_str(), "{service}: image");
        let mounts = c["volumeMounts"].as_array().expect("mounts");
        assert!(mounts.iter().any(|v| v["mountPath"] == settings["SLUICE_HOME"].as_str()), "{service}: SLUICE_HOME");

        // Probes: the compose health check.
        match service {
            "webserver" => {
                let port = &c["ports"][0];
                assert_eq!(port["containerPort"], d.webserver_port.value);
                for probe in ["livenessProbe", "readinessProbe"] {
                    assert_eq!(c[probe]["httpGet"]["path"], "/health", "{probe}");
                    assert_eq!(c[probe]["httpGet"]["port"], port["name"], "{probe}");
                }
                let svc = m.object("Service", &object(service));
                assert_eq!(svc["spec"]["ports"][0]["port"], d.webserver_port.value);
            }
            "init" => assert_eq!(workload["spec"]["template"]["spec"]["restartPolicy"], "OnFailure"),
            _ => {
                let test = strings(&theirs["healthcheck"]["test"]);
                assert_eq!(strings(&c["readinessProbe"]["exec"]["command"]), test[1..], "{service}: health check");
            }
        }
        if service == "worker" {
            assert_eq!(workload["spec"]["replicas"], d.executor.worker_replicas.value);
            let grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().expect("grace");
            let tasks: u64 = settings["SLUICE_WORKER_GRACE_SECS"].parse().expect("grace secs");
            assert!(grace > tasks, "the worker's pod grace {grace} s leaves room after the tasks' {tasks} s");
            let stop = str_of(&theirs["stop_grace_period"]);
            assert_eq!(format!("{grace}s"), stop, "compose's stop_grace_period");
            let pdb = m.object("PodDisruptionBudget", &object(service));
            assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        }
    }
    m.object("PodDisruptionBudget", &object("webserver"));

    // PgBouncer: compose's ini but for the server address, compose's health check.
    let ini = str_of(&m.object("ConfigMap", &object("pgbouncer"))["data"]["pgbouncer.ini"]);
    let compose_ini = &compose_files.iter().find(|f| f.path == "pgbouncer/pgbouncer.ini").expect("ini").contents;
    let db = &d.metadata_db.name.value;
    let as_compose = ini
        .replace("%include /run/pgbouncer/databases.ini", &format!("{db} = host=postgres port=5432 dbname={db}"))
        .replace("kubernetes/pgbouncer.yaml", "docker-compose.yml");
    assert_eq!(compose_ini.split_once('\n').expect("header").1, as_compose, "the ini differs from compose's");
    let bouncer = container(&m.object("Deployment", &object("pgbouncer")));
    let test = strings(&compose["services"]["pgbouncer"]["healthcheck"]["test"]);
    assert_eq!(strings(&bouncer["readinessProbe"]["exec"]["command"]), test[1..]);
    assert_eq!(bouncer["image"], kubernetes::pgbouncer_image(&d.image).as_str());

    // The kustomization lists every manifest but the optional autoscaler.
    let kustomization = m.documents().into_iter().find(|d| d["kind"] == "Kustomization").expect("kustomization");
    let listed: BTreeSet<String> = strings(&kustomization["resources"]).into_iter().collect();
    let files: BTreeSet<String> = m
        .files
        .iter()
        .map(|f| f.path.trim_start_matches("kubernetes/").to_string())
        .filter(|p| {
            p != "kustomization.yaml" && Some(p.as_str()) != kubernetes::AUTOSCALER_FILE.strip_prefix("kubernetes/")
        })
        .collect();
    assert_eq!(listed, files);

    // The autoscaler: the worker Deployment, one trigger per queue on its broker stream.
    let scaler = m.object("ScaledObject", &object("worker"));
    let spec = &scaler["spec"];
    assert_eq!(spec["scaleTargetRef"]["name"], object("worker"));
    assert_eq!(spec["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(spec["minReplicaCount"], d.executor.worker_replicas.value);
    assert!(spec["maxReplicaCount"].as_u64() >= spec["minReplicaCount"].as_u64());
    let worker_env = env_names(container(&m.object("Deployment", &object("worker"))));
    let queues: Vec<String> = if d.executor.queues.is_empty() {
        vec!["default".into()]
    } else {
        d.executor.queues.iter().map(|q| q.value.clone()).collect()
    };
    let triggers = spec["triggers"].as_array().expect("triggers");
    assert_eq!(triggers.len(), queues.len());
    for (trigger, queue) in triggers.iter().zip(&queues) {
        let meta = &trigger["metadata"];
        assert_eq!(trigger["type"], "redis-streams");
        assert_eq!(meta["stream"], format!("sluice:{}:queue:{queue}", d.project.value));
        assert_eq!(meta["databaseIndex"], config.redis.broker_db.value.to_string());
        assert_eq!(meta["streamLength"], d.executor.worker_concurrency.value.to_string());
        assert!(meta.get("consumerGroup").is_none(), "with a group KEDA would count pending entries");
        for key in ["hostFromEnv", "portFromEnv"] {
            assert!(worker_env.contains(meta[key].as_str().unwrap_or_default()), "{key} names a worker variable");
        }
    }
}

/// A container's env: every secret through secretKeyRef to the Secret, under its own name;
/// no value holding a secret but as a `$(NAME)` of a variable defined before it.
fn check_env(
    workload: &str,
    c: &Json,
    secrets: &BTreeSet<&str>,
    dotenv: &BTreeMap<String, String>,
    secret_name: &str,
    services_name: &str,
) {
    let mut defined: BTreeSet<String> = BTreeSet::new();
    for e in c["env"].as_array().expect("env") {
        let name = str_of(&e["name"]);
        if let Some(value) = e["value"].as_str() {
            for reference in references(value) {
                assert!(defined.contains(&reference), "{workload}.{name}: $({reference}) is not defined before it");
            }
            let bare = references(value).iter().fold(value.to_string(), |v, r| v.replace(&format!("$({r})"), ""));
            for secret in secrets {
                assert!(!bare.contains(secret), "{workload}.{name} holds {secret} outside a $() reference: {value}");
            }
        } else if let Some(key) = e["valueFrom"]["secretKeyRef"]["key"].as_str() {
            assert_eq!(e["valueFrom"]["secretKeyRef"]["name"], secret_name, "{workload}.{name}");
            assert!(dotenv.contains_key(key), "{workload}.{name}: the Secret has no key {key} (.env.example)");
            let optional = e["valueFrom"]["secretKeyRef"]["optional"] == true;
            assert_eq!(optional, !dotenv[key].is_empty(), "{workload}.{name}: only defaulted keys are optional");
        } else {
            assert_eq!(e["valueFrom"]["configMapKeyRef"]["name"], services_name, "{workload}.{name}");
        }
        if dotenv.contains_key(&name) {
            assert_eq!(e["valueFrom"]["secretKeyRef"]["key"], name.as_str(), "{workload}.{name} comes from the Secret");
        }
        defined.insert(name);
    }
}

/// The container's environment as Kubernetes makes it: `envFrom` the settings, `env` in
/// order with `$(NAME)` expanded, the Secret and ConfigMap filled from `fake`.
fn expand_env(
    c: &Json,
    settings: &BTreeMap<String, String>,
    fake: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = settings.clone();
    for e in c["env"].as_array().expect("env") {
        let name = str_of(&e["name"]);
        let value = match e["value"].as_str() {
            Some(v) => expand(v, &env),
            None => {
                let from = &e["valueFrom"];
                let key =
                    from["secretKeyRef"]["key"].as_str().or(from["configMapKeyRef"]["key"].as_str()).expect("key");
                fake[key].clone()
            }
        };
        env.insert(name, value);
    }
    env
}

/// Kubernetes' `$(NAME)` expansion: `$$` is `$`, an unknown name stays as written.
fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(end) = after.strip_prefix('(').and_then(|a| a.find(')')) {
            let name = &after[1..=end];
            out.push_str(env.get(name).map_or(&rest[at..at + end + 3], String::as_str));
            rest = &after[end + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out + rest
}

/// The names a Kubernetes value refers to as `$(NAME)` (`$$(` is no reference).
fn references(value: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            rest = tail;
        } else if let Some(end) = after.strip_prefix('(').and_then(|a| a.find(')')) {
            names.push(after[1..=end].to_string());
            rest = &after[end + 2..];
        } else {
            rest = after;
        }
    }
    names
}

/// Compose's interpolation, where every variable the value reads is set.
fn interpolate(value: &str, env: &BTreeMap<String, String>) -> String {
    sluice_testkit::compose::interpolate(value, env).unwrap_or_else(|e| panic!("{value}: {e}"))
}

/// The variables a compose value interpolates.
fn interpolated(value: &str) -> Vec<String> {
    value.split("${").skip(1).filter_map(|part| part.split([':', '}', '-', '?']).next()).map(str::to_string).collect()
}

fn selects(selector: &Json, labels: &Json) -> bool {
    let selector = selector.as_object().expect("selector");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn sample() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines.yaml");
    let yaml = fs::read_to_string(&path).expect("read pipelines.yaml");
    match sluice_codegen::compile_str("pipelines.yaml", &yaml) {
        Ok(compiled) => compiled.config,
        Err(diags) => panic!("pipelines.yaml does not compile: {diags:?}"),
    }
}

/// Another deployment: other names, ports, queues and databases, an `extra` secret, a
/// connection reusing the metadata password.
fn other_config() -> Config {
    let mut config = sample();
    let d = &mut config.deployment;
    d.project.value = "acme-sluice".into();
    d.image = "registry.example:5000/acme/sluice:1.2.3".into();
    d.webserver_port.value = 9090;
    d.executor.worker_replicas.value = 3;
    d.executor.worker_concurrency.value = 4;
    d.executor.parallelism.value = 64;
    d.executor.queues = ["default", "gpu", "io"].iter().map(|q| sp(q.to_string())).collect();
    d.metadata_db.name.value = "sluice_meta".into();
    d.metadata_db.user.value = "meta_owner".into();
    d.metadata_db.password.value.env = "META_DB_PASSWORD".into();
    config.pgbouncer.listen_port.value = 7432;
    config.redis.broker_db.value = 5;
    config.redis.rate_limit_db.value = 6;
    if let Some(c) = config.connections.first_mut() {
        c.extra.insert("api_key".into(), Json::String("${EXTRA_API_KEY}".into()));
    }
    if let Some(p) = config.connections.iter_mut().find_map(|c| c.password.as_mut()) {
        p.value.env = "META_DB_PASSWORD".into();
    }
    config
}

fn sp<T: Default>(value: T) -> sluice_codegen::model::Sp<T> {
    sluice_codegen::model::Sp { value, span: Default::default() }
}

/// The rendered manifests, written under a temporary `kubernetes/`.
struct Manifests {
    dir: tempfile::TempDir,
    files: Vec<GeneratedFile>,
}

impl Manifests {
    fn new(config: &Config) -> Manifests {
        Manifests::from_files(kubernetes::render(config, "pipelines.yaml").expect("render the manifests"))
    }

    fn from_files(files: Vec<GeneratedFile>) -> Manifests {
        let m = Manifests { dir: tempfile::tempdir().expect("tempdir"), files };
        fs::create_dir_all(m.dir.path().join("kubernetes")).expect("mkdir");
        for f in &m.files {
            fs::write(m.dir.path().join(&f.path), &f.contents).expect("write");
        }
        m
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> =
            fs::read_dir(self.dir.path().join("kubernetes")).expect("dir").map(|e| e.expect("entry").path()).collect();
        paths.sort();
        paths
    }

    fn write(&self, name: &str, contents: &str) {
        fs::write(self.dir.path().join("kubernetes").join(name), contents).expect("write");
    }

    fn edit(&self, name: &str, from: &str, to: &str) {
        let path = self.dir.path().join("kubernetes").join(name);
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.contains(from), "{name} has no {from:?} to break: the template changed");
        fs::write(path, text.replacen(from, to, 1)).expect("write");
    }

    /// Every document of the rendered files (not of edits).
    fn documents(&self) -> Vec<Json> {
        self.files
            .iter()
            .flat_map(|f| {
                serde_saphyr::from_multiple::<Json>(&f.contents).unwrap_or_else(|e| panic!("{} parses: {e}", f.path))
            })
            .collect()
    }

    fn object(&self, kind: &str, name: &str) -> Json {
        let found: Vec<Json> =
            self.documents().into_iter().filter(|d| d["kind"] == kind && d["metadata"]["name"] == name).collect();
        assert_eq!(found.len(), 1, "one {kind} {name}");
        found.into_iter().next().expect("found")
    }

    /// Validates the files on disk: Ok with the validators' report, Err with why not.
    fn validate(&self) -> Result<String, String> {
        let paths = self.paths();
        let out = Command::new(sluice_testkit::venv::script("kubernetes-validate"))
            .args(["-k", KUBERNETES_VERSION, "--strict"])
            .args(&paths)
            .output()
            .unwrap_or_else(|e| panic!("kubernetes-validate: {e}; {INSTALL_HINT}"));
        let mut report = stdout(&out) + &stderr(&out);
        if !out.status.success() {
            return Err(report);
        }
        for path in &paths {
            let text = fs::read_to_string(path).expect("read");
            let docs = serde_saphyr::from_multiple::<Json>(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            for doc in docs {
                let (api, kind) = (str_of(&doc["apiVersion"]), str_of(&doc["kind"]));
                let name = str_of(&doc["metadata"]["name"]);
                let passed = format!("passed for resource {}/{name}", kind.to_lowercase());
                let shown = path.display().to_string();
                if report.lines().any(|l| l.contains(&shown) && l.contains(&passed)) {
                    continue;
                }
                let Some((_, _, schema)) = COMMITTED_SCHEMAS.iter().find(|(a, k, _)| *a == api && *k == kind) else {
                    return Err(format!("no schema for {api} {kind} ({}):\n{report}", path.display()));
                };
                let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubernetes").join(schema);
                let out = Command::new(sluice_testkit::venv::python())
                    .args(["-c", SCHEMA_CHECK])
                    .arg(&schema)
                    .args([&api, &kind])
                    .arg(path)
                    .output()
                    .unwrap_or_else(|e| panic!("the venv's python: {e}; {INSTALL_HINT}"));
                let text = stdout(&out) + &stderr(&out);
                if !out.status.success() {
                    return Err(format!("{text}\n{report}"));
                }
                report.push_str(&text);
            }
        }
        Ok(report)
    }

    fn assert_rejected(&self, message: &str) {
        match self.validate() {
            Ok(report) => panic!("the broken manifests were accepted:\n{report}"),
            Err(e) => assert!(e.contains(message), "expected {message:?} in:\n{e}"),
        }
    }
}

fn container(workload: &Json) -> Json {
    let containers = workload["spec"]["template"]["spec"]["containers"].as_array().expect("containers").clone();
    assert_eq!(containers.len(), 1, "one container");
    containers.into_iter().next().expect("container")
}

fn env_names(c: Json) -> BTreeSet<String> {
    c["env"].as_array().expect("env").iter().map(|e| str_of(&e["name"])).collect()
}

fn str_of(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn strings(v: &Json) -> Vec<String> {
    v.as_array().unwrap_or_else(|| panic!("a list: {v}")).iter().map(str_of).collect()
}

fn replace_arg(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} in {args:?}"));
    let mut args = args.to_vec();
    args[at + 1] = value.to_string();
    args
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn assert_success(what: &str, out: &Output) {
    assert!(out.status.success(), "{what} failed ({}):\nstdout: {}\nstderr: {}", out.status, stdout(out), stderr(out));
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
