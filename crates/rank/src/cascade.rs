//! Cascades: a fast reranker scores every candidate, a precise one rescores the best K of
//! them (more stages allowed), within one request and, optionally, a latency budget.
//!
//! A spec reads `cascade:FIRST>SECOND@K[>THIRD@K2...]`: each stage is a model spec (what
//! `--model` or a served model name accepts) and `@K` how many of the previous stage's best
//! it rescores. The ranking is the last stage's order over the documents it read, then the
//! documents only earlier stages read, in their order. So that every consumer that sorts by
//! score (thresholds, fusion, evaluation) sees that order, a document a later stage did not
//! read is placed below every one it did, as Vespa's phased ranking does: its logit is shifted
//! down just under the lowest later logit (its probability follows) when it would otherwise
//! be above it. Each stage's own score of each document is in the [`CascadeReport`].

use crate::{sort_ranked, RankError, Ranked, Reranker, ScoreKind, ScoreOptions, Scored};
use std::sync::Arc;
use std::time::Instant;

/// Gap kept between the lowest logit of a later stage and the highest shifted earlier one.
const GAP: f32 = 1e-3;

/// The parts of a cascade spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadeSpec {
    /// The first stage's model spec (it scores every candidate).
    pub first: String,
    /// Later stages: model spec and how many of the previous stage's best it rescores.
    pub then: Vec<(String, usize)>,
}

/// Whether `spec` names a cascade (`cascade:...`).
pub fn is_cascade_spec(spec: &str) -> bool {
    spec.starts_with("cascade:")
}

impl CascadeSpec {
    /// Parses `cascade:FIRST>SECOND@K[>THIRD@K2...]`; K at least 1 and not growing from one
    /// stage to the next (a stage cannot rescore documents the previous one did not read).
    pub fn parse(spec: &str) -> Result<CascadeSpec, RankError> {
        let bad = |why: String| {
            RankError::Unsupported(format!(
                "cascade spec {spec:?}: {why}; the form is cascade:FIRST>SECOND@K[>THIRD@K...]"
            ))
        };
        let body = spec
            .strip_prefix("cascade:")
            .ok_or_else(|| bad("it does not start with cascade:".into()))?;
        let mut parts = body.split('>');
        let first = parts.next().unwrap_or_default().trim();
        if first.is_empty() {
            return Err(bad("the first stage is empty".into()));
        }
        let mut then = Vec::new();
        for part in parts {
            let (model, k) = part
                .trim()
                .rsplit_once('@')
                .ok_or_else(|| bad(format!("stage {part:?} has no @K")))?;
            let k: usize = k
                .parse()
                .ok()
                .filter(|&k| k >= 1)
                .ok_or_else(|| bad(format!("@{k} is not a count >= 1")))?;
            if model.trim().is_empty() {
                return Err(bad(format!("stage {part:?} names no model")));
            }
            if let Some(&(_, prev)) = then.last() {
                if k > prev {
                    return Err(bad(format!(
                        "@{k} rescores more documents than the previous stage's @{prev} read"
                    )));
                }
            }
            then.push((model.trim().to_string(), k));
        }
        if then.is_empty() {
            return Err(bad("it has one stage".into()));
        }
        if then.len() > 7 {
            return Err(bad("more than 8 stages".into()));
        }
        Ok(CascadeSpec {
            first: first.to_string(),
            then,
        })
    }

    /// Every stage's model spec, first stage first.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.first.as_str()).chain(self.then.iter().map(|(m, _)| m.as_str()))
    }
}

/// What one stage of a cascade did in one request.
#[derive(Debug, Clone, PartialEq)]
pub struct StageReport {
    /// The stage's reranker name.
    pub model: String,
    /// Documents it was to read (all for the first stage, then at most its K).
    pub documents: usize,
    /// Whether it ran; false when the budget had run out before it finished.
    pub ran: bool,
    /// Milliseconds it took (or was given before it was cut).
    pub ms: f64,
}

/// How a cascade answered one request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CascadeReport {
    /// One per stage, first first.
    pub stages: Vec<StageReport>,
    /// Index of the last stage that finished: the ranking is its ranking.
    pub final_stage: usize,
    /// Each document's score (a probability) from each stage that read it, input order.
    pub scores: Vec<Vec<f32>>,
}

/// A cascade of rerankers (see the module documentation).
pub struct Cascade {
    first: Arc<dyn Reranker>,
    then: Vec<(Arc<dyn Reranker>, usize)>,
    name: Option<String>,
}

impl Cascade {
    /// A cascade of `first`, then each `(reranker, K)` rescoring the previous stage's best K.
    pub fn new(
        first: Arc<dyn Reranker>,
        then: Vec<(Arc<dyn Reranker>, usize)>,
    ) -> Result<Self, RankError> {
        if then.is_empty() || then.iter().any(|&(_, k)| k == 0) {
            return Err(RankError::Unsupported(
                "a cascade needs a second stage and each K at least 1".into(),
            ));
        }
        Ok(Cascade {
            first,
            then,
            name: None,
        })
    }

    /// Reports itself under this name (the spec it was made from) instead of one built from
    /// its stages' names.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The same stages with the last stage's K replaced (an evaluation's sweep).
    pub fn with_last_k(&self, k: usize) -> Result<Self, RankError> {
        let mut then = self.then.clone();
        if let Some(last) = then.last_mut() {
            last.1 = k;
        }
        let c = Cascade::new(self.first.clone(), then)?;
        Ok(match &self.name {
            Some(n) => c.with_name(match n.rsplit_once('@') {
                Some((head, _)) => format!("{head}@{k}"),
                None => n.clone(),
            }),
            None => c,
        })
    }

    /// The stages' rerankers, first first.
    pub fn stages(&self) -> Vec<&Arc<dyn Reranker>> {
        std::iter::once(&self.first)
            .chain(self.then.iter().map(|(r, _)| r))
            .collect()
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Reranker for Cascade {
    fn name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let mut s = format!("cascade:{}", self.first.name());
        for (r, k) in &self.then {
            s.push_str(&format!(">{}@{k}", r.name()));
        }
        s
    }

    fn score_kind(&self) -> ScoreKind {
        self.then
            .last()
            .map_or(ScoreKind::Probability, |(r, _)| r.score_kind())
    }

    fn score_detailed(
        &self,
        query: &str,
        documents: &[&str],
        opts: &ScoreOptions,
    ) -> Result<Scored, RankError> {
        let t = Instant::now();
        let first = self.first.score_detailed(query, documents, opts)?;
        if first.ranked.len() != documents.len() {
            return Err(RankError::Internal(format!(
                "stage 1 scored {} of {} documents",
                first.ranked.len(),
                documents.len()
            )));
        }
        let mut ranked = first.ranked;
        let mut tokens = first.tokens;
        let mut timings = first.timings;
        let mut report = CascadeReport {
            stages: vec![StageReport {
                model: self.first.name(),
                documents: documents.len(),
                ran: true,
                ms: t.elapsed().as_secs_f64() * 1e3,
            }],
            final_stage: 0,
            scores: ranked.iter().map(|r| vec![r.score]).collect(),
        };
        // Current order: input positions, best first.
        let mut order = ranked.clone();
        sort_ranked(&mut order);
        let mut order: Vec<usize> = order.iter().map(|r| r.index).collect();
        let mut cut = false;
        for (stage, (reranker, k)) in self.then.iter().enumerate() {
            let top: Vec<usize> = order.iter().take(*k).copied().collect();
            let mut stage_report = StageReport {
                model: reranker.name(),
                documents: top.len(),
                ran: false,
                ms: 0.0,
            };
            if cut || opts.budget.is_some_and(|b| Instant::now() >= b) {
                cut = true;
                report.stages.push(stage_report);
                continue;
            }
            let t = Instant::now();
            let sub: Vec<&str> = top.iter().map(|&i| documents[i]).collect();
            let mut sub_opts = opts.clone();
            sub_opts.deadline = match (opts.deadline, opts.budget) {
                (Some(d), Some(b)) => Some(d.min(b)),
                (d, b) => d.or(b),
            };
            let scored = match reranker.score_detailed(query, &sub, &sub_opts) {
                Ok(s) => s,
                // Not finished within the budget: the ranking so far is the answer.
                Err(RankError::Unavailable(_) | RankError::Overloaded { .. })
                    if opts.budget.is_some() =>
                {
                    cut = true;
                    stage_report.ms = t.elapsed().as_secs_f64() * 1e3;
                    report.stages.push(stage_report);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if scored.ranked.len() != top.len() {
                return Err(RankError::Internal(format!(
                    "stage {} scored {} of {} documents",
                    stage + 2,
                    scored.ranked.len(),
                    top.len()
                )));
            }
            tokens += scored.tokens;
            timings = match (timings, scored.timings) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            stage_report.ran = true;
            stage_report.ms = t.elapsed().as_secs_f64() * 1e3;
            report.stages.push(stage_report);
            report.final_stage = stage + 1;
            // The rescored documents take this stage's scores and order ...
            let mut sub_ranked = scored.ranked;
            for r in &mut sub_ranked {
                let i = top[r.index];
                report.scores[i].push(r.score);
                ranked[i] = Ranked {
                    index: i,
                    score: r.score,
                    logit: r.logit,
                };
                r.index = i;
            }
            sort_ranked(&mut sub_ranked);
            // ... and the rest stay below them, in their order.
            let rest = &order[top.len().min(order.len())..];
            let lowest = sub_ranked
                .iter()
                .map(|r| r.logit)
                .fold(f32::INFINITY, f32::min);
            let highest_rest = rest
                .iter()
                .map(|&i| ranked[i].logit)
                .fold(f32::NEG_INFINITY, f32::max);
            if highest_rest > lowest - GAP {
                let shift = lowest - GAP - highest_rest;
                for &i in rest {
                    let r = &mut ranked[i];
                    r.logit += shift;
                    r.score = sigmoid(r.logit);
                }
            }
            order = sub_ranked
                .iter()
                .map(|r| r.index)
                .chain(rest.iter().copied())
                .collect();
        }
        Ok(Scored {
            ranked,
            tokens,
            cascade: Some(report),
            timings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        let s = CascadeSpec::parse("cascade:fast>precise@20").unwrap();
        assert_eq!(s.first, "fast");
        assert_eq!(s.then, vec![("precise".to_string(), 20)]);
        let s = CascadeSpec::parse("cascade:a > tei:http://u@h:80/x@50 > c@5").unwrap();
        assert_eq!(
            s.models().collect::<Vec<_>>(),
            vec!["a", "tei:http://u@h:80/x", "c"]
        );
        assert_eq!(s.then[0].1, 50);
        for (bad, why) in [
            ("cascade:fast", "one stage"),
            ("cascade:>b@3", "first stage is empty"),
            ("cascade:a>b", "has no @K"),
            ("cascade:a>b@0", "not a count"),
            ("cascade:a>b@x", "not a count"),
            ("cascade:a>@4", "names no model"),
            ("cascade:a>b@5>c@9", "more documents than"),
        ] {
            let e = CascadeSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    /// A stand-in stage: logit = `sign` x the document's length; with `wait`, it waits for its
    /// deadline and answers Unavailable, as a queued model past its deadline does.
    struct ByLength {
        sign: f32,
        wait: bool,
    }

    impl Reranker for ByLength {
        fn name(&self) -> String {
            format!("len{}", self.sign)
        }
        fn score_detailed(
            &self,
            _query: &str,
            documents: &[&str],
            opts: &ScoreOptions,
        ) -> Result<Scored, RankError> {
            if self.wait {
                if let Some(d) = opts.deadline {
                    std::thread::sleep(d.saturating_duration_since(Instant::now()));
                }
                return Err(RankError::Unavailable("deadline".into()));
            }
            let ranked = documents
                .iter()
                .enumerate()
                .map(|(index, d)| {
                    let logit = self.sign * d.len() as f32;
                    Ranked {
                        index,
                        score: sigmoid(logit),
                        logit,
                    }
                })
                .collect();
            Ok(Scored {
                ranked,
                tokens: documents.len(),
                cascade: None,
                timings: None,
            })
        }
    }

    fn stage(sign: f32) -> Arc<dyn Reranker> {
        Arc::new(ByLength { sign, wait: false })
    }

    fn order(s: &Scored) -> Vec<usize> {
        let mut r = s.ranked.clone();
        sort_ranked(&mut r);
        r.iter().map(|r| r.index).collect()
    }

    #[test]
    fn the_second_stage_reorders_the_best_k_and_the_rest_stays_below() {
        // Stage 1 prefers long documents, stage 2 short ones; stage 2 reads the best 3.
        let docs = ["aaaa", "a", "aaaaaa", "aa", "aaaaa", "aaa"];
        let c = Cascade::new(stage(1.0), vec![(stage(-1.0), 3)]).unwrap();
        let s = c
            .score_detailed("q", &docs, &ScoreOptions::default())
            .unwrap();
        // Stage 1: 6, 5, 4, 3, 2, 1 letters = docs 2, 4, 0, 5, 3, 1. Stage 2 rereads 2, 4, 0
        // and prefers the shortest: 0, 4, 2; then 5, 3, 1 as stage 1 had them.
        assert_eq!(order(&s), vec![0, 4, 2, 5, 3, 1]);
        let report = s.cascade.as_ref().unwrap();
        assert_eq!(report.final_stage, 1);
        assert_eq!(report.stages[1].documents, 3);
        assert!(report.stages.iter().all(|s| s.ran));
        assert_eq!(report.scores[0], vec![sigmoid(4.0), sigmoid(-4.0)]);
        assert_eq!(report.scores[5], vec![sigmoid(3.0)]);
        // Rescored documents carry stage 2's scores; the rest sit just under the lowest.
        assert_eq!(s.ranked[2].logit, -6.0);
        assert!(s.ranked[5].logit < -6.0 && s.ranked[5].logit > -6.01);
        assert!((s.ranked[5].score - sigmoid(s.ranked[5].logit)).abs() < 1e-9);
        assert_eq!(s.tokens, 6 + 3);
        assert_eq!(c.name(), "cascade:len1>len-1@3");
    }

    #[test]
    fn a_third_stage_reads_the_second_stages_best() {
        let docs = ["aaaa", "a", "aaaaaa", "aa", "aaaaa", "aaa"];
        let c = Cascade::new(stage(1.0), vec![(stage(-1.0), 4), (stage(1.0), 2)]).unwrap();
        let s = c
            .score_detailed("q", &docs, &ScoreOptions::default())
            .unwrap();
        // Stage 2 reads 2, 4, 0, 5 -> 5, 0, 4, 2; stage 3 reads 5, 0 -> 0, 5.
        assert_eq!(order(&s), vec![0, 5, 4, 2, 3, 1]);
        assert_eq!(s.cascade.unwrap().final_stage, 2);
    }

    #[test]
    fn a_budget_that_runs_out_answers_with_the_earlier_ranking() {
        let docs = ["aaaa", "a", "aaaaaa"];
        let slow = Arc::new(ByLength {
            sign: -1.0,
            wait: true,
        });
        let c = Cascade::new(stage(1.0), vec![(slow, 2)]).unwrap();
        let opts = ScoreOptions {
            budget: Some(Instant::now() + std::time::Duration::from_millis(30)),
            ..Default::default()
        };
        let s = c.score_detailed("q", &docs, &opts).unwrap();
        assert_eq!(order(&s), vec![2, 0, 1]);
        let report = s.cascade.unwrap();
        assert_eq!(report.final_stage, 0);
        assert!(!report.stages[1].ran);
        assert!(report.stages[1].ms >= 25.0, "{report:?}");
        // Without a budget the stage's failure is the request's.
        let e = c.score_detailed("q", &docs, &ScoreOptions::default());
        assert!(matches!(e, Err(RankError::Unavailable(_))));
        // A budget already spent skips the stage.
        let spent = ScoreOptions {
            budget: Some(Instant::now()),
            ..Default::default()
        };
        let s = c.score_detailed("q", &docs, &spent).unwrap();
        assert_eq!(s.cascade.unwrap().stages[1].ms, 0.0);
    }
}
