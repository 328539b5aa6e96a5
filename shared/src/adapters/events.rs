//! Operational events (`domain::operational`) onto an EventBridge bus, with
//! `PutEvents`: up to 10 per call, the batch's in as few calls as that
//! allows. Off (no call at all) when no bus is configured.
//!
//! An event is put after the write that made its state change; if the put
//! fails (after the SDK's own retries) it is logged and counted
//! (`OperationalEventsFailed`), never retried by a second writer: events are
//! at most once per change, the webhook's state stays the truth.

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::domain::operational::{OperationalEvent, SOURCE};
use crate::telemetry::{count, metric};

/// Most entries one `PutEvents` takes.
pub const MAX_PUT: usize = 10;

/// The bus operational events go to, or none.
#[derive(Debug, Clone, Default)]
pub struct EventBus {
    target: Option<(Client, String)>,
}

impl EventBus {
    /// No bus: events are dropped without a call.
    pub fn off() -> Self {
        Self::default()
    }

    /// The bus named (or ARN) `bus`; an empty name is off.
    pub fn new(client: Client, bus: &str) -> Self {
        let bus = bus.trim();
        Self {
            target: (!bus.is_empty()).then(|| (client, bus.to_owned())),
        }
    }

    pub fn from_sdk(sdk: &aws_config::SdkConfig, bus: Option<&str>) -> Self {
        match bus {
            Some(bus) => Self::new(Client::new(sdk), bus),
            None => Self::off(),
        }
    }

    pub fn is_on(&self) -> bool {
        self.target.is_some()
    }

    /// Puts `events`; answers how many the bus took. Failures are logged
    /// and counted, not returned: the state changes stand without them.
    pub async fn put(&self, events: &[OperationalEvent]) -> usize {
        let Some((client, bus)) = &self.target else {
            return 0;
        };
        let mut taken = 0;
        for chunk in events.chunks(MAX_PUT) {
            let entries = chunk
                .iter()
                .map(|event| {
                    PutEventsRequestEntry::builder()
                        .event_bus_name(bus)
                        .source(SOURCE)
                        .detail_type(event.detail_type())
                        .detail(event.detail_json())
                        .build()
                })
                .collect();
            match client.put_events().set_entries(Some(entries)).send().await {
                Ok(out) => {
                    let failed = usize::try_from(out.failed_entry_count).unwrap_or(0);
                    taken += chunk.len().saturating_sub(failed);
                    for (event, entry) in chunk.iter().zip(out.entries()) {
                        if let Some(code) = entry.error_code() {
                            tracing::error!(
                                detail_type = event.detail_type(),
                                project = %event.detail.project,
                                webhook_id = %event.detail.webhook_id,
                                error_code = code,
                                error = entry.error_message().unwrap_or_default(),
                                "the bus refused an operational event"
                            );
                        }
                    }
                    if failed > 0 {
                        count(&[(metric::OPERATIONAL_EVENTS_FAILED, failed as u64)]);
                    }
                }
                Err(err) => {
                    tracing::error!(events = chunk.len(), error = %crate::error_chain(&err), "could not put operational events");
                    count(&[(metric::OPERATIONAL_EVENTS_FAILED, chunk.len() as u64)]);
                }
            }
        }
        taken
    }
}
