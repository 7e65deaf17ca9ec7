//! [`Backplane`]: the actor that holds the pub/sub subscription through
//! which instances tell each other which names changed.
//!
//! A subscribed connection can do nothing but receive, so it is a connection
//! of its own (redis-rs's `aio::PubSub`), never the one commands share. The
//! actor keeps it up: it subscribes through the first node that answers (the
//! server, or any seed node of a cluster, where a plain `PUBLISH` reaches
//! the subscribers of every node), pings it every second, and when the
//! connection ends or a ping goes unanswered it says so and connects again,
//! with a growing pause (100 ms to 2 s) while nothing answers.
//!
//! What a message means is not its business: it hands the payload to its
//! [`Invalidations`] sink, and tells the sink when the subscription is made
//! (after which the sink drops everything, since messages may have been
//! missed while it was down) and when it is lost.
//!
//! It stops when its owner (the supervisor) drops the stop sender:
//! ownership, not a flag. A panic inside is caught and the loop starts over
//! after a pause, so the subscription outlives a bug in one message.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::oneshot;

use super::RedisTarget;

/// How often an idle subscription is pinged.
const PING_EVERY: Duration = Duration::from_secs(1);
/// The first pause between failed connection attempts.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between failed connection attempts.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Where the backplane's news goes (the in-process tier).
pub(crate) trait Invalidations: Send + Sync + 'static {
    /// A message arrived on the channel.
    fn received(&self, payload: &[u8]);
    /// The subscription was made (first time or again): messages may have
    /// been missed before it.
    fn subscribed(&self);
    /// The subscription was lost.
    fn lost(&self);
}

/// The actor that owns the subscription (see the module docs).
pub(crate) struct Backplane {
    target: Arc<RedisTarget>,
    channel: String,
    sink: Arc<dyn Invalidations>,
    /// Taken by the loop when the actor starts; resolves when the owner
    /// drops its sender.
    stop: Option<oneshot::Receiver<()>>,
}

impl Backplane {
    /// A backplane on `channel` of `target`, feeding `sink`, and the sender
    /// whose drop stops it.
    pub(crate) fn new(
        target: Arc<RedisTarget>,
        channel: String,
        sink: Arc<dyn Invalidations>,
    ) -> (Backplane, oneshot::Sender<()>) {
        let (tx, rx) = oneshot::channel();
        let bp = Backplane {
            target,
            channel,
            sink,
            stop: Some(rx),
        };
        (bp, tx)
    }
}

impl Actor for Backplane {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(mut stop) = self.stop.take() else {
            return;
        };
        let (target, channel, sink) =
            (self.target.clone(), self.channel.clone(), self.sink.clone());
        let run = async move {
            loop {
                let subscribed =
                    AssertUnwindSafe(subscribe_loop(&target, &channel, &*sink)).catch_unwind();
                tokio::select! {
                    _ = &mut stop => break,
                    r = subscribed => {
                        sink.lost();
                        if let Err(payload) = r {
                            tracing::error!(
                                "the backplane on {} panicked ({}); subscribing again",
                                target.address(),
                                crate::backend::panic_text(payload.as_ref())
                            );
                        }
                    }
                }
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(FIRST_PAUSE) => {}
                }
            }
        };
        ctx.spawn(run.into_actor(self).map(|(), _act, ctx| ctx.stop()));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.sink.lost();
    }
}

/// Connects, subscribes and delivers messages until the subscription is
/// lost; returns only then (it never gives up connecting).
async fn subscribe_loop(target: &RedisTarget, channel: &str, sink: &dyn Invalidations) {
    let mut pause = FIRST_PAUSE;
    let mut next = 0;
    loop {
        let (address, client) = &target.subscribers[next % target.subscribers.len()];
        next += 1;
        let connected = tokio::time::timeout(target.connect_timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let pubsub = match connected {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::debug!("backplane: cannot subscribe to {channel:?} on {address}: {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
                continue;
            }
            Err(_) => {
                tracing::debug!("backplane: subscribing on {address} timed out");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
                continue;
            }
        };
        tracing::debug!("backplane: subscribed to {channel:?} on {address}");
        sink.subscribed();
        let (mut control, mut messages) = pubsub.split();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                msg = messages.next() => match msg {
                    Some(m) => sink.received(m.get_payload_bytes()),
                    None => break,
                },
                _ = ping.tick() => {
                    let answered = tokio::time::timeout(
                        target.response_timeout.min(PING_EVERY * 2),
                        control.ping::<redis::Value>(),
                    )
                    .await;
                    if !matches!(answered, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        tracing::debug!("backplane: the subscription on {address} was lost");
        return;
    }
}
