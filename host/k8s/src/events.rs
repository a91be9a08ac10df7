//! Records core/v1 Events on pods (and other objects) the way client-go's recorder does.
//!
//! A repeat of an event (same source, object, type, reason and message) increments `count` and
//! `lastTimestamp` of the event already written, with a JSON merge patch, instead of writing a new
//! one; a repeat whose event has meanwhile expired is written again under its old name. Recording
//! never fails and never blocks the caller: events go through a bounded queue to a background task,
//! and a full queue or a failed API call is logged and the event dropped.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::{mpsc, oneshot};

use crate::Error;
use crate::error::Op;

/// Events waiting to be written; more are dropped (client-go's queue holds 1000 as well).
const QUEUE_LEN: usize = 1000;
/// Repeats remembered for aggregation (client-go keeps 4096).
const CACHE_ENTRIES: usize = 4096;
/// Longest message written; longer ones are cut (the events.k8s.io API's limit for a note).
const MAX_MESSAGE_BYTES: usize = 1024;

/// Type of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Reference to a pod for [`EventRecorder::record_pod`].
pub fn pod_reference(namespace: &str, name: &str, uid: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid: Some(uid.into()),
        ..ObjectReference::default()
    }
}

struct Request {
    object: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
}

enum Command {
    Record(Box<Request>),
    Flush(oneshot::Sender<()>),
}

/// Writes events in the background. Cheap to clone; the writer task ends when the last clone is
/// dropped.
#[derive(Clone)]
pub struct EventRecorder {
    queue: mpsc::Sender<Command>,
}

impl EventRecorder {
    /// A recorder whose events name `component` as their source and `host` (the node) as the
    /// reporting instance. Spawns its writer on the current tokio runtime.
    pub fn new(client: Client, component: &str, host: &str) -> Self {
        let (queue, commands) = mpsc::channel(QUEUE_LEN);
        let writer = Writer {
            client,
            source: EventSource {
                component: Some(component.into()),
                host: Some(host.into()),
            },
            seen: HashMap::new(),
            tick: 0,
        };
        tokio::spawn(writer.run(commands));
        Self { queue }
    }

    /// Records an event on a pod.
    pub fn record_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        self.record(pod_reference(namespace, name, uid), type_, reason, message);
    }

    /// Records an event on any object.
    pub fn record(&self, object: ObjectReference, type_: EventType, reason: &str, message: &str) {
        let command = Command::Record(Box::new(Request {
            object,
            type_,
            reason: reason.to_string(),
            message: truncated(message),
        }));
        if let Err(mpsc::error::TrySendError::Full(Command::Record(request))) =
            self.queue.try_send(command)
        {
            tracing::warn!(
                object = request.object.name.as_deref().unwrap_or_default(),
                namespace = request.object.namespace.as_deref().unwrap_or_default(),
                reason = %request.reason,
                "event queue full; dropping event"
            );
        }
    }

    /// Waits until every event recorded before this call has been written (or has failed).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Command::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

fn truncated(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE_BYTES - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// `<object>.<nanoseconds in hex>`, as client-go names events, with the object part cut so that the
/// name stays within the 253 characters an object name may have.
fn event_name(object: &str, at: Timestamp) -> String {
    let suffix = format!(".{:x}", at.as_nanosecond());
    let mut keep = object.len().min(253 - suffix.len());
    while !object.is_char_boundary(keep) {
        keep -= 1;
    }
    let prefix = object[..keep].trim_end_matches(['.', '-']);
    format!("{prefix}{suffix}")
}

/// What makes two events the same event (client-go's aggregation key).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    api_version: String,
    field_path: String,
    type_: EventType,
    reason: String,
    message: String,
}

struct Seen {
    name: String,
    count: i32,
    first: Timestamp,
    used: u64,
}

struct Writer {
    client: Client,
    source: EventSource,
    seen: HashMap<Key, Seen>,
    tick: u64,
}

impl Writer {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        while let Some(command) = commands.recv().await {
            match command {
                Command::Record(request) => {
                    let Request {
                        object,
                        type_,
                        reason,
                        message,
                    } = *request;
                    if let Err(error) = self.write(object, type_, reason, message).await {
                        tracing::warn!(%error, "could not record event");
                    }
                }
                Command::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    async fn write(
        &mut self,
        object: ObjectReference,
        type_: EventType,
        reason: String,
        message: String,
    ) -> Result<(), Error> {
        let key = Key {
            kind: object.kind.clone().unwrap_or_default(),
            namespace: object.namespace.clone().unwrap_or_default(),
            name: object.name.clone().unwrap_or_default(),
            uid: object.uid.clone().unwrap_or_default(),
            api_version: object.api_version.clone().unwrap_or_default(),
            field_path: object.field_path.clone().unwrap_or_default(),
            type_,
            reason: reason.clone(),
            message: message.clone(),
        };
        // Events of cluster-scoped objects go to the default namespace, as client-go does.
        let namespace = if key.namespace.is_empty() {
            "default".to_string()
        } else {
            key.namespace.clone()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Timestamp::now();
        self.tick += 1;

        if let Some(seen) = self.seen.get_mut(&key) {
            seen.count += 1;
            seen.used = self.tick;
            let (name, count, first) = (seen.name.clone(), seen.count, seen.first);
            let op = Op {
                verb: "patch",
                kind: "Event",
                resource: "events",
                namespace: &namespace,
                name: &name,
            };
            let patch = serde_json::json!({
                "count": count,
                "lastTimestamp": Time(now),
                "message": message,
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // The event expired (events live an hour by default): write it again.
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    let event = self.event(
                        &namespace, &name, object, type_, reason, message, count, first, now,
                    );
                    let op = Op {
                        verb: "create",
                        ..op
                    };
                    api.create(&PostParams::default(), &event)
                        .await
                        .map_err(|e| op.error(e))?;
                    return Ok(());
                }
                Err(e) => return Err(op.error(e)),
            }
        }

        let name = event_name(&key.name, now);
        let event = self.event(
            &namespace, &name, object, type_, reason, message, 1, now, now,
        );
        let op = Op {
            verb: "create",
            kind: "Event",
            resource: "events",
            namespace: &namespace,
            name: &name,
        };
        api.create(&PostParams::default(), &event)
            .await
            .map_err(|e| op.error(e))?;
        self.remember(
            key,
            Seen {
                name,
                count: 1,
                first: now,
                used: self.tick,
            },
        );
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        namespace: &str,
        name: &str,
        object: ObjectReference,
        type_: EventType,
        reason: String,
        message: String,
        count: i32,
        first: Timestamp,
        last: Timestamp,
    ) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            involved_object: object,
            type_: Some(type_.as_str().into()),
            reason: Some(reason),
            message: Some(message),
            count: Some(count),
            first_timestamp: Some(Time(first)),
            last_timestamp: Some(Time(last)),
            source: Some(self.source.clone()),
            reporting_component: self.source.component.clone(),
            reporting_instance: self.source.host.clone(),
            ..Event::default()
        }
    }

    fn remember(&mut self, key: Key, seen: Seen) {
        if self.seen.len() >= CACHE_ENTRIES {
            // Forget the least recently used tenth in one go, so eviction stays rare.
            let mut ticks: Vec<u64> = self.seen.values().map(|s| s.used).collect();
            ticks.sort_unstable();
            let cutoff = ticks[CACHE_ENTRIES / 10];
            self.seen.retain(|_, s| s.used > cutoff);
        }
        self.seen.insert(key, seen);
    }
}
