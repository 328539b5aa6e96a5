//! A fresh EventBridge bus in the emulator, with a rule sending every
//! operational event to a queue the test reads back: what an operator's
//! rule sees.

use serde_json::Value;
use shared::adapters::EventBus;

#[derive(Debug, Clone)]
pub struct Bus {
    pub name: String,
    pub queue_url: String,
    sqs: aws_sdk_sqs::Client,
    eventbridge: aws_sdk_eventbridge::Client,
}

impl Bus {
    pub async fn fresh() -> Self {
        let sdk = crate::sdk_config().await;
        let id = uuid::Uuid::new_v4();
        let name = format!("ops-{id}");
        let queue_url = local_stack::provision::route_operational_events(
            &sdk,
            &name,
            &format!("ops-rule-{id}"),
            &format!("ops-{id}"),
        )
        .await
        .expect("a bus with a rule to a queue");
        Self {
            name,
            queue_url,
            sqs: aws_sdk_sqs::Client::new(&sdk),
            eventbridge: aws_sdk_eventbridge::Client::new(&sdk),
        }
    }

    /// The adapter the functions put events through, on this bus.
    pub fn events(&self) -> EventBus {
        EventBus::new(self.eventbridge.clone(), &self.name)
    }

    /// Every event the rule delivered so far (and takes them off the
    /// queue), in the order received.
    pub async fn drain(&self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive");
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return events;
            }
            for message in messages {
                let body = message.body.unwrap_or_default();
                events.push(serde_json::from_str(&body).expect("an EventBridge event"));
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .set_receipt_handle(message.receipt_handle)
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }

    /// The drained events of one `detail-type`.
    pub fn of<'a>(events: &'a [Value], detail_type: &str) -> Vec<&'a Value> {
        events
            .iter()
            .filter(|e| e["detail-type"] == detail_type)
            .collect()
    }
}
