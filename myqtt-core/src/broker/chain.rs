//! The installed hooks, run in order: the first refusal wins, deferred
//! answers are bounded by the [`HookPolicy`] time limit, and failures or
//! time-outs get the policy's answer.

use std::sync::Arc;

use super::hooks::{
    Access, AclRequest, ClientInfo, ConnectRequest, ConnectVerdict, Event, FailurePolicy, Hook,
    HookError, HookPolicy, Interests, Message, PublishVerdict, Reply,
};
use crate::codec::ReasonCode;

/// What the chain decided about an incoming PUBLISH.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // short-lived, on the stack
pub(crate) enum PublishOutcome {
    /// Route this message (the original or a rewrite).
    Route(Message),
    /// Do not route it; complete the publisher's flow.
    Discard,
    /// Do not route it, and close the publisher's connection.
    Close,
}

/// What a message of a batch has come to so far in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Route,
    Discard,
    Close,
}

/// Which group of events an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    Lifecycle,
    Messages,
    Packets,
}

impl EventKind {
    fn wanted_by(self, interests: Interests) -> bool {
        match self {
            Self::Lifecycle => interests.lifecycle,
            Self::Messages => interests.messages,
            Self::Packets => interests.packets,
        }
    }
}

/// An immutable snapshot of the installed hooks. Adding a hook builds a new
/// chain; connections pick it up at their next decision.
pub(crate) struct HookChain {
    hooks: Vec<(Arc<dyn Hook>, Interests)>,
    interests: Interests,
    policy: HookPolicy,
}

impl HookChain {
    pub(crate) fn new(hooks: Vec<Arc<dyn Hook>>, policy: HookPolicy) -> Self {
        let hooks: Vec<_> = hooks
            .into_iter()
            .map(|h| {
                let i = h.interests();
                (h, i)
            })
            .collect();
        let interests = hooks
            .iter()
            .fold(Interests::default(), |acc, (_, i)| acc.union(*i));
        Self {
            hooks,
            interests,
            policy,
        }
    }

    /// The hooks, in order.
    pub(crate) fn hooks(&self) -> impl Iterator<Item = &Arc<dyn Hook>> {
        self.hooks.iter().map(|(h, _)| h)
    }

    /// True when no hook is installed: every decision is "allow".
    pub(crate) fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// What the hooks want, together.
    pub(crate) fn interests(&self) -> Interests {
        self.interests
    }

    /// True if some hook wants events of this kind.
    pub(crate) fn wants(&self, kind: EventKind) -> bool {
        kind.wanted_by(self.interests)
    }

    /// Reports an event to the hooks that want its kind; `make` builds it
    /// only if one does.
    pub(crate) fn emit<'a>(&self, kind: EventKind, make: impl FnOnce() -> Event<'a>) {
        if !self.wants(kind) {
            return;
        }
        let event = make();
        for (hook, interests) in &self.hooks {
            if kind.wanted_by(*interests) {
                hook.on_event(&event);
            }
        }
    }

    /// Resolves one hook's reply within the time limit; a failure or a
    /// time-out gets `on_failure`.
    async fn resolve<T>(&self, reply: Reply<T>, what: &str, on_failure: T) -> T {
        match reply {
            Reply::Ready(v) => v,
            Reply::Later(fut) => match tokio::time::timeout(self.policy.timeout, fut).await {
                Ok(Ok(v)) => v,
                Ok(Err(HookError(e))) => {
                    tracing::warn!(hook = what, error = %e, policy = ?self.policy.on_failure, "hook failed");
                    on_failure
                }
                Err(_) => {
                    tracing::warn!(hook = what, timeout = ?self.policy.timeout, policy = ?self.policy.on_failure, "hook timed out");
                    on_failure
                }
            },
        }
    }

    fn fail_closed(&self) -> bool {
        self.policy.on_failure == FailurePolicy::FailClosed
    }

    /// Runs `on_connect` through the chain: the first refusal wins.
    pub(crate) async fn on_connect(&self, req: &ConnectRequest<'_>) -> ConnectVerdict {
        let on_failure = if self.fail_closed() {
            ConnectVerdict::Refuse(ReasonCode::NotAuthorized)
        } else {
            ConnectVerdict::Accept
        };
        for (hook, _) in &self.hooks {
            let reply = hook.on_connect(req);
            let verdict = self.resolve(reply, "on_connect", on_failure.clone()).await;
            if let ConnectVerdict::Refuse(code) = verdict {
                return ConnectVerdict::Refuse(code);
            }
        }
        ConnectVerdict::Accept
    }

    /// The publish ACL's answer on `msg` from `client`, for its PUBLISH
    /// packets (a refused one is acknowledged with Not authorized, 0x87)
    /// and its will.
    pub(crate) async fn publish_allowed(&self, client: &Arc<ClientInfo>, msg: &Message) -> bool {
        let allowed = self
            .acl(&AclRequest {
                client,
                access: Access::Publish,
                topic: msg.topic.as_str(),
                qos: msg.qos,
                payload: Some(&msg.payload),
                retain: msg.retain,
            })
            .await;
        if !allowed {
            tracing::debug!("publish denied by the ACL");
        }
        allowed
    }

    /// Runs `acl_check` through the chain: every hook must allow.
    pub(crate) async fn acl(&self, req: &AclRequest<'_>) -> bool {
        let on_failure = !self.fail_closed();
        for (hook, _) in &self.hooks {
            // An immediate answer (the common case: asked for every
            // PUBLISH) skips the deferred answer's machinery.
            let allowed = match hook.acl_check(req) {
                Reply::Ready(allowed) => allowed,
                reply @ Reply::Later(_) => self.resolve(reply, "acl_check", on_failure).await,
            };
            if !allowed {
                return false;
            }
        }
        true
    }

    /// Runs `on_publish` through the chain. A rewrite replaces the message
    /// for the hooks after it; a discard or close stops the chain.
    pub(crate) async fn on_publish(
        &self,
        client: &Arc<ClientInfo>,
        msg: Message,
    ) -> PublishOutcome {
        let on_failure = if self.fail_closed() {
            PublishVerdict::Discard
        } else {
            PublishVerdict::Ok
        };
        let mut msg = msg;
        for (hook, _) in &self.hooks {
            let reply = hook.on_publish(client, &msg);
            match self.resolve(reply, "on_publish", on_failure.clone()).await {
                PublishVerdict::Ok => {}
                PublishVerdict::Rewrite(m) => msg = *m,
                PublishVerdict::Discard => return PublishOutcome::Discard,
                PublishVerdict::CloseConnection => return PublishOutcome::Close,
            }
        }
        PublishOutcome::Route(msg)
    }

    /// Runs `on_publish` through the chain for several messages of one
    /// client at once ([`Hook::on_publish_batch`]): each hook answers for
    /// all the messages still to be routed in one reply. Returns one
    /// outcome per message, in order, up to and including the first
    /// [`PublishOutcome::Close`]: the messages after it are not decided.
    pub(crate) async fn on_publish_batch(
        &self,
        client: &Arc<ClientInfo>,
        mut msgs: Vec<Message>,
    ) -> Vec<PublishOutcome> {
        let on_failure = if self.fail_closed() {
            PublishVerdict::Discard
        } else {
            PublishVerdict::Ok
        };
        // What each message has come to so far; only `Route` ones go on to
        // the next hook.
        let mut fate = vec![Fate::Route; msgs.len()];
        for (hook, _) in &self.hooks {
            // The messages this hook decides on: all of them while nothing
            // was discarded (moved in, no copy), else the ones still routed.
            let all = fate.iter().all(|f| *f == Fate::Route);
            let (asked, index): (Arc<Vec<Message>>, Vec<usize>) = if all {
                (Arc::new(std::mem::take(&mut msgs)), Vec::new())
            } else {
                let index: Vec<usize> = (0..fate.len())
                    .filter(|&i| fate.get(i) == Some(&Fate::Route))
                    .collect();
                let subset = index.iter().filter_map(|&i| msgs.get(i).cloned()).collect();
                (Arc::new(subset), index)
            };
            if asked.is_empty() {
                if all {
                    msgs = Arc::unwrap_or_clone(asked);
                }
                break;
            }
            let n = asked.len();
            let reply = hook.on_publish_batch(client, &asked);
            let mut verdicts = self.resolve(reply, "on_publish", Vec::new()).await;
            if all {
                // The messages back: a hook that kept the batch past its
                // reply (or a late reply, still running) costs a copy.
                msgs = Arc::unwrap_or_clone(asked);
            } else {
                drop(asked);
            }
            if verdicts.len() < n {
                if !verdicts.is_empty() {
                    tracing::warn!(
                        answered = verdicts.len(),
                        asked = n,
                        policy = ?self.policy.on_failure,
                        "on_publish hook answered part of a batch"
                    );
                }
                verdicts.resize(n, on_failure.clone());
            }
            let mut closed_at = None;
            for (k, verdict) in verdicts.into_iter().take(n).enumerate() {
                let i = if all {
                    k
                } else {
                    index.get(k).copied().unwrap_or(k)
                };
                match verdict {
                    PublishVerdict::Ok => {}
                    PublishVerdict::Rewrite(m) => {
                        if let Some(slot) = msgs.get_mut(i) {
                            *slot = *m;
                        }
                    }
                    PublishVerdict::Discard => {
                        if let Some(f) = fate.get_mut(i) {
                            *f = Fate::Discard;
                        }
                    }
                    PublishVerdict::CloseConnection => {
                        closed_at = Some(i);
                        break;
                    }
                }
            }
            if let Some(i) = closed_at {
                // Nothing after the closing message is decided or routed.
                fate.truncate(i + 1);
                msgs.truncate(i + 1);
                if let Some(f) = fate.get_mut(i) {
                    *f = Fate::Close;
                }
            }
        }
        msgs.into_iter()
            .zip(fate)
            .map(|(m, f)| match f {
                Fate::Route => PublishOutcome::Route(m),
                Fate::Discard => PublishOutcome::Discard,
                Fate::Close => PublishOutcome::Close,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::time::Duration;

    use super::*;
    use crate::codec::{PublishProps, QoS};
    use crate::topic::TopicName;

    struct Fixed(PublishVerdict);
    impl Hook for Fixed {
        fn on_publish(&self, _: &Arc<ClientInfo>, _: &Message) -> Reply<PublishVerdict> {
            Reply::Ready(self.0.clone())
        }
    }

    struct Never;
    impl Hook for Never {
        fn acl_check(&self, _: &AclRequest<'_>) -> Reply<bool> {
            Reply::later(std::future::pending())
        }
    }

    fn client() -> Arc<ClientInfo> {
        Arc::new(ClientInfo {
            client_id: "c".into(),
            username: None,
            peer: "127.0.0.1:1".parse().unwrap(),
            local: "127.0.0.1:2".parse().unwrap(),
            protocol: crate::codec::ProtocolVersion::V5,
            keep_alive: 0,
            tls: false,
            transport: super::super::hooks::Transport::Tcp,
            socket: None,
        })
    }

    fn message(topic: &str) -> Message {
        Message {
            topic: TopicName::new(topic).unwrap(),
            payload: bytes::Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: PublishProps::new(),
        }
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn the_first_refusal_wins_and_later_hooks_see_a_rewrite() {
        let rewritten = message("b");
        let chain = HookChain::new(
            vec![
                Arc::new(Fixed(PublishVerdict::Rewrite(Box::new(rewritten.clone())))),
                Arc::new(Fixed(PublishVerdict::Ok)),
            ],
            HookPolicy::default(),
        );
        match run(chain.on_publish(&client(), message("a"))) {
            PublishOutcome::Route(m) => assert_eq!(m.topic, rewritten.topic),
            other => panic!("unexpected {other:?}"),
        }
        let chain = HookChain::new(
            vec![
                Arc::new(Fixed(PublishVerdict::Discard)),
                Arc::new(Fixed(PublishVerdict::CloseConnection)),
            ],
            HookPolicy::default(),
        );
        assert!(matches!(
            run(chain.on_publish(&client(), message("a"))),
            PublishOutcome::Discard
        ));
    }

    /// Answers a batch by topic: `d..` discard, `c..` close, `r..` rewrite
    /// to `rewritten`, anything else ok; records the topics it was asked
    /// about.
    #[derive(Default)]
    struct Batch {
        asked: std::sync::Mutex<Vec<Vec<String>>>,
        answer_only: Option<usize>,
    }
    impl Hook for Batch {
        fn on_publish_batch(
            &self,
            _: &Arc<ClientInfo>,
            msgs: &Arc<Vec<Message>>,
        ) -> Reply<Vec<PublishVerdict>> {
            self.asked
                .lock()
                .unwrap()
                .push(msgs.iter().map(|m| m.topic.as_str().to_owned()).collect());
            let mut v: Vec<_> = msgs
                .iter()
                .map(|m| match m.topic.as_str().as_bytes().first() {
                    Some(b'd') => PublishVerdict::Discard,
                    Some(b'c') => PublishVerdict::CloseConnection,
                    Some(b'r') => PublishVerdict::Rewrite(Box::new(message("rewritten"))),
                    _ => PublishVerdict::Ok,
                })
                .collect();
            if let Some(n) = self.answer_only {
                v.truncate(n);
            }
            Reply::later(async move { Ok(v) })
        }
    }

    fn topics(outcomes: &[PublishOutcome]) -> Vec<String> {
        outcomes
            .iter()
            .map(|o| match o {
                PublishOutcome::Route(m) => m.topic.as_str().to_owned(),
                PublishOutcome::Discard => "-".to_owned(),
                PublishOutcome::Close => "close".to_owned(),
            })
            .collect()
    }

    #[test]
    fn a_batch_is_decided_in_order_and_later_hooks_see_only_what_is_still_routed() {
        let first = Arc::new(Batch::default());
        let second = Arc::new(Batch::default());
        let chain = HookChain::new(vec![first.clone(), second.clone()], HookPolicy::default());
        let msgs = ["a", "d1", "r1", "b"].map(message).to_vec();
        let out = run(chain.on_publish_batch(&client(), msgs));
        assert_eq!(topics(&out), ["a", "-", "rewritten", "b"]);
        assert_eq!(*first.asked.lock().unwrap(), [vec!["a", "d1", "r1", "b"]]);
        // The discarded message is not asked about again; the rewrite is.
        assert_eq!(*second.asked.lock().unwrap(), [vec!["a", "rewritten", "b"]]);
    }

    #[test]
    fn a_close_verdict_ends_the_batch_at_its_message() {
        let first = Arc::new(Batch::default());
        let second = Arc::new(Batch::default());
        let chain = HookChain::new(vec![first, second.clone()], HookPolicy::default());
        let msgs = ["a", "c1", "b", "c2"].map(message).to_vec();
        let out = run(chain.on_publish_batch(&client(), msgs));
        assert_eq!(topics(&out), ["a", "close"]);
        assert_eq!(*second.asked.lock().unwrap(), [vec!["a"]]);
    }

    #[test]
    fn messages_a_batch_reply_leaves_without_a_verdict_get_the_failure_answer() {
        let short = Arc::new(Batch {
            answer_only: Some(1),
            ..Batch::default()
        });
        let chain = HookChain::new(vec![short.clone()], HookPolicy::default());
        let out = run(chain.on_publish_batch(&client(), ["a", "b"].map(message).to_vec()));
        assert_eq!(topics(&out), ["a", "-"]);
        let policy = HookPolicy {
            on_failure: FailurePolicy::FailOpen,
            ..HookPolicy::default()
        };
        let chain = HookChain::new(vec![short], policy);
        let out = run(chain.on_publish_batch(&client(), ["a", "b"].map(message).to_vec()));
        assert_eq!(topics(&out), ["a", "b"]);
    }

    /// Keeps every batch it is asked about (past its reply) and answers ok.
    #[derive(Default)]
    struct Keeper(std::sync::Mutex<Vec<Arc<Vec<Message>>>>);
    impl Hook for Keeper {
        fn on_publish_batch(
            &self,
            _: &Arc<ClientInfo>,
            msgs: &Arc<Vec<Message>>,
        ) -> Reply<Vec<PublishVerdict>> {
            self.0.lock().unwrap().push(Arc::clone(msgs));
            Reply::Ready(vec![PublishVerdict::Ok; msgs.len()])
        }
    }

    #[test]
    fn a_hook_that_keeps_the_shared_batch_still_lets_every_message_be_routed() {
        let keeper = Arc::new(Keeper::default());
        let chain = HookChain::new(
            vec![keeper.clone(), Arc::new(Batch::default())],
            HookPolicy::default(),
        );
        let out = run(chain.on_publish_batch(&client(), ["a", "d1", "b"].map(message).to_vec()));
        assert_eq!(topics(&out), ["a", "-", "b"]);
        let kept = keeper.0.lock().unwrap();
        assert_eq!(kept.len(), 1);
        let kept_topics: Vec<_> = kept[0].iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(kept_topics, ["a", "d1", "b"]);
    }

    /// Answers each message on its own, deferred: `d..` discard, `x..`
    /// fails, `c..` close (at once), anything else ok.
    struct OneByOne(std::sync::atomic::AtomicUsize);
    impl Hook for OneByOne {
        fn on_publish(&self, _: &Arc<ClientInfo>, msg: &Message) -> Reply<PublishVerdict> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match msg.topic.as_str().as_bytes().first() {
                Some(b'c') => Reply::Ready(PublishVerdict::CloseConnection),
                Some(b'd') => Reply::later(async { Ok(PublishVerdict::Discard) }),
                Some(b'x') => Reply::later(async { Err(HookError("down".into())) }),
                _ => Reply::later(async { Ok(PublishVerdict::Ok) }),
            }
        }
    }

    #[test]
    fn the_default_batch_call_asks_on_publish_for_each_message_in_order() {
        let hook = Arc::new(OneByOne(std::sync::atomic::AtomicUsize::new(0)));
        let chain = HookChain::new(vec![hook.clone()], HookPolicy::default());
        let out = run(chain.on_publish_batch(&client(), ["a", "d", "b"].map(message).to_vec()));
        assert_eq!(topics(&out), ["a", "-", "b"]);
        // A failed answer ends the reply: the messages from it on get the
        // failure answer (discard).
        let out = run(chain.on_publish_batch(&client(), ["a", "x", "b"].map(message).to_vec()));
        assert_eq!(topics(&out), ["a", "-", "-"]);
        // An immediate close stops the calls at its message.
        let before = hook.0.load(std::sync::atomic::Ordering::Relaxed);
        let out = run(chain.on_publish_batch(&client(), ["a", "c", "b"].map(message).to_vec()));
        assert_eq!(topics(&out), ["a", "close"]);
        assert_eq!(
            hook.0.load(std::sync::atomic::Ordering::Relaxed) - before,
            2
        );
    }

    #[test]
    fn a_late_acl_answer_fails_closed_by_default_and_open_when_configured() {
        let info = client();
        let req = AclRequest {
            client: &info,
            access: super::super::hooks::Access::Publish,
            topic: "a",
            qos: QoS::AtMostOnce,
            payload: None,
            retain: false,
        };
        let mut policy = HookPolicy {
            timeout: Duration::from_millis(20),
            ..HookPolicy::default()
        };
        let chain = HookChain::new(vec![Arc::new(Never)], policy);
        assert!(!run(chain.acl(&req)));
        policy.on_failure = FailurePolicy::FailOpen;
        let chain = HookChain::new(vec![Arc::new(Never)], policy);
        assert!(run(chain.acl(&req)));
    }
}
