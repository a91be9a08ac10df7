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

impl Key {
    fn of(request: &Request) -> Key {
        let object = &request.object;
        Key {
            kind: object.kind.clone().unwrap_or_default(),
            namespace: object.namespace.clone().unwrap_or_default(),
            name: object.name.clone().unwrap_or_default(),
            uid: object.uid.clone().unwrap_or_default(),
            api_version: object.api_version.clone().unwrap_or_default(),
            field_path: object.field_path.clone().unwrap_or_default(),
            type_: request.type_,
            reason: request.reason.clone(),
            message: request.message.clone(),
        }
    }
}

/// An event's count and its first and last occurrence.
#[derive(Clone, Copy)]
struct Times {
    count: i32,
    first: Timestamp,
    last: Timestamp,
}

async fn create(api: &Api<Event>, namespace: &str, name: &str, event: &Event) -> Result<(), Error> {
    let op = Op {
        verb: "create",
        kind: "Event",
        resource: "events",
        namespace,
        name,
    };
    api.create(&PostParams::default(), event)
        .await
        .map_err(|e| op.error(e))?;
    Ok(())
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
                    if let Err(error) = self.write(*request).await {
                        tracing::warn!(%error, "could not record event");
                    }
                }
                Command::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Records one event: a repeat of a recent one (client-go's aggregation key) raises that
    /// event's count, anything else creates a new Event.
    async fn write(&mut self, request: Request) -> Result<(), Error> {
        let key = Key::of(&request);
        // Events of cluster-scoped objects go to the default namespace, as client-go does.
        let namespace = if key.namespace.is_empty() {
            "default".to_string()
        } else {
            key.namespace.clone()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Timestamp::now();
        self.tick += 1;
        let tick = self.tick;

        if let Some(seen) = self.seen.get_mut(&key) {
            seen.count += 1;
            seen.used = tick;
            let name = seen.name.clone();
            let times = Times {
                count: seen.count,
                first: seen.first,
                last: now,
            };
            return self.bump(&api, &namespace, &name, request, times).await;
        }

        let name = event_name(&key.name, now);
        let times = Times {
            count: 1,
            first: now,
            last: now,
        };
        create(
            &api,
            &namespace,
            &name,
            &self.event(&namespace, &name, request, times),
        )
        .await?;
        self.remember(
            key,
            Seen {
                name,
                count: 1,
                first: now,
                used: tick,
            },
        );
        Ok(())
    }

    /// Raises a recorded event's count and time; one that expired meanwhile (events live an hour by
    /// default) is written again.
    async fn bump(
        &self,
        api: &Api<Event>,
        namespace: &str,
        name: &str,
        request: Request,
        times: Times,
    ) -> Result<(), Error> {
        let patch = serde_json::json!({
            "count": times.count,
            "lastTimestamp": Time(times.last),
            "message": request.message,
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                create(
                    api,
                    namespace,
                    name,
                    &self.event(namespace, name, request, times),
                )
                .await
            }
            Err(e) => Err(Op {
                verb: "patch",
                kind: "Event",
                resource: "events",
                namespace,
                name,
            }
            .error(e)),
        }
    }

    fn event(&self, namespace: &str, name: &str, request: Request, times: Times) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            involved_object: request.object,
            type_: Some(request.type_.as_str().into()),
            reason: Some(request.reason),
            message: Some(request.message),
            count: Some(times.count),
            first_timestamp: Some(Time(times.first)),
            last_timestamp: Some(Time(times.last)),
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
