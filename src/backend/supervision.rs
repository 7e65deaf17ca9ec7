//! How a backend generation tells its supervisor it cannot go on serving,
//! without naming the supervisor's type (the imports flow engine → backend).

use actix::WeakRecipient;
use actix::prelude::*;

use crate::error::{ErrorKind, KeystoreError};

/// A backend tells its supervisor it cannot go on serving (a call panicked,
/// its workers or actor stopped); the supervisor starts a new generation.
pub(crate) struct BackendFailed {
    pub generation: u64,
    pub reason: String,
}

impl Message for BackendFailed {
    type Result = ();
}

/// What a backend generation knows of its supervisor: where to report a
/// failure, and which generation it is (a report from an older one is stale).
/// The recipient is weak, so a backend never keeps its supervisor alive.
#[derive(Clone)]
pub(crate) struct Supervision {
    pub sink: WeakRecipient<BackendFailed>,
    pub generation: u64,
}

impl Supervision {
    /// Reports that this generation cannot go on serving.
    pub(crate) fn failed(&self, reason: String) {
        if let Some(s) = self.sink.upgrade() {
            s.do_send(BackendFailed {
                generation: self.generation,
                reason,
            });
        }
    }

    /// A backend call (`what`, on `place`) panicked: logs it, reports it
    /// (the supervisor restarts the backend) and gives the caller's error.
    pub(crate) fn panicked(
        &self,
        payload: &(dyn std::any::Any + Send),
        what: &str,
        place: &str,
    ) -> KeystoreError {
        let why = panic_text(payload);
        tracing::error!("the backend panicked during {what} on {place}: {why}; restarting it");
        self.failed(format!("a call panicked: {why}"));
        KeystoreError::new(
            ErrorKind::Panic,
            format!(
                "{what} on {place} panicked inside the backend ({why}); \
                 the supervisor is restarting it, retry the call"
            ),
        )
    }
}

/// The text of a panic payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic payload".to_owned()
    }
}
