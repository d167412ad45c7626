//! The batching queue on a fake scorer: order, fairness, cancellation, error fan-out, panic
//! isolation, health and deadline admission.

use super::*;

/// Scores a pair as its first token id; sleeps `micros_per_token` per token; fails on token
/// 999 and panics on token 666. Records every batch it saw (first ids).
struct Fake {
    micros_per_token: u64,
    warm_tokens: usize,
    seen: Mutex<Vec<Vec<u32>>>,
}

impl Fake {
    fn new(micros_per_token: u64) -> Arc<Self> {
        Arc::new(Fake {
            micros_per_token,
            warm_tokens: 0,
            seen: Mutex::new(Vec::new()),
        })
    }
    fn scored(&self) -> usize {
        self.seen.lock().unwrap().iter().map(Vec::len).sum()
    }
}

impl BatchScorer for Fake {
    fn score_batch(&self, pairs: &[&Encoded]) -> Result<Vec<Prediction>, String> {
        let tokens: usize = pairs.iter().map(|p| p.ids.len()).sum();
        std::thread::sleep(Duration::from_micros(self.micros_per_token * tokens as u64));
        self.seen
            .lock()
            .unwrap()
            .push(pairs.iter().map(|p| p.ids[0]).collect());
        if pairs.iter().any(|p| p.ids[0] == 666) {
            panic!("fake scorer panicked");
        }
        if pairs.iter().any(|p| p.ids[0] == 999) {
            return Err("fake engine error".into());
        }
        Ok(pairs
            .iter()
            .map(|p| Prediction {
                score: p.ids[0] as f32,
                logits: vec![p.ids[0] as f32],
            })
            .collect())
    }
    fn warm_up(&self) -> usize {
        if self.warm_tokens > 0 {
            std::thread::sleep(Duration::from_micros(
                self.micros_per_token * self.warm_tokens as u64,
            ));
        }
        self.warm_tokens
    }
}

fn pair(first: u32, len: usize) -> Encoded {
    let mut ids = vec![first];
    ids.resize(len.max(1), 7);
    Encoded {
        type_ids: vec![0; ids.len()],
        ids,
    }
}

fn limits(max_batch_tokens: usize, max_queue: usize, max_queue_ms: u64) -> QueueLimits {
    QueueLimits {
        max_batch_tokens,
        max_queue,
        max_queue_ms,
    }
}

fn batcher(fake: &Arc<Fake>, l: QueueLimits) -> Batcher {
    Batcher::new(fake.clone(), "fake", l, Arc::new(Metrics::default()))
}

fn wait(t: Ticket) -> Option<Reply> {
    t.wait(Some(Instant::now() + Duration::from_secs(60))).ok()
}

fn scores(r: Option<Reply>) -> Vec<f32> {
    r.expect("worker alive")
        .expect("scored")
        .iter()
        .map(|p| p.score)
        .collect()
}

#[test]
fn predictions_come_back_in_input_order() {
    let fake = Fake::new(0);
    let b = batcher(&fake, limits(64, 8, 0));
    let pairs: Vec<Encoded> = (1..=40).map(|i| pair(i, 5)).collect();
    let got = scores(wait(b.submit(pairs, None).unwrap()));
    assert_eq!(got, (1..=40).map(|i| i as f32).collect::<Vec<_>>());
    // 40 pairs of 5 tokens under a 64-token budget: several batches.
    assert!(fake.seen.lock().unwrap().len() >= 4);
}

#[test]
fn a_small_request_is_not_stuck_behind_a_large_one() {
    let fake = Fake::new(200);
    let b = batcher(&fake, limits(40, 8, 0));
    let large = b
        .submit((0..200).map(|_| pair(1, 10)).collect(), None)
        .unwrap();
    let small = b.submit(vec![pair(2, 10), pair(2, 10)], None).unwrap();
    assert_eq!(scores(wait(small)), vec![2.0, 2.0]);
    // When the small request was answered, the large one was far from done.
    assert!(
        fake.scored() < 100,
        "{} pairs scored before the small request finished",
        fake.scored()
    );
    assert_eq!(scores(wait(large)).len(), 200);
}

#[test]
fn a_dropped_ticket_cancels_its_queued_pairs() {
    let fake = Fake::new(500);
    let b = batcher(&fake, limits(20, 8, 0));
    let t = b
        .submit((0..400).map(|_| pair(3, 10)).collect(), None)
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    drop(t);
    // A later request is served, and the cancelled one's remaining pairs never are.
    assert_eq!(
        scores(wait(b.submit(vec![pair(4, 10)], None).unwrap())),
        vec![4.0]
    );
    let cancelled_scored = fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .filter(|&&id| id == 3)
        .count();
    assert!(cancelled_scored < 40, "{cancelled_scored} of 400 scored");
}

#[test]
fn an_engine_error_fails_the_batch_and_the_queue_goes_on() {
    let fake = Fake::new(0);
    let b = batcher(&fake, limits(1000, 8, 0));
    let bad = wait(b.submit(vec![pair(5, 4), pair(999, 4)], None).unwrap());
    assert_eq!(
        bad.unwrap().unwrap_err(),
        Failure::Engine("fake engine error".into())
    );
    assert_eq!(
        scores(wait(b.submit(vec![pair(6, 4)], None).unwrap())),
        vec![6.0]
    );
    assert_eq!(b.health(), Health::Ok);
}

#[test]
fn a_panic_fails_only_its_batch_and_repeated_panics_make_the_model_unhealthy() {
    let fake = Fake::new(0);
    let b = batcher(&fake, limits(1000, 8, 0));
    match wait(b.submit(vec![pair(666, 4)], None).unwrap()) {
        Some(Err(Failure::Panic(m))) => assert!(m.contains("fake scorer panicked"), "{m}"),
        other => panic!("expected a panic failure, got {other:?}"),
    }
    // The worker survived and serves the next request.
    assert_eq!(
        scores(wait(b.submit(vec![pair(8, 4)], None).unwrap())),
        vec![8.0]
    );
    assert_eq!(b.health(), Health::Ok);
    for _ in 0..FAILING_AFTER {
        let r = wait(b.submit(vec![pair(666, 4)], None).unwrap());
        assert!(matches!(r, Some(Err(Failure::Panic(_)))));
    }
    assert_eq!(b.health(), Health::Failing(FAILING_AFTER));
    // One good batch makes it healthy again.
    assert_eq!(
        scores(wait(b.submit(vec![pair(9, 4)], None).unwrap())),
        vec![9.0]
    );
    assert_eq!(b.health(), Health::Ok);
}

#[test]
fn requests_predicted_to_miss_max_queue_ms_are_refused_with_retry_after() {
    // 100 us per token, so 10,000 tokens/s; the warm-up measures it before any request.
    let fake = Arc::new(Fake {
        micros_per_token: 100,
        warm_tokens: 2_000,
        seen: Mutex::new(Vec::new()),
    });
    let b = batcher(&fake, limits(1_000, 64, 500));
    let rate = b.tokens_per_s().expect("warm-up measured the throughput");
    assert!(rate > 2_000.0 && rate < 20_000.0, "{rate} tokens/s");
    // Alone in the queue a request is admitted whatever its size (about 2 s of work here).
    let big = b
        .submit((0..200).map(|_| pair(1, 100)).collect(), None)
        .unwrap();
    // Behind it, even a small request would wait far beyond 500 ms.
    match b.submit(vec![pair(2, 10)], None) {
        Err(Refused::TooSlow {
            predicted_ms,
            max_queue_ms,
            retry_after,
        }) => {
            assert!(predicted_ms > 500, "{predicted_ms}");
            assert_eq!(max_queue_ms, 500);
            assert!((1..=10).contains(&retry_after), "{retry_after}");
        }
        other => panic!("expected TooSlow, got {:?}", other.map(|_| ())),
    }
    assert!(b.predicted_wait() > Duration::from_millis(500));
    // The backlog alone is past the deadline: refused before any tokenisation.
    assert!(matches!(b.precheck(), Err(Refused::TooSlow { .. })));
    drop(big);
    // Cancelled work no longer counts: the queue admits again.
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(b.precheck(), Ok(()));
    assert_eq!(
        scores(wait(b.submit(vec![pair(3, 10)], None).unwrap())),
        vec![3.0]
    );
}

#[test]
fn a_full_queue_refuses_with_its_depth() {
    let fake = Fake::new(1_000);
    let b = batcher(&fake, limits(10, 2, 0));
    let _a = b
        .submit((0..50).map(|_| pair(1, 10)).collect(), None)
        .unwrap();
    let _b = b
        .submit((0..50).map(|_| pair(1, 10)).collect(), None)
        .unwrap();
    let _c = b.submit((0..50).map(|_| pair(1, 10)).collect(), None);
    // The worker may have taken the first job's pairs; at most two jobs are ever waiting.
    let refused = b.submit(vec![pair(2, 10)], None).err();
    assert!(
        matches!(refused, Some(Refused::QueueFull { depth: 2, .. })),
        "{refused:?}"
    );
}

#[test]
fn a_cancel_flag_or_a_deadline_ends_the_wait_and_drops_the_queued_pairs() {
    let fake = Fake::new(500);
    let b = batcher(&fake, limits(20, 8, 0));
    let flag = Arc::new(AtomicBool::new(false));
    let t = b
        .submit((0..400).map(|_| pair(3, 10)).collect(), Some(flag.clone()))
        .unwrap();
    let setter = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            flag.store(true, Ordering::Relaxed);
        })
    };
    let started = Instant::now();
    assert_eq!(t.wait(None).err(), Some(Unanswered::Cancelled));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    setter.join().unwrap();
    // A deadline ends a wait the same way, and cancels what was not scheduled.
    let t = b
        .submit((0..400).map(|_| pair(5, 10)).collect(), None)
        .unwrap();
    let deadline = Instant::now() + Duration::from_millis(40);
    assert_eq!(t.wait(Some(deadline)).err(), Some(Unanswered::TimedOut));
    assert_eq!(
        scores(wait(b.submit(vec![pair(4, 10)], None).unwrap())),
        vec![4.0]
    );
    let seen = fake.seen.lock().unwrap();
    for id in [3, 5] {
        let n = seen.iter().flatten().filter(|&&x| x == id).count();
        assert!(n < 40, "{n} of 400 pairs of a cancelled request scored");
    }
}
