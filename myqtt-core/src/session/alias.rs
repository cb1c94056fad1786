//! MQTT 5 topic aliases (MQTT 5.0 §3.3.2.3.4), one table per direction.
//!
//! Both tables belong to one network connection and are never stored in
//! the session state [MQTT-3.3.2-7]. Ordered maps: an empty one is three
//! words and allocates nothing, and the tables are small.

use std::collections::BTreeMap;

use crate::codec::Publish;
use crate::topic::TopicName;

use super::SessionError;

/// Aliases the peer set up for the PUBLISH packets it sends us.
#[derive(Debug, Clone, Default)]
pub(crate) struct InboundAliases {
    /// This side's Topic Alias Maximum.
    maximum: u16,
    topics: BTreeMap<u16, TopicName>,
}

impl InboundAliases {
    pub(crate) fn new(maximum: u16) -> Self {
        Self {
            maximum,
            topics: BTreeMap::new(),
        }
    }

    /// Resolves the alias of an incoming PUBLISH in place: a topic with an
    /// alias sets the mapping, an alias alone is replaced by its topic. The
    /// alias property is removed either way.
    pub(crate) fn resolve(&mut self, publish: &mut Publish) -> Result<(), SessionError> {
        let alias = publish
            .properties
            .get_mut()
            .and_then(|p| p.topic_alias.take());
        let Some(alias) = alias else {
            if publish.topic.is_empty() {
                return Err(SessionError::EmptyTopicWithoutAlias);
            }
            return Ok(());
        };
        if alias == 0 {
            return Err(SessionError::TopicAliasZero);
        }
        // A peer may use every value in 1..=maximum [MQTT-3.3.2-10],
        // [MQTT-3.3.2-12], and nothing above [MQTT-3.3.2-9], [MQTT-3.3.2-11].
        if alias > self.maximum {
            return Err(SessionError::TopicAliasTooLarge {
                alias,
                maximum: self.maximum,
            });
        }
        if publish.topic.is_empty() {
            publish.topic = self
                .topics
                .get(&alias)
                .cloned()
                .ok_or(SessionError::TopicAliasUnknown(alias))?;
        } else {
            self.topics.insert(alias, publish.topic.clone());
        }
        Ok(())
    }
}

/// What the outbound table would do with one PUBLISH, decided before the
/// packet is known to fit the peer's Maximum Packet Size and committed only
/// once it is sent (so that a mapping the peer never saw is never used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AliasPlan {
    /// Send the full topic, no alias.
    None,
    /// Send the alias alone (empty topic name).
    Use(u16),
    /// Send the topic with a new alias, which maps it from now on.
    Assign(u16),
}

/// Aliases this side assigns to the PUBLISH packets it sends.
///
/// Policy: first come, first served. The first `limit` distinct topics get
/// aliases 1, 2, …; a topic keeps its alias for the connection; nothing is
/// evicted.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutboundAliases {
    /// min(the peer's Topic Alias Maximum, our configured cap) [MQTT-3.1.2-26],
    /// [MQTT-3.2.2-17]; 0 means no aliases [MQTT-3.1.2-27], [MQTT-3.2.2-18].
    limit: u16,
    assigned: u16,
    aliases: BTreeMap<TopicName, u16>,
}

impl OutboundAliases {
    pub(crate) fn new(limit: u16) -> Self {
        Self {
            limit,
            assigned: 0,
            aliases: BTreeMap::new(),
        }
    }

    pub(crate) fn plan(&self, topic: &TopicName) -> AliasPlan {
        if self.limit == 0 {
            return AliasPlan::None;
        }
        match self.aliases.get(topic) {
            Some(&alias) => AliasPlan::Use(alias),
            None if self.assigned < self.limit => AliasPlan::Assign(self.assigned + 1),
            None => AliasPlan::None,
        }
    }

    /// Rewrites `wire` (a copy about to be sent) according to `plan`.
    pub(crate) fn apply(plan: AliasPlan, wire: &mut Publish) {
        match plan {
            AliasPlan::None => wire.properties.update(|p| p.topic_alias = None),
            AliasPlan::Use(alias) => {
                wire.properties.make_mut().topic_alias = Some(alias);
                wire.topic = TopicName::empty_for_alias();
            }
            AliasPlan::Assign(alias) => wire.properties.make_mut().topic_alias = Some(alias),
        }
    }

    /// Records a new mapping once the PUBLISH that announces it is sent.
    pub(crate) fn commit(&mut self, plan: AliasPlan, topic: &TopicName) {
        if let AliasPlan::Assign(alias) = plan {
            self.assigned = alias;
            self.aliases.insert(topic.clone(), alias);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::{PublishProperties, QoS};

    fn publish(topic: &str, alias: Option<u16>) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: if topic.is_empty() {
                TopicName::empty_for_alias()
            } else {
                TopicName::new(topic).unwrap()
            },
            packet_id: None,
            properties: PublishProperties {
                topic_alias: alias,
                ..PublishProperties::default()
            }
            .into(),
            payload: Bytes::new(),
        }
    }

    #[test]
    fn inbound_alias_with_topic_sets_and_alias_alone_resolves() {
        let mut t = InboundAliases::new(2);
        let mut p = publish("a/b", Some(2));
        t.resolve(&mut p).unwrap();
        assert_eq!(p.properties.topic_alias, None);
        let mut p = publish("", Some(2));
        t.resolve(&mut p).unwrap();
        assert_eq!(p.topic.as_str(), "a/b");
    }

    #[test]
    fn inbound_alias_zero_or_above_maximum_is_invalid() {
        // [MQTT-3.3.2-8], [MQTT-3.3.2-9]
        let mut t = InboundAliases::new(2);
        assert_eq!(
            t.resolve(&mut publish("a", Some(0))),
            Err(SessionError::TopicAliasZero)
        );
        assert_eq!(
            t.resolve(&mut publish("a", Some(3))),
            Err(SessionError::TopicAliasTooLarge {
                alias: 3,
                maximum: 2
            })
        );
        assert_eq!(
            t.resolve(&mut publish("", Some(1))),
            Err(SessionError::TopicAliasUnknown(1))
        );
        assert_eq!(
            t.resolve(&mut publish("", None)),
            Err(SessionError::EmptyTopicWithoutAlias)
        );
    }

    #[test]
    fn outbound_aliases_are_first_come_first_served_up_to_the_limit() {
        let mut t = OutboundAliases::new(1);
        let a = TopicName::new("a").unwrap();
        let b = TopicName::new("b").unwrap();
        assert_eq!(t.plan(&a), AliasPlan::Assign(1));
        // Not committed yet: nothing is used.
        assert_eq!(t.plan(&a), AliasPlan::Assign(1));
        t.commit(AliasPlan::Assign(1), &a);
        assert_eq!(t.plan(&a), AliasPlan::Use(1));
        assert_eq!(t.plan(&b), AliasPlan::None);
        let mut wire = publish("a", Some(7));
        OutboundAliases::apply(AliasPlan::Use(1), &mut wire);
        assert!(wire.topic.is_empty());
        assert_eq!(wire.properties.topic_alias, Some(1));
    }

    #[test]
    fn outbound_aliases_are_off_at_limit_zero() {
        let t = OutboundAliases::new(0);
        assert_eq!(t.plan(&TopicName::new("a").unwrap()), AliasPlan::None);
    }
}
