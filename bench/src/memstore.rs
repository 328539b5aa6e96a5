//! An in-memory [`DeliveryStore`], so the sender's delivery path can be
//! measured without the emulator dominating. Benchmarks only.

use std::collections::HashMap;
use std::sync::Mutex;

use shared::domain::{Attempt, SigningSecret, Timestamp, Webhook, WebhookId};
use shared::ports::{DeliveryStore, StoreError, WebhookKey};

#[derive(Debug, Default)]
pub struct MemoryStore {
    webhooks: Mutex<HashMap<WebhookKey, Webhook>>,
}

impl MemoryStore {
    pub fn insert(&self, hook: Webhook) {
        self.lock().insert((hook.project.clone(), hook.id), hook);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WebhookKey, Webhook>> {
        self.webhooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl DeliveryStore for MemoryStore {
    async fn get_many(
        &self,
        keys: &[WebhookKey],
    ) -> Result<HashMap<WebhookId, Webhook>, StoreError> {
        let all = self.lock();
        Ok(keys
            .iter()
            .filter_map(|k| all.get(k).map(|h| (h.id, h.clone())))
            .collect())
    }

    async fn record_failures(
        &self,
        webhook: &Webhook,
        at: Timestamp,
        reason: &str,
        _due_now: bool,
        count: u32,
    ) -> Result<bool, StoreError> {
        let mut began = false;
        if let Some(hook) = self.lock().get_mut(&(webhook.project.clone(), webhook.id)) {
            began = hook.failing_since.is_none();
            hook.failing_since.get_or_insert(at);
            hook.last_failure_at = Some(at);
            hook.last_failure_reason = Some(reason.to_owned());
            hook.failure_count += u64::from(count);
        }
        Ok(began)
    }

    async fn record_recovery(
        &self,
        webhook: &Webhook,
        slow: bool,
        at: Timestamp,
    ) -> Result<Option<shared::ports::Cleared>, StoreError> {
        let mut cleared = None;
        if let Some(hook) = self.lock().get_mut(&(webhook.project.clone(), webhook.id)) {
            cleared = hook
                .failing_since
                .map(|failing_since| shared::ports::Cleared {
                    failing_since,
                    failures: hook.failure_count,
                });
            hook.failing_since = None;
            hook.last_failure_at = None;
            hook.last_failure_reason = None;
            hook.failure_count = 0;
            hook.slow_since = slow.then(|| hook.slow_since.unwrap_or(at));
        }
        Ok(cleared)
    }

    async fn mark_slow(&self, webhook: &Webhook, at: Timestamp) -> Result<(), StoreError> {
        if let Some(hook) = self.lock().get_mut(&(webhook.project.clone(), webhook.id)) {
            hook.slow_since.get_or_insert(at);
        }
        Ok(())
    }

    async fn assign_signing_secret(
        &self,
        webhook: &Webhook,
        fresh: SigningSecret,
    ) -> Result<SigningSecret, StoreError> {
        let mut all = self.lock();
        let stored = all
            .get_mut(&(webhook.project.clone(), webhook.id))
            .ok_or(StoreError::NotFound)?;
        Ok(stored.signing_secret.get_or_insert(fresh).clone())
    }

    /// Serializes each record as the DynamoDB adapter does before its one
    /// call, so the measured path pays for building the history.
    async fn record_attempts(
        &self,
        attempts: &[Attempt],
        _expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut bytes = 0;
        for attempt in attempts {
            bytes += serde_json::to_vec(attempt)
                .map_err(|e| StoreError::Corrupt(Box::new(e)))?
                .len();
        }
        std::hint::black_box(bytes);
        Ok(())
    }

    async fn disable_gone(&self, webhook: &Webhook, at: Timestamp) -> Result<bool, StoreError> {
        let mut disabled = false;
        if let Some(stored) = self.lock().get_mut(&(webhook.project.clone(), webhook.id)) {
            disabled = stored.enabled;
            stored.enabled = false;
            stored.disabled_at = Some(at);
        }
        Ok(disabled)
    }

    async fn claim_exhausted(
        &self,
        _webhook: &Webhook,
        delivery: uuid::Uuid,
        _until: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(recoveries().exhausted.insert(delivery))
    }
}

/// Recoveries' pace and progress, kept in memory.
#[derive(Debug, Default)]
struct Recoveries {
    slots: HashMap<(uuid::Uuid, i64), u32>,
    progress: HashMap<uuid::Uuid, shared::domain::recover::Progress>,
    finished: std::collections::HashSet<uuid::Uuid>,
    /// Deliveries whose retries ran out (claimed once).
    exhausted: std::collections::HashSet<uuid::Uuid>,
}

static RECOVERIES: std::sync::LazyLock<Mutex<Recoveries>> =
    std::sync::LazyLock::new(|| Mutex::new(Recoveries::default()));

fn recoveries() -> std::sync::MutexGuard<'static, Recoveries> {
    RECOVERIES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl shared::ports::RecoveryProgress for MemoryStore {
    async fn take_recovery_slots(
        &self,
        recovery: uuid::Uuid,
        second: i64,
        wanted: u32,
        limit: u32,
    ) -> Result<u32, StoreError> {
        let mut all = recoveries();
        let slots = all.slots.entry((recovery, second)).or_default();
        let room = limit.saturating_sub(*slots).min(wanted);
        *slots += room;
        Ok(room)
    }

    async fn tally_recovery(
        &self,
        recovery: uuid::Uuid,
        tally: shared::domain::recover::Tally,
    ) -> Result<shared::domain::recover::Progress, StoreError> {
        let mut all = recoveries();
        let progress = all.progress.entry(recovery).or_default();
        progress.sent += tally.delivered + tally.failed;
        progress.delivered += tally.delivered;
        progress.failed += tally.failed;
        progress.skipped += tally.skipped;
        Ok(*progress)
    }

    async fn finish_recovery(
        &self,
        recovery: uuid::Uuid,
        _at: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(recoveries().finished.insert(recovery))
    }
}
