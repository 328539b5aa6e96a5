//! The sweeper: disables webhooks that have not delivered successfully for
//! more than the window (2 days by default) and sends each owner one e-mail.
//!
//! `now` comes from the scheduled event, so a test can sweep "three days
//! later" without waiting. Every write is conditional: a success or a
//! re-enable that races the sweep wins, and two sweeps at once still disable
//! once and mail once. A notice whose mail failed stays pending for the next
//! sweep.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde::Serialize;
use shared::adapters::EventBus;
use shared::config::{ConfigError, Env};
use shared::domain::history::{Recovery, SuccessSearch, recovery};
use shared::domain::notice::{
    DEFAULT_NOTICES_PER_DAY, DEFAULT_WINDOW, NOTICE_COUNT_KEPT, cutoff, disable_notice,
    disabled_reason, fallback_notice, next_notice_day, notice_day,
};
use shared::domain::operational::{Change, DisableCause, OperationalEvent};
use shared::domain::{DeliveryLog, NoticeSettings, Timestamp, Webhook, WebhookId};
use shared::ports::{MailError, Mailer, StoreError, SweepStore};
use shared::telemetry::metric;

/// A claim on a pending e-mail older than this is taken to be abandoned by a
/// sweep that died, and the e-mail is claimed again.
pub const CLAIM_TTL: Duration = Duration::from_secs(10 * 60);

/// The sweeper's configuration, from the environment.
#[derive(Debug, Clone)]
pub struct SweeperConfig {
    pub table_name: String,
    /// `DISABLE_AFTER`, default 2 days.
    pub window: Duration,
    /// `MAIL_FROM`, `DEFAULT_NOTIFY_EMAIL`, `API_URL`, `SETTINGS_URL`.
    pub notice: NoticeSettings,
    /// `NOTICES_PER_PROJECT_PER_DAY`, default 20.
    pub notices_per_day: u32,
    /// `DELIVERY_LOG_DAYS`, default 30: with the history on, a webhook is
    /// not disabled if an attempt was delivered after its failures began.
    pub delivery_log: DeliveryLog,
    /// `OPERATIONAL_EVENT_BUS`: the bus of the operational events; none
    /// when unset or empty.
    pub event_bus: Option<String>,
}

impl SweeperConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: env.required("TABLE_NAME")?,
            window: env.duration("DISABLE_AFTER", DEFAULT_WINDOW)?,
            notice: NoticeSettings {
                from: env.required("MAIL_FROM")?,
                default_to: env.required("DEFAULT_NOTIFY_EMAIL")?,
                api_url: env.optional("API_URL"),
                settings_url: env.optional("SETTINGS_URL"),
            },
            notices_per_day: {
                let default = DEFAULT_NOTICES_PER_DAY as usize;
                let n = env.count("NOTICES_PER_PROJECT_PER_DAY", default)?;
                u32::try_from(n).map_err(|_| ConfigError::Invalid {
                    name: "NOTICES_PER_PROJECT_PER_DAY",
                    reason: format!("at most {}", u32::MAX),
                })?
            },
            delivery_log: env.delivery_log()?,
            event_bus: env.optional(shared::config::EVENT_BUS),
        })
    }
}

/// The sweeper function's timeout in `template.yaml` (a test compares them).
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(120);

/// What one sweep did; logged as one summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Items read from the index to find the due webhooks.
    pub examined: usize,
    pub disabled: usize,
    /// Due webhooks whose history shows a delivery after their failures
    /// began: their failure state was cleared (or moved to after it)
    /// instead.
    pub recovered: usize,
    /// Due webhooks left alone because a success or a re-enable won.
    pub raced: usize,
    /// Due webhooks not disabled this sweep because the history search
    /// stopped before it could tell whether one of their deliveries
    /// succeeded after their failures began; each is logged.
    pub undecided: usize,
    pub mailed: usize,
    /// E-mails that failed and stay pending for the next sweep.
    pub mail_failures: usize,
    /// E-mails the mail service refused for good, to the webhook's
    /// recipients and to the default recipient: given up.
    pub mail_refused: usize,
    /// E-mails over their project's day of e-mails: kept pending for the
    /// next day's allowance (each logged with its webhook id, and counted in
    /// the `NoticesDeferred` metric).
    pub mail_deferred: usize,
    /// Notices this sweep claimed but could not finish because they changed
    /// meanwhile (re-enabled and disabled again, or taken over by another
    /// sweep): left to the sweep that holds them now.
    pub claims_lost: usize,
    /// The time budget ran out; the next sweep continues.
    pub out_of_time: bool,
}

/// A sweep that ran but left e-mails unsent (they stay pending): reported as
/// the invocation's error, so that the sweeper's error alarm sees a mail
/// service that fails every run.
#[derive(Debug, thiserror::Error)]
#[error("{0} disable e-mail(s) could not be sent; they stay pending for the next sweep")]
pub struct MailsPending(pub usize);

impl SweepReport {
    /// `Err` when e-mails were left unsent.
    pub fn into_result(self) -> Result<Self, MailsPending> {
        match self.mail_failures {
            0 => Ok(self),
            n => Err(MailsPending(n)),
        }
    }
}

#[derive(Debug)]
pub struct Sweeper<S, M> {
    store: S,
    mailer: M,
    window: Duration,
    notice: NoticeSettings,
    notices_per_day: u32,
    consult_history: bool,
    events: EventBus,
}

impl<S: SweepStore, M: Mailer> Sweeper<S, M> {
    /// A sweeper that judges by the failure summary alone.
    pub fn new(store: S, mailer: M, window: Duration, notice: NoticeSettings) -> Self {
        Self {
            store,
            mailer,
            window,
            notice,
            notices_per_day: DEFAULT_NOTICES_PER_DAY,
            consult_history: false,
            events: EventBus::off(),
        }
    }

    /// Puts the operational events of the disables and recoveries it makes
    /// on `bus` (`domain::operational`).
    pub fn with_events(mut self, bus: EventBus) -> Self {
        self.events = bus;
        self
    }

    /// With the delivery history on, looks in it before disabling: a
    /// delivery after the failures began wins over the summary.
    pub fn with_history(mut self, log: DeliveryLog) -> Self {
        self.consult_history = log.is_on();
        self
    }

    /// At most `limit` e-mails per project per UTC day (default 20).
    pub fn with_daily_limit(mut self, limit: u32) -> Self {
        self.notices_per_day = limit;
        self
    }

    /// A scheduled run, as of the wall clock. The event's `time` is only
    /// logged: a late or replayed event must not write an old claim (that a
    /// concurrent sweep would take for abandoned) nor, from the future,
    /// disable webhooks early.
    pub async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
        stop_at: Instant,
    ) -> Result<SweepReport, StoreError> {
        let now = Timestamp::now();
        tracing::info!(
            scheduled_time = ?event.time.map(|t| t.to_rfc3339()),
            now = %now,
            "sweep started"
        );
        self.sweep(now, stop_at).await
    }

    /// One sweep as of `now`; takes no new work once `stop_at` has passed.
    pub async fn sweep(&self, now: Timestamp, stop_at: Instant) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        let due = self.store.due(cutoff(now, self.window)).await?;
        report.examined = due.read;
        let mut notices = Vec::new();
        let mut changes = Vec::new();
        let decided = self
            .decide(
                due.items,
                now,
                stop_at,
                &mut report,
                &mut notices,
                &mut changes,
            )
            .await;
        // The changes made before a store error are announced all the same.
        self.events.put(&changes).await;
        decided?;
        // Notices left pending by earlier sweeps (mail failed, or a sweep died).
        if !report.out_of_time {
            let seen: HashSet<WebhookId> = notices.iter().map(|h| h.id).collect();
            let pending = self.store.pending_notices().await?;
            notices.extend(pending.into_iter().filter(|h| !seen.contains(&h.id)));
        }
        for hook in notices {
            if Instant::now() >= stop_at {
                report.out_of_time = true;
                break;
            }
            self.notify(&hook, now, &mut report).await?;
        }
        tracing::info!(
            examined = report.examined,
            disabled = report.disabled,
            recovered = report.recovered,
            raced = report.raced,
            undecided = report.undecided,
            mailed = report.mailed,
            mail_failures = report.mail_failures,
            mail_refused = report.mail_refused,
            mail_deferred = report.mail_deferred,
            claims_lost = report.claims_lost,
            out_of_time = report.out_of_time,
            "sweep finished"
        );
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        shared::telemetry::count(&[
            (metric::NOTICES_DEFERRED, count(report.mail_deferred)),
            (metric::NOTICES_SENT, count(report.mailed)),
        ]);
        Ok(report)
    }

    /// Disables each due webhook (or finds it recovered in the history)
    /// until `stop_at`: counts in `report`, the disabled ones in `notices`,
    /// the operational event of each change it made in `changes`.
    async fn decide(
        &self,
        due: Vec<Webhook>,
        now: Timestamp,
        stop_at: Instant,
        report: &mut SweepReport,
        notices: &mut Vec<Webhook>,
        changes: &mut Vec<OperationalEvent>,
    ) -> Result<(), StoreError> {
        for hook in due {
            if Instant::now() >= stop_at {
                report.out_of_time = true;
                break;
            }
            if self.consult_history && self.recovered(&hook, report, changes).await? {
                continue;
            }
            let reason = disabled_reason(&hook);
            match self.store.disable(&hook, now, &reason).await? {
                Some(disabled) => {
                    report.disabled += 1;
                    // This conditional write disabled it: its one event.
                    changes.push(OperationalEvent::of(
                        &disabled,
                        now,
                        Change::Disabled {
                            reason: DisableCause::of_sweep(&hook, cutoff(now, self.window)),
                            failing_since: hook.failing_since,
                            last_error: hook.last_failure_reason.clone(),
                        },
                    ));
                    tracing::info!(
                        project = %disabled.project,
                        webhook_id = %disabled.id,
                        failing_since = ?disabled.failing_since.map(|t| t.to_string()),
                        reason = %reason,
                        "webhook disabled"
                    );
                    notices.push(disabled);
                }
                None => report.raced += 1,
            }
        }
        Ok(())
    }

    /// Whether the history shows the due webhook delivered after its
    /// failures began (a success that raced a failure, which the summary
    /// missed); if so its failure state is cleared, or moved to after the
    /// success when failures followed it, and it is not disabled.
    async fn recovered(
        &self,
        hook: &Webhook,
        report: &mut SweepReport,
        changes: &mut Vec<OperationalEvent>,
    ) -> Result<bool, StoreError> {
        let Some(since) = hook.failing_since else {
            return Ok(false);
        };
        let delivered_at = match self.store.delivered_after(hook, since).await? {
            SuccessSearch::Delivered(at) => at,
            SuccessSearch::NoneFound => return Ok(false),
            SuccessSearch::GaveUp => {
                report.undecided += 1;
                tracing::warn!(project = %hook.project, webhook_id = %hook.id, failing_since = %since, "not disabled this sweep: the history search stopped before it could tell whether a delivery succeeded after the failures began");
                return Ok(true);
            }
        };
        let rule = recovery(hook, delivered_at);
        if self.store.recover(hook, rule).await? {
            report.recovered += 1;
            if rule == Recovery::Clear {
                changes.push(OperationalEvent::of(
                    hook,
                    Timestamp::now(),
                    Change::Recovered {
                        failing_since: since,
                        failures: hook.failure_count,
                    },
                ));
            }
            tracing::info!(project = %hook.project, webhook_id = %hook.id, delivered_at = %delivered_at, recovery = ?rule, "not disabled: delivered after its failures began");
        } else {
            report.raced += 1;
        }
        Ok(true)
    }

    /// Sends the disable e-mail once: claim it, count it against the
    /// project's day (over the limit it is deferred to the next day's
    /// allowance, logged and counted), send it, mark it sent, or release it
    /// (and its count) for the next sweep when the mail service fails. Each
    /// step after the claim holds only while this sweep's claim does, so a
    /// notice filed meanwhile (the webhook re-enabled and disabled again) is
    /// never marked sent by the sweep that mailed the earlier one. When the
    /// mail service refuses the webhook's recipients for good, the notice
    /// goes to the default recipient instead; refused again, it is given up
    /// (and logged), so a bad address never makes every sweep call SES again.
    async fn notify(
        &self,
        hook: &Webhook,
        now: Timestamp,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        let stale_before = cutoff(now, CLAIM_TTL);
        let claim = now;
        if !self.store.claim_notice(hook, claim, stale_before).await? {
            return Ok(());
        }
        let day = notice_day(now);
        let expires_at = now.after(NOTICE_COUNT_KEPT);
        let limit = self.notices_per_day;
        if !self
            .store
            .count_notice(&hook.project, &day, limit, expires_at)
            .await?
        {
            let until = next_notice_day(now);
            report.mail_deferred += 1;
            tracing::warn!(
                project = %hook.project,
                webhook_id = %hook.id,
                limit,
                day = %day,
                until = %until,
                "the project had its day's disable e-mails already; this notice waits for the next day's"
            );
            let held = self.store.defer_notice(hook, claim, until).await?;
            self.settled(hook, held, report);
            return Ok(());
        }
        let mail = disable_notice(hook, &self.notice, self.window);
        let mut sent = self.mailer.send(&mail).await;
        let mut fallback = false;
        if let Err(MailError::Rejected(err)) = &sent
            && let Some(to_default) = fallback_notice(&mail, &self.notice)
        {
            tracing::warn!(
                project = %hook.project,
                webhook_id = %hook.id,
                recipients = mail.to.len(),
                error = %shared::error_chain(err.as_ref()),
                "the mail service refused the webhook's recipients; sending to the default recipient"
            );
            fallback = true;
            sent = self.mailer.send(&to_default).await;
        }
        let held = match sent {
            Ok(()) => {
                report.mailed += 1;
                tracing::info!(
                    project = %hook.project,
                    webhook_id = %hook.id,
                    recipients = if fallback { 1 } else { mail.to.len() },
                    to_default = fallback,
                    "disable notice sent"
                );
                self.store.notice_sent(hook, claim, now).await?
            }
            Err(err @ MailError::Rejected(_)) => {
                report.mail_refused += 1;
                tracing::error!(
                    project = %hook.project,
                    webhook_id = %hook.id,
                    error = %shared::error_chain(&err),
                    "disable notice refused by the mail service for good; given up"
                );
                self.store.notice_sent(hook, claim, now).await?
            }
            Err(err @ MailError::Unavailable(_)) => {
                report.mail_failures += 1;
                tracing::error!(
                    project = %hook.project,
                    webhook_id = %hook.id,
                    error = %shared::error_chain(&err),
                    "disable notice not sent; it stays pending"
                );
                self.store.uncount_notice(&hook.project, &day).await?;
                self.store.release_notice(hook, claim).await?
            }
        };
        self.settled(hook, held, report);
        Ok(())
    }

    /// Counts and logs a claim that no longer held when its notice was to
    /// be settled: the notice there now is another sweep's to send.
    fn settled(&self, hook: &Webhook, held: bool, report: &mut SweepReport) {
        if !held {
            report.claims_lost += 1;
            tracing::warn!(project = %hook.project, webhook_id = %hook.id, "the notice changed while this sweep held it (re-enabled and disabled again, or taken over); left to the sweep that holds it now");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn window_defaults_to_two_days_and_reads_durations() {
        let vars = HashMap::from([
            ("TABLE_NAME", "t"),
            ("MAIL_FROM", "webhooks@example.com"),
            ("DEFAULT_NOTIFY_EMAIL", "ops@example.com"),
        ]);
        let lookup = |k: &str| vars.get(k).map(|v| v.to_string());
        let config = SweeperConfig::from_env(&Env::new(&lookup)).unwrap();
        assert_eq!(config.window, Duration::from_secs(2 * 24 * 3600));
        assert_eq!(config.notice.api_url, None);

        let mut vars = vars.clone();
        vars.insert("DISABLE_AFTER", "90s");
        let lookup = |k: &str| vars.get(k).map(|v| v.to_string());
        assert_eq!(
            SweeperConfig::from_env(&Env::new(&lookup)).unwrap().window,
            Duration::from_secs(90)
        );
    }

    #[test]
    fn a_sender_address_is_required() {
        let lookup = |k: &str| (k == "TABLE_NAME").then(|| "t".to_owned());
        let err = SweeperConfig::from_env(&Env::new(&lookup)).unwrap_err();
        assert!(err.to_string().contains("MAIL_FROM"));
    }
}
