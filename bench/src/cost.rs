//! Dollars per million deliveries on AWS, from the counted requests and the
//! measured handler time. Prices are public on-demand list prices.

use std::collections::BTreeMap;

use serde::Serialize;

/// When and where the prices below were read.
pub const PRICES_AS_OF: &str = "AWS public on-demand list prices, us-east-1, as of 2025-01";
/// Lambda, arm64, per GB-second.
pub const LAMBDA_ARM_GB_SECOND: f64 = 0.000_013_333_4;
/// Lambda, per request.
pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
/// The functions' memory (template.yaml: 128 MB).
pub const LAMBDA_MEMORY_GB: f64 = 128.0 / 1024.0;
/// SQS standard queue, per request (64 KB chunk).
pub const SQS_REQUEST: f64 = 0.40 / 1e6;
/// DynamoDB on-demand, per read request unit (4 KB strongly consistent).
pub const DYNAMODB_READ_UNIT: f64 = 0.125 / 1e6;
/// DynamoDB on-demand, per write request unit (1 KB).
pub const DYNAMODB_WRITE_UNIT: f64 = 0.625 / 1e6;
/// API Gateway HTTP API, per request (first 300 million a month).
pub const HTTP_API_REQUEST: f64 = 1.00 / 1e6;
/// EventBridge, per custom event put (64 KB chunk): the operational events.
pub const EVENTBRIDGE_EVENT: f64 = 1.00 / 1e6;
/// DynamoDB standard table storage, per GB-month.
pub const DYNAMODB_GB_MONTH: f64 = 0.25;
/// Subscribers per published event assumed by the model.
pub const FANOUT: f64 = 10.0;

/// The delivery history's items, in bytes as DynamoDB bills them, and how
/// long they are kept.
#[derive(Debug, Clone, Copy)]
pub struct History {
    pub attempt_bytes: usize,
    pub event_bytes: usize,
    /// The event's entry in the `events` index (a project's events by
    /// time, for a recovery's missed events): written and kept beside it.
    pub event_index_bytes: usize,
    pub days: f64,
}

/// Write units for one item of `bytes`: one per started KiB.
fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

impl History {
    /// Dollars per million deliveries for the history: one attempt item per
    /// delivery (in the sender's one BatchWriteItem per batch), one event
    /// item and its index entry per publish, and their storage for the
    /// retention.
    pub fn per_million(&self) -> (f64, f64) {
        let writes = write_units(self.attempt_bytes)
            + (write_units(self.event_bytes) + write_units(self.event_index_bytes)) / FANOUT;
        let bytes =
            self.attempt_bytes as f64 + (self.event_bytes + self.event_index_bytes) as f64 / FANOUT;
        let storage = bytes * 1e6 / 1e9 * DYNAMODB_GB_MONTH * self.days / 30.0;
        (writes * DYNAMODB_WRITE_UNIT * 1e6, storage)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub scenario: String,
    /// Dollars per million deliveries, by service.
    pub per_million: BTreeMap<String, f64>,
    pub total_per_million: f64,
}

/// `calls`: AWS calls per delivery (counted), `sender_batch_s`: handler time
/// of a 10-record batch, `publish_s`: handler time of one publish,
/// `history`: the delivery history's items when it is on (the counted calls
/// then include its BatchWriteItem and PutItem).
pub fn model(
    scenario: &str,
    calls: &BTreeMap<String, f64>,
    sender_batch_s: f64,
    publish_s: f64,
    history: Option<History>,
) -> Cost {
    let get = |op: &str| calls.get(op).copied().unwrap_or(0.0);
    let per_publish = 1.0 / FANOUT;
    let sqs =
        (get("SendMessageBatch") + get("ReceiveMessage") + get("DeleteMessageBatch")) * SQS_REQUEST;
    let lambda_requests = (get("ReceiveMessage") + per_publish) * LAMBDA_REQUEST;
    let lambda_compute = (sender_batch_s * get("ReceiveMessage") + publish_s * per_publish)
        * LAMBDA_MEMORY_GB
        * LAMBDA_ARM_GB_SECOND;
    // Items are under 1 KB: a consistent read of one is 1 read unit; the
    // publish Query reads ~10 items (2 units); an update of an item in the
    // failing index writes the table and the index.
    let reads = get("BatchGetItem") * 10.0 + get("Query") * 2.0;
    let writes = get("UpdateItem") * 2.0;
    let dynamodb = reads * DYNAMODB_READ_UNIT + writes * DYNAMODB_WRITE_UNIT;
    let api = per_publish * HTTP_API_REQUEST;
    let mut per_million = BTreeMap::new();
    per_million.insert("Lambda requests".to_owned(), lambda_requests * 1e6);
    per_million.insert("Lambda compute".to_owned(), lambda_compute * 1e6);
    per_million.insert("SQS".to_owned(), sqs * 1e6);
    per_million.insert("DynamoDB".to_owned(), dynamodb * 1e6);
    per_million.insert("API Gateway".to_owned(), api * 1e6);
    if let Some(history) = history {
        assert!(
            get("BatchWriteItem") > 0.0 && get("PutItem") > 0.0,
            "the counted run recorded the history"
        );
        let (writes, storage) = history.per_million();
        per_million.insert("DynamoDB history writes".to_owned(), writes);
        per_million.insert(
            format!("DynamoDB history storage ({} days)", history.days),
            storage,
        );
    }
    let total = per_million.values().sum();
    Cost {
        scenario: scenario.to_owned(),
        per_million,
        total_per_million: total,
    }
}
