//! Topics: validated [`TopicName`] and [`TopicFilter`] types, the
//! subscription trie that answers "who is subscribed to this topic", and the
//! retained-message tree that answers "which retained topics match this
//! filter".

mod name;
mod retained;
mod trie;
mod walk;

pub(crate) use name::RawTopic;
pub use name::{TopicError, TopicFilter, TopicName};
pub use retained::RetainedTree;
pub use trie::{Match, ShareGroup, SubscriptionTrie};
