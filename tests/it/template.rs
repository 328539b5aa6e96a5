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
    FAILING_INDEX, FAILING_INDEX_ATTRIBUTES, FAILING_SK,
    attr::{EXPIRES_AT, FAILING_PK, PK, SECRET, SK},
};
use shared::adapters::sqs;
use shared::config::Env;
use shared::domain::Lane;
use shared::domain::delivery::DEFAULT_DEADLINE;
use shared::domain::notice::{DEFAULT_NOTICES_PER_DAY, DEFAULT_WINDOW};

/// The template as JSON, read by cfn-lint's loader (it knows the `!Ref` tags).
pub(crate) fn template() -> Value {
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
    let projection = created_index.projection().unwrap();
    assert_eq!(
        index["Projection"]["ProjectionType"],
        projection.projection_type().unwrap().as_str()
    );
    assert_eq!(index["Projection"]["ProjectionType"], "INCLUDE");
    let declared: BTreeSet<&str> = index["Projection"]["NonKeyAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let created: BTreeSet<&str> = projection
        .non_key_attributes()
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(declared, created);
    assert_eq!(declared, FAILING_INDEX_ATTRIBUTES.into_iter().collect());
    assert!(!declared.contains(SECRET), "the index never holds a secret");
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");

    let ttl = store
        .client()
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(ttl.attribute_name(), Some(EXPIRES_AT));
    assert_eq!(
        table["TimeToLiveSpecification"],
        json!({"AttributeName": EXPIRES_AT, "Enabled": true})
    );
}

#[tokio::test]
async fn the_queues_the_code_creates_are_the_templates_queues() {
    let t = template();
    let client = aws_sdk_sqs::Client::new(&integration_tests::sdk_config().await);
    let (urls, dead_urls) =
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
    for (lane, queue_name, dead_name) in [
        (Lane::Fast, "DeliveryQueue", "DeliveryDeadLetterQueue"),
        (Lane::Slow, "SlowQueue", "SlowDeadLetterQueue"),
        (Lane::Waiting, "WaitingQueue", "WaitingDeadLetterQueue"),
    ] {
        let queue = resource(&t, queue_name);
        let dead = resource(&t, dead_name);
        let created = attrs(urls.url(lane).to_owned()).await;
        let created_dead = attrs(dead_urls.url(lane).to_owned()).await;
        let number = |v: &Value| v.as_u64().unwrap().to_string();
        for (attribute, property) in [
            (Attr::VisibilityTimeout, "VisibilityTimeout"),
            (Attr::MessageRetentionPeriod, "MessageRetentionPeriod"),
            (Attr::MaximumMessageSize, "MaximumMessageSize"),
        ] {
            assert_eq!(
                created[&attribute],
                number(&queue[property]),
                "{queue_name} {property}"
            );
        }
        assert_eq!(
            created_dead[&Attr::MessageRetentionPeriod],
            number(&dead["MessageRetentionPeriod"])
        );
        let redrive: Value = serde_json::from_str(&created[&Attr::RedrivePolicy]).unwrap();
        assert_eq!(
            redrive["maxReceiveCount"].to_string().trim_matches('"'),
            number(&queue["RedrivePolicy"]["maxReceiveCount"]),
            "{queue_name}"
        );
        assert_eq!(
            redrive["deadLetterTargetArn"],
            created_dead[&Attr::QueueArn].as_str()
        );
        assert_eq!(
            queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0],
            dead_name
        );
    }
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
    // batch, in either lane, can start and be recorded within one
    // invocation: the sender runs a whole slow-lane batch at once, and the
    // slow lane's smallest batch is at least the fast lane's.
    assert_eq!(
        sender["Environment"]["Variables"]["SENDER_CONCURRENCY"]["Ref"],
        "SlowLaneBatchSize"
    );
    let slow = &sender["Events"]["SlowDeliveries"]["Properties"];
    assert_eq!(slow["BatchSize"]["Ref"], "SlowLaneBatchSize");
    assert_eq!(slow["Queue"]["Fn::GetAtt"][0], "SlowQueue");
    let smallest = u32::try_from(
        t["Parameters"]["SlowLaneBatchSize"]["MinValue"]
            .as_u64()
            .unwrap(),
    )
    .unwrap();
    let fast_batch = u32::try_from(source["BatchSize"].as_u64().unwrap()).unwrap();
    assert!(smallest >= fast_batch);
    for (batch, concurrency) in [(fast_batch, smallest), (smallest, smallest)] {
        let needed = shared::domain::delivery::required_timeout(
            Duration::from_secs(deadline["MaxValue"].as_u64().unwrap()),
            batch,
            concurrency,
        );
        assert!(
            Duration::from_secs(sender_timeout) >= needed,
            "sender timeout {sender_timeout}s < {needed:?}"
        );
    }
    for queue in ["SlowQueue", "WaitingQueue"] {
        assert_eq!(
            resource(&t, queue)["VisibilityTimeout"].as_u64().unwrap(),
            visibility,
            "{queue}"
        );
    }
    let waiting = &sender["Events"]["WaitingRetries"]["Properties"];
    assert_eq!(waiting["Queue"]["Fn::GetAtt"][0], "WaitingQueue");
    assert_eq!(
        resource(&t, "WaitingQueue")["RedrivePolicy"]["maxReceiveCount"],
        sqs::WAITING_MAX_RECEIVE_COUNT
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
    for function in [
        "ConfigApiFunction",
        "SenderFunction",
        "SweeperFunction",
        "IngestFunction",
    ] {
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
        BTreeSet::from([
            "ConfigApiFunction",
            "SenderFunction",
            "SweeperFunction",
            "IngestFunction"
        ])
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
        api.queue_urls
            .fast
            .ends_with(&format!("/{}", local_stack::provision::QUEUE))
    );
    assert!(
        api.queue_urls
            .slow
            .ends_with(&format!("/{}-slow", local_stack::provision::QUEUE))
    );
    let env = &envs["SenderFunction"];
    let lookup = |k: &str| env.get(k).cloned();
    let sender = sender::SenderConfig::from_env(&Env::new(&lookup)).unwrap();
    assert_eq!(sender.addresses, local.addresses);
    let lanes = sender.lanes.expect("the sender knows the lanes");
    let names = lanes.names();
    assert_eq!(names.fast, local_stack::provision::QUEUE);
    assert_eq!(
        names.slow,
        format!("{}-slow", local_stack::provision::QUEUE)
    );
    assert_eq!(
        names.waiting,
        format!("{}-waiting", local_stack::provision::QUEUE)
    );
    assert_eq!(sender.table_name, local_stack::provision::TABLE);
    let env = &envs["SweeperFunction"];
    let lookup = |k: &str| env.get(k).cloned();
    let sweeper = sweeper::SweeperConfig::from_env(&Env::new(&lookup)).unwrap();
    assert_eq!(sweeper.table_name, local_stack::provision::TABLE);
    assert_eq!(sweeper.notice.from, local_stack::provision::MAIL_FROM);
    let env = &envs["IngestFunction"];
    let lookup = |k: &str| env.get(k).cloned();
    let ingest = config_api::ingest::IngestConfig::from_env(&Env::new(&lookup)).unwrap();
    assert_eq!(ingest.table_name, local_stack::provision::TABLE);
    assert_eq!(ingest.queue_urls, api.queue_urls);
    assert!(
        ingest
            .dead_letter_url
            .ends_with(&format!("/{}", local_stack::provision::INGEST_DEAD_LETTERS))
    );
    for (function, env) in &envs {
        assert_eq!(
            env.get(shared::config::EVENT_BUS).map(String::as_str),
            Some(local_stack::provision::EVENT_BUS),
            "{function}: operational events on make dev's bus"
        );
    }
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
    assert_eq!(config.signing_overlap, config_api::DEFAULT_SIGNING_OVERLAP);
    assert!(
        !config.endpoint_rules.allow_http
            && config.endpoint_rules.addresses.allow_list().is_empty()
    );

    let sender_env = function_env(&t, "SenderFunction");
    let lookup = |k: &str| sender_env.get(k).cloned();
    let config = sender::SenderConfig::from_env(&Env::new(&lookup)).unwrap();
    assert_eq!(config.deadline, Duration::from_secs(15));
    assert_eq!(config.rules, shared::domain::FailureRules::default());
    assert!(
        config.addresses.allow_list().is_empty(),
        "no allow-list when deployed"
    );
    assert!(
        config.lanes.is_some(),
        "lane moves and retries need the queues"
    );
    assert_eq!(
        config.retry_schedule,
        shared::domain::retry::STANDARD_SCHEDULE.to_vec()
    );

    let sweeper_env = function_env(&t, "SweeperFunction");
    let lookup = |k: &str| sweeper_env.get(k).cloned();
    let config = sweeper::SweeperConfig::from_env(&Env::new(&lookup)).unwrap();
    assert_eq!(config.window, DEFAULT_WINDOW);
    assert_eq!(config.notices_per_day, DEFAULT_NOTICES_PER_DAY);

    let ingest_env = function_env(&t, "IngestFunction");
    let lookup = |k: &str| ingest_env.get(k).cloned();
    let config = config_api::ingest::IngestConfig::from_env(&Env::new(&lookup)).unwrap();
    assert_eq!(config.dead_letter_url, "IngestDeadLetterQueue-id");
    assert_eq!(
        config.publish_share,
        shared::domain::PublishShare::per_second(local_stack::DEFAULT_PUBLISH_RATE),
        "the same share of the publish rate as the API"
    );

    let functions: BTreeSet<&str> = t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        functions,
        BTreeSet::from([
            "ConfigApiFunction",
            "SenderFunction",
            "SweeperFunction",
            "IngestFunction"
        ])
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

/// The template as CloudFormation deploys it: transformed by the SAM
/// translator (the one `sam deploy` uses), with the code location `sam
/// package` would fill in. Globals are merged into each function and every
/// event source becomes its own resource, so wiring is checked where it lands.
fn deployed() -> Value {
    let root = workspace_root();
    let script = r#"
import json, sys
from cfnlint.decode import cfn_yaml
from samtranslator.translator.transform import transform
class NoManagedPolicies:
    def load(self):
        return {}
template = json.loads(json.dumps(cfn_yaml.load(sys.argv[1]), default=str))
for resource in template["Resources"].values():
    if resource["Type"] == "AWS::Serverless::Function":
        resource["Properties"]["CodeUri"] = "s3://packaged/code.zip"
print(json.dumps(transform(template, {}, NoManagedPolicies())))
"#;
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .args(["-c", script])
        .arg(root.join("template.yaml"))
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The resources of one type, by logical id.
fn of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

fn reference(name: &str) -> Value {
    json!({ "Ref": name })
}

/// Every `Ref` and `${Name}` of a JSON tree.
fn references(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "Ref"
                    && let Some(name) = value.as_str()
                {
                    out.insert(name.to_owned());
                }
                if key == "Fn::Sub" {
                    let text = value.as_str().or_else(|| value[0].as_str()).unwrap_or("");
                    for part in text.split("${").skip(1) {
                        let name = part.split(['}', '.']).next().unwrap_or("");
                        out.insert(name.to_owned());
                    }
                }
                references(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, out)),
        _ => {}
    }
}

#[test]
fn every_parameter_is_used_by_the_deployed_stack() {
    let t = template();
    let mut used = BTreeSet::new();
    for section in ["Globals", "Conditions", "Resources", "Outputs"] {
        references(&t[section], &mut used);
    }
    for name in t["Parameters"].as_object().unwrap().keys() {
        assert!(
            used.contains(name),
            "parameter {name} is referenced by nothing"
        );
    }
}

#[test]
fn the_api_is_throttled_and_publishing_more_tightly() {
    let t = template();
    let d = deployed();
    let stages = of_type(&d, "AWS::ApiGatewayV2::Stage");
    assert_eq!(stages.len(), 1);
    let stage = &stages[0].1["Properties"];
    assert_eq!(
        stage["DefaultRouteSettings"],
        json!({
            "ThrottlingRateLimit": reference("ApiThrottleRate"),
            "ThrottlingBurstLimit": reference("ApiThrottleBurst"),
        })
    );
    // The publish route exists as its own route (a route setting for a
    // route that does not exist would fail the deployment) and is the path
    // the API serves.
    let route = "POST /projects/{project}/events";
    assert_eq!(
        stage["RouteSettings"][route],
        json!({
            "ThrottlingRateLimit": reference("PublishThrottleRate"),
            "ThrottlingBurstLimit": reference("PublishThrottleBurst"),
        })
    );
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("functions/config-api/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(spec["paths"]["/projects/{project}/events"]["post"].is_object());
    let publish =
        &t["Resources"]["ConfigApiFunction"]["Properties"]["Events"]["Publish"]["Properties"];
    assert_eq!(
        (publish["Path"].as_str(), publish["Method"].as_str()),
        (Some("/projects/{project}/events"), Some("POST"))
    );
    let p = &t["Parameters"];
    let default = |name: &str| p[name]["Default"].as_u64().unwrap();
    assert!(default("PublishThrottleRate") < default("ApiThrottleRate"));
    assert!(default("PublishThrottleBurst") < default("ApiThrottleBurst"));
    // Access logs go to a group with retention, and never carry headers
    // (the bearer token) or bodies.
    let format = stage["AccessLogSettings"]["Format"].as_str().unwrap();
    assert!(
        !format.contains("header") && !format.contains("Authorization"),
        "{format}"
    );
    assert_eq!(
        stage["AccessLogSettings"]["DestinationArn"],
        json!({"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]})
    );
}

#[test]
fn the_sender_scales_to_a_bound_instead_of_reserving_concurrency() {
    let t = template();
    let d = deployed();
    let mappings = of_type(&d, "AWS::Lambda::EventSourceMapping");
    // One mapping per lane, each with its own bound: the slow lane never
    // takes the fast lane's concurrency.
    let mut bounds = BTreeSet::new();
    for (name, mapping) in &mappings {
        let mapping = &mapping["Properties"];
        assert_eq!(
            mapping["FunctionName"],
            reference("SenderFunction"),
            "{name}"
        );
        let queue = mapping["EventSourceArn"]["Fn::GetAtt"][0].as_str().unwrap();
        let bound = &mapping["ScalingConfig"]["MaximumConcurrency"];
        bounds.insert(format!(
            "{queue}:{}",
            bound["Ref"]
                .as_str()
                .map_or(bound.to_string(), str::to_owned)
        ));
    }
    assert_eq!(
        bounds,
        [
            "DeliveryQueue:SenderMaxConcurrency",
            "SlowQueue:SlowLaneMaxConcurrency",
            "WaitingQueue:2"
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    );
    for name in ["SenderMaxConcurrency", "SlowLaneMaxConcurrency"] {
        let param = &t["Parameters"][name];
        // SQS allows 2 to 1000; the defaults leave most of an account's
        // default 1000 concurrent executions to everything else.
        assert_eq!(
            (param["MinValue"].as_u64(), param["MaxValue"].as_u64()),
            (Some(2), Some(1000)),
            "{name}"
        );
        assert!(param["Default"].as_u64().unwrap() <= 50, "{name}");
    }
    for (name, function) in of_type(&d, "AWS::Lambda::Function") {
        assert!(
            function["Properties"]
                .get("ReservedConcurrentExecutions")
                .is_none(),
            "{name}: reserved concurrency throttles SQS messages into the dead-letter queue"
        );
    }
}

#[test]
fn every_alarm_notifies_the_topic_that_alarm_email_subscribes_to() {
    let d = deployed();
    let alarms = of_type(&d, "AWS::CloudWatch::Alarm");
    let mut watched = BTreeSet::new();
    for (name, alarm) in &alarms {
        let p = &alarm["Properties"];
        assert_eq!(
            p["AlarmActions"],
            json!([reference("AlarmTopic")]),
            "{name}"
        );
        assert_eq!(p["OKActions"], json!([reference("AlarmTopic")]), "{name}");
        assert_eq!(p["TreatMissingData"], "notBreaching", "{name}");
        let target = &p["Dimensions"][0]["Value"];
        let target = target["Ref"]
            .as_str()
            .or_else(|| target["Fn::GetAtt"][0].as_str())
            .unwrap();
        watched.insert(format!("{}:{}", target, p["MetricName"].as_str().unwrap()));
    }
    let expected: BTreeSet<String> = [
        "DeliveryDeadLetterQueue:ApproximateNumberOfMessagesVisible",
        "DeliveryQueue:ApproximateAgeOfOldestMessage",
        "DeliveryQueue:ApproximateNumberOfMessagesVisible",
        "SlowDeadLetterQueue:ApproximateNumberOfMessagesVisible",
        "SlowQueue:ApproximateAgeOfOldestMessage",
        "SlowQueue:ApproximateNumberOfMessagesVisible",
        "WaitingDeadLetterQueue:ApproximateNumberOfMessagesVisible",
        "WaitingQueue:ApproximateAgeOfOldestMessage",
        "WaitingQueue:ApproximateNumberOfMessagesVisible",
        "ConfigApiFunction:Errors",
        "ConfigApiFunction:Throttles",
        "SenderFunction:Errors",
        "SenderFunction:Throttles",
        "SweeperFunction:Errors",
        "SweeperFunction:Throttles",
        "SweeperFunction:NoticesDeferred",
        "SenderFunction:HistoryWritesFailed",
        // With PublishEventBus: events from the bus that were not published.
        "IngestDeadLetterQueue:ApproximateNumberOfMessagesVisible",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(watched, expected);

    let subscription = &d["Resources"]["AlarmEmailSubscription"];
    assert_eq!(subscription["Condition"], "HasAlarmEmail");
    assert_eq!(
        subscription["Properties"],
        json!({"TopicArn": reference("AlarmTopic"), "Protocol": "email", "Endpoint": reference("AlarmEmail")})
    );
    assert_eq!(
        d["Conditions"]["HasAlarmEmail"],
        json!({"Fn::Not": [{"Fn::Equals": [reference("AlarmEmail"), ""]}]})
    );
    assert_eq!(template()["Parameters"]["AlarmEmail"]["Default"], "");
    // A sweep that leaves e-mails unsent fails its invocation (so the
    // sweeper's Errors alarm sees it) and is not retried at once.
    let invoke: HashMap<String, &Value> = of_type(&d, "AWS::Lambda::EventInvokeConfig")
        .into_iter()
        .map(|(_, config)| {
            let function = config["Properties"]["FunctionName"]["Ref"]
                .as_str()
                .unwrap()
                .to_owned();
            (function, &config["Properties"])
        })
        .collect();
    assert_eq!(invoke.len(), 2, "{invoke:?}");
    assert_eq!(invoke["SweeperFunction"]["MaximumRetryAttempts"], 0);
    // An event from the bus whose publish met a passing fault is tried
    // twice more, then waits in the ingest dead-letter queue.
    assert_eq!(invoke["IngestFunction"]["MaximumRetryAttempts"], 2);
    assert_eq!(
        resource(&d, "IngestFunction")["DeadLetterConfig"]["TargetArn"],
        json!({"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]})
    );
}

#[test]
fn stored_data_outlives_the_stack_and_logs_do_not_outlive_their_retention() {
    let t = template();
    for name in [
        "WebhooksTable",
        "AdminTokenSecret",
        "DeliveryQueue",
        "DeliveryDeadLetterQueue",
        "IngestDeadLetterQueue",
    ] {
        let r = &t["Resources"][name];
        assert_eq!(r["DeletionPolicy"], "Retain", "{name}");
        assert_eq!(r["UpdateReplacePolicy"], "Retain", "{name}");
    }
    assert_eq!(
        resource(&t, "WebhooksTable")["DeletionProtectionEnabled"],
        true
    );

    let d = deployed();
    let groups: BTreeSet<String> = of_type(&d, "AWS::Logs::LogGroup")
        .into_iter()
        .map(|(name, group)| {
            assert_eq!(
                group["Properties"]["RetentionInDays"],
                reference("LogRetentionDays"),
                "{name}"
            );
            name.clone()
        })
        .collect();
    let mut logged_to = BTreeSet::new();
    for (name, function) in of_type(&d, "AWS::Lambda::Function") {
        let logging = &function["Properties"]["LoggingConfig"];
        assert_eq!(logging["LogFormat"], "JSON", "{name}");
        let group = logging["LogGroup"]["Ref"].as_str().unwrap().to_owned();
        assert!(groups.contains(&group), "{name} logs to {group}");
        assert!(logged_to.insert(group), "{name} shares a log group");
    }
    assert_eq!(logged_to.len(), 4, "the three functions and the ingest one");
    assert!(groups.contains("ApiAccessLogGroup"));
    assert_eq!(t["Parameters"]["LogRetentionDays"]["Default"], 30);
}

#[test]
fn tracing_is_off_unless_the_operator_turns_it_on() {
    let t = template();
    assert_eq!(t["Parameters"]["EnableTracing"]["Default"], "false");
    assert_eq!(
        t["Conditions"]["TracingOn"],
        json!({"Fn::Equals": [reference("EnableTracing"), "true"]})
    );
    let d = deployed();
    for (name, function) in of_type(&d, "AWS::Lambda::Function") {
        assert_eq!(
            function["Properties"]["TracingConfig"]["Mode"],
            json!({"Fn::If": ["TracingOn", "Active", "PassThrough"]}),
            "{name}"
        );
    }
}

#[test]
fn the_daily_e_mail_limit_reaches_the_sweeper() {
    let t = template();
    let param = &t["Parameters"]["NoticesPerProjectPerDay"];
    assert_eq!(
        param["Default"].as_u64(),
        Some(u64::from(DEFAULT_NOTICES_PER_DAY))
    );
    assert_eq!(param["MinValue"], 1);
    assert_eq!(
        resource(&t, "SweeperFunction")["Environment"]["Variables"]["NOTICES_PER_PROJECT_PER_DAY"],
        reference("NoticesPerProjectPerDay")
    );
    let vars = HashMap::from([
        ("TABLE_NAME", "t".to_owned()),
        ("MAIL_FROM", "a@example.com".to_owned()),
        ("DEFAULT_NOTIFY_EMAIL", "b@example.com".to_owned()),
        ("NOTICES_PER_PROJECT_PER_DAY", "3".to_owned()),
    ]);
    let lookup = |k: &str| vars.get(k).cloned();
    let config = sweeper::SweeperConfig::from_env(&Env::new(&lookup)).unwrap();
    assert_eq!(config.notices_per_day, 3);
}

/// The actions a function's policy allows on `resource`.
pub(crate) fn allowed_on(t: &Value, function: &str, resource_value: &Value) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for policy in resource(t, function)["Policies"].as_array().unwrap() {
        for statement in policy["Statement"].as_array().unwrap() {
            if &statement["Resource"] == resource_value {
                for action in statement["Action"].as_array().unwrap() {
                    actions.insert(action.as_str().unwrap().to_owned());
                }
            }
        }
    }
    actions
}

#[test]
fn the_delivery_log_setting_reaches_every_function_with_the_calls_it_needs() {
    use shared::domain::DeliveryLog;
    use shared::domain::history::{DEFAULT_DELIVERY_LOG_DAYS, MAX_DELIVERY_LOG_DAYS};
    let t = template();
    let param = &t["Parameters"]["DeliveryLogDays"];
    assert_eq!(
        param["Default"].as_u64(),
        Some(u64::from(DEFAULT_DELIVERY_LOG_DAYS))
    );
    assert_eq!(param["MinValue"], 0, "0 turns the history off");
    assert_eq!(
        param["MaxValue"].as_u64(),
        Some(u64::from(MAX_DELIVERY_LOG_DAYS))
    );
    for days in ["30", "0"] {
        let expected = DeliveryLog::days(days.parse().unwrap());
        for function in ["ConfigApiFunction", "SenderFunction", "SweeperFunction"] {
            let mut env = function_env(&t, function);
            assert_eq!(env["DELIVERY_LOG_DAYS"], "30", "{function}");
            env.insert("DELIVERY_LOG_DAYS".into(), days.into());
            let lookup = |k: &str| env.get(k).cloned();
            let env = Env::new(&lookup);
            let read = match function {
                "ConfigApiFunction" => config_api::ApiConfig::from_env(&env).unwrap().delivery_log,
                "SenderFunction" => sender::SenderConfig::from_env(&env).unwrap().delivery_log,
                _ => sweeper::SweeperConfig::from_env(&env).unwrap().delivery_log,
            };
            assert_eq!(read, expected, "{function} with {days}");
        }
    }
    let table = json!({"Fn::GetAtt": ["WebhooksTable", "Arn"]});
    assert!(allowed_on(&t, "SenderFunction", &table).contains("dynamodb:BatchWriteItem"));
    assert!(allowed_on(&t, "SweeperFunction", &table).contains("dynamodb:Query"));
    let api = allowed_on(&t, "ConfigApiFunction", &table);
    for action in ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query"] {
        assert!(api.contains(action), "{action}");
    }
}

/// Every (SQS action, queue) a function's policies grant.
fn queue_grants(t: &Value, function: &str) -> BTreeSet<String> {
    let mut grants = BTreeSet::new();
    for policy in resource(t, function)["Policies"].as_array().unwrap() {
        for statement in policy["Statement"].as_array().unwrap() {
            let resources = match &statement["Resource"] {
                Value::Array(list) => list.clone(),
                one => vec![one.clone()],
            };
            for action in statement["Action"].as_array().unwrap() {
                let action = action.as_str().unwrap();
                if !action.starts_with("sqs:") {
                    continue;
                }
                for queue in &resources {
                    let queue = queue["Fn::GetAtt"][0].as_str().unwrap_or("?");
                    grants.insert(format!("{action} {queue}"));
                }
            }
        }
    }
    grants
}

#[test]
fn each_function_may_use_the_lanes_it_needs_and_no_more() {
    let t = template();
    let set = |grants: &[&str]| {
        grants
            .iter()
            .map(|g| (*g).to_owned())
            .collect::<BTreeSet<_>>()
    };
    // The sender moves deliveries to the slow lane, queues retries in the
    // slow and waiting lanes, forwards due retries to either delivery lane,
    // and keeps waiting retries invisible.
    assert_eq!(
        queue_grants(&t, "SenderFunction"),
        set(&[
            "sqs:ChangeMessageVisibility WaitingQueue",
            "sqs:SendMessage DeliveryQueue",
            "sqs:SendMessage SlowQueue",
            "sqs:SendMessage WaitingQueue",
        ])
    );
    // Publishing, redelivery and ping queue to the fast and slow lanes; a
    // bulk recovery's later steps to the waiting lane.
    assert_eq!(
        queue_grants(&t, "ConfigApiFunction"),
        set(&[
            "sqs:SendMessage DeliveryQueue",
            "sqs:SendMessage SlowQueue",
            "sqs:SendMessage WaitingQueue",
        ])
    );
    assert!(queue_grants(&t, "SweeperFunction").is_empty());
    // Publishing from the bus queues to the fast and slow lanes, and what
    // it refuses to its dead-letter queue.
    assert_eq!(
        queue_grants(&t, "IngestFunction"),
        set(&[
            "sqs:SendMessage DeliveryQueue",
            "sqs:SendMessage IngestDeadLetterQueue",
            "sqs:SendMessage SlowQueue",
        ])
    );
    // Each lane's mapping reads its own queue; a dead-letter queue is only
    // a redrive target.
    let d = deployed();
    let mut sources = BTreeSet::new();
    for (_, mapping) in of_type(&d, "AWS::Lambda::EventSourceMapping") {
        sources.insert(
            mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        sources,
        set(&["DeliveryQueue", "SlowQueue", "WaitingQueue"])
    );
}

#[test]
fn the_publish_share_reaches_the_config_api_and_stays_below_the_route_throttle() {
    let t = template();
    let share = &t["Parameters"]["PublishRatePerProject"];
    assert_eq!(
        share["Default"].as_u64(),
        Some(u64::from(local_stack::DEFAULT_PUBLISH_RATE))
    );
    assert!(
        share["Default"].as_u64().unwrap()
            < t["Parameters"]["PublishThrottleRate"]["Default"]
                .as_u64()
                .unwrap(),
        "one project alone cannot take the whole publish route"
    );
    let env = function_env(&t, "ConfigApiFunction");
    let lookup = |k: &str| env.get(k).cloned();
    let config = config_api::ApiConfig::from_env(&Env::new(&lookup)).unwrap();
    assert_eq!(
        config.publish_share,
        shared::domain::PublishShare::per_second(local_stack::DEFAULT_PUBLISH_RATE)
    );
}

#[test]
fn alarms_on_the_functions_metrics_name_metrics_the_code_publishes() {
    use shared::telemetry::{DIMENSION, NAMESPACE, metric};
    let d = deployed();
    let mut named = BTreeSet::new();
    for (name, alarm) in of_type(&d, "AWS::CloudWatch::Alarm") {
        let p = &alarm["Properties"];
        if p["Namespace"] != NAMESPACE {
            continue;
        }
        let metric_name = p["MetricName"].as_str().unwrap().to_owned();
        assert!(
            metric::ALL.contains(&metric_name.as_str()),
            "{name}: {metric_name} is not published by the code"
        );
        assert_eq!(p["Dimensions"][0]["Name"], DIMENSION, "{name}");
        assert_eq!(p["Dimensions"].as_array().unwrap().len(), 1, "{name}");
        named.insert(metric_name);
    }
    let alarmed: BTreeSet<String> = [metric::NOTICES_DEFERRED, metric::HISTORY_WRITES_FAILED]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(named, alarmed);
}

/// Which functions publish each of the service's metrics.
fn publishers(name: &str) -> &'static [&'static str] {
    use shared::telemetry::metric;
    match name {
        metric::NOTICES_DEFERRED | metric::NOTICES_SENT => &["SweeperFunction"],
        metric::PUBLISHED | metric::FAN_OUT => &["ConfigApiFunction"],
        // Every function puts operational events.
        metric::OPERATIONAL_EVENTS_FAILED => {
            &["ConfigApiFunction", "SenderFunction", "SweeperFunction"]
        }
        _ => &["SenderFunction"],
    }
}

#[test]
fn the_dashboard_shows_every_metric_the_code_publishes_and_no_other() {
    use shared::telemetry::{DIMENSION, LANE_DIMENSION, NAMESPACE, metric};
    let d = deployed();
    let dashboards = of_type(&d, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1);
    let body = dashboards[0].1["Properties"]["DashboardBody"]["Fn::Sub"]
        .as_str()
        .unwrap();
    let body: Value = serde_json::from_str(body).unwrap();
    let mut shown = BTreeSet::new();
    let mut shown_for = BTreeSet::new();
    let mut queues = BTreeSet::new();
    for widget in body["widgets"].as_array().unwrap() {
        for row in widget["properties"]["metrics"].as_array().unwrap() {
            let row = row.as_array().unwrap();
            let (namespace, name) = (row[0].as_str().unwrap(), row[1].as_str().unwrap());
            if namespace == "AWS/SQS" {
                assert_eq!(row[2], "QueueName");
                queues.insert(row[3].as_str().unwrap().to_owned());
                continue;
            }
            assert_eq!(namespace, NAMESPACE);
            assert!(metric::ALL.contains(&name), "{name} is not published");
            assert_eq!(row[2], DIMENSION, "{name}");
            let function = row[3].as_str().unwrap();
            assert!(
                publishers(name)
                    .iter()
                    .any(|p| function == format!("${{{p}}}")),
                "{name} is published by {:?}, not {function}",
                publishers(name)
            );
            shown_for.insert((name.to_owned(), function.to_owned()));
            if publishers(name) == ["SenderFunction"] && name != metric::HISTORY_WRITES_FAILED {
                assert_eq!(row[4], LANE_DIMENSION, "{name}");
                assert!(
                    ["fast", "slow", "waiting"].contains(&row[5].as_str().unwrap()),
                    "{name}"
                );
            }
            shown.insert(name.to_owned());
        }
    }
    let all: BTreeSet<String> = metric::ALL.into_iter().map(str::to_owned).collect();
    assert_eq!(shown, all, "every published metric is on the dashboard");
    for name in metric::ALL {
        for function in publishers(name) {
            assert!(
                shown_for.contains(&(name.to_owned(), format!("${{{function}}}"))),
                "{name} of {function} is not on the dashboard"
            );
        }
    }
    let lanes: BTreeSet<String> = ["DeliveryQueue", "SlowQueue", "WaitingQueue"]
        .into_iter()
        .map(|q| format!("${{{q}.QueueName}}"))
        .collect();
    assert_eq!(queues, lanes, "each lane's depth and age");
}

#[test]
fn every_function_may_put_operational_events_on_the_chosen_bus_and_only_that() {
    let d = deployed();
    let t = template();
    assert_eq!(t["Parameters"]["OperationalEventBus"]["Default"], "default");
    assert_eq!(
        t["Conditions"]["HasEventBus"],
        serde_json::json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "OperationalEventBus"}, ""]}]})
    );
    for function in ["ConfigApiFunction", "SenderFunction", "SweeperFunction"] {
        assert_eq!(
            function_env(&t, function)
                .get(shared::config::EVENT_BUS)
                .map(String::as_str),
            Some("default"),
            "{function} reads the bus, the account's default one unless told"
        );
    }
    // A plain CloudFormation resource: as written.
    let policy = &t["Resources"]["OperationalEventsPolicy"];
    assert_eq!(
        policy["Condition"], "HasEventBus",
        "off when no bus is given"
    );
    let roles: BTreeSet<String> = policy["Properties"]["Roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Ref"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = [
        "ConfigApiFunctionRole",
        "SenderFunctionRole",
        "SweeperFunctionRole",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(roles, expected);
    for role in &expected {
        assert_eq!(
            d["Resources"][role]["Type"], "AWS::IAM::Role",
            "{role} is the function's role"
        );
    }
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(
        statements[0]["Action"],
        serde_json::json!(["events:PutEvents"])
    );
    let bus = statements[0]["Resource"]["Fn::Sub"].as_str().unwrap();
    assert!(bus.ends_with(":event-bus/${OperationalEventBus}"), "{bus}");
}
