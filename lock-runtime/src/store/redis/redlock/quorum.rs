//! Redlock's quorums: how many masters must grant a lease, counting what they answered,
//! and the error when fewer than a quorum answered ([`NoQuorum`]).

use super::RedlockStore;
use super::fanout::{Answers, MasterConn};
use crate::error::BoxError;
use crate::store::Kind;

impl RedlockStore {
    pub(super) fn quorum(&self) -> usize {
        self.quorum_for(Kind::Lock)
    }

    /// How many masters must grant a lease of `kind` (see the module doc): a majority,
    /// or for a semaphore of P > 1 permits, `N*P/(P+1) + 1`, so that P + 1 holders
    /// cannot each find that many masters among N that admit P each.
    pub(super) fn quorum_for(&self, kind: Kind) -> usize {
        let n = self.masters.len();
        match kind {
            Kind::Permit { permits } if permits > 1 => {
                let p = permits as usize;
                (n.saturating_mul(p) / (p + 1) + 1).min(n)
            }
            _ => n / 2 + 1,
        }
    }

    /// Sends `op` to every master and waits for every answer; fewer than `quorum`
    /// answers is the store's error.
    pub(super) async fn on_quorum<T, F, Fut>(
        &self,
        quorum: usize,
        op: F,
    ) -> Result<Answers<T>, BoxError>
    where
        T: Send + 'static,
        F: Fn(MasterConn) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'static,
    {
        let answers = self.on_masters(op, |_| false).await;
        if answered(&answers) < quorum {
            return Err(self.no_quorum(&answers, quorum));
        }
        Ok(answers)
    }

    /// The error when fewer than `quorum` masters answered.
    pub(super) fn no_quorum<T>(&self, answers: &Answers<T>, quorum: usize) -> BoxError {
        Box::new(NoQuorum {
            answered: answered(answers),
            masters: self.masters.len(),
            quorum,
            causes: answers
                .iter()
                .filter_map(|a| a.as_ref().err().map(ToString::to_string))
                .collect(),
        })
    }
}

/// Fewer masters answered than a quorum: how many did, of how many, and why the others
/// did not (each naming its master).
#[derive(Debug)]
pub(super) struct NoQuorum {
    pub(super) answered: usize,
    pub(super) masters: usize,
    pub(super) quorum: usize,
    pub(super) causes: Vec<String>,
}

impl std::fmt::Display for NoQuorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "only {} of {} redlock masters answered, and a quorum is {}: {}",
            self.answered,
            self.masters,
            self.quorum,
            self.causes.join("; ")
        )
    }
}

impl std::error::Error for NoQuorum {}

/// How many masters answered.
pub(super) fn answered<T>(answers: &Answers<T>) -> usize {
    answers.iter().filter(|a| a.is_ok()).count()
}

/// How many masters failed to answer.
pub(super) fn failed<T>(answers: &Answers<T>) -> usize {
    answers.len() - answered(answers)
}

/// Ok answers satisfying `pred`.
pub(super) fn count<T>(answers: &Answers<T>, pred: impl Fn(&T) -> bool) -> usize {
    answers
        .iter()
        .filter(|a| a.as_ref().is_ok_and(&pred))
        .count()
}
