//! [`Conn`], the connection commands go through (one server's
//! self-reconnecting manager, or our cluster router), how a command is
//! sent over it, and [`in_runtime`], which polls a call inside the
//! connection's own runtime.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use redis::RedisError;
use redis::aio::ConnectionManager;

use super::cluster::ClusterRouter;

/// The connection the commands go through; cloning it is cheap.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterRouter),
}

/// Sends `cmd` over `conn` and reads its reply as `T`.
pub(super) async fn query<T: redis::FromRedisValue>(
    conn: Conn,
    cmd: &redis::Cmd,
) -> Result<T, RedisError> {
    match conn {
        Conn::Single(mut c) => cmd.query_async(&mut c).await,
        Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
    }
}

/// Sends `pipe` over `conn` and reads its replies as `T`.
pub(super) async fn query_pipe<T: redis::FromRedisValue>(
    conn: Conn,
    pipe: &redis::Pipeline,
) -> Result<T, RedisError> {
    match conn {
        Conn::Single(mut c) => pipe.query_async(&mut c).await,
        Conn::Cluster(mut c) => pipe.query_async(&mut c).await,
    }
}

/// Polls `fut` inside `rt`'s context, whichever executor drives it.
pub(super) fn in_runtime<F: Future>(rt: &tokio::runtime::Handle, fut: F) -> InRuntime<'_, F> {
    InRuntime { rt, fut }
}

pin_project_lite::pin_project! {
    /// [`in_runtime`]'s future: a struct, not an `async fn`, so the wrapped
    /// future is held once (an `async fn` keeps an awaited argument twice:
    /// as the argument and as the awaited future, and copies both at every
    /// call).
    pub(super) struct InRuntime<'rt, F> {
        rt: &'rt tokio::runtime::Handle,
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for InRuntime<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = this.rt.enter();
        this.fut.poll(cx)
    }
}
