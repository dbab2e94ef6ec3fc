//! MQTT 3.1.1 in-flight limit: at most N PUBLISH packets of a session are processed at once;
//! beyond that the session stops reading (ntex-mqtt 9.0.0's own limiter lets consecutive
//! publishes through, so it is replaced by this one).

use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

use ntex_mqtt::v3;
use ntex_service::{Ctx, Middleware, Service};
use ntex_util::task::LocalWaker;

/// Middleware factory; the number is the per-session limit.
#[derive(Clone, Copy, Debug)]
pub struct InflightLimit(pub u16);

impl<S, AppSt> Middleware<S, v3::Session<AppSt>> for InflightLimit {
    type Service = InflightService<S>;

    fn create(&self, _st: &v3::Session<AppSt>, service: S) -> Self::Service {
        InflightService {
            service,
            counter: Rc::new(Counter {
                max: self.0.max(1),
                current: Cell::new(0),
                waker: LocalWaker::new(),
            }),
        }
    }
}

pub struct InflightService<S> {
    service: S,
    counter: Rc<Counter>,
}

struct Counter {
    max: u16,
    current: Cell<u16>,
    waker: LocalWaker,
}

struct Guard(Rc<Counter>);

impl Drop for Guard {
    fn drop(&mut self) {
        let c = &self.0;
        let before = c.current.get();
        c.current.set(before.saturating_sub(1));
        if before >= c.max {
            c.waker.wake();
        }
    }
}

impl<S, St> Service<St, v3::codec::Decoded> for InflightService<S>
where
    S: Service<St, v3::codec::Decoded>,
{
    type Res = S::Res;
    type Error = S::Error;

    async fn ready(&self, ctx: Ctx<'_, Self, St>) -> Result<(), S::Error> {
        let counter = &self.counter;
        poll_fn(|cx| {
            counter.waker.register(cx.waker());
            if counter.current.get() < counter.max {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        ctx.ready(&self.service).await
    }

    async fn call(
        &self,
        req: v3::codec::Decoded,
        ctx: Ctx<'_, Self, St>,
    ) -> Result<S::Res, S::Error> {
        let _guard = matches!(req, v3::codec::Decoded::Publish(..)).then(|| {
            self.counter.current.set(self.counter.current.get() + 1);
            Guard(self.counter.clone())
        });
        ctx.call(&self.service, req).await
    }

    ntex_service::forward_shutdown!(St, service);
}
