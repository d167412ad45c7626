//! Dynamic batching: one queue and one worker thread per model. Concurrent requests' pairs
//! are packed into engine batches under a token budget, taking a few pairs from each waiting
//! request in turn so that a small request is not stuck behind a large one.
//!
//! Admission is by deadline: the queue measures the model's throughput (tokens per second,
//! an exponential average over batches) and refuses a request whose predicted wait plus
//! service time would exceed `max_queue_ms`, with the time the backlog needs to drain as
//! `Retry-After`. A panic while scoring fails only the requests of that batch; the worker
//! keeps serving, and [`Batcher::health`] reports a worker that died or keeps failing.

use crate::metrics::Metrics;
use crossrank_engine::{CrossEncoder, Encoded, Prediction};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Pairs taken from one request per round-robin turn.
const TURN: usize = 4;
/// Consecutive failed batches after which the model counts as unhealthy.
const FAILING_AFTER: usize = 3;
/// Weight of the newest batch in the throughput average.
const EWMA: f64 = 0.3;

/// What the batching queue runs: scores tokenised pairs, in order.
pub trait BatchScorer: Send + Sync + 'static {
    /// One prediction per pair, in input order.
    fn score_batch(&self, pairs: &[&Encoded]) -> Result<Vec<Prediction>, String>;
    /// Scores a small synthetic batch to measure throughput before the first request; returns
    /// the tokens it scored (0: no warm-up).
    fn warm_up(&self) -> usize {
        0
    }
}

impl BatchScorer for CrossEncoder {
    fn score_batch(&self, pairs: &[&Encoded]) -> Result<Vec<Prediction>, String> {
        self.predict_encoded(pairs).map_err(|e| e.to_string())
    }
    fn warm_up(&self) -> usize {
        // Small on purpose: a large model on CPU should not delay the start by much; the
        // estimate is conservative until real batches refine it.
        let passage = "a reranker reads the query and the passage together ".repeat(8);
        let pairs: Vec<(&str, &str)> = (0..2)
            .map(|_| ("warm up query", passage.as_str()))
            .collect();
        match self.tokenize(&pairs) {
            Ok(enc) => {
                let tokens = enc.iter().map(|e| e.ids.len()).sum();
                match self.predict_encoded(&enc) {
                    Ok(_) => tokens,
                    Err(_) => 0,
                }
            }
            Err(_) => 0,
        }
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// `max_queue` requests are waiting already.
    QueueFull {
        /// Requests waiting.
        depth: usize,
        /// Seconds until the backlog is expected to drain.
        retry_after: u64,
    },
    /// The predicted wait plus service time exceeds `max_queue_ms`.
    TooSlow {
        /// Predicted milliseconds until this request would be answered.
        predicted_ms: u64,
        /// The limit.
        max_queue_ms: u64,
        /// Seconds until the backlog is expected to drain.
        retry_after: u64,
    },
}

/// Why an admitted request failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The scorer returned an error for the batch.
    Engine(String),
    /// The scorer panicked on the batch (the worker survived).
    Panic(String),
}

/// The model's state as `/health` reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// Serving.
    Ok,
    /// The last `n` batches all failed.
    Failing(usize),
    /// The worker thread is gone.
    Dead,
}

type Reply = Result<Vec<Prediction>, Failure>;
/// Pairs of one engine batch: (request, pair index) in batch order.
type Batch = Vec<(Arc<Job>, usize)>;

struct JobState {
    next: usize,
    done: usize,
    results: Vec<Option<Prediction>>,
    reply: Option<SyncSender<Reply>>,
    started: bool,
    /// How long the request waited for its first batch (set when it entered one).
    queued_for: Option<Duration>,
}

struct Job {
    pairs: Vec<Encoded>,
    enqueued: Instant,
    /// Shared with the caller ([`Batcher::submit`]'s `cancel`) and set by a dropped ticket.
    cancelled: Arc<AtomicBool>,
    state: Mutex<JobState>,
}

impl Job {
    fn state(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Tokens of the pairs not yet taken into a batch.
    fn pending_tokens(&self) -> usize {
        let next = self.state().next;
        self.pairs[next.min(self.pairs.len())..]
            .iter()
            .map(|p| p.ids.len())
            .sum()
    }
}

struct Queue {
    jobs: VecDeque<Arc<Job>>,
    shutdown: bool,
    /// Tokens of the batch being scored now.
    in_flight: usize,
    /// Measured tokens per second (None until a batch or the warm-up has run).
    tokens_per_s: Option<f64>,
}

impl Queue {
    fn backlog_tokens(&self) -> usize {
        self.in_flight
            + self
                .jobs
                .iter()
                .filter(|j| !j.cancelled.load(Ordering::Relaxed))
                .map(|j| j.pending_tokens())
                .sum::<usize>()
    }
    fn seconds_for(&self, tokens: usize) -> Option<f64> {
        self.tokens_per_s.map(|r| tokens as f64 / r.max(1e-9))
    }
}

/// Limits of one queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Token budget of one batch.
    pub max_batch_tokens: usize,
    /// Requests waiting before 429.
    pub max_queue: usize,
    /// Predicted wait plus service time above which a request is refused (0: no limit).
    pub max_queue_ms: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    scorer: Arc<dyn BatchScorer>,
    name: String,
    limits: QueueLimits,
    metrics: Arc<Metrics>,
    consecutive_failures: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn publish(&self, q: &Queue) {
        let wait = q.seconds_for(q.backlog_tokens()).unwrap_or(0.0);
        self.metrics.set_queue(
            &self.name,
            q.jobs.len(),
            wait,
            q.tokens_per_s.unwrap_or(0.0),
        );
    }
}

/// A model's batching queue; dropping it lets the worker finish queued work and exit.
pub struct Batcher {
    shared: Arc<Shared>,
    worker: Option<std::thread::JoinHandle<()>>,
}

/// A submitted request. Dropping it before the answer (a timeout, a client gone) cancels the
/// pairs not yet scheduled.
pub struct Ticket {
    job: Arc<Job>,
    reply: Receiver<Reply>,
    finished: bool,
}

/// How a wait on a [`Ticket`] ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// The worker stopped.
    Stopped,
    /// The deadline passed.
    TimedOut,
    /// The request was cancelled (its flag set by the caller).
    Cancelled,
}

/// How often a waiting caller looks at its cancellation flag.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// Reads how long a submitted request waited for its first batch, after its ticket is gone.
pub struct QueueClock(Arc<Job>);

impl QueueClock {
    /// The wait before the request's first pair entered a batch (None: it never did).
    pub fn queued_for(&self) -> Option<Duration> {
        self.0.state().queued_for
    }
}

impl Ticket {
    /// A clock reading this request's queue time once it has been answered.
    pub fn clock(&self) -> QueueClock {
        QueueClock(self.job.clone())
    }

    /// Blocks until the predictions (input order) come, the deadline passes or the request
    /// is cancelled; the last two cancel what is not yet scheduled.
    pub fn wait(mut self, deadline: Option<Instant>) -> Result<Reply, Unanswered> {
        loop {
            let slice = match deadline {
                Some(d) => d
                    .checked_duration_since(Instant::now())
                    .unwrap_or_default()
                    .min(CANCEL_POLL),
                None => CANCEL_POLL,
            };
            match self.reply.recv_timeout(slice) {
                Ok(reply) => {
                    self.finished = true;
                    return Ok(reply);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(if self.job.cancelled.load(Ordering::Relaxed) {
                        Unanswered::Cancelled
                    } else {
                        Unanswered::Stopped
                    })
                }
            }
            if self.job.cancelled.load(Ordering::Relaxed) {
                // A failed batch replies, then marks its requests cancelled.
                if let Ok(reply) = self.reply.try_recv() {
                    self.finished = true;
                    return Ok(reply);
                }
                return Err(Unanswered::Cancelled);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Unanswered::TimedOut);
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            self.job.cancelled.store(true, Ordering::Relaxed);
        }
    }
}

fn retry_after(seconds: f64) -> u64 {
    (seconds.ceil() as u64).clamp(1, 3600)
}

impl Batcher {
    /// Runs the scorer's warm-up (to measure throughput) and starts the worker.
    pub fn new(
        scorer: Arc<dyn BatchScorer>,
        name: &str,
        limits: QueueLimits,
        metrics: Arc<Metrics>,
    ) -> Self {
        let t = Instant::now();
        let warm = catch_unwind(AssertUnwindSafe(|| scorer.warm_up())).unwrap_or(0);
        let tokens_per_s = (warm > 0).then(|| warm as f64 / t.elapsed().as_secs_f64().max(1e-6));
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                shutdown: false,
                in_flight: 0,
                tokens_per_s,
            }),
            wake: Condvar::new(),
            scorer,
            name: name.to_string(),
            limits: QueueLimits {
                max_batch_tokens: limits.max_batch_tokens.max(1),
                max_queue: limits.max_queue.max(1),
                max_queue_ms: limits.max_queue_ms,
            },
            metrics,
            consecutive_failures: AtomicUsize::new(0),
        });
        shared.publish(&shared.lock());
        let s = shared.clone();
        let worker = std::thread::Builder::new()
            .name(format!("batcher-{name}"))
            .spawn(move || worker(&s))
            .expect("spawn batching worker");
        Batcher {
            shared,
            worker: Some(worker),
        }
    }

    /// Queues a request's tokenised pairs, or refuses it (queue full, or the predicted time
    /// to its answer exceeds `max_queue_ms`). Setting `cancel` (or dropping the ticket) drops
    /// the pairs not yet scheduled.
    pub fn submit(
        &self,
        pairs: Vec<Encoded>,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Result<Ticket, Refused> {
        let (tx, rx) = sync_channel(1);
        let n = pairs.len();
        let tokens: usize = pairs.iter().map(|p| p.ids.len()).sum();
        let job = Arc::new(Job {
            pairs,
            enqueued: Instant::now(),
            cancelled: cancel.unwrap_or_default(),
            state: Mutex::new(JobState {
                next: 0,
                done: 0,
                results: vec![None; n],
                reply: Some(tx),
                started: false,
                queued_for: None,
            }),
        });
        let ticket = Ticket {
            job: job.clone(),
            reply: rx,
            finished: false,
        };
        if n == 0 {
            if let Some(tx) = job.state().reply.take() {
                let _ = tx.send(Ok(Vec::new()));
            }
            return Ok(ticket);
        }
        let mut q = self.shared.lock();
        let backlog = q.backlog_tokens();
        let drain = retry_after(q.seconds_for(backlog).unwrap_or(1.0));
        let live = q
            .jobs
            .iter()
            .filter(|j| !j.cancelled.load(Ordering::Relaxed))
            .count();
        if live >= self.shared.limits.max_queue {
            return Err(Refused::QueueFull {
                depth: live,
                retry_after: drain,
            });
        }
        if let Some(refused) = self.too_slow(&q, tokens) {
            return Err(refused);
        }
        q.jobs.push_back(job);
        self.shared.publish(&q);
        drop(q);
        self.shared.wake.notify_one();
        Ok(ticket)
    }

    /// Refuses at once, before any tokenisation, when the backlog alone already exceeds
    /// `max_queue_ms` (then any request would be refused by [`Batcher::submit`]).
    pub fn precheck(&self) -> Result<(), Refused> {
        match self.too_slow(&self.shared.lock(), 0) {
            Some(refused) => Err(refused),
            None => Ok(()),
        }
    }

    /// The deadline rule: refused when (backlog + `tokens`) / throughput exceeds
    /// `max_queue_ms`. A request alone in the queue is always admitted: refusing it would
    /// refuse it forever; request_timeout_ms still bounds it.
    fn too_slow(&self, q: &Queue, tokens: usize) -> Option<Refused> {
        let limit = self.shared.limits.max_queue_ms;
        let backlog = q.backlog_tokens();
        let predicted_ms = (q.seconds_for(backlog.saturating_add(tokens))? * 1e3) as u64;
        (limit > 0 && backlog > 0 && predicted_ms > limit).then(|| Refused::TooSlow {
            predicted_ms,
            max_queue_ms: limit,
            retry_after: retry_after(q.seconds_for(backlog).unwrap_or(1.0)),
        })
    }

    /// Requests waiting now.
    pub fn depth(&self) -> usize {
        self.shared.lock().jobs.len()
    }

    /// Measured throughput in tokens per second, once known.
    pub fn tokens_per_s(&self) -> Option<f64> {
        self.shared.lock().tokens_per_s
    }

    /// Predicted seconds until the current backlog is scored.
    pub fn predicted_wait(&self) -> Duration {
        let q = self.shared.lock();
        Duration::from_secs_f64(q.seconds_for(q.backlog_tokens()).unwrap_or(0.0))
    }

    /// Whether the worker is alive and its recent batches succeed.
    pub fn health(&self) -> Health {
        let shutdown = self.shared.lock().shutdown;
        match &self.worker {
            Some(w) if w.is_finished() && !shutdown => Health::Dead,
            None => Health::Dead,
            _ => match self.shared.consecutive_failures.load(Ordering::Relaxed) {
                n if n >= FAILING_AFTER => Health::Failing(n),
                _ => Health::Ok,
            },
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Takes the next batch: round-robin over waiting requests, `TURN` pairs each, until the
/// token budget is reached. Returns (job, pair index) in batch order and its tokens.
fn next_batch(shared: &Shared) -> Option<(Batch, usize)> {
    let mut q = shared.lock();
    loop {
        q.jobs.retain(|j| {
            let keep = !j.cancelled.load(Ordering::Relaxed);
            if !keep {
                // Nobody waits for it: a waiting caller sees the channel close at once.
                j.state().reply = None;
            }
            keep
        });
        if !q.jobs.is_empty() {
            break;
        }
        shared.publish(&q);
        if q.shutdown {
            return None;
        }
        q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
    }
    let mut batch = Vec::new();
    let mut tokens = 0usize;
    'fill: loop {
        let mut progressed = false;
        for job in q.jobs.iter() {
            let mut st = job.state();
            for _ in 0..TURN {
                if st.next >= job.pairs.len() {
                    break;
                }
                let len = job.pairs[st.next].ids.len();
                if !batch.is_empty() && tokens + len > shared.limits.max_batch_tokens {
                    break 'fill;
                }
                if !st.started {
                    st.started = true;
                    let waited = job.enqueued.elapsed();
                    st.queued_for = Some(waited);
                    shared
                        .metrics
                        .queue_time(&shared.name, waited.as_secs_f64());
                }
                batch.push((job.clone(), st.next));
                st.next += 1;
                tokens += len;
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    q.jobs.retain(|j| j.state().next < j.pairs.len());
    // The next batch starts with the next request, so one whose turn filled the budget does
    // not go first every time.
    if q.jobs.len() > 1 {
        q.jobs.rotate_left(1);
    }
    q.in_flight = tokens;
    shared.publish(&q);
    shared.metrics.batch(&shared.name, batch.len(), tokens);
    Some((batch, tokens))
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn fail(batch: &Batch, failure: Failure) {
    for (job, _) in batch {
        if let Some(tx) = job.state().reply.take() {
            let _ = tx.send(Err(failure.clone()));
        }
        // The rest of a failed request is not scheduled.
        job.cancelled.store(true, Ordering::Relaxed);
    }
}

fn worker(shared: &Shared) {
    while let Some((batch, tokens)) = next_batch(shared) {
        let refs: Vec<&Encoded> = batch.iter().map(|(j, i)| &j.pairs[*i]).collect();
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| shared.scorer.score_batch(&refs)));
        let seconds = t.elapsed().as_secs_f64();
        {
            let mut q = shared.lock();
            q.in_flight = 0;
            if matches!(outcome, Ok(Ok(_))) && seconds > 0.0 {
                let rate = tokens as f64 / seconds;
                q.tokens_per_s = Some(match q.tokens_per_s {
                    Some(r) => (1.0 - EWMA) * r + EWMA * rate,
                    None => rate,
                });
            }
            shared.publish(&q);
        }
        match outcome {
            Ok(Ok(preds)) if preds.len() == batch.len() => {
                shared.consecutive_failures.store(0, Ordering::Relaxed);
                for ((job, i), p) in batch.iter().zip(preds) {
                    let mut st = job.state();
                    st.results[*i] = Some(p);
                    st.done += 1;
                    if st.done == job.pairs.len() {
                        if let Some(tx) = st.reply.take() {
                            let results = std::mem::take(&mut st.results)
                                .into_iter()
                                .flatten()
                                .collect();
                            let _ = tx.send(Ok(results));
                        }
                    }
                }
            }
            Ok(Ok(preds)) => {
                shared.consecutive_failures.fetch_add(1, Ordering::Relaxed);
                fail(
                    &batch,
                    Failure::Engine(format!(
                        "the engine returned {} predictions for {} pairs",
                        preds.len(),
                        batch.len()
                    )),
                );
            }
            Ok(Err(e)) => {
                shared.consecutive_failures.fetch_add(1, Ordering::Relaxed);
                shared.metrics.failed_batch(&shared.name, "error");
                fail(&batch, Failure::Engine(e));
            }
            Err(p) => {
                shared.consecutive_failures.fetch_add(1, Ordering::Relaxed);
                shared.metrics.failed_batch(&shared.name, "panic");
                let msg = panic_message(p.as_ref());
                eprintln!(
                    "crossrank: model {} panicked on a batch: {msg}",
                    shared.name
                );
                fail(&batch, Failure::Panic(msg));
            }
        }
    }
}

#[cfg(test)]
mod tests;
