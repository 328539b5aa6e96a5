//! The whole service on one machine, for `make dev`: the AWS emulator with
//! the resources of `template.yaml`, the config API on a local port with the
//! very router the Lambda runs, the sender fed from the queue the way the
//! Lambda event source mapping feeds it, the sweeper on a short interval, and
//! an inspector that receives and shows deliveries.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sender::Sender;
use shared::adapters::{DynamoStore, EventBus, HttpPoster, SesMailer, SqsQueue};
use shared::config::{ConfigError, Env};
use shared::domain::delivery::DEFAULT_DEADLINE;
use shared::domain::notice::DEFAULT_WINDOW;
use shared::domain::{
    AddressPolicy, ApiToken, DeliveryLog, EndpointRules, Lane, Mail, NoticeSettings, PublishShare,
    Timestamp,
};
use shared::ports::{MailError, Mailer};
use sweeper::Sweeper;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub mod emulator;
pub mod inspector;
pub mod provision;

use emulator::Emulator;
use inspector::Inspector;

/// `PublishRatePerProject`'s default in `template.yaml` (a test compares).
pub const DEFAULT_PUBLISH_RATE: u32 = 5;

/// The knobs of `make dev`, all environment variables.
#[derive(Debug, Clone)]
pub struct DevConfig {
    /// `ADMIN_TOKEN`: generated when unset.
    pub admin_token: Option<String>,
    /// `DISABLE_AFTER`, default 2d.
    pub disable_after: Duration,
    /// `SWEEP_EVERY`, default 15s.
    pub sweep_every: Duration,
    /// `DELIVERY_DEADLINE`, default 15s.
    pub deadline: Duration,
    /// `DELIVERY_LOG_DAYS`, default 30; 0 turns the delivery history off.
    pub delivery_log: DeliveryLog,
    /// `PUBLISH_RATE_PER_PROJECT`, default 5 as deployed; 0 turns it off.
    pub publish_share: PublishShare,
    /// `OPERATIONAL_EVENT_BUS`: the emulator's bus the operational events
    /// go to, its default bus unless named (as deployed).
    pub event_bus: String,
    pub api_port: u16,
    pub inspector_port: u16,
    pub emulator_port: u16,
}

impl DevConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            admin_token: env.optional("ADMIN_TOKEN"),
            disable_after: env.duration("DISABLE_AFTER", DEFAULT_WINDOW)?,
            sweep_every: env.duration("SWEEP_EVERY", Duration::from_secs(15))?,
            deadline: env.duration("DELIVERY_DEADLINE", DEFAULT_DEADLINE)?,
            delivery_log: env.delivery_log()?,
            publish_share: env.publish_share(DEFAULT_PUBLISH_RATE)?,
            event_bus: env
                .optional(shared::config::EVENT_BUS)
                .unwrap_or_else(|| provision::EVENT_BUS.to_owned()),
            api_port: port(env, "API_PORT", 3000)?,
            inspector_port: port(env, "INSPECTOR_PORT", 3001)?,
            emulator_port: port(env, "EMULATOR_PORT", 4566)?,
        })
    }
}

fn port(env: &Env<'_>, name: &'static str, default: u16) -> Result<u16, ConfigError> {
    let n = env.count(name, usize::from(default))?;
    u16::try_from(n).map_err(|_| ConfigError::Invalid {
        name,
        reason: format!("{n} is not a port"),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Emulator(#[from] emulator::EmulatorError),
    #[error("could not create the local AWS resources")]
    Provision(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("could not start the config API")]
    Api(#[from] config_api::StartupError),
    #[error("cannot listen on {addr} ({var}): {source}")]
    Listen {
        addr: SocketAddr,
        var: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("could not build the HTTP client")]
    Http(#[from] reqwest::Error),
    #[error("the local stack did not answer: {0}")]
    NotReady(String),
}

/// Endpoints the local stack, the tests and the benchmarks may reach:
/// loopback, over plain http too.
pub fn local_rules() -> EndpointRules {
    EndpointRules {
        allow_http: true,
        addresses: loopback_policy(),
    }
}

/// Addresses the local stack may reach: the loopback ranges only.
pub fn loopback_policy() -> AddressPolicy {
    AddressPolicy::with_allow_list(
        ["127.0.0.0/8", "::1/128"]
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect(),
    )
}

/// Sends through SES (the emulator's) and prints each e-mail as it goes.
#[derive(Debug, Clone)]
pub struct PrintingMailer(pub SesMailer);

impl Mailer for PrintingMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        self.0.send(mail).await?;
        println!(
            "\n---- e-mail sent ------------------------------------------------\n\
             From: {}\nTo: {}\nSubject: {}\n\n{}\
             -----------------------------------------------------------------\n",
            mail.from,
            mail.to.join(", "),
            mail.subject,
            mail.text
        );
        Ok(())
    }
}

async fn listen(port: u16, var: &'static str) -> Result<TcpListener, DevError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpListener::bind(addr)
        .await
        .map_err(|source| DevError::Listen { addr, var, source })
}

/// Runs the local stack until Ctrl-C or SIGTERM, then stops everything it
/// started. `root` is the project folder (for `.venv` and `scripts/`).
pub async fn run(root: PathBuf, config: DevConfig) -> Result<(), DevError> {
    let api_listener = listen(config.api_port, "API_PORT").await?;
    let inspector_listener = listen(config.inspector_port, "INSPECTOR_PORT").await?;
    let emulator = Emulator::start(&root, config.emulator_port)?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;

    let admin = match &config.admin_token {
        Some(token) => token.clone(),
        None => ApiToken::generate()
            .map_err(|e| DevError::Provision(Box::new(e)))?
            .expose()
            .to_owned(),
    };
    let mail_from = provision::MAIL_FROM;
    let resources = provision::provision(&sdk, &admin, mail_from, &config.event_bus)
        .await
        .map_err(DevError::Provision)?;

    let api = config_api::app(
        &sdk,
        config_api::ApiConfig {
            table_name: resources.table.clone(),
            queue_urls: resources.queue_urls.clone(),
            admin_token: config_api::AdminTokenSource::Secret(resources.admin_secret_arn.clone()),
            endpoint_rules: local_rules(),
            signing_overlap: config_api::DEFAULT_SIGNING_OVERLAP,
            delivery_log: config.delivery_log,
            publish_share: config.publish_share,
            event_bus: Some(config.event_bus.clone()),
        },
    )
    .await?;
    let events = EventBus::from_sdk(&sdk, Some(&config.event_bus));
    let store = DynamoStore::from_sdk(&sdk, &resources.table);
    let queue = SqsQueue::from_sdk(&sdk, resources.queue_urls.clone());
    let recoveries =
        shared::recovery::Recoverer::new(store.clone(), queue.clone(), config.delivery_log)
            .with_events(events.clone());
    let sender = Sender::new(
        store.clone(),
        HttpPoster::new(loopback_policy(), config.deadline)?,
        sender::DEFAULT_CONCURRENCY,
    )
    .with_lanes(
        queue,
        resources.queue_urls.names(),
        shared::domain::retry::STANDARD_SCHEDULE.to_vec(),
    )
    .with_history(config.delivery_log)
    .with_events(events.clone())
    .with_recoveries(std::sync::Arc::new(recoveries));
    let sweeper = Sweeper::new(
        store,
        PrintingMailer(SesMailer::from_sdk(&sdk)),
        config.disable_after,
        NoticeSettings {
            from: mail_from.to_owned(),
            default_to: "owner@example.com".to_owned(),
            api_url: Some(format!("http://127.0.0.1:{}", config.api_port)),
            settings_url: None,
        },
    )
    .with_history(config.delivery_log)
    .with_events(events);
    let inspector = Inspector::default();
    let sqs = aws_sdk_sqs::Client::new(&sdk);

    let (stop, stopped) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(serve(api_listener, api, stopped.clone()));
    tasks.spawn(serve(
        inspector_listener,
        inspector.router(),
        stopped.clone(),
    ));
    let sender = std::sync::Arc::new(sender);
    for (lane, pollers) in LANE_POLLERS {
        for _ in 0..pollers {
            tasks.spawn(sender::poller::run(
                sender.clone(),
                sqs.clone(),
                resources.queue_urls.url(lane).to_owned(),
                stopped.clone(),
            ));
        }
    }
    tasks.spawn(sweep(sweeper, config.sweep_every, stopped.clone()));
    tasks.spawn(show_operational_events(
        sqs.clone(),
        resources.operational_queue_url.clone(),
        config.event_bus.clone(),
        inspector.clone(),
        stopped.clone(),
    ));

    let ready = check_ready(&config, &admin).await;
    match ready {
        Ok(()) => print_banner(&config, &admin, &emulator),
        Err(err) => {
            let _ = stop.send(true);
            while tasks.join_next().await.is_some() {}
            emulator.stop();
            return Err(err);
        }
    }

    wait_for_signal().await;
    println!("stopping: the API, the inspector, the sender, the sweeper and the AWS emulator");
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    emulator.stop();
    println!("stopped");
    Ok(())
}

async fn serve(listener: TcpListener, router: axum::Router, mut stopped: watch::Receiver<bool>) {
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    if let Err(err) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %err, "server stopped");
    }
}

/// The event source mappings, locally: concurrent pollers per lane (the
/// template's mappings scale each lane up to its `MaximumConcurrency`).
pub const LANE_POLLERS: [(Lane, usize); 3] = [(Lane::Fast, 4), (Lane::Slow, 4), (Lane::Waiting, 1)];

async fn sweep(
    sweeper: Sweeper<DynamoStore, PrintingMailer>,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = ticks.tick() => {
                if let Err(err) = sweeper.sweep(Timestamp::now(), Instant::now() + every).await {
                    tracing::error!(error = %shared::error_chain(&err), "sweep failed");
                }
            }
        }
    }
}

/// Where the inspector lists the operational events.
pub const OPERATIONAL_EVENTS_PATH: &str = "operational-events";

/// Shows each operational event the bus routes to the local queue: a log
/// block here, and a record in the inspector under
/// `/operational-events`.
async fn show_operational_events(
    sqs: aws_sdk_sqs::Client,
    url: String,
    bus: String,
    inspector: Inspector,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let received = tokio::select! {
            _ = stopped.changed() => return,
            received = sqs.receive_message().queue_url(&url).max_number_of_messages(10).wait_time_seconds(1).send() => received,
        };
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(err) => {
                tracing::warn!(error = %shared::error_chain(&err), "could not read the operational events");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for message in messages {
            let body = message.body.unwrap_or_default();
            let event: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            println!(
                "\n---- operational event (bus {bus}) ------------------------------\n{kind}\n{detail}\n",
                kind = event["detail-type"].as_str().unwrap_or("?"),
                detail = serde_json::to_string_pretty(&event["detail"]).unwrap_or_default(),
            );
            inspector.record_event(OPERATIONAL_EVENTS_PATH, &body);
            if let Some(receipt) = message.receipt_handle {
                let _ = sqs
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(receipt)
                    .send()
                    .await;
            }
        }
    }
}

/// Waits until the API answers an authenticated request and the inspector answers.
async fn check_ready(config: &DevConfig, admin: &str) -> Result<(), DevError> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let api = format!("http://127.0.0.1:{}/event-types", config.api_port);
    let inspector = format!("http://127.0.0.1:{}/", config.inspector_port);
    let mut last = String::new();
    for _ in 0..100 {
        let api_ok = client.get(&api).bearer_auth(admin).send().await;
        let inspector_ok = client.get(&inspector).send().await;
        match (api_ok, inspector_ok) {
            (Ok(a), Ok(i)) if a.status().is_success() && i.status().is_success() => return Ok(()),
            (a, i) => {
                last = format!(
                    "API: {:?}, inspector: {:?}",
                    a.map(|r| r.status()),
                    i.map(|r| r.status())
                )
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(DevError::NotReady(last))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn print_banner(config: &DevConfig, admin: &str, emulator: &Emulator) {
    let api = format!("http://127.0.0.1:{}", config.api_port);
    let inspector = format!("http://127.0.0.1:{}", config.inspector_port);
    println!(
        r#"
Project webhooks, running locally
  config API    {api}
  settings page {api}/ui/   (sign in with the admin token, project DEMO)
  admin token   {admin}
  inspector     {inspector}/<name>   (GET it to see what arrived)
  AWS emulator  {emulator}   (lanes: fast, slow and waiting queues {queue}, {queue}-slow, {queue}-waiting;
                dead-letter queues: the same names with -dlq)
  auto-disable  after {window} of failures; sweep every {every}
  operational   events on the emulator's bus "{bus}" (source project-webhooks): printed here, and
                listed at {inspector}/{events_path}
  NOTE: loopback endpoints (127.0.0.0/8, ::1) and plain http:// are allowed
        in this local mode only; a deployed stack refuses them.

Try it (in another terminal):
  export API={api} TOKEN={admin}
  curl -sS -X POST $API/projects/DEMO/webhooks -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{{"title": "Inspector", "endpoint": "{inspector}/demo", "secret": "s3cret", "events": ["run.completed"]}}'
  curl -sS -X POST $API/projects/DEMO/events -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{{"event_name": "run.completed", "team_member_id": 40, "payload": {{"id": 2, "cases": 14, "passed": 14}}}}'
  curl -sS {inspector}/demo
A failing endpoint (restart with DISABLE_AFTER=90s SWEEP_EVERY=10s make dev to see the auto-disable soon):
  curl -sS -X POST $API/projects/DEMO/webhooks -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{{"title": "Broken", "endpoint": "{inspector}/broken?status=503", "events": ["run.completed"], "notify_emails": ["you@example.com"]}}'
  (publish again, then GET $API/projects/DEMO/webhooks: "failing_since" is set; after the window the sweeper
   disables it and the e-mail is printed here)
What was sent and what came back, per webhook (the delivery history, kept {history}):
  curl -sS $API/projects/DEMO/webhooks/<id>/deliveries -H "Authorization: Bearer $TOKEN"
  curl -sS $API/projects/DEMO/webhooks/<id>/deliveries/<delivery_id> -H "Authorization: Bearer $TOKEN"
  curl -sS -X POST $API/projects/DEMO/webhooks/<id>/deliveries/<delivery_id>/redeliver -H "Authorization: Bearer $TOKEN"
  curl -sS -X POST $API/projects/DEMO/webhooks/<id>/ping -H "Authorization: Bearer $TOKEN"

ready: API {api}, inspector {inspector}"#,
        emulator = emulator.endpoint(),
        bus = config.event_bus,
        events_path = OPERATIONAL_EVENTS_PATH,
        queue = provision::QUEUE,
        window = humanize(config.disable_after),
        every = humanize(config.sweep_every),
        history = match config.delivery_log.days_kept() {
            0 => "off: DELIVERY_LOG_DAYS=0".to_owned(),
            days => format!("{days} days; DELIVERY_LOG_DAYS=0 turns it off"),
        },
    );
}

fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
