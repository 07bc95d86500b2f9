use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

type Slot = Arc<dyn Any + Send + Sync>;

/// Application values shared by a collector's processor and lifecycle: a type map, cheap to
/// clone (clones share the same values).
///
/// A lifecycle's `setup` typically inserts a client or a pool here, and the processor reads it.
///
/// ```
/// use switchyard_core::engine::Context;
/// struct Greeting(&'static str);
/// let ctx = Context::new();
/// ctx.insert(Greeting("hello"));
/// assert_eq!(ctx.get::<Greeting>().unwrap().0, "hello");
/// assert!(ctx.get::<u32>().is_none());
/// ```
#[derive(Clone, Default)]
pub struct Context {
    values: Arc<RwLock<HashMap<TypeId, Slot>>>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value`, replacing (and returning) any value of the same type.
    pub fn insert<V: Any + Send + Sync>(&self, value: V) -> Option<Arc<V>> {
        let old = self
            .values
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(TypeId::of::<V>(), Arc::new(value));
        old.and_then(|slot| slot.downcast::<V>().ok())
    }

    /// The stored value of type `V`.
    pub fn get<V: Any + Send + Sync>(&self) -> Option<Arc<V>> {
        let slot = self
            .values
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&TypeId::of::<V>())
            .cloned();
        slot.and_then(|slot| slot.downcast::<V>().ok())
    }

    /// Removes and returns the value of type `V`.
    pub fn remove<V: Any + Send + Sync>(&self) -> Option<Arc<V>> {
        let slot = self
            .values
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&TypeId::of::<V>());
        slot.and_then(|slot| slot.downcast::<V>().ok())
    }

    /// Number of stored values.
    pub fn len(&self) -> usize {
        self.values
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("values", &self.len())
            .finish()
    }
}
