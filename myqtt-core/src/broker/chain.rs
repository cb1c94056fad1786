//! The installed hooks, run in order: the first refusal wins, deferred
//! answers are bounded by the [`HookPolicy`] time limit, and failures or
//! time-outs get the policy's answer.

use std::sync::Arc;

use super::hooks::{
    AclRequest, ClientInfo, ConnectRequest, ConnectVerdict, Event, FailurePolicy, Hook, HookError,
    HookPolicy, Interests, Message, PublishVerdict, Reply,
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

    /// Runs `acl_check` through the chain: every hook must allow.
    pub(crate) async fn acl(&self, req: &AclRequest<'_>) -> bool {
        let on_failure = !self.fail_closed();
        for (hook, _) in &self.hooks {
            let reply = hook.acl_check(req);
            if !self.resolve(reply, "acl_check", on_failure).await {
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
