//! The fleet model: what one machine cannot run (thousands of webhooks,
//! hours of traffic), as a discrete-event simulation in virtual time (no
//! real sleeping). It models the queues (visibility, delays, message groups),
//! the event source mappings (batch, batching window, maximum concurrency)
//! and the sender's timing; every decision a delivery meets is the project's
//! own rule from the `domain` crate, called as the sender calls it:
//! `Lane::of`, `lane::route`, `lane::retry_route`, `delivery::decide`,
//! `retry::retry_delay` (and, for the single lane of before, `retry::hop_delay`).
//! Endpoint answers and AWS call latencies are parameters; a small real run
//! on the local stack calibrates and checks them (`BENCHMARKS.md`).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use shared::domain::delivery::{DEFAULT_DEADLINE, FailureRules, Pace, coalesce, decide};
use shared::domain::lane::{MAX_POSTPONE, SLOW_AFTER, retry_route, route};
use shared::domain::retry::{MAX_QUEUE_DELAY, STANDARD_SCHEDULE, hop_delay, retry_delay};
use shared::domain::{
    FailureReason, Lane, Outcome, ProjectCode, Record, RetryPolicy, Route, Timestamp, Webhook,
    WebhookId, WebhookInput,
};

use shared::adapters::dynamo::schema::{HISTORY_SHARDS, history_shard};

use crate::cost;

const MS: u64 = 1_000;
const S: u64 = 1_000_000;

/// How an endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// 200 after a log-normal time (median `healthy_median`).
    Healthy,
    /// Never answers: every POST ends at the deadline.
    BlackHole,
    /// 503 at once.
    Failing,
    /// 200 after `slow_answer`.
    Slow,
    /// 503 or 200 at random, half each: failing, and recovering.
    Flaky,
}

/// One event source mapping.
#[derive(Debug, Clone, Copy)]
pub struct Esm {
    pub batch: usize,
    pub concurrency: usize,
    pub window_us: u64,
}

/// The two designs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    /// Before: one queue, one mapping; a retry hops through it every 15
    /// minutes.
    SingleLane,
    /// The lanes; `fair`: the slow lane serves message groups (projects)
    /// in turn, as SQS fair queues do; otherwise oldest first.
    Lanes { fair: bool },
}

/// Latencies of the moving parts, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latencies {
    /// From a message being visible (and a poller free) to the handler
    /// starting: the mapping's receive and the invocation.
    pub pickup_us: u64,
    /// The batch's `BatchGetItem`.
    pub read_us: u64,
    /// One `UpdateItem` after a POST (when the state changes).
    pub write_us: u64,
    /// One `SendMessage` (a move, a retry).
    pub send_us: u64,
    /// The batch's history `BatchWriteItem`.
    pub history_us: u64,
    /// From the start of a publish to its message being visible.
    pub publish_us: u64,
    /// A healthy endpoint's median answer (log-normal, sigma 0.6).
    pub healthy_median_us: u64,
    pub slow_answer_us: u64,
    pub failing_answer_us: u64,
}

impl Latencies {
    /// Inside an AWS region: single-digit-millisecond DynamoDB, SQS calls
    /// of about 10 ms, an endpoint answering in 80 ms.
    pub fn deployed() -> Self {
        Self {
            pickup_us: 20 * MS,
            read_us: 6 * MS,
            write_us: 6 * MS,
            send_us: 10 * MS,
            history_us: 8 * MS,
            publish_us: 30 * MS,
            healthy_median_us: 80 * MS,
            slow_answer_us: 5 * S,
            failing_answer_us: 50 * MS,
        }
    }
}

/// A burst of events to one project at the start.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    pub project: usize,
    pub events: usize,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub design: Design,
    pub webhooks: usize,
    pub per_project: usize,
    /// Events per second, each to one webhook chosen at random.
    pub events_per_second: f64,
    pub seconds: u64,
    /// Endpoint of each webhook, by index (the rest are healthy).
    pub endpoints: Vec<Endpoint>,
    /// When each webhook's endpoint starts answering as `endpoints` says
    /// (before, it answers as a healthy one); absent: from before the run,
    /// already known to the service (failing or slow as recorded).
    pub onsets: HashMap<usize, u64>,
    /// Share of webhooks with `retry_policy: "standard"`.
    pub standard_share: f64,
    pub deadline_us: u64,
    pub fast: Esm,
    pub slow: Esm,
    pub waiting: Esm,
    /// Deliveries one invocation runs at once.
    pub sender_concurrency: usize,
    pub latencies: Latencies,
    pub bursts: Vec<Burst>,
    /// Only these webhooks receive the steady traffic, when set.
    pub traffic_to: Option<Vec<usize>>,
    /// The steady traffic stops then, when set (the run goes on).
    pub stop_publishing_after_us: Option<u64>,
    pub sample_every_us: u64,
    pub seed: u64,
}

/// When the endpoints that are not healthy went bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Onset {
    /// Half of them before the run (known as failing or slow, as in a
    /// service that has run for a while: the sweeper disables them after
    /// two days), the other half at random times during it.
    Steady,
    /// All of them at the start, none known yet: the worst case.
    AllAtOnce,
}

impl Scenario {
    /// The fleet: 10,000 webhooks in 1,000 projects, 5 % never
    /// answering, 5 % answering 503, 1 % answering in 5 s; 500 events per
    /// second, each to one webhook; default parameters of `template.yaml`.
    pub fn fleet(design: Design, seconds: u64, onset: Onset) -> Self {
        let webhooks = 10_000;
        let endpoints = (0..webhooks)
            .map(|i| match i % 100 {
                0..=4 => Endpoint::BlackHole,
                5..=9 => Endpoint::Failing,
                10 => Endpoint::Slow,
                _ => Endpoint::Healthy,
            })
            .collect();
        let mut rng = Random(11);
        let onsets = (0..webhooks)
            .filter(|i| i % 100 <= 10)
            .filter_map(|i| match onset {
                Onset::AllAtOnce => Some((i, 0)),
                Onset::Steady => {
                    (rng.unit() < 0.5).then(|| (i, (rng.unit() * (seconds * S) as f64) as u64))
                }
            })
            .collect();
        Self {
            design,
            webhooks,
            per_project: 10,
            events_per_second: 500.0,
            seconds,
            endpoints,
            onsets,
            standard_share: 0.0,
            deadline_us: DEFAULT_DEADLINE.as_micros() as u64,
            // Today's default for the single lane; the lanes' defaults.
            fast: Esm {
                batch: 10,
                concurrency: match design {
                    Design::SingleLane => 10,
                    Design::Lanes { .. } => 20,
                },
                window_us: 0,
            },
            slow: Esm {
                batch: 100,
                concurrency: 10,
                window_us: S,
            },
            waiting: Esm {
                batch: 10,
                concurrency: 2,
                window_us: 0,
            },
            sender_concurrency: match design {
                Design::SingleLane => 10,
                Design::Lanes { .. } => 100,
            },
            latencies: Latencies::deployed(),
            bursts: Vec::new(),
            traffic_to: None,
            stop_publishing_after_us: None,
            sample_every_us: 30 * 60 * S,
            seed: 7,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Publish to arrival at the endpoint, first attempts to healthy
    /// endpoints, seconds.
    pub healthy: Vec<f64>,
    /// Of those, the latest publish (virtual seconds) that took 2 s or more.
    pub last_late: Option<f64>,
    /// When the last POST to an endpoint that never answers ended (virtual
    /// seconds).
    pub silent_done: Option<f64>,
    /// The same for webhooks of `watch_project`.
    pub watched: Vec<f64>,
    /// Messages waiting (visible) per lane at each sample: (seconds, fast,
    /// slow, waiting).
    pub backlog: Vec<(f64, usize, usize, usize)>,
    pub posts: u64,
    pub published: u64,
    pub invocations: u64,
    pub gb_seconds: f64,
    pub sqs_requests: u64,
    pub write_units: u64,
    pub read_units: u64,
    /// The most write units one webhook item took in one second.
    pub busiest_webhook_item: u64,
    /// The most write units one history partition took in one second.
    pub busiest_history_key: u64,
    /// Virtual seconds simulated, and real seconds it took.
    pub simulated_s: f64,
}

impl Report {
    /// Dollars per million POSTs: the sender's Lambda time and requests,
    /// SQS requests, DynamoDB units (publishing costs the same in both
    /// designs and is left out).
    pub fn dollars_per_million(&self) -> f64 {
        let posts = self.posts.max(1) as f64;
        let dollars = self.gb_seconds * cost::LAMBDA_ARM_GB_SECOND
            + self.invocations as f64 * cost::LAMBDA_REQUEST
            + self.sqs_requests as f64 * cost::SQS_REQUEST
            + self.write_units as f64 * cost::DYNAMODB_WRITE_UNIT
            + self.read_units as f64 * cost::DYNAMODB_READ_UNIT;
        dollars / posts * 1e6
    }

    pub fn max_backlog(&self) -> usize {
        self.backlog
            .iter()
            .map(|(_, f, s, w)| f + s + w)
            .max()
            .unwrap_or(0)
    }

    pub fn final_backlog(&self) -> usize {
        self.backlog.last().map_or(0, |(_, f, s, w)| f + s + w)
    }
}

/// A queued message.
#[derive(Debug, Clone, Copy)]
struct Msg {
    hook: u32,
    /// The history partition of its delivery (`schema::history_shard`).
    shard: u8,
    published: u64,
    attempt: u32,
    not_before: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Record(RecordKind, u64),
    MarkSlow(u64),
}

/// What a POST leaves to write and queue.
struct Posted {
    hook: u32,
    done: u64,
    record: Record,
    retry: Option<(Msg, Duration)>,
}

/// What a record changes on the modelled webhook; before the lanes there
/// was no slow mark.
fn kind_of(record: &Record, lanes: bool) -> Option<RecordKind> {
    match (record, lanes) {
        (Record::Nothing, _) | (Record::Slow { .. }, false) => None,
        (Record::Recovered { .. }, false) => Some(RecordKind::Recovered { slow: false }),
        (Record::Recovered { slow }, true) => Some(RecordKind::Recovered { slow: *slow }),
        (Record::Slow { .. }, true) => Some(RecordKind::Slow),
        (Record::Failure { count, .. }, _) => Some(RecordKind::Failure(*count)),
        (Record::Gone { .. }, _) => Some(RecordKind::Failure(1)),
    }
}

/// A [`Record`] without its strings, to apply to the modelled webhook.
#[derive(Debug, Clone, Copy)]
enum RecordKind {
    Recovered { slow: bool },
    Slow,
    Failure(u32),
}

#[derive(Debug)]
enum Event {
    Publish,
    Visible(usize, Msg),
    Window(usize),
    End(usize),
    State(u32, Change),
    Sample,
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Earliest first in a max-heap.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A queue: oldest first, or message groups served in turn.
#[derive(Default)]
struct Queue {
    fair: bool,
    fifo: VecDeque<Msg>,
    groups: HashMap<u32, VecDeque<Msg>>,
    ring: VecDeque<u32>,
    len: usize,
}

impl Queue {
    fn push(&mut self, msg: Msg, group: u32) {
        self.len += 1;
        if !self.fair {
            self.fifo.push_back(msg);
            return;
        }
        let queue = self.groups.entry(group).or_default();
        if queue.is_empty() {
            self.ring.push_back(group);
        }
        queue.push_back(msg);
    }

    fn take(&mut self, n: usize) -> Vec<Msg> {
        let mut out = Vec::with_capacity(n.min(self.len));
        while out.len() < n && self.len > 0 {
            let msg = if self.fair {
                let Some(group) = self.ring.pop_front() else {
                    break;
                };
                let queue = self
                    .groups
                    .get_mut(&group)
                    .expect("a ringed group has messages");
                let msg = queue.pop_front().expect("non-empty");
                if queue.is_empty() {
                    self.groups.remove(&group);
                } else {
                    self.ring.push_back(group);
                }
                msg
            } else {
                self.fifo.pop_front().expect("len > 0")
            };
            self.len -= 1;
            out.push(msg);
        }
        out
    }
}

/// A small, seeded random source (SplitMix64).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.unit().ln()
    }
}

/// The share of a flaky endpoint's answers that are 503.
const FLAKY_FAILURES: f64 = 0.5;

const LANES: [Lane; 3] = [Lane::Fast, Lane::Slow, Lane::Waiting];

fn lane_index(lane: Lane) -> usize {
    match lane {
        Lane::Fast => 0,
        Lane::Slow => 1,
        Lane::Waiting => 2,
    }
}

struct Model<'a> {
    s: &'a Scenario,
    base: Timestamp,
    hooks: Vec<Webhook>,
    heap: BinaryHeap<Scheduled>,
    seq: u64,
    queues: [Queue; 3],
    idle: [usize; 3],
    window_set: [bool; 3],
    rng: Random,
    report: Report,
    watch_project: Option<usize>,
    /// Write units per key in the current second: (second, key) -> units.
    item_writes: HashMap<u32, (u64, u64)>,
    history_writes: HashMap<u32, (u64, u64)>,
}

impl<'a> Model<'a> {
    fn new(s: &'a Scenario, watch_project: Option<usize>) -> Self {
        let base = Timestamp::parse("2026-12-01T00:00:00Z").expect("a valid time");
        let mut rng = Random(s.seed);
        let hooks = (0..s.webhooks)
            .map(|i| {
                let project =
                    ProjectCode::parse(&format!("P{}", i / s.per_project)).expect("a valid code");
                let mut hook = WebhookInput {
                    title: Some("hook".into()),
                    endpoint: Some("https://example.com/".into()),
                    events: Some(vec!["run.completed".into()]),
                    ..WebhookInput::default()
                }
                .validate(&Default::default())
                .expect("a valid webhook")
                .into_webhook(WebhookId::generate(), project, base);
                if rng.unit() < s.standard_share {
                    hook.retry_policy = RetryPolicy::Standard;
                }
                let endpoint = s.endpoints.get(i).copied().unwrap_or(Endpoint::Healthy);
                if !s.onsets.contains_key(&i) {
                    match endpoint {
                        Endpoint::BlackHole | Endpoint::Failing | Endpoint::Flaky => {
                            hook.failing_since = Some(base);
                        }
                        Endpoint::Slow => hook.slow_since = Some(base),
                        Endpoint::Healthy => {}
                    }
                }
                hook
            })
            .collect();
        let fair = matches!(s.design, Design::Lanes { fair: true });
        let queues = [
            Queue::default(),
            Queue {
                fair,
                ..Queue::default()
            },
            Queue::default(),
        ];
        let idle = match s.design {
            Design::SingleLane => [s.fast.concurrency, 0, 0],
            Design::Lanes { .. } => [
                s.fast.concurrency,
                s.slow.concurrency,
                s.waiting.concurrency,
            ],
        };
        Self {
            s,
            base,
            hooks,
            heap: BinaryHeap::new(),
            seq: 0,
            queues,
            idle,
            window_set: [false; 3],
            rng,
            report: Report::default(),
            watch_project,
            item_writes: HashMap::new(),
            history_writes: HashMap::new(),
        }
    }

    fn at(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.heap.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    fn time(&self, us: u64) -> Timestamp {
        self.base.after(Duration::from_micros(us))
    }

    fn esm(&self, lane: usize) -> Esm {
        [self.s.fast, self.s.slow, self.s.waiting][lane]
    }

    fn project_of(&self, hook: u32) -> u32 {
        hook / self.s.per_project as u32
    }

    fn enqueue(&mut self, lane: Lane, msg: Msg, visible_at: u64) {
        let lane = match self.s.design {
            Design::SingleLane => 0,
            Design::Lanes { .. } => lane_index(lane),
        };
        self.at(visible_at, Event::Visible(lane, msg));
    }

    fn run(mut self) -> Report {
        let end = self.s.seconds * S;
        if self.s.events_per_second > 0.0 {
            self.at(0, Event::Publish);
        }
        self.at(0, Event::Sample);
        for burst in self.s.bursts.clone() {
            for n in 0..burst.events {
                let hook = (burst.project * self.s.per_project + n % self.s.per_project) as u32;
                self.publish(hook, 0);
            }
        }
        while let Some(Scheduled { at, event, .. }) = self.heap.pop() {
            if at > end {
                break;
            }
            match event {
                Event::Publish => {
                    if self
                        .s
                        .stop_publishing_after_us
                        .is_some_and(|stop| at >= stop)
                    {
                        continue;
                    }
                    let hook = match &self.s.traffic_to {
                        Some(to) => to[(self.rng.next() % to.len() as u64) as usize] as u32,
                        None => (self.rng.next() % self.s.webhooks as u64) as u32,
                    };
                    self.publish(hook, at);
                    let next = self.rng.exponential(1.0 / self.s.events_per_second);
                    self.at(at + (next * S as f64) as u64 + 1, Event::Publish);
                }
                Event::Visible(lane, msg) => {
                    let group = self.project_of(msg.hook);
                    self.queues[lane].push(msg, group);
                    self.start(lane, at, false);
                }
                Event::Window(lane) => {
                    self.window_set[lane] = false;
                    self.start(lane, at, true);
                }
                Event::End(lane) => {
                    self.idle[lane] += 1;
                    self.start(lane, at, false);
                }
                Event::State(hook, change) => self.apply(hook, change),
                Event::Sample => {
                    self.report.backlog.push((
                        at as f64 / S as f64,
                        self.queues[0].len,
                        self.queues[1].len,
                        self.queues[2].len,
                    ));
                    self.at(at + self.s.sample_every_us, Event::Sample);
                }
            }
        }
        self.report.backlog.push((
            end as f64 / S as f64,
            self.queues[0].len,
            self.queues[1].len,
            self.queues[2].len,
        ));
        self.report.simulated_s = end as f64 / S as f64;
        self.report
    }

    fn publish(&mut self, hook: u32, now: u64) {
        self.report.published += 1;
        let lane = match self.s.design {
            Design::SingleLane => Lane::Fast,
            Design::Lanes { .. } => Lane::of(&self.hooks[hook as usize]),
        };
        let delivery = uuid::Uuid::from_u64_pair(self.rng.next(), self.rng.next());
        let msg = Msg {
            hook,
            shard: match self.s.design {
                Design::SingleLane => 0,
                Design::Lanes { .. } => history_shard(delivery),
            },
            published: now,
            attempt: 1,
            not_before: None,
        };
        self.enqueue(lane, msg, now + self.s.latencies.publish_us);
    }

    /// Starts invocations while pollers are free and messages wait; a
    /// lane with a batching window waits for a full batch or the window.
    fn start(&mut self, lane: usize, now: u64, window_ended: bool) {
        let esm = self.esm(lane);
        let mut forced = window_ended;
        while self.idle[lane] > 0 && self.queues[lane].len > 0 {
            if esm.window_us > 0 && self.queues[lane].len < esm.batch && !forced {
                if !self.window_set[lane] {
                    self.window_set[lane] = true;
                    self.at(now + esm.window_us, Event::Window(lane));
                }
                return;
            }
            forced = false;
            let batch = self.queues[lane].take(esm.batch);
            self.idle[lane] -= 1;
            self.invoke(lane, batch, now);
        }
    }

    fn invoke(&mut self, lane: usize, batch: Vec<Msg>, now: u64) {
        let l = self.s.latencies;
        let source = LANES[lane];
        let t0 = now + l.pickup_us;
        self.report.invocations += 1;
        self.report.sqs_requests += 2; // the receive, and the delete of the acknowledged
        let lanes = matches!(self.s.design, Design::Lanes { .. });
        let now_ts = self.time(t0);
        // Waiting retries not due yet are postponed without a read.
        let mut ends = Vec::with_capacity(batch.len());
        let mut to_read = Vec::with_capacity(batch.len());
        for msg in batch {
            let not_before = msg.not_before.map(|nb| self.time(nb));
            if lanes
                && source == Lane::Waiting
                && let Route::Postpone(wait) = route(Lane::Waiting, Lane::Fast, not_before, now_ts)
            {
                self.report.sqs_requests += 1;
                ends.push(t0 + l.send_us);
                let wait = wait.min(MAX_POSTPONE).as_micros() as u64;
                self.at(t0 + wait, Event::Visible(lane, msg));
                continue;
            }
            to_read.push(msg);
        }
        if !to_read.is_empty() {
            self.report.read_units += to_read.len() as u64;
        }
        let t_read = t0 + if to_read.is_empty() { 0 } else { l.read_us };
        let mut wave_start = vec![t_read; self.s.sender_concurrency.max(1)];
        let mut attempts = 0;
        let mut posted = Vec::new();
        for (i, msg) in to_read.into_iter().enumerate() {
            let slot = i % wave_start.len();
            let start = wave_start[slot];
            let hook = &self.hooks[msg.hook as usize];
            let not_before = msg.not_before.map(|nb| self.time(nb));
            let step = if lanes {
                route(source, Lane::of(hook), not_before, self.time(start))
            } else {
                match not_before.and_then(|nb| hop_delay(self.time(start), nb)) {
                    Some(delay) => Route::Move {
                        to: Lane::Fast,
                        delay,
                    },
                    None => Route::Post,
                }
            };
            let end = match step {
                Route::Post => {
                    attempts += 1;
                    let post = self.post(msg, start);
                    if lanes {
                        let done = post.done;
                        posted.push(post);
                        done
                    } else {
                        self.settle_one(post)
                    }
                }
                Route::Move { to, delay } => {
                    self.report.sqs_requests += 1;
                    let sent = start + l.send_us;
                    self.enqueue(to, msg, sent + delay.as_micros() as u64);
                    sent
                }
                Route::Postpone(wait) => {
                    self.report.sqs_requests += 1;
                    self.at(start + wait.as_micros() as u64, Event::Visible(lane, msg));
                    start + l.send_us
                }
            };
            wave_start[slot] = end;
            ends.push(end);
        }
        let mut end = ends.into_iter().max().unwrap_or(t0);
        if !posted.is_empty() {
            end = self.settle_batch(posted, end);
        }
        if attempts > 0 {
            self.report.write_units += attempts;
            end += l.history_us;
        }
        self.report.gb_seconds += (end - t0) as f64 / S as f64 * cost::LAMBDA_MEMORY_GB;
        self.at(end, Event::End(lane));
    }

    /// One POST starting at `start`; answers what it leaves to write and
    /// queue.
    fn post(&mut self, msg: Msg, start: u64) -> Posted {
        let l = self.s.latencies;
        let endpoint = match self.s.onsets.get(&(msg.hook as usize)) {
            Some(onset) if start < *onset => Endpoint::Healthy,
            _ => self
                .s
                .endpoints
                .get(msg.hook as usize)
                .copied()
                .unwrap_or(Endpoint::Healthy),
        };
        let (took, outcome) = match endpoint {
            Endpoint::Healthy => {
                let t = l.healthy_median_us as f64 * (0.6 * self.rng.normal()).exp();
                (
                    (t as u64).min(self.s.deadline_us),
                    Outcome::Delivered { status: 200 },
                )
            }
            Endpoint::Slow => (
                l.slow_answer_us.min(self.s.deadline_us),
                Outcome::Delivered { status: 200 },
            ),
            Endpoint::BlackHole => (
                self.s.deadline_us,
                Outcome::Failed {
                    reason: FailureReason::Timeout(Duration::from_micros(self.s.deadline_us)),
                },
            ),
            Endpoint::Failing => (
                l.failing_answer_us,
                Outcome::Failed {
                    reason: FailureReason::Status(503),
                },
            ),
            Endpoint::Flaky => {
                let outcome = if self.rng.unit() < FLAKY_FAILURES {
                    Outcome::Failed {
                        reason: FailureReason::Status(503),
                    }
                } else {
                    Outcome::Delivered { status: 200 }
                };
                (l.failing_answer_us, outcome)
            }
        };
        self.report.posts += 1;
        if endpoint == Endpoint::BlackHole {
            let done = (start + took) as f64 / S as f64;
            self.report.silent_done = Some(self.report.silent_done.map_or(done, |t| t.max(done)));
        }
        let arrived = (start + MS - msg.published) as f64 / S as f64;
        if msg.attempt == 1 {
            let always_healthy = self
                .s
                .endpoints
                .get(msg.hook as usize)
                .is_none_or(|e| *e == Endpoint::Healthy);
            if always_healthy {
                self.report.healthy.push(arrived);
                if arrived >= 2.0 {
                    let published = msg.published as f64 / S as f64;
                    self.report.last_late = Some(
                        self.report
                            .last_late
                            .map_or(published, |t| t.max(published)),
                    );
                }
            }
            if self.watch_project == Some(self.project_of(msg.hook) as usize) {
                self.report.watched.push(arrived);
            }
        }
        let lanes = matches!(self.s.design, Design::Lanes { .. });
        let hook = &self.hooks[msg.hook as usize];
        let (healthy_lane, stored_slow) = (Lane::of(hook) == Lane::Fast, hook.slow_since.is_some());
        let retries = hook.retry_policy == RetryPolicy::Standard;
        let mut marked = false;
        if lanes && healthy_lane && took >= SLOW_AFTER.as_micros() as u64 {
            marked = true;
            let at = start + SLOW_AFTER.as_micros() as u64;
            self.at(at, Event::State(msg.hook, Change::MarkSlow(at)));
            self.write_item(msg.hook, at);
        }
        let done = start + took;
        let pace = Pace {
            latency: Duration::from_micros(took),
            was_slow: stored_slow || marked,
        };
        let record = decide(
            &self.hooks[msg.hook as usize],
            &outcome,
            pace,
            self.time(done),
            FailureRules::default(),
        );
        self.write_history(msg.hook, msg.shard, done);
        let retry = (retries && matches!(outcome, Outcome::Failed { .. }))
            .then(|| {
                let jitter = self.rng.unit() * 2.0 - 1.0;
                retry_delay(&STANDARD_SCHEDULE, msg.attempt, jitter, None)
            })
            .flatten()
            .map(|wait| {
                let retry = Msg {
                    attempt: msg.attempt + 1,
                    not_before: Some(done + wait.as_micros() as u64),
                    ..msg
                };
                (retry, wait)
            });
        Posted {
            hook: msg.hook,
            done,
            record,
            retry,
        }
    }

    /// Before: each POST writes its record and queues its retry itself.
    fn settle_one(&mut self, posted: Posted) -> u64 {
        let l = self.s.latencies;
        let mut end = posted.done;
        if let Some(kind) = kind_of(&posted.record, false) {
            self.at(end, Event::State(posted.hook, Change::Record(kind, end)));
            self.write_item(posted.hook, end);
            end += l.write_us;
        }
        if let Some((retry, wait)) = posted.retry {
            self.report.sqs_requests += 1;
            let delay = wait.min(MAX_QUEUE_DELAY).as_micros() as u64;
            self.enqueue(Lane::Fast, retry, end + l.send_us + delay);
            end += l.send_us;
        }
        end
    }

    /// Now: once the batch's POSTs are done, each webhook's records in the
    /// order its POSTs ended, runs of failures as one write
    /// (`delivery::coalesce`), then the retries.
    fn settle_batch(&mut self, posted: Vec<Posted>, posts_end: u64) -> u64 {
        let l = self.s.latencies;
        let mut by_hook: HashMap<u32, Vec<(u64, Record)>> = HashMap::new();
        let mut retries = Vec::new();
        for post in posted {
            by_hook
                .entry(post.hook)
                .or_default()
                .push((post.done, post.record));
            retries.extend(post.retry);
        }
        let mut writes_end = posts_end;
        for (hook, mut records) in by_hook {
            records.sort_by_key(|(done, _)| *done);
            let mut at = posts_end;
            for record in coalesce(records.into_iter().map(|(_, record)| record)) {
                if let Some(kind) = kind_of(&record, true) {
                    at += l.write_us;
                    self.at(at, Event::State(hook, Change::Record(kind, at)));
                    self.write_item(hook, at);
                }
            }
            writes_end = writes_end.max(at);
        }
        if retries.is_empty() {
            return writes_end;
        }
        let sent = writes_end + l.send_us;
        for (retry, wait) in retries {
            self.report.sqs_requests += 1;
            let (lane, delay) = retry_route(wait);
            self.enqueue(lane, retry, sent + delay.as_micros() as u64);
        }
        sent
    }

    fn apply(&mut self, hook: u32, change: Change) {
        let at = |us| self.base.after(Duration::from_micros(us));
        let (webhook_at, change) = match change {
            Change::Record(kind, t) => (at(t), Some(kind)),
            Change::MarkSlow(t) => (at(t), None),
        };
        let hook = &mut self.hooks[hook as usize];
        match change {
            None | Some(RecordKind::Slow) => {
                hook.slow_since.get_or_insert(webhook_at);
            }
            Some(RecordKind::Failure(count)) => {
                hook.failing_since.get_or_insert(webhook_at);
                hook.failure_count += u64::from(count);
            }
            Some(RecordKind::Recovered { slow }) => {
                hook.failing_since = None;
                hook.failure_count = 0;
                hook.slow_since = if slow {
                    Some(hook.slow_since.unwrap_or(webhook_at))
                } else {
                    None
                };
            }
        }
    }

    fn write_item(&mut self, hook: u32, at: u64) {
        self.report.write_units += 1;
        let busiest = bump(&mut self.item_writes, hook, at);
        self.report.busiest_webhook_item = self.report.busiest_webhook_item.max(busiest);
    }

    fn write_history(&mut self, hook: u32, shard: u8, at: u64) {
        let key = hook * u32::from(HISTORY_SHARDS) + u32::from(shard);
        let busiest = bump(&mut self.history_writes, key, at);
        self.report.busiest_history_key = self.report.busiest_history_key.max(busiest);
    }
}

/// Counts one unit on `key` in the second of `at`; answers that second's
/// count so far.
fn bump(counts: &mut HashMap<u32, (u64, u64)>, key: u32, at: u64) -> u64 {
    let second = at / S;
    let entry = counts.entry(key).or_insert((second, 0));
    if entry.0 != second {
        *entry = (second, 0);
    }
    entry.1 += 1;
    entry.1
}

/// Runs `scenario`; `watch_project`'s first attempts are reported apart.
pub fn run(scenario: &Scenario, watch_project: Option<usize>) -> Report {
    Model::new(scenario, watch_project).run()
}

/// The slow lane's fairness: one project bursts `burst` deliveries to 100
/// endpoints that never answer (known as failing) while another project's
/// 100 flaky endpoints (half their answers 503: failing, and recovering)
/// receive 5 events per second; `watch` that project.
pub fn fairness(fair: bool, burst: usize, seconds: u64) -> Scenario {
    let mut scenario = Scenario::fleet(Design::Lanes { fair }, seconds, Onset::Steady);
    scenario.webhooks = 200;
    scenario.per_project = 100;
    scenario.endpoints = (0..200)
        .map(|i| {
            if i < 100 {
                Endpoint::BlackHole
            } else {
                Endpoint::Flaky
            }
        })
        .collect();
    scenario.onsets = HashMap::new();
    scenario.traffic_to = Some((100..200).collect());
    scenario.events_per_second = 5.0;
    scenario.bursts = vec![Burst {
        project: 0,
        events: burst,
    }];
    scenario.sample_every_us = 60 * S;
    scenario
}

/// One delivery to an endpoint that keeps answering 503, with
/// `retry_policy: "standard"`, over its whole schedule (3.5 days).
pub fn retried(design: Design) -> Scenario {
    let mut scenario = Scenario::fleet(design, 4 * 86_400, Onset::Steady);
    scenario.webhooks = 1;
    scenario.per_project = 1;
    scenario.endpoints = vec![Endpoint::Failing];
    scenario.onsets = HashMap::new();
    scenario.standard_share = 1.0;
    scenario.events_per_second = 0.0;
    scenario.bursts = vec![Burst {
        project: 0,
        events: 1,
    }];
    scenario.sample_every_us = 86_400 * S;
    scenario
}

/// One webhook receiving `per_second` deliveries for a minute, its endpoint
/// `endpoint` (known as it is); the fast lane sized to keep up (40).
pub fn hot(design: Design, endpoint: Endpoint, per_second: f64) -> Scenario {
    let mut scenario = Scenario::fleet(design, 60, Onset::Steady);
    scenario.webhooks = 1;
    scenario.per_project = 1;
    scenario.endpoints = vec![endpoint];
    scenario.onsets = HashMap::new();
    scenario.events_per_second = per_second;
    scenario.fast.concurrency = 40;
    scenario.sample_every_us = 10 * S;
    scenario
}
