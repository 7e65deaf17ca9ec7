//! What every operation of the facade shares: [`Keystore::run`] builds the
//! command, runs it through `Engine::call`, finishes its answer and records
//! the outcome; [`Keystore::recorded`] times and records any operation.

use std::time::Instant;

use futures_util::FutureExt;
use serde::Serialize;

use super::{Keystore, depth};
use crate::command::Call;
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::metrics::{Op, Outcome};
use crate::ttl::Ttl;

/// What an operation's answer says for the metrics.
pub(super) trait Recorded {
    /// The outcome of `op` that answered this.
    fn outcome(&self, _op: Op) -> Outcome {
        Outcome::Ok
    }
}

impl<T> Recorded for Option<T> {
    fn outcome(&self, op: Op) -> Outcome {
        match (op.has_hits(), self.is_some()) {
            (false, _) => Outcome::Ok,
            (true, true) => Outcome::Hit,
            (true, false) => Outcome::Miss,
        }
    }
}

impl Recorded for () {}
impl Recorded for bool {}
impl Recorded for u64 {}
impl<T> Recorded for Vec<T> {}

impl Keystore {
    /// One operation: `build` makes its call (the value's JSON, the TTL
    /// resolved), the engine runs it, `finish` turns the answer into the
    /// caller's, and the outcome is recorded as `op`.
    pub(super) async fn run<K: Call, O: Recorded>(
        &self,
        op: Op,
        build: impl FnOnce() -> Result<K>,
        finish: impl FnOnce(K::Answer) -> Result<O>,
    ) -> Result<O> {
        self.recorded(op, async {
            let answer = finish(self.engine().call(build()?).await?)?;
            let outcome = answer.outcome(op);
            Ok((answer, outcome))
        })
        .await
    }

    /// Runs `work` and records its outcome and latency as `op`, timed from
    /// now. A combinator, not an `async fn`: an `async fn` would hold `work`
    /// (every operation's whole state) twice, and every call copies it.
    pub(super) fn recorded<'e, O>(
        &'e self,
        op: Op,
        work: impl Future<Output = Result<(O, Outcome)>> + 'e,
    ) -> impl Future<Output = Result<O>> + 'e {
        let started = Instant::now();
        work.map(move |result| {
            if let Some(recorder) = self.engine().recorder() {
                let outcome = match &result {
                    Ok((_, outcome)) => *outcome,
                    Err(e) => Outcome::Error(e.kind()),
                };
                recorder.op(op, outcome, started.elapsed());
            }
            result.map(|(answer, _)| answer)
        })
    }

    /// Seconds to store for, `None` for never: `ttl` against the default
    /// TTL, raised to the backend's minimum.
    pub(super) fn resolve_ttl(&self, ttl: Ttl) -> Option<u64> {
        let config = &self.inner.config;
        ttl.resolve(config.default_ttl)
            .map(|t| t.max(config.backend.min_ttl()))
    }
}

/// `value` as JSON text, or an error naming `name`. A value nested deeper
/// than serde_json reads back is refused (see [`depth`]): serializing it
/// would otherwise recurse until the stack overflows.
pub(super) fn encode<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<String> {
    serde_json::to_string(&depth::Limited::new(value)).map_err(|e| {
        KeystoreError::new(
            ErrorKind::Serialization,
            format!("cannot encode the value for key {name:?} as JSON"),
        )
        .with_source(e)
    })
}
