//! Dynamic batching: one queue and one worker thread per model. Concurrent requests' pairs
//! are packed into engine batches under a token budget, taking a few pairs from each waiting
//! request in turn so that a small request is not stuck behind a large one.

use crate::metrics::Metrics;
use crossrank_engine::{CrossEncoder, Encoded, Prediction};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::oneshot;

/// Pairs taken from one request per round-robin turn.
const TURN: usize = 4;

/// The queue is full.
#[derive(Debug)]
pub struct QueueFull {
    /// Requests waiting.
    pub depth: usize,
}

type Reply = Result<Vec<Prediction>, String>;

struct JobState {
    next: usize,
    done: usize,
    results: Vec<Option<Prediction>>,
    reply: Option<oneshot::Sender<Reply>>,
    started: bool,
}

struct Job {
    pairs: Vec<Encoded>,
    enqueued: Instant,
    cancelled: AtomicBool,
    state: Mutex<JobState>,
}

impl Job {
    fn state(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Queue {
    jobs: VecDeque<Arc<Job>>,
    shutdown: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    model: Arc<CrossEncoder>,
    name: String,
    max_batch_tokens: usize,
    max_queue: usize,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
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
    reply: oneshot::Receiver<Reply>,
    finished: bool,
}

impl Ticket {
    /// Waits for the predictions (input order); `Err` carries the engine's message, `None`
    /// means the worker stopped.
    pub async fn wait(mut self) -> Option<Reply> {
        let out = (&mut self.reply).await.ok();
        self.finished = true;
        out
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            self.job.cancelled.store(true, Ordering::Relaxed);
        }
    }
}

impl Batcher {
    /// Starts the worker for `model`.
    pub fn new(
        model: Arc<CrossEncoder>,
        name: &str,
        max_batch_tokens: usize,
        max_queue: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                shutdown: false,
            }),
            wake: Condvar::new(),
            model,
            name: name.to_string(),
            max_batch_tokens: max_batch_tokens.max(1),
            max_queue: max_queue.max(1),
            metrics,
        });
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

    /// Queues a request's tokenised pairs.
    pub fn submit(&self, pairs: Vec<Encoded>) -> Result<Ticket, QueueFull> {
        let (tx, rx) = oneshot::channel();
        let n = pairs.len();
        let job = Arc::new(Job {
            pairs,
            enqueued: Instant::now(),
            cancelled: AtomicBool::new(false),
            state: Mutex::new(JobState {
                next: 0,
                done: 0,
                results: vec![None; n],
                reply: Some(tx),
                started: false,
            }),
        });
        if n == 0 {
            if let Some(tx) = job.state().reply.take() {
                let _ = tx.send(Ok(Vec::new()));
            }
            return Ok(Ticket {
                job,
                reply: rx,
                finished: false,
            });
        }
        let mut q = self.shared.lock();
        if q.jobs.len() >= self.shared.max_queue {
            return Err(QueueFull {
                depth: q.jobs.len(),
            });
        }
        q.jobs.push_back(job.clone());
        self.shared
            .metrics
            .set_queue_depth(&self.shared.name, q.jobs.len());
        drop(q);
        self.shared.wake.notify_one();
        Ok(Ticket {
            job,
            reply: rx,
            finished: false,
        })
    }

    /// Requests waiting now.
    pub fn depth(&self) -> usize {
        self.shared.lock().jobs.len()
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
/// token budget is reached. Returns (job, pair index) in batch order.
fn next_batch(shared: &Shared) -> Option<Vec<(Arc<Job>, usize)>> {
    let mut q = shared.lock();
    loop {
        q.jobs.retain(|j| !j.cancelled.load(Ordering::Relaxed));
        if !q.jobs.is_empty() {
            break;
        }
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
                if !batch.is_empty() && tokens + len > shared.max_batch_tokens {
                    break 'fill;
                }
                if !st.started {
                    st.started = true;
                    shared
                        .metrics
                        .queue_time(&shared.name, job.enqueued.elapsed().as_secs_f64());
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
    shared.metrics.set_queue_depth(&shared.name, q.jobs.len());
    shared.metrics.batch(&shared.name, batch.len(), tokens);
    Some(batch)
}

fn worker(shared: &Shared) {
    while let Some(batch) = next_batch(shared) {
        let refs: Vec<&Encoded> = batch.iter().map(|(j, i)| &j.pairs[*i]).collect();
        match shared.model.predict_encoded(&refs) {
            Ok(preds) => {
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
            Err(e) => {
                for (job, _) in &batch {
                    job.cancelled.store(true, Ordering::Relaxed);
                    if let Some(tx) = job.state().reply.take() {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            }
        }
    }
}
