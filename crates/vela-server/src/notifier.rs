//! The notification sender: publishes the outbox (see `vela_db::Notifications`) to an AMQP
//! 0-9-1 broker as oslo.messaging's `messagingv2` driver does, or writes it to the log.
//!
//! Each message goes to the configured exchange (a topic exchange, `glance` by default) with
//! the routing key `<topic>.<priority>` (`notifications.info`), in oslo.messaging's envelope
//! (`{"oslo.version": "2.0", "oslo.message": "<JSON>"}`). The queue of that name is declared
//! and bound first, as oslo.messaging's notifier does, so notifications wait in the broker
//! until a consumer comes. A message leaves the outbox only after the broker confirmed it
//! (publisher confirms).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use vela_db::{Db, Notifications, OutboxMessage};
use vela_domain::notify::{Filter, Priority};
use vela_domain::Secret;

/// Messages read from the outbox at a time.
const BATCH: i64 = 2000;
/// How long the sender lease lasts without renewal; another node takes over after it.
const LEASE: Duration = Duration::from_secs(30);
/// Connecting, declaring and each confirm must finish within this.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle sender looks at the outbox when nothing woke it.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// After a write woke the sender, it waits this long so that one round sends what many
/// requests wrote (and the writing transaction has committed).
const COALESCE: Duration = Duration::from_millis(500);
/// Retry delays after a failure: doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// `[notifications]`: Glance's notifications on a message bus (its `[oslo_messaging_notifications]`
/// options, `default_publisher_id` and `disabled_notifications`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsSection {
    /// `noop` (none, the default), `messagingv2` (AMQP, oslo.messaging's envelope) or `log`.
    pub driver: String,
    /// `rabbit://user:password@host:port/vhost`; several hosts separated by commas are tried in
    /// turn (`rabbit://u:p@h1:5672,u:p@h2:5672/`). `amqp://` is accepted too.
    pub transport_url: Secret,
    /// The exchange (oslo.messaging's `control_exchange`, `glance` for Glance).
    pub exchange: String,
    /// Topics; each message goes to `<topic>.<priority>` of every one.
    pub topics: Vec<String>,
    /// Sent as `publisher_id` (Glance's `default_publisher_id`).
    pub publisher_id: String,
    /// Event types (`image.update`) or groups (`image`, `image.member`, `task`) not sent.
    pub disabled_notifications: Vec<String>,
    /// Declare the exchange and queues durable (oslo.messaging's `amqp_durable_queues`); must
    /// match what the consumers declare.
    pub durable: bool,
    /// Most notifications kept while the broker is away; beyond it new ones are dropped (and
    /// logged) until the outbox drains.
    pub outbox_max: u64,
}

impl Default for NotificationsSection {
    fn default() -> Self {
        NotificationsSection {
            driver: "noop".into(),
            transport_url: Secret::default(),
            exchange: "glance".into(),
            topics: vec!["notifications".into()],
            publisher_id: "image.localhost".into(),
            disabled_notifications: Vec::new(),
            durable: false,
            outbox_max: 100_000,
        }
    }
}

/// Where notifications go.
#[derive(Debug, Clone)]
enum Driver {
    Amqp(Vec<String>),
    Log,
}

/// A configured sender.
#[derive(Debug, Clone)]
pub struct Notifier {
    driver: Driver,
    settings: NotificationsSection,
    outbox: Arc<Notifications>,
}

/// `rabbit://u:p@h1:5672,u:p@h2:5672/vhost` as AMQP URIs, one per host.
fn amqp_uris(url: &str) -> anyhow::Result<Vec<String>> {
    let rest = url
        .strip_prefix("rabbit://")
        .or_else(|| url.strip_prefix("amqp://"))
        .context("transport_url must start with rabbit:// or amqp://")?;
    let (hosts, vhost) = match rest.split_once('/') {
        Some((h, v)) => (h, v),
        None => (rest, ""),
    };
    // An empty path is the default virtual host `/`.
    let vhost = if vhost.is_empty() { "%2f" } else { vhost };
    let uris: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("amqp://{h}/{vhost}"))
        .collect();
    anyhow::ensure!(!uris.is_empty(), "transport_url names no host");
    Ok(uris)
}

impl Notifier {
    /// The sender `settings` ask for, or None for `noop`.
    pub fn new(settings: &NotificationsSection) -> anyhow::Result<Option<Self>> {
        let driver = match settings.driver.as_str() {
            "noop" | "" => return Ok(None),
            "messagingv2" => Driver::Amqp(
                amqp_uris(settings.transport_url.expose())
                    .context("[notifications] transport_url")?,
            ),
            "log" => Driver::Log,
            other => {
                anyhow::bail!("[notifications] driver '{other}': use messagingv2, log or noop")
            }
        };
        anyhow::ensure!(
            !settings.topics.is_empty(),
            "[notifications] topics is empty"
        );
        let outbox = Notifications::new(
            settings.publisher_id.clone(),
            Filter::new(settings.disabled_notifications.clone()),
            settings.outbox_max,
        );
        Ok(Some(Notifier {
            driver,
            settings: settings.clone(),
            outbox,
        }))
    }

    /// What the database needs to write notifications.
    pub fn outbox(&self) -> Arc<Notifications> {
        self.outbox.clone()
    }

    /// Sends the outbox until the task is aborted. `node` names this node in the sender lease.
    pub async fn run(self, db: Db, node: String) {
        let mut link: Option<Link> = None;
        let mut backoff = Duration::from_millis(250);
        let mut next_host = 0usize;
        let mut lease = Lease::default();
        loop {
            match self
                .round(&db, &node, &mut lease, &mut link, &mut next_host)
                .await
            {
                Ok(Round::Full) => backoff = Duration::from_millis(250),
                Ok(Round::Idle) => {
                    backoff = Duration::from_millis(250);
                    tokio::select! {
                        _ = self.outbox.written() => tokio::time::sleep(COALESCE).await,
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                    }
                }
                Ok(Round::NotHolder) => tokio::time::sleep(LEASE / 6).await,
                Err(e) => {
                    link = None;
                    lease = Lease::default();
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "notifications not sent");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn round(
        &self,
        db: &Db,
        node: &str,
        lease: &mut Lease,
        link: &mut Option<Link>,
        next_host: &mut usize,
    ) -> anyhow::Result<Round> {
        // The lease is renewed a third of the way through, not on every round.
        if lease.renewed.is_none_or(|t| t.elapsed() > LEASE / 3) {
            if !db.outbox_lease(node, LEASE).await? {
                *link = None;
                *lease = Lease::default();
                return Ok(Round::NotHolder);
            }
            lease.renewed = Some(std::time::Instant::now());
        }
        let batch = db.outbox_batch(BATCH).await?;
        if batch.is_empty() {
            self.outbox.set_depth(0);
            return Ok(Round::Idle);
        }
        let full = batch.len() as i64 == BATCH;
        self.outbox.set_depth(if full {
            db.outbox_depth().await?
        } else {
            batch.len() as u64
        });
        match &self.driver {
            Driver::Log => {
                for m in &batch {
                    tracing::info!(target: "vela::notification", priority = m.priority.as_str(), message = %m.message);
                }
                let sent: Vec<i64> = batch.iter().map(|m| m.seq).collect();
                db.outbox_remove(&sent).await?;
            }
            Driver::Amqp(uris) => {
                if link.is_none() {
                    let uri = &uris[*next_host % uris.len()];
                    *next_host += 1;
                    *link = Some(Link::open(uri, &self.settings).await?);
                }
                let Some(l) = link.as_ref() else {
                    return Ok(Round::Idle);
                };
                let (sent, failed) = l.publish(&batch, &self.settings).await;
                db.outbox_remove(&sent).await?;
                if let Some(e) = failed {
                    return Err(e);
                }
            }
        }
        Ok(if full { Round::Full } else { Round::Idle })
    }
}

/// When this node last took or renewed the sender lease.
#[derive(Default)]
struct Lease {
    renewed: Option<std::time::Instant>,
}

enum Round {
    /// The outbox is empty or was sent (what is left arrived since).
    Idle,
    /// A full batch went out: there may be more.
    Full,
    /// Another node sends.
    NotHolder,
}

/// A connection and a confirming channel with the exchange and queues declared.
struct Link {
    _conn: Connection,
    channel: Channel,
}

async fn timed<T, E: std::error::Error + Send + Sync + 'static>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(BROKER_TIMEOUT, f).await {
        Ok(r) => r.with_context(|| what.to_owned()),
        Err(_) => anyhow::bail!("{what}: no answer from the broker in {BROKER_TIMEOUT:?}"),
    }
}

impl Link {
    async fn open(uri: &str, s: &NotificationsSection) -> anyhow::Result<Self> {
        let props = ConnectionProperties::default()
            .with_connection_name("vela-notifications".into())
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        let conn = timed("connecting to the broker", Connection::connect(uri, props)).await?;
        let channel = timed("opening a channel", conn.create_channel()).await?;
        timed(
            "enabling publisher confirms",
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        timed(
            "declaring the exchange",
            channel.exchange_declare(
                &s.exchange,
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: s.durable,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await?;
        for topic in &s.topics {
            for p in [Priority::Info, Priority::Error] {
                let queue = format!("{topic}.{}", p.topic_suffix());
                timed(
                    "declaring a queue",
                    channel.queue_declare(
                        &queue,
                        QueueDeclareOptions {
                            durable: s.durable,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    ),
                )
                .await?;
                timed(
                    "binding a queue",
                    channel.queue_bind(
                        &queue,
                        &s.exchange,
                        &queue,
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    ),
                )
                .await?;
            }
        }
        tracing::info!(exchange = %s.exchange, "notification broker connected");
        Ok(Link {
            _conn: conn,
            channel,
        })
    }

    /// Publishes `batch` in order and waits for the confirms: the seqs the broker took, and
    /// the error that stopped the rest.
    ///
    /// Every message is queued before any write is awaited: lapin queues a message's frames
    /// (and numbers it for the confirm) on the first poll of its publish, so polling each
    /// publish once, in turn, fixes the order, and its I/O thread then writes the whole batch
    /// at once instead of being woken and waited for message by message.
    async fn publish(
        &self,
        batch: &[OutboxMessage],
        s: &NotificationsSection,
    ) -> (Vec<i64>, Option<anyhow::Error>) {
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_delivery_mode(2);
        let keys: Vec<[String; 2]> = s
            .topics
            .iter()
            .map(|t| [Priority::Info, Priority::Error].map(|p| format!("{t}.{}", p.topic_suffix())))
            .collect();
        let bodies: Vec<Vec<u8>> = batch.iter().map(|m| envelope(&m.message)).collect();
        let mut queued = Vec::with_capacity(batch.len() * keys.len());
        for (m, body) in batch.iter().zip(&bodies) {
            for k in &keys {
                let key = &k[usize::from(m.priority == Priority::Error)];
                let mut publish = Box::pin(self.channel.basic_publish(
                    &s.exchange,
                    key,
                    BasicPublishOptions::default(),
                    body,
                    props.clone(),
                ));
                let first = futures::poll!(publish.as_mut());
                queued.push((m.seq, first, publish));
            }
        }
        let mut pending: Vec<(i64, Vec<lapin::publisher_confirm::PublisherConfirm>)> =
            Vec::with_capacity(batch.len());
        for (seq, first, publish) in queued {
            let written = match first {
                std::task::Poll::Ready(r) => r.context("publishing"),
                std::task::Poll::Pending => timed("publishing", publish).await,
            };
            match written {
                Ok(c) => match pending.last_mut() {
                    Some((last, confirms)) if *last == seq => confirms.push(c),
                    _ => pending.push((seq, vec![c])),
                },
                Err(e) => {
                    // A message not fully written counts as not sent.
                    if pending.last().is_some_and(|(last, _)| *last == seq) {
                        pending.pop();
                    }
                    return (confirmed(pending).await.0, Some(e));
                }
            }
        }
        confirmed(pending).await
    }
}

/// oslo.messaging's envelope of a message (`oslo.message` holds it as a JSON string).
fn envelope(message: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(message.len() + message.len() / 4 + 40);
    body.extend_from_slice(b"{\"oslo.message\":");
    // A string always serializes.
    let _ = serde_json::to_writer(&mut body, message);
    body.extend_from_slice(b",\"oslo.version\":\"2.0\"}");
    body
}

/// Waits for the confirms in order; stops at the first message not confirmed by all.
async fn confirmed(
    pending: Vec<(i64, Vec<lapin::publisher_confirm::PublisherConfirm>)>,
) -> (Vec<i64>, Option<anyhow::Error>) {
    let mut done = Vec::with_capacity(pending.len());
    for (seq, confirms) in pending {
        for c in confirms {
            match timed("waiting for the broker's confirm", c).await {
                Ok(conf) if conf.is_ack() => {}
                Ok(_) => {
                    return (
                        done,
                        Some(anyhow::anyhow!("the broker refused a notification")),
                    )
                }
                Err(e) => return (done, Some(e)),
            }
        }
        done.push(seq);
    }
    (done, None)
}

#[cfg(test)]
mod tests {
    use super::{amqp_uris, envelope};

    #[test]
    fn envelopes_hold_the_message_as_a_string() {
        let message = r#"{"event_type":"image.create","payload":{"name":"a \"quoted\" é\n"}}"#;
        let v: serde_json::Value = serde_json::from_slice(&envelope(message)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"oslo.version": "2.0", "oslo.message": message})
        );
    }

    #[test]
    fn transport_urls() {
        assert_eq!(
            amqp_uris("rabbit://guest:guest@127.0.0.1:5672/").unwrap(),
            ["amqp://guest:guest@127.0.0.1:5672/%2f"]
        );
        assert_eq!(
            amqp_uris("rabbit://u:p@a:1,u:p@b:2/vh").unwrap(),
            ["amqp://u:p@a:1/vh", "amqp://u:p@b:2/vh"]
        );
        assert!(amqp_uris("kafka://x").is_err());
        assert!(amqp_uris("rabbit:///").is_err());
    }
}
