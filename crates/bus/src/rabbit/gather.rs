//! Gathers the store work of many deliveries into one statement.
//!
//! Each delivery a consumer handles needs two small store operations around its handler:
//! the look-up of its row (is its claim token still current?) and, once handled, the
//! removal of that row. Done one delivery at a time, that is two round trips and two
//! transactions per message. A [`Gatherer`] runs one operation for everything that is
//! waiting whenever it is free: with one delivery in flight it adds nothing, and under load
//! the batches grow by themselves (group commit), so the store sees a few statements per
//! burst instead of two per message.

use std::future::Future;
use tokio::sync::{mpsc, oneshot};

type Request<Q, A> = (Q, oneshot::Sender<A>);

/// A queue of requests served in batches by one task.
pub struct Gatherer<Q, A> {
    requests: mpsc::UnboundedSender<Request<Q, A>>,
}

impl<Q, A> Clone for Gatherer<Q, A> {
    fn clone(&self) -> Self {
        Gatherer { requests: self.requests.clone() }
    }
}

impl<Q: Send + 'static, A: Send + 'static> Gatherer<Q, A> {
    /// Starts the task that serves the requests: `run` gets up to `limit` requests at a
    /// time and answers each, in order. The task ends when every handle is dropped.
    pub fn spawn<F, Fut>(limit: usize, run: F) -> Gatherer<Q, A>
    where
        F: Fn(Vec<Q>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<A>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Request<Q, A>>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < limit.max(1) {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (questions, replies): (Vec<Q>, Vec<oneshot::Sender<A>>) = batch.into_iter().unzip();
                let answers = run(questions).await;
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // A caller that went away (its task was cancelled) needs no answer.
                    let _ = reply.send(answer);
                }
            }
        });
        Gatherer { requests: tx }
    }

    /// Asks and waits for the answer; `None` when the serving task is gone (or `run`
    /// answered fewer requests than it got, which it must not).
    pub async fn ask(&self, question: Q) -> Option<A> {
        let (reply, answer) = oneshot::channel();
        self.requests.send((question, reply)).ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_requests_share_batches_and_each_gets_its_own_answer() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let doubler = Gatherer::spawn(64, move |xs: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::task::yield_now().await;
                xs.into_iter().map(|x| x * 2).collect::<Vec<_>>()
            }
        });
        let asks: Vec<_> = (0..200u32)
            .map(|i| {
                let d = doubler.clone();
                tokio::spawn(async move { (i, d.ask(i).await) })
            })
            .collect();
        for task in asks {
            let (i, answer) = task.await.expect("task");
            assert_eq!(answer, Some(i * 2));
        }
        let batches = calls.load(Ordering::SeqCst);
        assert!(batches < 200, "200 requests in {batches} batches");
    }

    #[tokio::test]
    async fn a_short_answer_list_leaves_the_rest_without_an_answer() {
        let g = Gatherer::spawn(8, |_: Vec<u32>| async { Vec::<u32>::new() });
        assert_eq!(g.ask(1).await, None);
    }
}
