//! The in-process bus of a single node: events are dispatched directly.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Bus, BusError, BusStatus, Dispatcher, Event};

pub struct LocalBus {
    dispatcher: Arc<Dispatcher>,
}

impl LocalBus {
    pub fn new(dispatcher: Arc<Dispatcher>) -> Self {
        Self { dispatcher }
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, event: Event) -> Result<(), BusError> {
        self.dispatcher.dispatch(event);
        Ok(())
    }

    fn status(&self) -> BusStatus {
        BusStatus::Local
    }
}
