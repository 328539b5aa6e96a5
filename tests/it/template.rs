//! `template.yaml` agrees with the code: the resources the code, the tests and
//! the local stack create (table, index, queues) have the template's
//! properties, and every function's environment satisfies its configuration.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName as Attr;
use integration_tests::workspace_root;
use serde_json::{Value, json};
use shared::adapters::dynamo::schema::{
    FAILING_INDEX, FAILING_SK,
    attr::{FAILING_PK, PK, SK},
};
use shared::adapters::sqs;
use shared::config::Env;
use shared::domain::delivery::DEFAULT_DEADLINE;
use shared::domain::notice::DEFAULT_WINDOW;

/// The template as JSON, read by cfn-lint's loader (it knows the `!Ref` tags).
fn template() -> Value {
    let root = workspace_root();
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .args([
            "-c",
            "import json, sys; from cfnlint.decode import cfn_yaml; print(json.dumps(cfn_yaml.load(sys.argv[1]), default=str))",
        ])
        .arg(root.join("template.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn resource<'a>(t: &'a Value, name: &str) -> &'a Value {
    &t["Resources"][name]["Properties"]
}

fn sorted(values: impl IntoIterator<Item = Value>) -> Vec<String> {
    let mut out: Vec<String> = values.into_iter().map(|v| v.to_string()).collect();
    out.sort();
    out
}

#[tokio::test]
async fn the_table_the_code_creates_is_the_templates_table() {
    let t = template();
    let table = resource(&t, "WebhooksTable");
    let store = integration_tests::fresh_store().await;
    let described = store
        .client()
        .describe_table()
        .table_name(store.table())
        .send()
        .await
        .unwrap()
        .table
        .unwrap();

    let created_keys = described
        .key_schema()
        .iter()
        .map(|k| json!({"AttributeName": k.attribute_name(), "KeyType": k.key_type().as_str()}));
    assert_eq!(
        sorted(created_keys),
        sorted(table["KeySchema"].as_array().unwrap().clone())
    );
    assert_eq!(table["KeySchema"][0]["AttributeName"], PK);
    assert_eq!(table["KeySchema"][1]["AttributeName"], SK);

    let created_attrs = described
        .attribute_definitions()
        .iter()
        .map(|a| json!({"AttributeName": a.attribute_name(), "AttributeType": a.attribute_type().as_str()}));
    assert_eq!(
        sorted(created_attrs),
        sorted(table["AttributeDefinitions"].as_array().unwrap().clone())
    );

    let index = &table["GlobalSecondaryIndexes"][0];
    let created_index = &described.global_secondary_indexes()[0];
    assert_eq!(index["IndexName"], FAILING_INDEX);
    assert_eq!(created_index.index_name(), Some(FAILING_INDEX));
    let created_index_keys = created_index
        .key_schema()
        .iter()
        .map(|k| json!({"AttributeName": k.attribute_name(), "KeyType": k.key_type().as_str()}));
    assert_eq!(
        sorted(created_index_keys),
        sorted(index["KeySchema"].as_array().unwrap().clone())
    );
    assert_eq!(index["KeySchema"][0]["AttributeName"], FAILING_PK);
    assert_eq!(index["KeySchema"][1]["AttributeName"], FAILING_SK);
    assert_eq!(
        index["Projection"]["ProjectionType"],
        created_index
            .projection()
            .unwrap()
            .projection_type()
            .unwrap()
            .as_str()
    );
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
}

#[tokio::test]
async fn the_queues_the_code_creates_are_the_templates_queues() {
    let t = template();
    let queue = resource(&t, "DeliveryQueue");
    let dead = resource(&t, "DeliveryDeadLetterQueue");
    let client = aws_sdk_sqs::Client::new(&integration_tests::sdk_config().await);
    let (url, dead_url) =
        sqs::create_delivery_queues(&client, &format!("q-{}", uuid::Uuid::new_v4()))
            .await
            .unwrap();
    let attrs = |url: String| {
        let client = client.clone();
        async move {
            client
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(Attr::All)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap()
        }
    };
    let created = attrs(url).await;
    let created_dead = attrs(dead_url).await;
    let number = |v: &Value| v.as_u64().unwrap().to_string();
    assert_eq!(
        created[&Attr::VisibilityTimeout],
        number(&queue["VisibilityTimeout"])
    );
    assert_eq!(
        created[&Attr::MessageRetentionPeriod],
        number(&queue["MessageRetentionPeriod"])
    );
    assert_eq!(
        created[&Attr::MaximumMessageSize],
        number(&queue["MaximumMessageSize"])
    );
    assert_eq!(
        created_dead[&Attr::MessageRetentionPeriod],
        number(&dead["MessageRetentionPeriod"])
    );
    let redrive: Value = serde_json::from_str(&created[&Attr::RedrivePolicy]).unwrap();
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        number(&queue["RedrivePolicy"]["maxReceiveCount"])
    );
    assert_eq!(
        redrive["deadLetterTargetArn"],
        created_dead[&Attr::QueueArn].as_str()
    );
    assert_eq!(
        queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0],
        "DeliveryDeadLetterQueue"
    );
}

#[test]
fn timeouts_leave_room_for_the_deadline_and_redelivery() {
    let t = template();
    let sender = &t["Resources"]["SenderFunction"]["Properties"];
    let sender_timeout = sender["Timeout"].as_u64().unwrap();
    let visibility = resource(&t, "DeliveryQueue")["VisibilityTimeout"]
        .as_u64()
        .unwrap();
    assert!(
        visibility >= 6 * sender_timeout,
        "visibility {visibility} < 6 x {sender_timeout}"
    );
    assert_eq!(u64::from(sqs::VISIBILITY_TIMEOUT_SECS), visibility);
    let deadline = &t["Parameters"]["DeliveryDeadlineSeconds"];
    assert_eq!(
        deadline["Default"].as_u64().unwrap(),
        DEFAULT_DEADLINE.as_secs()
    );
    let source = &sender["Events"]["Deliveries"]["Properties"];
    assert_eq!(source["BatchSize"], 10);
    // Even at the largest deadline the template allows, every POST of a
    // batch can start and be recorded within one invocation.
    let concurrency: u32 = sender["Environment"]["Variables"]["SENDER_CONCURRENCY"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let needed = shared::domain::delivery::required_timeout(
        Duration::from_secs(deadline["MaxValue"].as_u64().unwrap()),
        u32::try_from(source["BatchSize"].as_u64().unwrap()).unwrap(),
        concurrency,
    );
    assert!(
        Duration::from_secs(sender_timeout) >= needed,
        "sender timeout {sender_timeout}s < {needed:?}"
    );
    assert_eq!(
        Duration::from_secs(sender_timeout),
        sender::FUNCTION_TIMEOUT
    );
    assert_eq!(
        source["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(source["Queue"]["Fn::GetAtt"][0], "DeliveryQueue");
    assert_eq!(
        resource(&t, "DeliveryQueue")["RedrivePolicy"]["maxReceiveCount"],
        sqs::MAX_RECEIVE_COUNT
    );
}

/// A function's environment as the deployed Lambda sees it: the template's
/// globals and its own variables, with parameters at their defaults (or an
/// example value where the operator must choose one).
fn function_env(t: &Value, function: &str) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = HashMap::new();
    let params = &t["Parameters"];
    let resolve = |v: &Value| -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ if v.get("Ref").is_some() => {
                let name = v["Ref"].as_str().unwrap();
                match &params[name]["Default"] {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ if params.get(name).is_some() => "operator@example.com".to_owned(),
                    _ => format!("{name}-id"),
                }
            }
            _ if v.get("Fn::Sub").is_some() => {
                let mut text = v["Fn::Sub"]
                    .as_str()
                    .unwrap_or("https://api.example.com")
                    .to_owned();
                for (name, p) in params.as_object().unwrap() {
                    let default = match &p["Default"] {
                        Value::Number(n) => n.to_string(),
                        Value::String(s) => s.clone(),
                        _ => continue,
                    };
                    text = text.replace(&format!("${{{name}}}"), &default);
                }
                text
            }
            _ => "resource-attribute".to_owned(),
        }
    };
    for (name, value) in declared_env(t, function) {
        // The only condition is `UseLocalEndpoint`, false when deployed: its
        // `Fn::If` takes the else branch, `AWS::NoValue` (no variable).
        if let Some(branches) = value.get("Fn::If") {
            let otherwise = &branches[2];
            if otherwise["Ref"] != "AWS::NoValue" {
                vars.insert(name, resolve(otherwise));
            }
            continue;
        }
        vars.insert(name, resolve(&value));
    }
    vars
}

/// The variables a function declares, its own over the globals.
fn declared_env(t: &Value, function: &str) -> Vec<(String, Value)> {
    let mut vars = Vec::new();
    for source in [
        &t["Globals"]["Function"]["Environment"]["Variables"],
        &t["Resources"][function]["Properties"]["Environment"]["Variables"],
    ] {
        for (name, value) in source.as_object().unwrap() {
            vars.retain(|(n, _): &(String, Value)| n != name);
            vars.push((name.clone(), value.clone()));
        }
    }
    vars
}

#[test]
fn a_deployed_function_has_no_endpoint_override() {
    let t = template();
    assert_eq!(t["Parameters"]["LocalEndpointUrl"]["Default"], "");
    assert_eq!(
        t["Conditions"]["UseLocalEndpoint"],
        json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "LocalEndpointUrl"}, ""]}]})
    );
    for function in ["ConfigApiFunction", "SenderFunction", "SweeperFunction"] {
        let env = function_env(&t, function);
        assert!(!env.contains_key("AWS_ENDPOINT_URL"), "{function}");
        assert_eq!(
            env.get("ENDPOINT_ALLOW_CIDRS")
                .map(String::as_str)
                .unwrap_or(""),
            "",
            "{function}"
        );
    }
}

/// `sam local` applies an env-vars file only to variables the template
/// declares: every variable of `local/sam-env.json` must be declared, and
/// with them each function's configuration is the local stack's.
#[test]
fn the_local_env_file_sets_only_declared_variables_and_opens_loopback() {
    let t = template();
    let text = std::fs::read_to_string(workspace_root().join("local/sam-env.json")).unwrap();
    let file: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(
        file.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["ConfigApiFunction", "SenderFunction", "SweeperFunction"])
    );
    let mut envs = HashMap::new();
    for (function, vars) in &file {
        let declared: BTreeSet<String> = declared_env(&t, function)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let mut env = function_env(&t, function);
        for (name, value) in vars.as_object().unwrap() {
            assert!(
                declared.contains(name),
                "{function}: {name} is not declared in template.yaml, so sam local ignores it"
            );
            env.insert(name.clone(), value.as_str().unwrap().to_owned());
        }
        envs.insert(function.clone(), env);
    }
    let local = local_stack::local_rules();
    let env = &envs["ConfigApiFunction"];
    let lookup = |k: &str| env.get(k).cloned();
    let api = config_api::ApiConfig::from_env(&Env::new(&lookup)).unwrap();
    assert_eq!(api.endpoint_rules, local);
    assert_eq!(api.table_name, local_stack::provision::TABLE);
    assert!(
        matches!(api.admin_token, config_api::AdminTokenSource::Secret(ref id) if id == local_stack::provision::ADMIN_SECRET)
    );
    assert!(
        api.queue_url
            .ends_with(&format!("/{}", local_stack::provision::QUEUE))
    );
    let env = &envs["SenderFunction"];
    let lookup = |k: &str| env.get(k).cloned();
    let sender = sender::SenderConfig::from_env(&Env::new(&lookup)).unwrap();
    assert_eq!(sender.addresses, local.addresses);
    assert_eq!(sender.table_name, local_stack::provision::TABLE);
    let env = &envs["SweeperFunction"];
    let lookup = |k: &str| env.get(k).cloned();
    let sweeper = sweeper::SweeperConfig::from_env(&Env::new(&lookup)).unwrap();
    assert_eq!(sweeper.table_name, local_stack::provision::TABLE);
    assert_eq!(sweeper.notice.from, local_stack::provision::MAIL_FROM);
}

#[test]
fn every_functions_environment_satisfies_its_configuration() {
    let t = template();
    let api = function_env(&t, "ConfigApiFunction");
    let lookup = |k: &str| api.get(k).cloned();
    let config = config_api::ApiConfig::from_env(&Env::new(&lookup)).unwrap();
    assert!(
        matches!(config.admin_token, config_api::AdminTokenSource::Secret(_)),
        "deployed, the admin token comes from the secret"
    );
    assert!(
        !config.endpoint_rules.allow_http
            && config.endpoint_rules.addresses.allow_list().is_empty()
    );

    let sender_env = function_env(&t, "SenderFunction");
    let lookup = |k: &str| sender_env.get(k).cloned();
    let config = sender::SenderConfig::from_env(&Env::new(&lookup)).unwrap();
    assert_eq!(config.deadline, Duration::from_secs(15));
    assert!(!config.disable_on_timeout);
    assert!(
        config.addresses.allow_list().is_empty(),
        "no allow-list when deployed"
    );

    let sweeper_env = function_env(&t, "SweeperFunction");
    let lookup = |k: &str| sweeper_env.get(k).cloned();
    let config = sweeper::SweeperConfig::from_env(&Env::new(&lookup)).unwrap();
    assert_eq!(config.window, DEFAULT_WINDOW);

    let functions: BTreeSet<&str> = t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        functions,
        BTreeSet::from(["ConfigApiFunction", "SenderFunction", "SweeperFunction"])
    );
    for name in &functions {
        let f = &t["Resources"][*name];
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{name}");
    }
    assert_eq!(t["Globals"]["Function"]["Runtime"], "provided.al2023");
    assert_eq!(t["Globals"]["Function"]["Architectures"], json!(["arm64"]));
}

/// Whether CloudFormation's `AllowedPattern` (a whole-value match) admits
/// `value`, asked of Python's `re` as the template tools are.
fn pattern_admits(pattern: &str, value: &str) -> bool {
    let out = std::process::Command::new(workspace_root().join(".venv/bin/python"))
        .args([
            "-c",
            "import re, sys; sys.exit(0 if re.fullmatch(sys.argv[1], sys.argv[2]) else 1)",
        ])
        .args([pattern, value])
        .status()
        .unwrap();
    out.success()
}

#[test]
fn every_disable_after_the_template_admits_is_read_and_none_overflows() {
    let t = template();
    let param = &t["Parameters"]["DisableAfter"];
    let pattern = param["AllowedPattern"].as_str().unwrap();
    for refused in ["300000y", "2 days", "", "-1d", "10000d", "1w", "0s", "02d"] {
        assert!(!pattern_admits(pattern, refused), "{refused:?} admitted");
    }
    let now = shared::domain::Timestamp::now();
    for admitted in [
        "2d",
        "1s",
        "36h",
        "90m",
        "9999d",
        param["Default"].as_str().unwrap(),
    ] {
        assert!(pattern_admits(pattern, admitted), "{admitted:?} refused");
        let vars = HashMap::from([
            ("TABLE_NAME", "t".to_owned()),
            ("MAIL_FROM", "a@example.com".to_owned()),
            ("DEFAULT_NOTIFY_EMAIL", "b@example.com".to_owned()),
            ("DISABLE_AFTER", admitted.to_owned()),
        ]);
        let lookup = |k: &str| vars.get(k).cloned();
        let config = sweeper::SweeperConfig::from_env(&Env::new(&lookup)).unwrap();
        let cutoff = shared::domain::notice::cutoff(now, config.window);
        assert!(cutoff <= now, "{admitted}");
    }
}
