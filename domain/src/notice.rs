//! Auto-disable (`docs/ARCHITECTURE.md`, "Failure window and auto-disable"): which webhooks are due, the reason
//! recorded, and the e-mail their owners get. Pure: `now` is a parameter.

use std::time::Duration;

use super::delivery::GONE_REASON;
use super::{Timestamp, Webhook};

/// The default window: failing for more than 2 days.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// At most this many auto-disable e-mails per project per UTC day, unless
/// the operator sets `NOTICES_PER_PROJECT_PER_DAY`.
pub const DEFAULT_NOTICES_PER_DAY: u32 = 20;

/// How long a day's e-mail count is kept after `now` (it only matters on
/// that day; a little longer covers clock skew between sweeps).
pub const NOTICE_COUNT_KEPT: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// The UTC day an e-mail sent at `now` counts against, as `YYYY-MM-DD`.
pub fn notice_day(now: Timestamp) -> String {
    now.as_datetime().format("%Y-%m-%d").to_string()
}

/// When the next UTC day begins after `now`: a notice over its project's
/// day of e-mails waits until then for the next day's allowance.
pub fn next_notice_day(now: Timestamp) -> Timestamp {
    let day = now.as_datetime().date_naive();
    let next = day
        .succ_opt()
        .unwrap_or(day)
        .and_time(chrono::NaiveTime::MIN);
    Timestamp::from(next.and_utc())
}

/// The most characters of a webhook's title the e-mail subject carries; a
/// longer title is cut and ends with `…` (the body has it whole).
pub const SUBJECT_TITLE_CHARS: usize = 60;

/// The title as the subject shows it: at most [`SUBJECT_TITLE_CHARS`].
pub fn subject_title(title: &str) -> String {
    match title.char_indices().nth(SUBJECT_TITLE_CHARS) {
        Some((end, _)) => format!("{}…", title[..end].trim_end()),
        None => title.to_owned(),
    }
}

/// Webhooks failing since before this instant are due to be disabled:
/// `now - window`, never earlier than the Unix epoch. A window longer than
/// the time since 1970 (`DISABLE_AFTER=300000y`, meant as "never") makes
/// nothing due, never everything.
pub fn cutoff(now: Timestamp, window: Duration) -> Timestamp {
    let epoch = chrono::DateTime::UNIX_EPOCH;
    let at = chrono::Duration::from_std(window)
        .ok()
        .and_then(|window| now.as_datetime().checked_sub_signed(window))
        .unwrap_or(epoch);
    Timestamp::from(at.max(epoch))
}

/// Whether a webhook has been failing for more than the window.
pub fn is_due(webhook: &Webhook, now: Timestamp, window: Duration) -> bool {
    webhook.enabled
        && webhook
            .failing_since
            .is_some_and(|since| since < cutoff(now, window))
}

/// The `disabled_reason` recorded on an auto-disabled webhook.
pub fn disabled_reason(webhook: &Webhook) -> String {
    let since = webhook
        .failing_since
        .map(|t| t.to_string())
        .unwrap_or_else(|| "unknown".to_owned());
    let last = webhook.last_failure_reason.as_deref().unwrap_or("unknown");
    format!("no successful delivery since {since}; last error: {last}")
}

/// An e-mail to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What the operator configured for the e-mail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoticeSettings {
    pub from: String,
    /// Used when a webhook has no `notify_emails`.
    pub default_to: String,
    /// Base URL of the config API, shown in the re-enable command.
    pub api_url: Option<String>,
    /// A link to the webhook's settings, with `{project}` and `{id}`.
    pub settings_url: Option<String>,
}

impl NoticeSettings {
    pub fn recipients(&self, webhook: &Webhook) -> Vec<String> {
        if webhook.notify_emails.is_empty() {
            vec![self.default_to.clone()]
        } else {
            webhook.notify_emails.clone()
        }
    }

    fn settings_link(&self, webhook: &Webhook) -> Option<String> {
        self.settings_url.as_ref().map(|pattern| {
            pattern
                .replace("{project}", webhook.project.as_str())
                .replace("{id}", &webhook.id.to_string())
        })
    }
}

/// The notice for the default recipient, when the mail service refused the
/// webhook's own recipients for good; `None` when the notice went to the
/// default recipient already.
pub fn fallback_notice(mail: &Mail, settings: &NoticeSettings) -> Option<Mail> {
    if mail.to == [settings.default_to.as_str()] {
        return None;
    }
    let note = "This notice was meant for the webhook's notify_emails, which the mail \
                service refused; it comes to you as the default recipient. Check those \
                addresses in the webhook's settings.";
    Some(Mail {
        from: mail.from.clone(),
        to: vec![settings.default_to.clone()],
        subject: mail.subject.clone(),
        text: format!("{note}\n\n{}", mail.text),
        html: format!("<p><em>{note}</em></p>\n{}", mail.html),
    })
}

/// The e-mail sent when `webhook` was auto-disabled.
pub fn disable_notice(webhook: &Webhook, settings: &NoticeSettings, window: Duration) -> Mail {
    let project = webhook.project.as_str();
    let since = webhook
        .failing_since
        .map(|t| t.to_string())
        .unwrap_or_else(|| "unknown".to_owned());
    let disabled_at = webhook
        .disabled_at
        .map(|t| t.to_string())
        .unwrap_or_else(|| "now".to_owned());
    let last_error = webhook.last_failure_reason.as_deref().unwrap_or("unknown");
    let api = settings
        .api_url
        .as_deref()
        .unwrap_or("https://<your-api>")
        .trim_end_matches('/');
    let command = format!(
        "curl -X PATCH {api}/projects/{project}/webhooks/{id} -H \"Authorization: Bearer <token>\" -H \"Content-Type: application/json\" -d '{{\"enabled\": true}}'",
        id = webhook.id
    );
    let window = humantime::format_duration(window).to_string();
    let link = settings.settings_link(webhook);

    let why = if webhook.disabled_reason.as_deref() == Some(GONE_REASON) {
        "Its endpoint answered 410 Gone, so it was disabled at once and no events are sent to it now."
            .to_owned()
    } else {
        format!(
            "It had not delivered successfully for more than {window}, so no events are sent to it now."
        )
    };
    let mut text = format!(
        "Your webhook \"{title}\" in project {project} was disabled on {disabled_at}.\n\n\
         {why}\n\n\
         Project:        {project}\n\
         Webhook:        {title}\n\
         Endpoint:       {endpoint}\n\
         Failing since:  {since}\n\
         Last error:     {last_error}\n\n\
         Once the endpoint answers with a 2xx status again, re-enable the webhook:\n\n  {command}\n",
        title = webhook.title,
        endpoint = webhook.endpoint,
    );
    if let Some(link) = &link {
        text.push_str(&format!("\nor in the webhook's settings: {link}\n"));
    }

    let e = escape_html;
    let mut html = format!(
        "<!doctype html><html><body>\
         <p>Your webhook <strong>{title}</strong> in project <strong>{project}</strong> was disabled on {disabled_at}.</p>\
         <p>{why}</p>\
         <table>\
         <tr><th align=\"left\">Project</th><td>{project}</td></tr>\
         <tr><th align=\"left\">Webhook</th><td>{title}</td></tr>\
         <tr><th align=\"left\">Endpoint</th><td>{endpoint}</td></tr>\
         <tr><th align=\"left\">Failing since</th><td>{since}</td></tr>\
         <tr><th align=\"left\">Last error</th><td>{last_error}</td></tr>\
         </table>\
         <p>Once the endpoint answers with a 2xx status again, re-enable the webhook:</p>\
         <pre>{command}</pre>",
        title = e(&webhook.title),
        project = e(project),
        disabled_at = e(&disabled_at),
        why = e(&why),
        endpoint = e(webhook.endpoint.as_str()),
        since = e(&since),
        last_error = e(last_error),
        command = e(&command),
    );
    if let Some(link) = &link {
        html.push_str(&format!(
            "<p>or in the <a href=\"{href}\">webhook's settings</a>.</p>",
            href = e(link)
        ));
    }
    html.push_str("</body></html>");

    Mail {
        from: settings.from.clone(),
        to: settings.recipients(webhook),
        subject: format!(
            "Webhook \"{}\" in project {project} was disabled",
            subject_title(&webhook.title)
        ),
        text,
        html,
    }
}

/// Escapes text for HTML element content and quoted attributes.
pub fn escape_html(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EndpointRules, ProjectCode, WebhookId, WebhookInput};

    fn webhook(title: &str, endpoint: &str) -> Webhook {
        let mut hook = WebhookInput {
            title: Some(title.into()),
            endpoint: Some(endpoint.into()),
            events: Some(vec!["run.completed".into()]),
            ..WebhookInput::default()
        }
        .validate(&EndpointRules::default())
        .unwrap()
        .into_webhook(
            WebhookId::generate(),
            ProjectCode::parse("DEMO").unwrap(),
            Timestamp::parse("2026-11-20T00:00:00Z").unwrap(),
        );
        hook.failing_since = Timestamp::parse("2026-11-25T08:00:00Z");
        hook.last_failure_reason = Some("HTTP 503".into());
        hook.disabled_at = Timestamp::parse("2026-11-27T08:05:00Z");
        hook
    }

    fn settings() -> NoticeSettings {
        NoticeSettings {
            from: "webhooks@example.com".into(),
            default_to: "ops@example.com".into(),
            api_url: Some("https://api.example.com/".into()),
            settings_url: Some(
                "https://app.example.com/project/{project}/settings/webhooks/{id}".into(),
            ),
        }
    }

    #[test]
    fn a_long_title_is_cut_in_the_subject_and_whole_in_the_body() {
        let exact = "a".repeat(SUBJECT_TITLE_CHARS);
        assert_eq!(subject_title(&exact), exact, "at the bound: whole");
        let long = format!("{exact}é and more");
        assert_eq!(subject_title(&long), format!("{exact}…"));
        // Cut on a character, never inside one; no space before the mark.
        let wide = format!("{} {}", "ü".repeat(SUBJECT_TITLE_CHARS - 1), "tail");
        assert_eq!(
            subject_title(&wide),
            format!("{}…", "ü".repeat(SUBJECT_TITLE_CHARS - 1))
        );
        let title = format!("Nightly {}", "x".repeat(200));
        let mail = disable_notice(
            &webhook(&title, "https://example.com/"),
            &settings(),
            DEFAULT_WINDOW,
        );
        assert_eq!(
            mail.subject,
            format!(
                "Webhook \"{}\" in project DEMO was disabled",
                subject_title(&title)
            )
        );
        assert!(mail.text.contains(&title) && mail.html.contains(&title));
    }

    #[test]
    fn a_webhook_disabled_by_a_410_is_told_so_not_the_window() {
        let mut hook = webhook("Gone", "https://example.com/");
        let window = humantime::format_duration(DEFAULT_WINDOW).to_string();
        let usual = disable_notice(&hook, &settings(), DEFAULT_WINDOW);
        assert!(usual.text.contains(&format!("for more than {window}")));
        assert!(!usual.text.contains("410"));
        hook.disabled_reason = Some(crate::delivery::GONE_REASON.into());
        let gone = disable_notice(&hook, &settings(), DEFAULT_WINDOW);
        for body in [&gone.text, &gone.html] {
            assert!(
                body.contains("answered 410 Gone, so it was disabled at once"),
                "{body}"
            );
            assert!(!body.contains(&format!("for more than {window}")), "{body}");
        }
    }

    #[test]
    fn a_deferred_notice_waits_for_the_next_utc_day() {
        let next = |raw| next_notice_day(Timestamp::parse(raw).unwrap()).to_string();
        let midnight = "2026-11-30T00:00:00.000Z";
        assert_eq!(next("2026-11-29T00:00:00Z"), midnight);
        assert_eq!(next("2026-11-29T23:59:59.999Z"), midnight);
        assert_eq!(next("2026-11-30T01:00:00+02:00"), midnight);
        assert_eq!(next("2026-12-31T12:00:00Z"), "2027-01-01T00:00:00.000Z");
    }

    #[test]
    fn an_e_mail_counts_against_its_utc_day() {
        let at = |raw| notice_day(Timestamp::parse(raw).unwrap());
        assert_eq!(at("2026-11-29T00:00:00Z"), "2026-11-29");
        assert_eq!(at("2026-11-29T23:59:59.999Z"), "2026-11-29");
        assert_eq!(at("2026-11-30T01:00:00+02:00"), "2026-11-29");
        // The day counted, and one more for sweeps whose clocks disagree.
        assert_eq!(NOTICE_COUNT_KEPT, Duration::from_secs(2 * 86_400));
    }

    #[test]
    fn due_means_failing_for_more_than_the_window() {
        let now = Timestamp::parse("2026-11-27T08:00:00Z").unwrap();
        let window = DEFAULT_WINDOW;
        let mut hook = webhook("t", "https://example.com/");
        hook.failing_since = Timestamp::parse("2026-11-25T07:59:00Z");
        assert!(is_due(&hook, now, window), "2 days + 1 minute");
        hook.failing_since = Timestamp::parse("2026-11-25T08:01:00Z");
        assert!(!is_due(&hook, now, window), "2 days - 1 minute");
        hook.failing_since = None;
        assert!(!is_due(&hook, now, window), "healthy");
        hook.failing_since = Timestamp::parse("2026-11-01T00:00:00Z");
        hook.enabled = false;
        assert!(!is_due(&hook, now, window), "already disabled");
        assert_eq!(cutoff(now, window).to_string(), "2026-11-25T08:00:00.000Z");
    }

    #[test]
    fn a_window_longer_than_time_itself_makes_nothing_due() {
        let now = Timestamp::parse("2026-11-27T08:00:00Z").unwrap();
        let mut hook = webhook("t", "https://example.com/");
        hook.failing_since = Timestamp::parse("1970-01-02T00:00:00Z");
        let forever = humantime::parse_duration("300000y").unwrap();
        let past_epoch = Duration::from_secs(60 * 365 * 24 * 3600);
        for window in [forever, past_epoch, Duration::MAX] {
            assert_eq!(cutoff(now, window).to_string(), "1970-01-01T00:00:00.000Z");
            assert!(!is_due(&hook, now, window), "{window:?}");
        }
        assert!(is_due(&hook, now, DEFAULT_WINDOW));
    }

    #[test]
    fn a_refused_notice_falls_back_to_the_default_recipient_once() {
        let mut hook = webhook("t", "https://example.com/");
        hook.notify_emails = vec!["a@example.com".into(), "b@example.com".into()];
        let mail = disable_notice(&hook, &settings(), DEFAULT_WINDOW);
        let fallback = fallback_notice(&mail, &settings()).unwrap();
        assert_eq!(fallback.to, vec!["ops@example.com"]);
        assert_eq!(
            (&fallback.from, &fallback.subject),
            (&mail.from, &mail.subject)
        );
        assert!(
            fallback
                .text
                .starts_with("This notice was meant for the webhook's notify_emails")
        );
        assert!(fallback.text.ends_with(&mail.text));
        assert!(fallback.html.contains("default recipient") && fallback.html.ends_with(&mail.html));
        assert!(!fallback.text.contains("a@example.com"));
        assert_eq!(
            fallback_notice(&fallback, &settings()),
            None,
            "no second fallback"
        );
        hook.notify_emails.clear();
        let to_default = disable_notice(&hook, &settings(), DEFAULT_WINDOW);
        assert_eq!(fallback_notice(&to_default, &settings()), None);
    }

    #[test]
    fn failing_exactly_the_window_is_not_yet_due() {
        let now = Timestamp::parse("2026-11-27T08:00:00Z").unwrap();
        let mut hook = webhook("t", "https://example.com/");
        hook.failing_since = Some(cutoff(now, DEFAULT_WINDOW));
        assert!(!is_due(&hook, now, DEFAULT_WINDOW), "exactly 2 days");
        hook.failing_since = Timestamp::parse("2026-11-25T07:59:59.999Z");
        assert!(is_due(&hook, now, DEFAULT_WINDOW), "2 days and 1 ms");
    }

    #[test]
    fn reason_names_since_and_last_error() {
        assert_eq!(
            disabled_reason(&webhook("t", "https://example.com/")),
            "no successful delivery since 2026-11-25T08:00:00.000Z; last error: HTTP 503"
        );
    }

    #[test]
    fn notice_names_everything_the_owner_needs() {
        let hook = webhook("Slack notifier", "https://hooks.example.com/qase");
        let mail = disable_notice(&hook, &settings(), DEFAULT_WINDOW);
        assert_eq!(
            mail.subject,
            "Webhook \"Slack notifier\" in project DEMO was disabled"
        );
        assert_eq!(mail.from, "webhooks@example.com");
        assert_eq!(
            mail.to,
            vec!["ops@example.com"],
            "the default address when none are set"
        );
        for body in [&mail.text, &mail.html] {
            for needle in [
                "Slack notifier",
                "DEMO",
                "https://hooks.example.com/qase",
                "2026-11-25T08:00:00.000Z",
                "HTTP 503",
                "2days",
                &format!("https://api.example.com/projects/DEMO/webhooks/{}", hook.id),
                &format!(
                    "https://app.example.com/project/DEMO/settings/webhooks/{}",
                    hook.id
                ),
            ] {
                assert!(body.contains(needle), "{needle:?} missing from {body}");
            }
        }
        assert!(mail.text.contains(r#"-d '{"enabled": true}'"#));
    }

    #[test]
    fn notice_goes_to_the_webhooks_addresses_when_set() {
        let mut hook = webhook("t", "https://example.com/");
        hook.notify_emails = vec!["a@example.com".into(), "b@example.com".into()];
        let mail = disable_notice(&hook, &settings(), DEFAULT_WINDOW);
        assert_eq!(mail.to, vec!["a@example.com", "b@example.com"]);
        let no_link = NoticeSettings {
            settings_url: None,
            ..settings()
        };
        assert!(
            !disable_notice(&hook, &no_link, DEFAULT_WINDOW)
                .html
                .contains("<a href")
        );
    }

    #[test]
    fn html_special_characters_are_escaped() {
        let mut hook = webhook(
            "<script>alert('x')</script> & co",
            "https://example.com/a?b=1&c=\"2\"",
        );
        hook.last_failure_reason = Some("HTTP 500 <b>".into());
        let mail = disable_notice(&hook, &settings(), DEFAULT_WINDOW);
        assert!(!mail.html.contains("<script>"));
        assert!(
            mail.html
                .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co")
        );
        assert!(
            mail.html
                .contains("https://example.com/a?b=1&amp;c=%222%22")
        );
        assert!(mail.html.contains("HTTP 500 &lt;b&gt;"));
        assert!(
            mail.text.contains("<script>alert('x')</script> & co"),
            "the text body is plain"
        );
    }
}
