//! [`RateStore`]: each project's share of the publish rate, an atomic
//! conditional counter per project and one-second window.

use aws_sdk_dynamodb::types::AttributeValue;

use super::DynamoStore;
use super::schema::{attr, publish_count_key};
use super::update::Update;
use crate::domain::ProjectCode;
use crate::ports::{RateStore, StoreError};

/// Seconds a window's count is kept after the window (DynamoDB deletes it
/// by its TTL some time after).
const KEEP_COUNT_SECS: i64 = 120;

/// The update `take_publish` makes: one more, only below the limit.
fn publish_update(window: i64, limit: u32) -> Update {
    let mut update = Update::default();
    let counted = update.name(attr::PUBLISHES);
    update
        .add(attr::PUBLISHES, ":one")
        .set(
            attr::EXPIRES_AT,
            AttributeValue::N(window.saturating_add(KEEP_COUNT_SECS).to_string()),
        )
        .condition(format!(
            "attribute_not_exists({counted}) OR {counted} < :limit"
        ))
        .value(":one", AttributeValue::N("1".into()))
        .value(":limit", AttributeValue::N(limit.to_string()));
    update
}

impl RateStore for DynamoStore {
    async fn take_publish(
        &self,
        project: &ProjectCode,
        window: i64,
        limit: u32,
    ) -> Result<bool, StoreError> {
        self.update_count(
            publish_count_key(project, window),
            publish_update(window, limit),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_counts_only_below_the_limit_and_expires() {
        let update = publish_update(1_800_000_000, 5);
        assert_eq!(
            update.condition_expression().as_deref(),
            Some("(attribute_not_exists(#publishes) OR #publishes < :limit)")
        );
        assert_eq!(update.values[":limit"], AttributeValue::N("5".into()));
        assert_eq!(
            update.values[":expires_at"],
            AttributeValue::N("1800000120".into())
        );
    }
}
